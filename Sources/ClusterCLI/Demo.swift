import ArgumentParser
import Cluster
import FoundationEssentials
import Glibc
import UV

/// `cluster demo` (`make run`): a loopback cluster of `cluster agent` processes you can watch.
/// It forms, hands leadership over on SIGTERM to the primary, brings the stopped node back as a
/// replica, then kills the new primary with SIGKILL (a crash) and brings that one back too,
/// measuring each change. On a terminal the members table is redrawn in place with the events
/// under it; piped, each event is one line written as it happens. Ends by itself.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a loopback cluster of agents, hand over and crash its primary, and watch.")

    @Option(help: "Number of nodes (3...9).") var nodes = 3
    @Option(help: "Interval between heartbeats.", transform: DurationArgument.parse) var heartbeatInterval = DurationArgument(.milliseconds(100), text: "100ms")
    @Option(help: "Time without a primary before an election.", transform: DurationArgument.parse) var electionTimeout = DurationArgument(.seconds(1), text: "1s")

    func validate() throws {
        guard (3...9).contains(nodes) else { throw ValidationError("--nodes must be 3...9") }
        guard heartbeatInterval.duration < electionTimeout.duration, electionTimeout.duration <= .seconds(3) else {
            throw ValidationError("--heartbeat-interval must be shorter than --election-timeout, which is at most 3s")
        }
    }

    /// The data of demos that ended without removing it (killed, say by SIGPIPE when piped
    /// into `head`: their agents leave, but the folder stays): `cluster-demo-PID` folders whose
    /// process is gone, this one's pid included (a new demo must not start on an old one's terms).
    static func removeStaleData() {
        let dir = temporaryDirectory()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where name.hasPrefix("cluster-demo-") {
            guard let pid = pid_t(name.dropFirst("cluster-demo-".count)) else { continue }
            if pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH) {
                try? FileManager.default.removeItem(atPath: dir + name)
            }
        }
    }

    func run() throws {
        let show = DemoDisplay(terminal: isatty(STDOUT_FILENO) == 1)
        Self.removeStaleData()
        let root = temporaryDirectory() + "cluster-demo-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let ids = (1...nodes).map { "n\($0)" }
        var agents: [String: DemoAgent] = [:]
        defer { for agent in agents.values { agent.stop() } }
        let timeoutMs = Double(electionTimeout.duration.nanoseconds) / 1e6
        let common = ["--heartbeat-interval", heartbeatInterval.text, "--election-timeout", electionTimeout.text,
                      "--min-quorum", "\(nodes / 2 + 1)", "--voters", ids.joined(separator: ",")]
        func start(_ id: String, seeds: [HostPort]) throws {
            agents[id] = try DemoAgent.start(id: id, dataDir: root + "/" + id, seeds: seeds, arguments: common)
        }
        let watch = DemoWatch(show: show)
        show.event("starting \(nodes) agents on 127.0.0.1, heartbeat \(heartbeatInterval), election timeout \(electionTimeout), data in \(root)")
        try start(ids[0], seeds: [])
        for id in ids.dropFirst() { try start(id, seeds: [agents[ids[0]]!.address]) }
        show.event("agents listening: " + ids.map { "\($0)=\(agents[$0]!.address)" }.joined(separator: " "))

        guard let first = watch.agreedLeader(agents, among: ids, within: 20) else { throw show.fail("no primary elected within 20 s") }
        show.event("all \(nodes) agree: \(first.nodeID) is primary (term \(first.term), epoch \(first.epoch))")
        show.table(agents)

        // A planned stop: SIGTERM makes the primary hand over before it leaves.
        show.event("SIGTERM to the primary \(first.nodeID): it hands over, then leaves")
        let handoverStart = Date()
        agents[first.nodeID]!.signal(SIGTERM)
        guard let second = watch.agreedLeader(agents, among: ids.filter { $0 != first.nodeID }, other: first.nodeID, within: 10)
        else { throw show.fail("no new primary within 10 s of the SIGTERM") }
        let handoverMs = Date().timeIntervalSince(handoverStart) * 1000
        show.event("\(second.nodeID) is primary after \(format(handoverMs, 0)) ms (\(format(handoverMs / timeoutMs, 2)) election timeouts):"
                   + " term \(second.term), epoch \(second.epoch)")
        let exit = agents[first.nodeID]!.waitForExit(seconds: 10)
        show.event("\(first.nodeID) exited with \(exit.map { "status \($0)" } ?? "no exit within 10 s")")

        show.event("restarting \(first.nodeID) on its data directory")
        try start(first.nodeID, seeds: [agents[second.nodeID]!.address])
        guard watch.agreedLeader(agents, among: ids, within: 10)?.nodeID == second.nodeID else { throw show.fail("\(first.nodeID) did not rejoin as a replica") }
        show.event("\(first.nodeID) is back, a replica following \(second.nodeID)")
        show.table(agents)

        // A crash: SIGKILL, no goodbye; the others notice the silence.
        show.event("SIGKILL to the primary \(second.nodeID): a crash")
        let crashStart = Date()
        agents[second.nodeID]!.signal(SIGKILL)
        guard let third = watch.agreedLeader(agents, among: ids.filter { $0 != second.nodeID }, other: second.nodeID, within: 15)
        else { throw show.fail("no new primary within 15 s of the crash") }
        let failoverMs = Date().timeIntervalSince(crashStart) * 1000
        show.event("\(third.nodeID) is primary after \(format(failoverMs, 0)) ms (\(format(failoverMs / timeoutMs, 2)) election timeouts):"
                   + " term \(third.term), epoch \(third.epoch)")
        _ = agents[second.nodeID]!.waitForExit(seconds: 10)
        show.event("restarting \(second.nodeID) on its data directory")
        try start(second.nodeID, seeds: [agents[third.nodeID]!.address])
        guard watch.agreedLeader(agents, among: ids, within: 10)?.nodeID == third.nodeID else { throw show.fail("\(second.nodeID) did not rejoin as a replica") }
        show.event("\(second.nodeID) is back, a replica following \(third.nodeID)")
        show.table(agents)

        let doubles = watch.doublePrimaries
        show.event("summary: handover \(format(handoverMs, 0)) ms, crash failover \(format(failoverMs, 0)) ms;"
                   + " terms with two primaries: \(doubles.isEmpty ? "none" : "\(doubles)")")
        for agent in agents.values { agent.signal(SIGTERM) }
        for agent in agents.values { _ = agent.waitForExit(seconds: 10) }
        if !doubles.isEmpty { throw ExitCode.failure }
    }
}

/// One agent process of the demo: this executable again, run as `cluster agent`. Its output
/// (stdout and stderr) is kept; the demo reads its address from it.
final class DemoAgent: @unchecked Sendable {
    let id: String
    let process: UVChildProcess
    let address: HostPort

    private init(id: String, process: UVChildProcess, address: HostPort) {
        self.id = id
        self.process = process
        self.address = address
    }

    static func start(id: String, dataDir: String, seeds: [HostPort], arguments: [String]) throws -> DemoAgent {
        // --exit-with-parent: killed (say by SIGPIPE, `cluster demo | head`), the demo takes its
        // agents with it.
        let process = try UVChildProcess(
            path: UVChildProcess.executablePath(),
            arguments: ["agent", "--id", id, "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--exit-with-parent"]
                + (seeds.isEmpty ? [] : ["--seeds", seeds.map(\.description).joined(separator: ",")]) + arguments)
        _ = process.waitForOutput(seconds: 20) { listeningAddress(in: $0) != nil }
        let log = process.output
        guard let address = listeningAddress(in: log) else {
            process.signal(SIGTERM)
            throw ValidationError("agent \(id) did not start: \(String(decoding: log, as: UTF8.self).suffix(500))")
        }
        return DemoAgent(id: id, process: process, address: address)
    }

    /// The address after the first "listening on " of an agent's log (once its line is whole).
    static func listeningAddress(in log: [UInt8]) -> HostPort? {
        let text = String(decoding: log, as: UTF8.self)
        guard let range = text.firstRange(of: "listening on ") else { return nil }
        let rest = text[range.upperBound...]
        guard rest.contains(where: \.isWhitespace) else { return nil }
        return try? HostPort(parsing: String(rest.prefix { !$0.isWhitespace }))
    }

    func signal(_ sig: Int32) { process.signal(sig) }

    /// The exit status (or the signal that ended it), or nil if it is still running after
    /// `seconds`.
    func waitForExit(seconds: Double) -> Int32? { process.waitForExit(seconds: seconds) }

    /// Kills the agent if it is still running (the demo's last resort) and waits for its end.
    func stop() {
        signal(SIGKILL)
        _ = process.waitForExit(seconds: .infinity)
    }

    func status() -> StatusResponse? { try? ClusterClient.status(of: address, timeout: .milliseconds(300)) }
}

/// What the demo polls: each agent's status, the primaries seen per term.
final class DemoWatch {
    let show: DemoDisplay
    private var primariesByTerm: [UInt64: Set<String>] = [:]

    init(show: DemoDisplay) { self.show = show }

    var doublePrimaries: [UInt64: Set<String>] { primariesByTerm.filter { $0.value.count > 1 } }

    /// Polls every 20 ms until every agent of `ids` names the same primary (not `other`), which
    /// says it leads; redraws the table on a terminal meanwhile.
    func agreedLeader(_ agents: [String: DemoAgent], among ids: [String], other: String? = nil, within seconds: Double) -> StatusResponse? {
        let deadline = Date().addingTimeInterval(seconds)
        var lastDraw = Date.distantPast
        while Date() < deadline {
            var statuses: [String: StatusResponse] = [:]
            for id in ids { if let status = agents[id]?.status() { statuses[id] = status } }
            for (id, status) in statuses where status.state == .leader { primariesByTerm[status.term, default: []].insert(id) }
            if Date().timeIntervalSince(lastDraw) > 0.1 {
                show.live(agents, statuses)
                lastDraw = Date()
            }
            if statuses.count == ids.count, let leader = statuses.values.first?.leaderID, leader != other,
               statuses.values.allSatisfy({ $0.leaderID == leader }), let status = statuses[leader], status.state == .leader {
                return status
            }
            pause(seconds: 0.02)
        }
        return nil
    }
}

/// The demo's output: a live table redrawn in place with the latest events on a terminal;
/// plain event lines, each written as it happens, when piped.
final class DemoDisplay {
    let terminal: Bool
    private let start = Date()
    private var events: [String] = []
    private var lastTable = ""

    init(terminal: Bool) { self.terminal = terminal }

    func event(_ text: String) {
        let line = "[" + format(Date().timeIntervalSince(start), 2).padded(left: 6) + "s] " + text
        events.append(line)
        if terminal { redraw() } else { writeOut(line + "\n") }
    }

    func fail(_ reason: String) -> ExitCode {
        event("FAILED: " + reason)
        return ExitCode.failure
    }

    /// The table now (piped: printed whole, at the demo's milestones).
    func table(_ agents: [String: DemoAgent]) {
        var statuses: [String: StatusResponse] = [:]
        for (id, agent) in agents { if let status = agent.status() { statuses[id] = status } }
        lastTable = Self.render(agents, statuses)
        if terminal { redraw() } else { writeOut(lastTable) }
    }

    /// A fresh view while polling: redrawn on a terminal, nothing when piped.
    func live(_ agents: [String: DemoAgent], _ statuses: [String: StatusResponse]) {
        guard terminal else { return }
        lastTable = Self.render(agents, statuses)
        redraw()
    }

    private func redraw() {
        writeOut("\u{1B}[H\u{1B}[2J" + lastTable + "\n" + events.suffix(14).joined(separator: "\n") + "\n")
    }

    static func render(_ agents: [String: DemoAgent], _ statuses: [String: StatusResponse]) -> String {
        var rows = [["NODE", "ADDRESS", "STATE", "TERM", "EPOCH", "LEADER", "MEMBERS"]]
        for id in agents.keys.sorted() {
            let agent = agents[id]!
            if let s = statuses[id] {
                rows.append([id, agent.address.description, s.state.description, "\(s.term)", "\(s.epoch)", s.leaderID ?? "-", "\(s.members.count)"])
            } else {
                rows.append([id, agent.address.description, "down", "-", "-", "-", "-"])
            }
        }
        let widths = rows[0].indices.map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            zip(row, widths).map { $0.padded(to: $1) }.joined(separator: "  ").trimmingWhitespace()
        }.joined(separator: "\n") + "\n"
    }
}
