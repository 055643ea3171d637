import Cluster
import Foundation
import Glibc
import Testing

/// tmux, if installed (`.ci/run` installs it): the terminal tests are skipped without it.
let tmuxPath: String? = ["/usr/bin/tmux", "/usr/local/bin/tmux", "/bin/tmux"].first { (path: String) in access(path, X_OK) == 0 }

/// `cluster members --watch` on a real terminal (a detached tmux pane, on a tmux server of its
/// own), as an operator sees it (issue 18).
@Suite(
    "cluster members --watch on a terminal", .serialized, .timeLimit(.minutes(2)),
    .enabled(if: tmuxPath != nil, "tmux is not installed (apt-get install -y tmux): the terminal test is skipped"))
struct TerminalTests {
    /// Runs tmux on the test's own server socket and returns what it printed.
    static func tmux(_ socket: String, _ arguments: [String]) throws -> ChildResult {
        let child = try ChildProcess(path: tmuxPath!, ["-L", socket] + arguments)
        return child.waitForExit(seconds: 10) ?? ChildResult(exitCode: nil, signal: nil, output: "tmux \(arguments) did not end")
    }

    @Test("the table is redrawn in place at the top of the screen: one table on the screen, the earlier ones scrolled off")
    func watchRedrawsInPlace() async throws {
        let root = NSTemporaryDirectory() + "cluster-watch-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let agent = try await AgentProcess.start("w1", seeds: [], dataDir: root + "/w1", minQuorum: 1)
        #expect(await eventually(timeout: .seconds(20)) { agent.status()?.state == .leader })
        // A cleared screen goes to the history (scroll-on-clear): earlier redraws can be counted.
        let conf = root + "/tmux.conf"
        try Data("set -g scroll-on-clear on\nset -g remain-on-exit on\nset -g history-limit 10000\n".utf8)
            .write(to: URL(fileURLWithPath: conf))
        let socket = "cluster-watch-\(getpid())"
        let cluster = productsDirectory().appendingPathComponent("cluster").path
        let started = try Self.tmux(socket, [
            "-f", conf, "new-session", "-d", "-x", "150", "-y", "30",
            "'\(cluster)' members --addr \(agent.address) --watch --interval 100ms",
        ])
        defer { _ = try? Self.tmux(socket, ["kill-server"]) }
        #expect(started.exitCode == 0, "\(started)")
        var screen = ""
        var everything = ""
        let redrawn = await eventually(timeout: .seconds(20)) {
            screen = (try? Self.tmux(socket, ["capture-pane", "-p"]).output) ?? ""
            everything = (try? Self.tmux(socket, ["capture-pane", "-p", "-S", "-"]).output) ?? ""
            return everything.components(separatedBy: "\nID ").count > 3
        }
        #expect(redrawn, "not redrawn three times: \(everything.suffix(2000))")
        let lines = screen.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.first?.hasPrefix("w1 at term ") == true, "the table is not at the top: \(screen)")
        #expect(lines.filter { $0.hasPrefix("ID ") }.count == 1, "more than one table on the screen: \(screen)")
        #expect(lines.contains { $0.hasPrefix("w1 *") && $0.contains(" alive ") }, "\(screen)")
        #expect(!screen.contains("\u{1B}"), "escape codes shown as text: \(screen)")
    }
}
