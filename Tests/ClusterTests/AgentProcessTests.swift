import Cluster
import Foundation
import Glibc
import Testing
import UV

/// One `cluster agent` process on 127.0.0.1 (port 0: the kernel's choice, read from its log),
/// with a data directory. Killed when dropped.
final class AgentProcess: @unchecked Sendable {
    let id: String
    let dataDir: String
    let child: ChildProcess
    let address: HostPort

    /// Heartbeat and election timeout of every agent of these tests.
    static let heartbeat = "50ms"
    static let electionTimeoutMs = 500

    private init(id: String, dataDir: String, child: ChildProcess, address: HostPort) {
        self.id = id
        self.dataDir = dataDir
        self.child = child
        self.address = address
    }

    /// Starts an agent and waits until it listens. `descriptorLimit`: a shell's `ulimit` command
    /// (`["ulimit", "-n", "1024"]`) run before the agent is exec'd in its place (same pid).
    static func start(
        _ id: String, seeds: [HostPort], dataDir: String, minQuorum: Int, extra: [String] = [], descriptorLimit: [String]? = nil
    ) async throws -> AgentProcess {
        var arguments = [
            "agent", "--id", id, "--listen", "127.0.0.1:0", "--data-dir", dataDir,
            "--heartbeat-interval", heartbeat, "--election-timeout", "\(electionTimeoutMs)ms", "--min-quorum", "\(minQuorum)",
        ] + extra
        if !seeds.isEmpty { arguments += ["--seeds", seeds.map(\.description).joined(separator: ",")] }
        let child: ChildProcess
        if let descriptorLimit {
            let cluster = productsDirectory().appendingPathComponent("cluster").path
            child = try ChildProcess(path: "/bin/sh", ["-c", descriptorLimit.joined(separator: " ") + #" && exec "$0" "$@""#, cluster] + arguments)
        } else {
            child = try ChildProcess("cluster", arguments)
        }
        var address: HostPort?
        _ = await eventually(timeout: .seconds(20)) {
            address = listeningAddress(in: child.output)
            return address != nil || child.waitForExit(seconds: 0) != nil
        }
        guard let address else { throw ClusterError.io("agent \(id) did not start: \(child.output.suffix(1000))") }
        return AgentProcess(id: id, dataDir: dataDir, child: child, address: address)
    }

    private static func listeningAddress(in log: String) -> HostPort? {
        guard let range = log.range(of: "listening on ") else { return nil }
        let rest = log[range.upperBound...].prefix { !$0.isWhitespace }
        return try? HostPort(parsing: String(rest))
    }

    /// The agent's status, or nil when it does not answer within `timeout` (stopped, killed).
    func status(timeout: Duration = .milliseconds(300)) -> StatusResponse? {
        try? ClusterClient.status(of: address, timeout: timeout)
    }
}

/// Five agents on loopback, each with a data directory under one temporary folder.
final class AgentCluster: @unchecked Sendable {
    let root: String
    private(set) var agents: [String: AgentProcess] = [:]
    let ids: [String]
    var seed: HostPort

    /// `voters`: the first that many agents are the voters (`--voters`), the others members that
    /// do not vote; nil: all are (bootstrapped by agreement, `--min-quorum` a majority).
    /// `descriptorLimit`: see `AgentProcess.start`; `firstExtra`: more arguments for the first
    /// agent; `keyed`: every agent gets one new cluster key (a key file in the root folder);
    /// `extra`: more arguments for every agent.
    static func start(
        size: Int = 5, voters: Int? = nil, extra more: [String] = [], descriptorLimit: [String]? = nil,
        firstExtra: [String] = [], keyed: Bool = false
    ) async throws -> AgentCluster {
        let root = NSTemporaryDirectory() + "cluster-agents-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var extra: [String] = []
        if keyed {
            let keyFile = root + "/cluster.key"
            try Data((ClusterKey.generate().base64 + "\n").utf8).write(to: URL(fileURLWithPath: keyFile))
            extra = ["--key-file", keyFile]
        }
        let ids = (1...size).map { "a\($0)" }
        let minQuorum = (voters ?? size) / 2 + 1
        extra += (voters.map { ["--voters", ids.prefix($0).joined(separator: ",")] } ?? []) + more
        let first = try await AgentProcess.start(
            ids[0], seeds: [], dataDir: root + "/" + ids[0], minQuorum: minQuorum, extra: firstExtra + extra,
            descriptorLimit: descriptorLimit)
        let cluster = AgentCluster(root: root, ids: ids, seed: first.address, minQuorum: minQuorum, extra: extra)
        cluster.descriptorLimit = descriptorLimit
        cluster.agents[ids[0]] = first
        for id in ids.dropFirst() { try await cluster.startAgent(id) }
        return cluster
    }

    /// Every agent's `--min-quorum`, and the flags every agent gets.
    let minQuorum: Int
    let extra: [String]
    private var descriptorLimit: [String]?

    private init(root: String, ids: [String], seed: HostPort, minQuorum: Int, extra: [String]) {
        self.root = root
        self.ids = ids
        self.seed = seed
        self.minQuorum = minQuorum
        self.extra = extra
    }

    deinit {
        agents.removeAll()  // kills and reaps each
        try? FileManager.default.removeItem(atPath: root)
    }

    func agent(_ id: String) -> AgentProcess { agents[id]! }

    /// Starts (or restarts, on its data directory) the agent `id`, seeded with every running agent.
    func startAgent(_ id: String) async throws {
        let seeds = agents.filter { $0.key != id }.values.map(\.address).sorted { $0.port < $1.port }
        agents[id] = try await AgentProcess.start(
            id, seeds: seeds.isEmpty ? [seed] : seeds, dataDir: root + "/" + id, minQuorum: minQuorum, extra: extra,
            descriptorLimit: descriptorLimit)
    }

    func remove(_ id: String) { agents[id] = nil }

    /// The statuses of the running agents that answered.
    func statuses(of ids: [String]) -> [String: StatusResponse] {
        var out: [String: StatusResponse] = [:]
        for id in ids { if let status = agents[id]?.status() { out[id] = status } }
        return out
    }

    /// Waits until every agent of `ids` answers, knows all of them, and names the same leader,
    /// which says it leads; returns that leader.
    func agreedLeader(among ids: [String], other: String? = nil, timeout: Duration = .seconds(30)) async -> String? {
        var leader: String?
        _ = await eventually(timeout: timeout) {
            let statuses = statuses(of: ids)
            guard statuses.count == ids.count, let named = statuses.values.first?.leaderID, named != other,
                  statuses.values.allSatisfy({ $0.leaderID == named }), statuses[named]?.state == .leader
            else { return false }
            leader = named
            return true
        }
        return leader
    }

    /// The saved election state of `id`, read from its data directory.
    func savedState(_ id: String) throws -> [String: Any] {
        try savedElectionState(directory: root + "/" + id)
    }
}

/// Watches a set of agents' statuses from a thread of its own, every few milliseconds, and
/// records every primary it sees by term and by epoch.
final class PrimaryWatch: @unchecked Sendable {
    private let seen = UVLocked((byTerm: [UInt64: Set<String>](), byEpoch: [UInt64: Set<String>]()))
    private let stopFlag = UVLocked(false)
    private let done = DispatchSemaphore(value: 0)

    init(_ agents: [AgentProcess]) {
        let seen = self.seen
        let stopFlag = self.stopFlag
        let done = self.done
        Thread {
            while !stopFlag.withLock({ $0 }) {
                for agent in agents {
                    guard let status = agent.status(timeout: .milliseconds(100)), status.state == .leader else { continue }
                    seen.withLock {
                        $0.byTerm[status.term, default: []].insert(agent.id)
                        $0.byEpoch[status.epoch, default: []].insert(agent.id)
                    }
                }
                usleep(10_000)
            }
            done.signal()
        }.start()
    }

    /// True once `id` was seen saying it is primary.
    func hasSeenPrimary(_ id: String) -> Bool {
        seen.withLock { $0.byTerm.values.contains { $0.contains(id) } }
    }

    /// Stops watching; returns the terms and epochs in which more than one agent said it was
    /// primary, and every agent seen as primary.
    func stop() -> (terms: [UInt64: Set<String>], epochs: [UInt64: Set<String>], primaries: Set<String>) {
        stopFlag.withLock { $0 = true }
        done.wait()
        return seen.withLock { s in
            (s.byTerm.filter { $0.value.count > 1 }, s.byEpoch.filter { $0.value.count > 1 },
             s.byTerm.values.reduce(into: Set<String>()) { $0.formUnion($1) })
        }
    }
}

@Suite("Agents as processes", .serialized, .timeLimit(.minutes(3)))
struct AgentProcessTests {
    @Test("SIGKILL the primary: a new one is elected and named by every survivor; restarted on its data directory, it rejoins as a replica with its term and vote intact")
    func killThePrimary() async throws {
        let cluster = try await AgentCluster.start()
        let first = try #require(await cluster.agreedLeader(among: cluster.ids))
        let saved = try cluster.savedState(first)
        let savedTerm = try #require(saved["term"] as? Int)
        cluster.agent(first).child.signal(SIGKILL)
        #expect(cluster.agent(first).child.waitForExit(seconds: 10)?.signal == SIGKILL)
        let survivors = cluster.ids.filter { $0 != first }
        let next = try #require(await cluster.agreedLeader(among: survivors, other: first))
        #expect(next != first)
        // The killed agent's state on disk is what it had: its term, and its vote in that term.
        let afterKill = try cluster.savedState(first)
        #expect(afterKill["term"] as? Int == savedTerm)
        #expect(afterKill["votedFor"] as? String == first)
        cluster.remove(first)
        try await cluster.startAgent(first)
        // At once it reports the term it saved (or a newer one it learned), never an older one.
        let back = try #require(cluster.agent(first).status(timeout: .seconds(2)))
        #expect(back.term >= UInt64(savedTerm))
        #expect(await cluster.agreedLeader(among: cluster.ids) == next)
        #expect(cluster.agent(first).status()?.state == .follower)
    }

    @Test("SIGSTOP the primary past the election timeout, then SIGCONT: another is elected, the old one steps down, and no two agents ever say primary in one term or with one epoch")
    func freezeThePrimary() async throws {
        let cluster = try await AgentCluster.start()
        let first = try #require(await cluster.agreedLeader(among: cluster.ids))
        let watch = PrimaryWatch(cluster.ids.map { cluster.agent($0) })
        #expect(await eventually(timeout: .seconds(10)) { watch.hasSeenPrimary(first) })
        cluster.agent(first).child.signal(SIGSTOP)
        let survivors = cluster.ids.filter { $0 != first }
        let next = try #require(await cluster.agreedLeader(among: survivors, other: first))
        #expect(await eventually(timeout: .seconds(10)) { watch.hasSeenPrimary(next) })
        cluster.agent(first).child.signal(SIGCONT)
        // Awake, it hears the newer term and steps down; everyone names the new primary.
        #expect(await cluster.agreedLeader(among: cluster.ids) == next)
        let (terms, epochs, primaries) = watch.stop()
        #expect(primaries == [first, next])
        #expect(terms.isEmpty, "two primaries in one term: \(terms)")
        #expect(epochs.isEmpty, "two primaries with one epoch: \(epochs)")
    }

    @Test("every agent paused together past an election timeout (SIGSTOP, SIGCONT: a suspended host or laptop): each notices its own pause, reads what waits before judging anyone silent, and the primary and term stay")
    func pauseEveryAgent() async throws {
        let cluster = try await AgentCluster.start(size: 3)
        let leader = try #require(await cluster.agreedLeader(among: cluster.ids))
        let term = try #require(cluster.agent(leader).status()).term
        for id in cluster.ids { cluster.agent(id).child.signal(SIGSTOP) }
        // The fault itself: the pause lasts three election timeouts.
        try await Task.sleep(for: .milliseconds(3 * AgentProcess.electionTimeoutMs))
        for id in cluster.ids { cluster.agent(id).child.signal(SIGCONT) }
        // Each agent saw its timers run late and says so (at the default log level).
        let noticed = await eventually(timeout: .seconds(10)) {
            cluster.ids.allSatisfy { cluster.agent($0).child.output.contains("the event loop ran") }
        }
        #expect(noticed, "\(cluster.ids.map { cluster.agent($0).child.output.suffix(600) })")
        // For two election timeouts after: no agent leads another term, and all name the primary.
        let changed = await eventually(timeout: .milliseconds(2 * AgentProcess.electionTimeoutMs)) {
            cluster.statuses(of: cluster.ids).values.contains { $0.term != term || $0.leaderID != leader }
        }
        let after = cluster.statuses(of: cluster.ids)
        #expect(!changed, "an election after the pause: \(after.mapValues { "\($0.state) term \($0.term) leader \($0.leaderID ?? "-")" })")
        #expect(after.count == 3 && after.values.allSatisfy { $0.term == term && $0.leaderID == leader })
    }

    @Test("SIGTERM the primary: it hands over before leaving (exit 0), and the new primary leads the next term, before an election timeout could have elapsed")
    func terminateThePrimary() async throws {
        let cluster = try await AgentCluster.start()
        let first = try #require(await cluster.agreedLeader(among: cluster.ids))
        let term = try #require(cluster.agent(first).status()).term
        let signalled = ContinuousClock.now
        cluster.agent(first).child.signal(SIGTERM)
        let survivors = cluster.ids.filter { $0 != first }
        let next = try #require(await cluster.agreedLeader(among: survivors, other: first))
        let took = ContinuousClock.now - signalled
        let ended = try #require(cluster.agent(first).child.waitForExit(seconds: 20))
        #expect(ended.exitCode == 0, "\(ended)")
        // A handover, not a failover: the old primary logged it, and the successor won the very
        // next term (a failover would first wait out an election timeout, then go through PreVote).
        #expect(ended.output.contains("handed leadership over to \(next)"), "\(ended.output.suffix(1500))")
        #expect(ended.output.contains("left the cluster, handing over to \(next)"))
        #expect(try #require(cluster.agent(next).status()).term == term + 1)
        print("SIGTERM handover to \(next): \(took) (election timeout \(AgentProcess.electionTimeoutMs) ms)")
    }

    @Test("cluster transfer --to a named replica makes it primary, asked through any node")
    func transferCommand() async throws {
        let cluster = try await AgentCluster.start()
        let first = try #require(await cluster.agreedLeader(among: cluster.ids))
        let replicas = cluster.ids.filter { $0 != first }
        let target = replicas[1]
        let result = try runChild(
            "cluster", ["transfer", "--addr", cluster.agent(replicas[0]).address.description, "--to", target], timeoutSeconds: 60)
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.output.contains("\(target) is the primary now"), "\(result)")
        #expect(await cluster.agreedLeader(among: cluster.ids) == target)
        // To a node that is not a member: the reason, exit 1.
        let refused = try runChild("cluster", ["transfer", "--addr", cluster.agent(target).address.description, "--to", "nobody"], timeoutSeconds: 60)
        #expect(refused.exitCode == 1 && refused.output.contains("cluster transfer: "), "\(refused)")
    }

    @Test("cluster members lists every member, as a table and as JSON")
    func members() async throws {
        let cluster = try await AgentCluster.start()
        let leader = try #require(await cluster.agreedLeader(among: cluster.ids))
        let addr = cluster.agent(cluster.ids[1]).address.description
        let table = try runChild("cluster", ["members", "--addr", addr], timeoutSeconds: 30)
        #expect(table.exitCode == 0, "\(table)")
        for id in cluster.ids { #expect(table.output.contains(id), "\(table)") }
        #expect(table.output.contains("leader \(leader)"))
        let json = try runChild("cluster", ["members", "--addr", addr, "--json"], timeoutSeconds: 30)
        let status = try JSONMessage.decode(line: json.output.trimmingCharacters(in: .whitespacesAndNewlines))
        guard case .statusResponse(let response) = status else {
            Issue.record("not a status: \(json)")
            return
        }
        #expect(Set(response.members.map(\.id)) == Set(cluster.ids))
        // A node that is not there: a one-line reason, exit 1.
        let nobody = try runChild("cluster", ["members", "--addr", "127.0.0.1:1", "--timeout", "1s"], timeoutSeconds: 30)
        #expect(nobody.exitCode == 1 && nobody.output.contains("cannot connect"), "\(nobody)")
    }

    @Test("a seed where nobody answers is reported at the default log level once, not at every announcement (issue 18)")
    func unreachableSeedSaidOnce() async throws {
        let root = NSTemporaryDirectory() + "cluster-seed-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        // Nobody listens on the discard port of the loopback.
        let agent = try await AgentProcess.start("a1", seeds: [try HostPort(parsing: "127.0.0.1:9")], dataDir: root, minQuorum: 1)
        let said = "seed 127.0.0.1:9 unreachable"
        #expect(await eventually(timeout: .seconds(10)) { agent.child.output.contains(said) }, "\(agent.child.output.suffix(1500))")
        // Announced to every five heartbeat intervals: ten more rounds, and still said once.
        try await Task.sleep(for: .seconds(3))  // the window observed, not a wait for an event
        #expect(agent.child.output.components(separatedBy: said).count - 1 == 1, "\(agent.child.output.suffix(1500))")
    }

    @Test("a second agent started with a member's --id is named at the default log level, with both addresses, and changes nothing (issue 18)")
    func duplicateID() async throws {
        let cluster = try await AgentCluster.start(size: 3)
        let leader = try #require(await cluster.agreedLeader(among: cluster.ids))
        let twin = try await AgentProcess.start(
            "a2", seeds: [cluster.agent("a1").address], dataDir: cluster.root + "/twin", minQuorum: cluster.minQuorum, extra: cluster.extra)
        let said = "that says it is a2: a2 is linked already, from 127.0.0.1:"
        let named = await eventually(timeout: .seconds(10)) {
            ["a1", "a3"].contains { cluster.agent($0).child.output.contains(said) }
        }
        #expect(named, "\(["a1", "a3"].map { cluster.agent($0).child.output.suffix(800) })")
        _ = twin  // stopped (killed and reaped) when the test ends
        #expect(await cluster.agreedLeader(among: cluster.ids) == leader)
    }

    @Test("bad flags get a one-line reason and exit code 64")
    func badFlags() throws {
        for arguments in [
            ["agent", "--id", "x", "--listen", "nowhere"], ["agent", "--id", "x", "--listen", "127.0.0.1:0", "--election-timeout", "2x"],
            ["agent", "--id", "x", "--listen", "127.0.0.1:0", "--heartbeat-interval", "2s", "--election-timeout", "1s"],
            ["agent", "--id", "bad id", "--listen", "127.0.0.1:0"],
            ["agent", "--id", "x", "--listen", "127.0.0.1:0", "--seeds", "nohost.invalid:7001"],
            ["agent", "--id", "x", "--listen", "127.0.0.1:0", "--max-unlinked-members", "0"],
        ] {
            let result = try runChild("cluster", arguments, timeoutSeconds: 30)
            #expect(result.exitCode == 64, "\(arguments): \(result)")
            #expect(result.output.hasPrefix("cluster agent: ") && result.output.split(separator: "\n").count == 1, "\(result)")
        }
    }
}
