import Cluster
import Foundation
import Glibc
import Testing

/// A tmpfs of a few pages that the test mounts on a folder of its own (needs root and the right
/// to mount; without them the suite is skipped with the reason), and unmounts.
final class TinyFilesystem: @unchecked Sendable {
    let path: String
    private var mounted = false

    /// Why a tmpfs cannot be mounted here, or nil when it can.
    static let unavailable: String? = {
        guard geteuid() == 0 else { return "needs root to mount a tmpfs (a full disk is a tmpfs filled up)" }
        guard let probe = try? TinyFilesystem(sizeKiB: 64) else { return "`mount -t tmpfs` failed (mounting not allowed here)" }
        probe.unmount()
        return nil
    }()

    init(sizeKiB: Int) throws {
        path = NSTemporaryDirectory() + "cluster-full-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let result = try Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(sizeKiB)k,mode=0700", "cluster-full", path])
        guard result.exitCode == 0 else {
            try? FileManager.default.removeItem(atPath: path)
            throw ClusterError.io("mount failed: \(result)")
        }
        mounted = true
    }

    deinit { unmount() }

    /// Fills the filesystem to its last byte with `filler` (dd stops at ENOSPC).
    func fill() throws {
        let result = try Self.run("/bin/dd", ["if=/dev/zero", "of=\(path)/filler", "bs=4096"])
        guard result.output.contains("No space left on device") else { throw ClusterError.io("dd did not fill \(path): \(result)") }
    }

    func free() throws { try FileManager.default.removeItem(atPath: path + "/filler") }

    func unmount() {
        guard mounted else { return }
        mounted = false
        if (try? Self.run("/bin/umount", [path]))?.exitCode != 0 { _ = try? Self.run("/bin/umount", ["-l", path]) }
        try? FileManager.default.removeItem(atPath: path)
    }

    private static func run(_ program: String, _ arguments: [String]) throws -> ChildResult {
        let child = try ChildProcess(path: program, arguments)
        return child.waitForExit(seconds: 20) ?? ChildResult(exitCode: nil, signal: SIGKILL, output: child.output)
    }
}

@Suite("A full disk (issue 19)", .serialized,
       .enabled(if: TinyFilesystem.unavailable == nil, "\(TinyFilesystem.unavailable ?? "")"))
struct FullDiskTests {
    @Test("an agent whose state write fails with ENOSPC neither leads nor votes from memory, says so in its log, and leads once space returns")
    func fullDiskAgent() async throws {
        let fs = try TinyFilesystem(sizeKiB: 256)
        defer { fs.unmount() }
        let dataDir = fs.path + "/a1"
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        try fs.fill()
        // The only voter: it would lead at once if it stood from memory.
        let first = try await AgentProcess.start("a1", seeds: [], dataDir: dataDir, minQuorum: 1, extra: ["--voters", "a1"])
        defer { first.child.signal(SIGKILL) }
        var agent = first
        #expect(await eventually(timeout: .seconds(10)) { agent.child.output.contains("cannot persist election state") },
                "\(agent.child.output.suffix(2000))")
        let log = agent.child.output
        #expect(log.contains("no space left on device"), "\(log.suffix(2000))")
        #expect(log.contains("neither votes nor stands for election, nor leads"), "\(log.suffix(2000))")
        // Its writes are retried every quarter election timeout, and fail: for three election
        // timeouts (a dozen retries) it never leads, nor names a leader.
        let until = Date().addingTimeInterval(3 * Double(AgentProcess.electionTimeoutMs) / 1000)
        var answers = 0
        while Date() < until {
            guard let status = agent.status() else { continue }
            answers += 1
            #expect(status.state != .leader && status.leaderID == nil, "leads without a durable vote: \(status.state) \(String(describing: status.leaderID))")
        }
        #expect(answers > 0)
        // A dozen failed retries, said once, and again at most once per 10 s (a loaded machine can
        // make this part last that long): the log is not flooded. Judged by the log's own
        // timestamps (whole seconds), not by when this test got to read it.
        let lines = agent.child.output.split(separator: "\n").filter { $0.contains("cannot persist election state") }
        let format = ISO8601DateFormatter()
        let times = lines.compactMap { format.date(from: String($0.prefix { !$0.isWhitespace })) }
        #expect(!lines.isEmpty && times.count == lines.count, "\(lines)")
        let gaps = zip(times.dropFirst(), times).map { $0.timeIntervalSince($1) }
        #expect(gaps.allSatisfy { $0 >= 9 }, "the failure was logged \(lines.count) times, \(gaps) s apart: \(agent.child.output.suffix(3000))")
        #expect((try? savedElectionState(directory: dataDir)) == nil, "a state was written on a full disk")
        // Killed and started again on the still full disk (its state file holds no copy, only
        // the blank slots it was created with): it starts, and still does not lead.
        agent.child.signal(SIGKILL)
        _ = agent.child.waitForExit(seconds: 10)
        let second = try await AgentProcess.start("a1", seeds: [], dataDir: dataDir, minQuorum: 1, extra: ["--voters", "a1"])
        defer { second.child.signal(SIGKILL) }
        agent = second
        #expect(await eventually(timeout: .seconds(10)) { agent.child.output.contains("no space left on device") },
                "\(agent.child.output.suffix(2000))")
        #expect(agent.status()?.state != .leader)
        // Space returns: the retried write succeeds, the node says so, stands and leads.
        try fs.free()
        #expect(await eventually(timeout: .seconds(10)) { agent.status()?.state == .leader })
        #expect(agent.child.output.contains("election state written again after"), "\(agent.child.output.suffix(2000))")
        let saved = try savedElectionState(directory: dataDir)
        #expect((saved["term"] as? Int ?? 0) >= 1 && saved["votedFor"] as? String == "a1", "\(saved)")
    }

}
