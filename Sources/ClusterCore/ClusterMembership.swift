import Foundation

/// Tracks every node of the cluster, the local one included, and the cluster epoch.
///
/// The seed's `ClusterMembership`. Every method may be called from any thread: state sits behind
/// one `NSLock`, held only for short critical sections that call nothing outside this file except
/// the injected clock. Reads return copies. Lists (`allNodes`, `healthyNodes`, …) are sorted by id.
///
/// Time comes only from the `now` closure given at initialisation, so tests can drive it.
///
/// Deliberate departure from the seed: the local node is alive by definition. It always counts
/// as healthy, and every read of it reports `lastSeen` as now (the seed never refreshes the local
/// node's `LastSeen`, so a seed node eventually counts itself as dead).
public final class ClusterMembership: Sendable {
    /// This node's id.
    public let localNodeID: String

    private let now: @Sendable () -> Date
    private let state: LockedMembershipState

    /// Creates a membership holding only the local node (a replica, epoch 0, priority 1), reading
    /// time from the system clock.
    public convenience init(localNodeID: String, localAddr: String) {
        self.init(localNodeID: localNodeID, localAddr: localAddr, now: { Date() })
    }

    /// Creates a membership holding only the local node, reading time only from `now`.
    public init(localNodeID: String, localAddr: String, now: @escaping @Sendable () -> Date) {
        self.localNodeID = localNodeID
        self.now = now
        let local = NodeInfo(id: localNodeID, addr: localAddr, role: .replica, lastSeen: now())
        self.state = LockedMembershipState(MembershipState(local: local, peers: [:], epoch: 0))
    }

    // MARK: - Adding and removing

    /// Registers a node, stamping its `lastSeen` with now. Throws `.invalidNodeID` for an empty
    /// id (an addition to the seed) and `.nodeAlreadyExists` for a known id, the local one included.
    public func addNode(_ info: NodeInfo) throws(ClusterError) {
        if info.id.isEmpty { throw .invalidNodeID }
        var node = info
        node.lastSeen = now()
        try state.withLock { (s: inout MembershipState) throws(ClusterError) in
            if node.id == s.local.id || s.peers[node.id] != nil { throw .nodeAlreadyExists }
            s.peers[node.id] = node
        }
    }

    /// Removes a node. Throws `.cannotRemoveSelf` for the local id, `.nodeNotFound` for an
    /// unknown one.
    public func removeNode(_ nodeID: String) throws(ClusterError) {
        if nodeID == localNodeID { throw .cannotRemoveSelf }
        try state.withLock { (s: inout MembershipState) throws(ClusterError) in
            if s.peers.removeValue(forKey: nodeID) == nil { throw .nodeNotFound }
        }
    }

    /// True when `nodeID` is a member (the local id included).
    public func contains(_ nodeID: String) -> Bool {
        nodeID == localNodeID || state.withLock { $0.peers[nodeID] != nil }
    }

    // MARK: - Reading

    /// Every node, the local one included, sorted by id.
    public var allNodes: [NodeInfo] {
        let t = now()
        return Self.sorted(state.withLock { s in Array(s.peers.values) + [s.localSnapshot(at: t)] })
    }

    /// The number of nodes, the local one included.
    public var nodeCount: Int {
        state.withLock { $0.peers.count + 1 }
    }

    /// This node's info; its `lastSeen` reads as now.
    public var localNode: NodeInfo {
        let t = now()
        return state.withLock { $0.localSnapshot(at: t) }
    }

    /// The node with id `nodeID`. Throws `.nodeNotFound` when unknown.
    public func node(_ nodeID: String) throws(ClusterError) -> NodeInfo {
        let t = now()
        let found = state.withLock { s -> NodeInfo? in
            nodeID == s.local.id ? s.localSnapshot(at: t) : s.peers[nodeID]
        }
        guard let found else { throw .nodeNotFound }
        return found
    }

    /// The nodes whose role is `role`, the local one included, sorted by id.
    public func nodes(withRole role: NodeRole) -> [NodeInfo] {
        allNodes.filter { $0.role == role }
    }

    /// The nodes heard from less than `timeout` ago, sorted by id. The local node is always
    /// among them (a deliberate departure from the seed).
    public func healthyNodes(timeout: Duration) -> [NodeInfo] {
        let t = now()
        let all = state.withLock { s in Array(s.peers.values) + [s.localSnapshot(at: t)] }
        return Self.sorted(all.filter { $0.id == localNodeID || $0.isHealthy(timeout: timeout, now: t) })
    }

    /// The number of nodes heard from less than `timeout` ago, the local node always included.
    public func healthyNodeCount(timeout: Duration) -> Int {
        let t = now()
        return state.withLock { s in
            1 + s.peers.values.reduce(0) { $0 + ($1.isHealthy(timeout: timeout, now: t) ? 1 : 0) }
        }
    }

    /// The seed's quorum rule: at least `minQuorum` healthy nodes (the local one included).
    ///
    /// This is the seed's check, kept as is. It is not what elections use: an election needs a
    /// real majority of the voters, at least `minQuorumSize` (see `ClusterConfig.minQuorumSize`).
    public func hasQuorum(minQuorum: Int, healthTimeout: Duration) -> Bool {
        healthyNodeCount(timeout: healthTimeout) >= minQuorum
    }

    /// A node whose role is primary, or nil. Where several claim it (the seed returns any one),
    /// this returns the one with the highest term, and among those the lowest id.
    public var primary: NodeInfo? {
        nodes(withRole: .primary).min { a, b in a.term != b.term ? a.term > b.term : a.id < b.id }
    }

    // MARK: - Epoch

    /// The cluster epoch (generation number, used as a fencing token).
    public var epoch: UInt64 {
        state.withLock { $0.epoch }
    }

    /// Adds one to the cluster epoch (used on leadership change) and returns the new value. The
    /// local node's epoch follows. Saturates at `UInt64.max` rather than trapping.
    @discardableResult
    public func incrementEpoch() -> UInt64 {
        state.withLock { s in
            s.setEpoch(s.epoch == .max ? .max : s.epoch + 1)
            return s.epoch
        }
    }

    /// Raises the cluster epoch to `epoch` if that is higher (an epoch seen from a peer); never
    /// lowers it. The local node's epoch follows.
    public func observeEpoch(_ epoch: UInt64) {
        state.withLock { s in
            if epoch > s.epoch { s.setEpoch(epoch) }
        }
    }

    /// Sets the cluster epoch (e.g. restored from durable state). The local node's epoch follows.
    public func setEpoch(_ epoch: UInt64) {
        state.withLock { $0.setEpoch(epoch) }
    }

    // MARK: - Updating the local node

    /// Sets this node's last LSN.
    public func setLocalLSN(_ lsn: UInt64) {
        state.withLock { $0.local.lastLSN = lsn }
    }

    /// Sets the address this node is reached at (e.g. once the port it listens on is known).
    public func setLocalAddr(_ addr: String) {
        state.withLock { $0.local.addr = addr }
    }

    /// Sets this node's election priority.
    public func setLocalPriority(_ priority: Int) {
        state.withLock { $0.local.priority = priority }
    }

    /// Sets this node's role.
    public func setLocalRole(_ role: NodeRole) {
        state.withLock { $0.local.role = role }
    }

    /// Sets this node's term.
    public func setLocalTerm(_ term: UInt64) {
        state.withLock { $0.local.term = term }
    }

    // MARK: - Updating members

    /// Records a heartbeat's sequence number, epoch and term for a node and stamps its
    /// `lastSeen` with now. Throws `.nodeNotFound` when unknown.
    public func updateNodeHeartbeat(_ nodeID: String, seq: UInt64, epoch: UInt64, term: UInt64) throws(ClusterError) {
        let t = now()
        try update(nodeID) { n in
            n.lastSeen = t
            n.lastHeartbeatSeq = seq
            n.epoch = epoch
            n.term = term
        }
    }

    /// Sets a node's last known LSN. Throws `.nodeNotFound` when unknown.
    public func updateNodeLSN(_ nodeID: String, lsn: UInt64) throws(ClusterError) {
        try update(nodeID) { $0.lastLSN = lsn }
    }

    /// Sets a node's role. Throws `.nodeNotFound` when unknown.
    public func updateNodeRole(_ nodeID: String, role: NodeRole) throws(ClusterError) {
        try update(nodeID) { $0.role = role }
    }

    /// Records everything a peer's heartbeat carries in one step: `lastSeen` (now), sequence
    /// number, epoch, term, last LSN and role. It does not touch the cluster epoch (see
    /// `observeEpoch(_:)`). Throws `.nodeNotFound` when unknown, and `.protocolViolation` for the
    /// local id: a heartbeat never comes from this node itself.
    public func recordHeartbeat(
        from nodeID: String, seq: UInt64, epoch: UInt64, term: UInt64, lsn: UInt64, role: NodeRole
    ) throws(ClusterError) {
        if nodeID == localNodeID { throw .protocolViolation("heartbeat from this node's own id \"\(nodeID)\"") }
        let t = now()
        try state.withLock { (s: inout MembershipState) throws(ClusterError) in
            guard var n = s.peers[nodeID] else { throw .nodeNotFound }
            n.lastSeen = t
            n.lastHeartbeatSeq = seq
            n.epoch = epoch
            n.term = term
            n.lastLSN = lsn
            n.role = role
            s.peers[nodeID] = n
        }
    }

    // MARK: - Private

    /// Applies `change` to the node `nodeID` (the local one included, as in the seed).
    private func update(_ nodeID: String, _ change: (inout NodeInfo) -> Void) throws(ClusterError) {
        try state.withLock { (s: inout MembershipState) throws(ClusterError) in
            if nodeID == s.local.id {
                change(&s.local)
            } else if var n = s.peers[nodeID] {
                change(&n)
                s.peers[nodeID] = n
            } else {
                throw .nodeNotFound
            }
        }
    }

    /// Sorts by id, outside the lock: the lock only guards the copy.
    private static func sorted(_ nodes: [NodeInfo]) -> [NodeInfo] {
        nodes.sorted { $0.id < $1.id }
    }
}

/// The membership's mutable state. Only ever touched under the lock.
private struct MembershipState {
    /// The local node. Its stored `lastSeen` is meaningless: reads report now.
    var local: NodeInfo
    /// Every other node, by id.
    var peers: [String: NodeInfo]
    var epoch: UInt64

    func localSnapshot(at t: Date) -> NodeInfo {
        var n = local
        n.lastSeen = t
        return n
    }

    mutating func setEpoch(_ e: UInt64) {
        epoch = e
        local.epoch = e
    }
}

/// `MembershipState` behind an `NSLock` (pthread-based on Linux). Not `Synchronization.Mutex`:
/// with Swift 6.3.1 on Linux the thread sanitizer reports false races inside `Mutex.withLock`.
private final class LockedMembershipState: @unchecked Sendable {
    private let lock = NSLock()
    private var value: MembershipState

    init(_ value: MembershipState) { self.value = value }

    func withLock<R, E: Error>(_ body: (inout MembershipState) throws(E) -> R) throws(E) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
