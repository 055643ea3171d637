import Cluster
import Dispatch
import Foundation
import Logging
import Testing
import UV


/// Every status change of every node, so tests can await conditions and check that no term ever
/// had two leaders.
final class ClusterWatch: Sendable {
    private struct State {
        var latest: [String: ElectionStatus] = [:]
        /// term → leaders seen in that term
        var leadersByTerm: [UInt64: Set<String>] = [:]
        var waiters: [(id: Int, check: @Sendable ([String: ElectionStatus]) -> Bool, resume: @Sendable () -> Void)] = []
        var nextWaiter = 0
    }
    private let state = UVLocked(State())

    func record(_ node: String, _ status: ElectionStatus) {
        let ready: [@Sendable () -> Void] = state.withLock { s in
            s.latest[node] = status
            if status.state == .leader { s.leadersByTerm[status.term, default: []].insert(node) }
            var ready: [@Sendable () -> Void] = []
            s.waiters.removeAll { w in
                if w.check(s.latest) { ready.append(w.resume); return true }
                return false
            }
            return ready
        }
        for r in ready { r() }
    }

    /// Terms in which more than one node was leader (must stay empty).
    var doubleLeaderTerms: [UInt64: Set<String>] {
        state.withLock { $0.leadersByTerm.filter { $0.value.count > 1 } }
    }

    var latest: [String: ElectionStatus] { state.withLock { $0.latest } }

    /// Forgets a stopped node's last status (so that a restarted node is judged afresh).
    func forget(_ node: String) {
        state.withLock { _ = $0.latest.removeValue(forKey: node) }
    }

    /// Waits until `condition` holds for the latest statuses, or `timeout` passes. Returns whether
    /// it held. The waiting is woken by status changes, not by polling.
    func wait(timeout: Duration, _ condition: @escaping @Sendable ([String: ElectionStatus]) -> Bool) async -> Bool {
        let fired = UVLocked(false)
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let resumeOnce: @Sendable (Bool) -> Void = { value in
                let first = fired.withLock { f -> Bool in
                    defer { f = true }
                    return !f
                }
                if first { continuation.resume(returning: value) }
            }
            let id: Int? = state.withLock { s in
                if condition(s.latest) { return nil }
                let id = s.nextWaiter
                s.nextWaiter += 1
                s.waiters.append((id, condition, { resumeOnce(true) }))
                return id
            }
            guard let id else {
                resumeOnce(true)
                return
            }
            let nanos = UInt64(timeout.components.seconds) * 1_000_000_000 + UInt64(timeout.components.attoseconds / 1_000_000_000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(nanos))) { [state] in
                state.withLock { s in s.waiters.removeAll { $0.id == id } }
                resumeOnce(false)
            }
        }
    }
}

/// A loopback cluster of real nodes for tests.
final class TestCluster: Sendable {
    let ids: [String]
    /// Each node's address (a restarted node gets a new port: see `startNode`).
    var addrs: [String: String] { addresses.withLock { $0 } }
    private let addresses: UVLocked<[String: String]>
    let managers: UVLocked<[String: ElectionManager]>
    let memberships: UVLocked<[String: ClusterMembership]>
    let watch = ClusterWatch()
    let dataRoot: String?
    /// Changes each node's options (its id given) before it starts: keys, cluster names.
    let configure: @Sendable (String, inout NodeOptions) -> Void

    static func config(id: String, addr: String, seeds: [String], autoFailover: Bool = true, priority: Int = 1, minQuorum: Int = 2) -> ClusterConfig {
        ClusterConfig(
            nodeID: id, nodeAddr: addr, seedNodes: seeds,
            electionTimeout: .milliseconds(300), heartbeatInterval: .milliseconds(30),
            minQuorumSize: minQuorum, priority: priority, enableAutoFailover: autoFailover,
            voteRequestTimeout: .milliseconds(150), maxElectionRetries: 3)
    }

    /// Starts `size` nodes, every one of them a voter from the start (`NodeOptions.bootstrap`
    /// names them all, as `--voters` does). Each listens on port 0 (it owns its port from the
    /// start: no port is reserved and released, so none can be taken in between), then each learns
    /// the others' bound addresses through its membership and dials them.
    init(size: Int, durable: Bool = false, prefix: String = "n", configure: @escaping @Sendable (String, inout NodeOptions) -> Void = { _, _ in }) throws {
        ids = (1...size).map { "\(prefix)\($0)" }
        self.configure = configure
        managers = UVLocked([:])
        memberships = UVLocked([:])
        dataRoot = durable ? NSTemporaryDirectory() + "cluster-test-\(UUID().uuidString)" : nil
        var addrs: [String: String] = [:]
        for id in ids {
            let manager = try Self.makeNode(
                id: id, addr: "127.0.0.1:0", members: [:], voters: ids, dataRoot: dataRoot, watch: watch, configure: configure)
            addrs[id] = manager.listenAddress!.description
            managers.withLock { $0[id] = manager }
            memberships.withLock { $0[id] = manager.membership }
        }
        addresses = UVLocked(addrs)
        for id in ids {
            let membership = memberships.withLock { $0[id]! }
            for other in ids where other != id { try membership.addNode(NodeInfo(id: other, addr: addrs[other]!)) }
        }
    }

    private static func makeNode(
        id: String, addr: String, members: [String: String], voters: [String], dataRoot: String?, watch: ClusterWatch,
        configure: @Sendable (String, inout NodeOptions) -> Void
    ) throws -> ElectionManager {
        let membership = ClusterMembership(localNodeID: id, localAddr: addr)
        for (other, otherAddr) in members { try membership.addNode(NodeInfo(id: other, addr: otherAddr)) }
        var options = NodeOptions(dataDirectory: dataRoot.map { "\($0)/\(id)" }, randomSeed: UInt64(id.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }), logger: quietLogger)
        options.bootstrap = .voters(voters)
        configure(id, &options)
        let manager = ElectionManager(config: config(id: id, addr: addr, seeds: [addr]), membership: membership, options: options)
        manager.addObserver { [watch] status in watch.record(id, status) }
        try manager.start()
        return manager
    }

    /// Restarts node `id` with a fresh membership holding every other node. It listens on a new
    /// port (port 0: the one it had may have been taken by another connection meanwhile), and the
    /// running nodes learn its new address (as a member re-announced at a new address).
    func startNode(_ id: String) throws {
        let members = addrs.filter { $0.key != id }
        let manager = try Self.makeNode(
            id: id, addr: "127.0.0.1:0", members: members, voters: ids, dataRoot: dataRoot, watch: watch, configure: configure)
        let address = manager.listenAddress!.description
        addresses.withLock { $0[id] = address }
        for (other, membership) in memberships.withLock({ $0 }) where other != id && managers.withLock({ $0[other] != nil }) {
            try membership.updateNodeAddr(id, addr: address)
        }
        managers.withLock { $0[id] = manager }
        memberships.withLock { $0[id] = manager.membership }
    }

    /// Stops node `id` and forgets it (its loop thread ends).
    func stopNode(_ id: String) {
        let manager = managers.withLock { $0.removeValue(forKey: id) }
        try? manager?.stop()
        watch.forget(id)
    }

    func manager(_ id: String) -> ElectionManager? { managers.withLock { $0[id] } }

    var running: [String] { managers.withLock { Array($0.keys).sorted() } }

    /// The single leader all running nodes agree on, if there is one.
    static func agreedLeader(_ latest: [String: ElectionStatus], among nodes: [String]) -> String? {
        let leaders = nodes.filter { latest[$0]?.state == .leader }
        guard leaders.count == 1, let leader = leaders.first, let term = latest[leader]?.term else { return nil }
        for n in nodes where n != leader {
            guard let s = latest[n], s.state == .follower, s.leaderID == leader, s.term == term else { return nil }
        }
        return leader
    }

    func waitForAgreedLeader(among nodes: [String], timeout: Duration = .seconds(10)) async -> String? {
        let ok = await watch.wait(timeout: timeout) { latest in Self.agreedLeader(latest, among: nodes) != nil }
        return ok ? Self.agreedLeader(watch.latest, among: nodes) : nil
    }

    func shutdown() {
        for id in running { stopNode(id) }
        if let dataRoot { try? FileManager.default.removeItem(atPath: dataRoot) }
    }
}

/// Tests log warnings and worse only.
let quietLogger: Logger = {
    var logger = Logger(label: "cluster-test")
    logger.logLevel = .warning
    return logger
}()

/// The election state a node saved in `directory` (its newest copy in `election-state`), as JSON.
func savedElectionState(directory: String) throws -> [String: Any] {
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory + "/election-state")))
    guard case .state(_, let payload, _) = StateSlots.read(file: bytes) else {
        throw ClusterError.storage("no valid copy in \(directory)/election-state")
    }
    return try JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any] ?? [:]
}
