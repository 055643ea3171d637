import Cluster
import Foundation
import Glibc
import Testing

/// What repeats while nothing changes is said once at the default level, the repeats at debug
/// (issue 18: a node restarted with a retired key gave two warnings a second on each side).
@Suite("Repeated warnings said once per cause", .serialized, .timeLimit(.minutes(2)))
struct RepeatedWarningTests {
    static func lines(_ output: String, level: String, containing text: String) -> Int {
        output.split(separator: "\n").filter { $0.contains(" \(level) ") && $0.contains(text) }.count
    }

    @Test("a node holding a key its seed does not: one warning on each side, the next announcements at debug")
    func retiredKeyWarnsOnce() async throws {
        let root = NSTemporaryDirectory() + "cluster-retired-key-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        for name in ["old", "new"] {
            try Data((ClusterKey.generate().base64 + "\n").utf8).write(to: URL(fileURLWithPath: root + "/\(name).key"))
        }
        let seed = try await AgentProcess.start(
            "k1", seeds: [], dataDir: root + "/k1", minQuorum: 1, extra: ["--key-file", root + "/new.key", "--log-level", "debug"])
        let stale = try await AgentProcess.start(
            "k2", seeds: [seed.address], dataDir: root + "/k2", minQuorum: 1,
            extra: ["--key-file", root + "/old.key", "--log-level", "debug"])
        let refused = "refusing an announcement from k2: "
        let ignored = "seed \(seed.address) gave an answer this node ignores: "
        // Five announcements refused on each side (every 500 ms at most): the repeats are there.
        let repeated = await eventually(timeout: .seconds(30)) {
            Self.lines(seed.child.output, level: "debug", containing: refused) >= 4
                && Self.lines(stale.child.output, level: "debug", containing: ignored) >= 4
        }
        #expect(repeated, "\(seed.child.output.suffix(1500))\n\(stale.child.output.suffix(1500))")
        #expect(Self.lines(seed.child.output, level: "warning", containing: refused) == 1, "\(seed.child.output.suffix(3000))")
        #expect(Self.lines(stale.child.output, level: "warning", containing: ignored) == 1, "\(stale.child.output.suffix(3000))")
    }
}
