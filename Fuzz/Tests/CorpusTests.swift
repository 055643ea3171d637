import Foundation
import Testing

@testable import ClusterFuzz

/// The fuzz corpus and the seeds, replayed through the fuzz harness: a cheap regression run of
/// everything the fuzzer kept.
@Suite("Fuzz corpus")
struct CorpusTests {
    static let fuzzDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    static func files(_ dir: String) -> [URL] {
        let url = fuzzDir.appendingPathComponent(dir)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        return names.sorted().map { url.appendingPathComponent($0) }
    }

    @Test func seedsPass() {
        for seed in seedInputs() {
            let problems = seed.input.withUnsafeBytes { feedConnection($0, thorough: true) }
            #expect(problems.isEmpty, "seed \(seed.name): \(problems)")
        }
    }

    @Test(arguments: ["corpus", "regressions"])
    func corpusPasses(_ dir: String) throws {
        let files = Self.files(dir)
        #expect(dir != "corpus" || files.count >= 10, "the corpus is missing")
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: file))
            let problems = bytes.withUnsafeBytes { feedConnection($0, thorough: true) }
            #expect(problems.isEmpty, "\(file.lastPathComponent): \(problems)")
        }
    }

    @Test func chunkCutsSplitTheInput() {
        #expect(chunks(of: []) == [[]])
        #expect(chunks(of: [1, 0xFF, 0xFE, 0xFD, 2, 0xFF, 0xFE]) == [[1], [2, 0xFF, 0xFE]])
        #expect(chunks(of: fuzzInput([[], [7], [8, 9]])) == [[], [7], [8, 9]])
    }
}
