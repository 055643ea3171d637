import Foundation

/// Built for fuzzing (`make fuzz`: `-sanitize=fuzzer` and `-D CLUSTER_FUZZ`), `cluster-fuzz` is
/// libFuzzer with its usual flags. Built plainly, it replays inputs through the same harness, or
/// writes the seed inputs:
///
///     cluster-fuzz FILE_OR_DIR...        replay every file; exit 1 if any breaks an expectation
///     cluster-fuzz --write-seeds DIR     write the seed inputs (see `seedInputs`) into DIR
@main
enum Replay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "--write-seeds" {
            guard args.count == 2 else { fail("usage: cluster-fuzz --write-seeds DIR") }
            writeSeeds(to: args[1])
            return
        }
        #if CLUSTER_FUZZ
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
        #else
        replay(args)
        #endif
    }

    static func writeSeeds(to dir: String) {
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for seed in seedInputs() {
                try Data(seed.input).write(to: URL(fileURLWithPath: dir).appendingPathComponent("seed-\(seed.name)"))
            }
        } catch {
            fail("cannot write the seeds: \(error)")
        }
        print("wrote \(seedInputs().count) seeds to \(dir)")
    }

    static func replay(_ paths: [String]) {
        if paths.isEmpty || paths.contains(where: { $0.hasPrefix("-") }) {
            fail("usage: cluster-fuzz FILE_OR_DIR... | cluster-fuzz --write-seeds DIR")
        }
        var files: [String] = []
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { fail("no such file: \(path)") }
            if isDir.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        var failed = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)") }
            let problems = [UInt8](data).withUnsafeBytes { feedConnection($0, thorough: true) }
            if !problems.isEmpty {
                failed += 1
                print("\(file):\n  " + problems.joined(separator: "\n  "))
            }
        }
        print("replayed \(files.count) inputs, \(failed) broke an expectation")
        if failed > 0 { exit(1) }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(2)
    }
}
