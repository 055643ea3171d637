import Cluster
import Foundation
import Glibc
import Testing

/// What a directory holds: each file's path, size and bytes, and each folder (relative paths).
func directorySnapshot(_ root: String) -> [String: [UInt8]?] {
    var snapshot: [String: [UInt8]?] = [:]
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory) else { return [:] }
    guard isDirectory.boolValue else { return [".": FileManager.default.contents(atPath: root).map { Array($0) }] }
    let entries = (try? FileManager.default.subpathsOfDirectory(atPath: root)) ?? []
    for entry in entries {
        let path = root + "/" + entry
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
        snapshot[entry] = isDirectory.boolValue ? nil : FileManager.default.contents(atPath: path).map { Array($0) }
    }
    return snapshot
}

/// Each bad input the agent and the operator commands are given: the exact message on stderr
/// (the `cluster SUBCOMMAND:` prefix once, then the cause once), the exit code, and a data
/// directory left as it was (issue 18).
@Suite("Bad input to the cluster command: message, exit code, data directory untouched", .serialized, .timeLimit(.minutes(2)))
struct CLIErrorTests {
    let root: String

    init() throws {
        root = NSTemporaryDirectory() + "cluster-cli-errors-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/data", withIntermediateDirectories: true)
        // A data directory a node used before: a marker the agent must leave alone.
        try Data("kept\n".utf8).write(to: URL(fileURLWithPath: root + "/data/marker"))
    }

    /// Runs `cluster agent` with a valid id and data directory plus `arguments`; checks the exit
    /// code, the output (exactly `message` and a line break) and that the data directory did not
    /// change.
    func agentRefuses(
        _ arguments: [String], exit code: Int32, message: String, dataDir: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let dir = dataDir ?? root + "/data"
        let before = directorySnapshot(dir)
        let result = try runChild(
            "cluster", ["agent", "--id", "e1", "--data-dir", dir, "--election-timeout", "500ms"] + arguments, timeoutSeconds: 30)
        #expect(result.exitCode == code, "\(result)", sourceLocation: sourceLocation)
        #expect(result.output == message + "\n", sourceLocation: sourceLocation)
        #expect(directorySnapshot(dir) == before, "the data directory changed", sourceLocation: sourceLocation)
    }

    @Test("--listen without a port says there is no port")
    func listenWithoutPort() throws {
        try agentRefuses(
            ["--listen", "127.0.0.1"], exit: 64,
            message: "cluster agent: The value '127.0.0.1' is invalid for '--listen <listen>': no port: expected HOST:PORT, e.g. 127.0.0.1:7001 (see --help)")
    }

    @Test("--listen with a port that is not a number says so")
    func listenBadPort() throws {
        try agentRefuses(
            ["--listen", "127.0.0.1:http"], exit: 64,
            message: "cluster agent: The value '127.0.0.1:http' is invalid for '--listen <listen>': the port 'http' is not a number 0...65535 (see --help)")
    }

    @Test("--election-timeout without a unit says a unit is needed")
    func durationWithoutUnit() throws {
        try agentRefuses(
            ["--listen", "127.0.0.1:0", "--election-timeout", "1"], exit: 64,
            message: "cluster agent: The value '1' is invalid for '--election-timeout <election-timeout>': a duration needs a unit: ns, us, ms, s, m or h (e.g. 1s or 1ms) (see --help)")
    }

    @Test("--heartbeat-interval with an unknown unit names the units")
    func durationUnknownUnit() throws {
        try agentRefuses(
            ["--listen", "127.0.0.1:0", "--heartbeat-interval", "5sec"], exit: 64,
            message: "cluster agent: The value '5sec' is invalid for '--heartbeat-interval <heartbeat-interval>': unknown unit 'sec': use ns, us, ms, s, m or h (e.g. 250ms, 1.5s) (see --help)")
    }

    @Test("a missing key file is said to be missing")
    func missingKeyFile() throws {
        let path = root + "/missing.key"
        try agentRefuses(
            ["--listen", "127.0.0.1:0", "--key-file", path], exit: 64,
            message: "cluster agent: the key file \(path) does not exist (see --help)")
    }

    @Test("a key file that is a directory is said to be a directory")
    func keyFileIsDirectory() throws {
        try agentRefuses(
            ["--listen", "127.0.0.1:0", "--key-file", root], exit: 64,
            message: "cluster agent: the key file \(root) is a directory (see --help)")
    }

    @Test("a key file without a key says what a key is, without 'invalid state'")
    func badKey() throws {
        let path = root + "/bad.key"
        try Data("not a key\n".utf8).write(to: URL(fileURLWithPath: path))
        try agentRefuses(
            ["--listen", "127.0.0.1:0", "--key-file", path], exit: 64,
            message: "cluster agent: the key file \(path) holds no cluster key: a cluster key is base64 of 32 bytes (as `cluster keygen` prints) or 64 hex digits (see --help)")
    }

    @Test("a data directory that is a file fails at start with exit 1 and the reason")
    func dataDirectoryIsAFile() throws {
        let path = root + "/data/marker"
        let result = try runChild(
            "cluster", ["agent", "--id", "e1", "--listen", "127.0.0.1:0", "--data-dir", path, "--log-level", "error"],
            timeoutSeconds: 30)
        #expect(result.exitCode == 1, "\(result)")
        #expect(result.output.hasSuffix("cluster agent: storage error: the data directory \(path) is not a directory\n"), "\(result)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "kept\n")
    }

    @Test("a data directory that cannot be created fails at start with exit 1 and the reason")
    func dataDirectoryCannotBeCreated() throws {
        // /proc takes no new folders, whoever asks (root too).
        let path = "/proc/cluster-cli-errors-\(getpid())"
        let result = try runChild(
            "cluster", ["agent", "--id", "e1", "--listen", "127.0.0.1:0", "--data-dir", path, "--log-level", "error"],
            timeoutSeconds: 30)
        #expect(result.exitCode == 1, "\(result)")
        #expect(result.output.hasPrefix("cluster agent: storage error: cannot create the data directory \(path): E"), "\(result)")
        #expect(result.output.split(separator: "\n").count == 1, "\(result)")
    }

    @Test("a corrupt election-state.json is described in a sentence, not a DecodingError dump; exit 1; nothing written")
    func corruptLegacyState() throws {
        let dir = root + "/data"
        try Data(#"{"term": "three"}"#.utf8).write(to: URL(fileURLWithPath: dir + "/election-state.json"))
        let before = directorySnapshot(dir)
        let result = try runChild(
            "cluster", ["agent", "--id", "e1", "--listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "error"],
            timeoutSeconds: 30)
        #expect(result.exitCode == 1, "\(result)")
        #expect(!result.output.contains("DecodingError") && !result.output.contains("codingPath"), "\(result)")
        #expect(result.output.contains("cluster agent: storage error: \(dir)/election-state.json is not valid election state ("), "\(result)")
        #expect(result.output.components(separatedBy: "storage error").count == 2, "the cause said more than once: \(result)")
        #expect(directorySnapshot(dir) == before, "the data directory changed")
    }

    @Test("a corrupt two-slot election-state is refused with the reason; exit 1; nothing written")
    func corruptSlots() throws {
        let dir = root + "/data"
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: dir + "/election-state"))
        let before = directorySnapshot(dir)
        let result = try runChild(
            "cluster", ["agent", "--id", "e1", "--listen", "127.0.0.1:0", "--data-dir", dir, "--log-level", "error"],
            timeoutSeconds: 30)
        #expect(result.exitCode == 1, "\(result)")
        #expect(result.output.contains("cluster agent: storage error: \(dir)/election-state: neither copy of the election state is valid"), "\(result)")
        #expect(directorySnapshot(dir) == before, "the data directory changed")
    }

    @Test("a --config file with an unknown setting names it")
    func configUnknownSetting() throws {
        let path = root + "/agent.json"
        try Data(#"{"id": "e1", "listn": "127.0.0.1:0"}"#.utf8).write(to: URL(fileURLWithPath: path))
        try agentRefuses(
            ["--config", path], exit: 64,
            message: "cluster agent: --config \(path): unknown setting \"listn\" (the settings are the agent's option names, e.g. \"data-dir\")")
    }

    @Test("a --config file that does not exist or is not JSON says which")
    func configMissingOrNotJSON() throws {
        let missing = root + "/missing.json"
        try agentRefuses(["--config", missing], exit: 64, message: "cluster agent: --config \(missing): No such file or directory")
        let garbage = root + "/garbage.json"
        try Data("id = e1\n".utf8).write(to: URL(fileURLWithPath: garbage))
        try agentRefuses(["--config", garbage], exit: 64, message: "cluster agent: --config \(garbage): not a JSON object of settings")
    }

    @Test("a CLUSTER_ variable of a flag that is neither true nor false names the variable")
    func environmentBadFlag() throws {
        let cluster = productsDirectory().appendingPathComponent("cluster").path
        let dir = root + "/data"
        let before = directorySnapshot(dir)
        let shell = try ChildProcess(path: "/bin/sh", [
            "-c", "CLUSTER_AUTO_FAILOVER=maybe exec '\(cluster)' agent --id e1 --listen 127.0.0.1:0 --data-dir '\(dir)'",
        ])
        let result = try #require(shell.waitForExit(seconds: 30))
        #expect(result.exitCode == 64, "\(result)")
        #expect(result.output == "cluster agent: CLUSTER_AUTO_FAILOVER must be true or false\n")
        #expect(directorySnapshot(dir) == before, "the data directory changed")
    }

    @Test("members --status with an unknown status names the statuses")
    func membersUnknownStatus() throws {
        let result = try runChild("cluster", ["members", "--addr", "127.0.0.1:1", "--status", "dead"], timeoutSeconds: 30)
        #expect(result.exitCode == 64, "\(result)")
        #expect(result.output == "cluster members: --status: unknown status 'dead' (alive, suspect, failed, left) (see --help)\n")
    }

    @Test("members with a bad CLUSTER_ADDR says which variable and why")
    func membersBadEnvironmentAddress() throws {
        let cluster = productsDirectory().appendingPathComponent("cluster").path
        let shell = try ChildProcess(path: "/bin/sh", ["-c", "CLUSTER_ADDR=127.0.0.1 exec '\(cluster)' members"])
        let result = try #require(shell.waitForExit(seconds: 30))
        #expect(result.exitCode == 64, "\(result)")
        #expect(result.output == "cluster members: CLUSTER_ADDR: no port: expected HOST:PORT, e.g. 127.0.0.1:7001 (see --help)\n")
    }

    @Test("members of a node that cannot be reached: exit 1 and the reason, the address named once")
    func membersUnreachable() throws {
        let result = try runChild("cluster", ["members", "--addr", "127.0.0.1:1", "--timeout", "2s"], timeoutSeconds: 30)
        #expect(result.exitCode == 1, "\(result)")
        #expect(result.output == "cluster members: I/O error: cannot connect to 127.0.0.1:1: ECONNREFUSED (connection refused)\n")
    }

    @Test("a --listen or --metrics address in use: exit 1, the address and the cause once, nothing written")
    func addressInUse() async throws {
        // A port held by an agent of this test (listening on port 0: the kernel's choice).
        let holder = try await AgentProcess.start("h1", seeds: [], dataDir: root + "/holder", minQuorum: 1)
        let taken = holder.address.description
        try agentRefuses(
            ["--listen", taken, "--log-level", "error"], exit: 1,
            message: "cluster agent: I/O error: cannot listen on \(taken): EADDRINUSE (address already in use)")
        try agentRefuses(
            ["--listen", "127.0.0.1:0", "--metrics", taken, "--log-level", "error"], exit: 1,
            message: "cluster agent: I/O error: cannot listen for metrics on \(taken): EADDRINUSE (address already in use)")
    }
}
