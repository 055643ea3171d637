import FoundationEssentials

/// A change to the membership that a runtime acts on, as `ClusterMembership.addObserver(_:)`
/// delivers it. Heartbeats (`lastSeen`, sequence numbers, LSNs) are not changes of this kind.
public enum MembershipChange: Sendable, Equatable {
    /// A node joined: its info as recorded.
    case added(NodeInfo)
    /// The node with this id left.
    case removed(String)
    /// A node's address changed, the local node's included: its info after the change.
    case addressChanged(NodeInfo)
    /// `primary` names another node, or none: the new `primary`.
    case primaryChanged(NodeInfo?)
}

/// Identifies an observer added with `ClusterMembership.addObserver(_:)`.
public struct MembershipObserverToken: Sendable, Hashable {
    let value: UInt64
}

/// Tracks every node of the cluster, the local one included, and the cluster epoch.
///
/// The seed's `ClusterMembership`. Every method may be called from any thread: state sits behind
/// one lock, held only for short critical sections that call nothing outside this file except
/// the injected clock. Reads return copies. Lists (`allNodes`, `healthyNodes`, …) are sorted by id.
///
/// Time comes only from the `now` closure given at initialisation, so tests can drive it.
///
/// Deliberate departures from the seed:
/// - The local node is alive by definition. It always counts as healthy, and every read of it
///   reports `lastSeen` as now (the seed never refreshes the local node's `LastSeen`, so a seed
///   node eventually counts itself as dead).
/// - Primary claims are ordered by term (see `primary`): once a node is recorded as primary in a
///   term, a peer recorded as primary in an older term is recorded as a replica.
/// - The cluster epoch never decreases (see `setEpoch(_:)`).
/// - Terms and epochs at or above `ElectionCore.maxAcceptedTerm` are refused before anything is
///   written (`recordHeartbeat`, `updateNodeHeartbeat`, `observeEpoch`).
public final class ClusterMembership: Sendable {
    /// This node's id.
    public let localNodeID: String

    private let now: @Sendable () -> Date
    private let state: LockedMembershipState
    /// Handlers of ``requestAnnouncement()``, by token.
    private let announcementRequests = CoreLocked<(next: UInt64, handlers: [UInt64: @Sendable () -> Void])>((0, [:]))

    /// The time on the membership's clock (the one `lastSeen` is measured on).
    public var currentTime: Date { now() }

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
        self.state = LockedMembershipState(MembershipState(local: local))
    }

    // MARK: - Early announcements

    /// Registers what runs on ``requestAnnouncement()``: a node discovery on this membership
    /// announces to its seeds early. Returns the token that removes it.
    package func addAnnouncementRequestHandler(_ handler: @escaping @Sendable () -> Void) -> UInt64 {
        announcementRequests.withLock { requests in
            requests.next += 1
            requests.handlers[requests.next] = handler
            return requests.next
        }
    }

    package func removeAnnouncementRequestHandler(_ token: UInt64) {
        announcementRequests.withLock { _ = $0.handlers.removeValue(forKey: token) }
    }

    /// Asks the discoveries on this membership to announce to their seeds now, not at their next
    /// interval: the node's runtime asks when a node it does not know says hello (a node that
    /// has just joined through a seed, which the seeds already list).
    package func requestAnnouncement() {
        let handlers = announcementRequests.withLock { Array($0.handlers.values) }
        for handler in handlers { handler() }
    }

    // MARK: - Observers

    /// Calls `observer` with every change made after this returns: nodes added and removed,
    /// addresses changed, and the node `primary` names.
    ///
    /// Observers are called outside the membership's lock, one change at a time, in the order the
    /// changes were made, never two at once. The thread that makes a change calls the observers
    /// before its call returns, unless another thread is calling them at that moment: then that
    /// thread calls them for this change too, right after the ones it is on, and the changing call
    /// returns without waiting. A change made from inside an observer is delivered after the
    /// current one, by the same thread. An observer may read and change the membership; it should
    /// be quick, since it holds up the delivery of later changes.
    ///
    /// To follow the membership: add the observer first, then read the current state (`allNodes`);
    /// a change may then arrive that the read already showed.
    @discardableResult
    public func addObserver(_ observer: @escaping @Sendable (MembershipChange) -> Void) -> MembershipObserverToken {
        state.withLock { s in
            s.nextObserverToken += 1
            let token = MembershipObserverToken(value: s.nextObserverToken)
            s.observers.append(MembershipObserver(token: token, call: observer))
            return token
        }
    }

    /// Stops calling the observer: it is not called once this returns, except by a call already
    /// under way on another thread. An unknown token is ignored.
    public func removeObserver(_ token: MembershipObserverToken) {
        state.withLock { s in s.observers.removeAll { $0.token == token } }
    }

    // MARK: - Adding and removing

    /// Registers a node, stamping its `lastSeen` with now. Throws `.invalidNodeID` for an empty
    /// id (an addition to the seed) and `.nodeAlreadyExists` for a known id, the local one included.
    /// A node added as primary in a term older than a recorded primary's is added as a replica.
    public func addNode(_ info: NodeInfo) throws(ClusterError) {
        if info.id.isEmpty { throw .invalidNodeID }
        var node = info
        let t = now()
        node.lastSeen = t
        try mutate { (s: inout MembershipState) throws(ClusterError) in
            if node.id == s.local.id || s.peers[node.id] != nil { throw .nodeAlreadyExists }
            if node.role == .primary && node.term < s.primaryTerm { node.role = .replica }
            s.peers[node.id] = node
            s.emit(.added(node))
            if node.role == .primary { s.primaryClaimChanged(node.id, at: t) }
        }
    }

    /// Removes a node. Throws `.cannotRemoveSelf` for the local id, `.nodeNotFound` for an
    /// unknown one.
    public func removeNode(_ nodeID: String) throws(ClusterError) {
        if nodeID == localNodeID { throw .cannotRemoveSelf }
        let t = now()
        try mutate { (s: inout MembershipState) throws(ClusterError) in
            guard let removed = s.peers.removeValue(forKey: nodeID) else { throw .nodeNotFound }
            s.gossip[nodeID] = nil
            s.unlinked[nodeID] = nil
            s.emit(.removed(nodeID))
            if removed.role == .primary { s.primaryClaimChanged(nodeID, at: t) }
        }
    }

    // MARK: - Members learned from the network

    /// Why ``addLearned(_:firstHand:)`` did not add a node.
    package enum LearnRefusal: Error, Equatable, Sendable {
        /// `unlinkedLimit` members learned from the network have not linked yet.
        case tooManyUnlinked(Int)
        /// The node was forgotten (expired, or removed by `cluster force-leave`) and only its own
        /// announcement brings it back before the tombstone ends.
        case forgotten
        /// Known already (nothing to add).
        case known
    }

    /// The most members learned from the network (announcements, seeds' answers, peers' MEMBER
    /// frames) that have not linked yet (``confirmLinked(_:)``) that this membership holds: a
    /// stranger's made-up announcements take at most this many places. Set by the node's runtime
    /// (`NodeOptions.maxUnlinkedMembers`).
    package var unlinkedLimit: Int {
        get { state.withLock { $0.unlinkedLimit } }
        set { state.withLock { $0.unlinkedLimit = newValue } }
    }

    /// Adds a node learned from the network, provisionally: it stays until it links
    /// (``confirmLinked(_:)``), or until ``expireUnlinked(addedBefore:keeping:forgetFor:)`` drops
    /// it. `firstHand`: the node announced itself (not a seed's or a peer's report of it), which
    /// brings back a node forgotten. Members the application adds (`addNode`) are never provisional.
    package func addLearned(_ info: NodeInfo, firstHand: Bool) throws(LearnRefusal) {
        var node = info
        let t = now()
        node.lastSeen = t
        try mutate { (s: inout MembershipState) throws(LearnRefusal) in
            if node.id == s.local.id || s.peers[node.id] != nil { throw .known }
            if let until = s.forgotten[node.id] {
                if t < until && !firstHand { throw .forgotten }
                s.forgotten[node.id] = nil
            }
            if s.unlinked.count >= s.unlinkedLimit { throw .tooManyUnlinked(s.unlinkedLimit) }
            if node.role == .primary && node.term < s.primaryTerm { node.role = .replica }
            s.peers[node.id] = node
            s.unlinked[node.id] = t
            s.emit(.added(node))
            if node.role == .primary { s.primaryClaimChanged(node.id, at: t) }
        }
    }

    /// The node linked with this one: no longer provisional.
    package func confirmLinked(_ nodeID: String) {
        state.withLock { s in
            if !s.unlinked.isEmpty { s.unlinked[nodeID] = nil }
        }
    }

    /// The members learned from the network that have not linked yet.
    package var unlinkedMembers: Set<String> { state.withLock { Set($0.unlinked.keys) } }

    /// Removes the provisional members added before `cutoff` (never those in `keeping`: the
    /// voters), and remembers each for `forgetFor` (only its own announcement brings it back
    /// sooner). Returns the ids removed.
    package func expireUnlinked(addedBefore cutoff: Date, keeping: Set<String>, forgetFor: Duration) -> [String] {
        let t = now()
        return mutate { (s: inout MembershipState) -> [String] in
            s.forgotten = s.forgotten.filter { $0.value > t }
            let expired = s.unlinked.filter { $0.value < cutoff && !keeping.contains($0.key) }.keys.sorted()
            for id in expired {
                s.unlinked[id] = nil
                s.forgotten[id] = t.addingTimeInterval(forgetFor.seconds)
                if let removed = s.peers.removeValue(forKey: id) {
                    s.gossip[id] = nil
                    s.emit(.removed(id))
                    if removed.role == .primary { s.primaryClaimChanged(id, at: t) }
                }
            }
            return expired
        }
    }

    /// The members removed and still remembered (force-left, or expired before they linked),
    /// sorted: the tombstones a status answer lists as `left`.
    package var forgottenMembers: [String] {
        let t = now()
        return state.withLock { s in s.forgotten.filter { $0.value > t }.keys.sorted() }
    }

    /// A node forgotten here said hello: reports of it from seeds and peers add it again.
    package func pardon(_ nodeID: String) {
        state.withLock { s in
            if !s.forgotten.isEmpty { s.forgotten[nodeID] = nil }
        }
    }

    /// Removes a member and remembers it for `forgetFor` (`cluster force-leave`): seeds' and
    /// peers' reports of it add it back no sooner; its own announcement does. Throws
    /// `.cannotRemoveSelf` for the local id, `.nodeNotFound` for an unknown one.
    package func forget(_ nodeID: String, for forgetFor: Duration) throws(ClusterError) {
        if nodeID == localNodeID { throw .cannotRemoveSelf }
        let t = now()
        try mutate { (s: inout MembershipState) throws(ClusterError) in
            guard let removed = s.peers.removeValue(forKey: nodeID) else { throw .nodeNotFound }
            s.gossip[nodeID] = nil
            s.unlinked[nodeID] = nil
            s.forgotten[nodeID] = t.addingTimeInterval(forgetFor.seconds)
            s.emit(.removed(nodeID))
            if removed.role == .primary { s.primaryClaimChanged(nodeID, at: t) }
        }
    }

    /// True when `nodeID` is a member (the local id included).
    public func contains(_ nodeID: String) -> Bool {
        nodeID == localNodeID || state.withLock { $0.peers[nodeID] != nil }
    }

    // MARK: - Reading

    /// Every node, the local one included, sorted by id.
    public var allNodes: [NodeInfo] {
        Self.sorted(unsortedNodes)
    }

    /// Every node, the local one included, in no particular order (`allNodes` without the sort).
    package var unsortedNodes: [NodeInfo] {
        let t = now()
        return state.withLock { s in Array(s.peers.values) + [s.localSnapshot(at: t)] }
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
        let found = state.withLock { s in s.snapshot(of: nodeID, at: t) }
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
        let gossip = state.withLock { $0.gossip }
        return Self.sorted(all.filter { $0.id == localNodeID || Self.isHealthy($0, gossip[$0.id]?.state, timeout: timeout, now: t) })
    }

    /// The number of nodes heard from less than `timeout` ago, the local node always included.
    public func healthyNodeCount(timeout: Duration) -> Int {
        let t = now()
        return state.withLock { s in
            1 + s.peers.values.reduce(0) { $0 + (Self.isHealthy($1, s.gossip[$1.id]?.state, timeout: timeout, now: t) ? 1 : 0) }
        }
    }

    /// The seed's quorum rule: at least `minQuorum` healthy nodes (the local one included).
    ///
    /// This is the seed's check, kept as is. It is not what elections use: an election needs a
    /// real majority of the voters, at least `minQuorumSize` (see `ClusterConfig.minQuorumSize`).
    public func hasQuorum(minQuorum: Int, healthTimeout: Duration) -> Bool {
        healthyNodeCount(timeout: healthTimeout) >= minQuorum
    }

    /// The primary of the newest term this node knows of, or nil.
    ///
    /// Terms, not clocks, depose a primary here, as in the election: when a node is recorded as
    /// primary in a term (from its heartbeat, or the local node winning one), every peer recorded
    /// as primary in an older term is recorded as a replica, and a later claim in an older term
    /// (a late heartbeat from a deposed primary) is recorded as a replica too. The local node's
    /// role is what `setLocalRole(_:)` says (the election's word), never changed by a peer's
    /// claim; where it claims an older term than a peer, the peer is `primary`. Among claimants of
    /// the same term (a split brain the election reports) the lowest id is named.
    ///
    /// A primary whose heartbeats stopped stays primary in its last term, its `lastSeen` ageing,
    /// until a primary of a newer term is recorded: `healthyPrimary(timeout:)` names only one
    /// heard from recently.
    public var primary: NodeInfo? {
        let t = now()
        return state.withLock { s in s.primaryID.flatMap { s.snapshot(of: $0, at: t) } }
    }

    /// `primary` when it was heard from less than `timeout` ago (the local node always is), else
    /// nil.
    public func healthyPrimary(timeout: Duration) -> NodeInfo? {
        guard let p = primary else { return nil }
        let gossip = state.withLock { $0.gossip[p.id]?.state }
        return p.id == localNodeID || Self.isHealthy(p, gossip, timeout: timeout, now: now()) ? p : nil
    }

    /// A member's health: what the gossip layer says of it where it says anything (alive or
    /// suspect: healthy; failed or left: not), else whether it was heard from within `timeout`.
    private static func isHealthy(_ node: NodeInfo, _ gossip: GossipMemberState?, timeout: Duration, now t: Date) -> Bool {
        if let gossip { return gossip == .alive || gossip == .suspect }
        return node.isHealthy(timeout: timeout, now: t)
    }

    // MARK: - The gossip layer's word

    /// Records what the gossip layer says of member `nodeID` (nil: it says nothing any more).
    /// From then on the member's health is that state (see ``healthyNodes(timeout:)``).
    package func setGossipState(_ nodeID: String, _ gossipState: GossipMemberState?, incarnation: UInt64) {
        state.withLock { s in
            if let gossipState {
                s.gossip[nodeID] = (gossipState, incarnation)
            } else {
                s.gossip[nodeID] = nil
            }
        }
    }

    /// What the gossip layer last said of `nodeID`, or nil.
    package func gossipState(of nodeID: String) -> (state: GossipMemberState, incarnation: UInt64)? {
        state.withLock { $0.gossip[nodeID] }
    }

    /// Every member's gossip state, by id.
    package var gossipStates: [String: (state: GossipMemberState, incarnation: UInt64)] {
        state.withLock { $0.gossip }
    }

    /// Records the primary the gossip layer spread: `nodeID` leads in `term` (a member that holds
    /// no link to it hears of it this way), and the cluster epoch is at least `epoch`. Its
    /// `lastSeen` is not touched. A claim older than a recorded primary's changes nothing.
    package func recordGossipedPrimary(_ nodeID: String, term: UInt64, epoch: UInt64) {
        guard nodeID != localNodeID, (try? Self.checkRange(epoch: epoch, term: term)) != nil else { return }
        let t = now()
        mutate { s in
            guard var peer = s.peers[nodeID], term >= s.primaryTerm, peer.role != .primary || peer.term < term else { return }
            peer.role = .primary
            peer.term = term
            if epoch > peer.epoch { peer.epoch = epoch }
            s.peers[nodeID] = peer
            s.primaryClaimChanged(nodeID, at: t)
        }
        observeEpoch(epoch)
    }

    // MARK: - Epoch
    //
    // The cluster epoch is a fencing token: the application reads it (`epoch`) to tell the writes
    // of one primary from the next, so it never decreases and never reaches
    // `ElectionCore.maxAcceptedTerm`. Three ways raise it, none lowers it; the local node's
    // `epoch` follows it.

    /// The cluster epoch (generation number, used as a fencing token). Never decreases.
    public var epoch: UInt64 {
        state.withLock { $0.epoch }
    }

    /// Adds one to the cluster epoch (the seed's use: on leadership change) and returns the new
    /// value. Stops at `ElectionCore.maxAcceptedTerm - 1`, which no cluster reaches by elections.
    @discardableResult
    public func incrementEpoch() -> UInt64 {
        state.withLock { s in
            if s.epoch < ElectionCore.maxAcceptedTerm - 1 { s.setEpoch(s.epoch + 1) }
            return s.epoch
        }
    }

    /// Raises the cluster epoch to `epoch`, an epoch seen from a peer (a primary's heartbeat), if
    /// that is higher. A lower epoch, or one at or above `ElectionCore.maxAcceptedTerm`, is
    /// ignored.
    public func observeEpoch(_ epoch: UInt64) {
        raiseEpoch(to: epoch)
    }

    /// Raises the cluster epoch to `epoch`, this node's own (restored from durable state, adopted
    /// or won by its election), if that is higher. A lower one is ignored: the epoch the
    /// application reads never goes back, whatever order the updates arrive in. One at or above
    /// `ElectionCore.maxAcceptedTerm` is ignored too.
    public func setEpoch(_ epoch: UInt64) {
        raiseEpoch(to: epoch)
    }

    private func raiseEpoch(to epoch: UInt64) {
        guard epoch < ElectionCore.maxAcceptedTerm else { return }
        state.withLock { s in
            if epoch > s.epoch { s.setEpoch(epoch) }
        }
    }

    // MARK: - Updating the local node

    /// Sets this node's last LSN.
    public func setLocalLSN(_ lsn: UInt64) {
        state.withLock { $0.local.lastLSN = lsn }
    }

    /// Sets the address this node is reached at (e.g. once the port it listens on is known).
    /// Observers see `.addressChanged` when it differs.
    public func setLocalAddr(_ addr: String) {
        let t = now()
        mutate { s in s.setAddr(addr, of: s.local.id, at: t) }
    }

    /// Sets this node's election priority.
    public func setLocalPriority(_ priority: Int) {
        state.withLock { $0.local.priority = priority }
    }

    /// Sets this node's role (the runtime mirrors its election state here). Becoming primary in
    /// a term deposes peers recorded as primary in older terms (see `primary`).
    public func setLocalRole(_ role: NodeRole) {
        let t = now()
        mutate { s in
            let wasPrimary = s.local.role == .primary
            s.local.role = role
            if wasPrimary || role == .primary { s.primaryClaimChanged(s.local.id, at: t) }
        }
    }

    /// Sets this node's term. While this node is primary, a newer term deposes peers recorded as
    /// primary in older terms (see `primary`).
    public func setLocalTerm(_ term: UInt64) {
        let t = now()
        mutate { s in
            s.local.term = term
            if s.local.role == .primary { s.primaryClaimChanged(s.local.id, at: t) }
        }
    }

    // MARK: - Updating members

    /// The seed's `UpdateNodeHeartbeat`: records a heartbeat's sequence number, epoch and term for
    /// a node and stamps its `lastSeen` with now. Throws `.nodeNotFound` when unknown, and
    /// `.protocolViolation` (writing nothing) for a term or epoch at or above
    /// `ElectionCore.maxAcceptedTerm`.
    public func updateNodeHeartbeat(_ nodeID: String, seq: UInt64, epoch: UInt64, term: UInt64) throws(ClusterError) {
        try Self.checkRange(epoch: epoch, term: term)
        let t = now()
        try update(nodeID, at: t) { n in
            n.lastSeen = t
            n.lastHeartbeatSeq = seq
            n.epoch = epoch
            n.term = term
        }
    }

    /// Sets a node's last known LSN. Throws `.nodeNotFound` when unknown.
    public func updateNodeLSN(_ nodeID: String, lsn: UInt64) throws(ClusterError) {
        try update(nodeID, at: now()) { $0.lastLSN = lsn }
    }

    /// Sets a node's role. Throws `.nodeNotFound` when unknown. A peer made primary in a term
    /// older than a recorded primary's stays a replica (see `primary`).
    public func updateNodeRole(_ nodeID: String, role: NodeRole) throws(ClusterError) {
        try update(nodeID, at: now()) { $0.role = role }
    }

    /// Sets a node's address (the local one's too, as `setLocalAddr(_:)`). Throws `.nodeNotFound`
    /// when unknown and `.invalidNodeAddr` for an empty address. Observers see `.addressChanged`
    /// when it differs.
    public func updateNodeAddr(_ nodeID: String, addr: String) throws(ClusterError) {
        if addr.isEmpty { throw .invalidNodeAddr }
        let t = now()
        try mutate { (s: inout MembershipState) throws(ClusterError) in
            guard nodeID == s.local.id || s.peers[nodeID] != nil else { throw .nodeNotFound }
            s.setAddr(addr, of: nodeID, at: t)
        }
    }

    /// Records everything a peer's heartbeat carries in one step: `lastSeen` (now), sequence
    /// number, epoch, term, last LSN and role. It does not touch the cluster epoch (see
    /// `observeEpoch(_:)`).
    ///
    /// Everything is checked before anything is written: throws `.protocolViolation` for the local
    /// id (a heartbeat never comes from this node itself) and for a term or epoch at or above
    /// `ElectionCore.maxAcceptedTerm`, and `.nodeNotFound` when unknown. (Roles are checked where
    /// bytes become a `NodeRole`: an unknown role never decodes.) A primary claim in a term older
    /// than a recorded primary's is recorded as a replica (see `primary`).
    ///
    /// The hot path: one lock, one hash lookup, no allocation, unless the node's role or its term
    /// as primary changes.
    public func recordHeartbeat(
        from nodeID: String, seq: UInt64, epoch: UInt64, term: UInt64, lsn: UInt64, role: NodeRole
    ) throws(ClusterError) {
        try recordHeartbeat(from: nodeID, seq: seq, epoch: epoch, term: term, lsn: lsn, role: role, at: now())
    }

    /// ``recordHeartbeat(from:seq:epoch:term:lsn:role:)`` stamped `t` (`lastSeen`): the node
    /// runtime reads the wall clock once for all the heartbeats of one read.
    package func recordHeartbeat(
        from nodeID: String, seq: UInt64, epoch: UInt64, term: UInt64, lsn: UInt64, role: NodeRole, at t: Date
    ) throws(ClusterError) {
        if nodeID == localNodeID { throw .protocolViolation("heartbeat from this node's own id \"\(nodeID)\"") }
        try Self.checkRange(epoch: epoch, term: term)
        try mutate { (s: inout MembershipState) throws(ClusterError) in
            guard let i = s.peers.index(forKey: nodeID) else { throw .nodeNotFound }
            let oldRole = s.peers.values[i].role
            let oldTerm = s.peers.values[i].term
            let newRole: NodeRole = role == .primary && term < s.primaryTerm ? .replica : role
            s.peers.values[i].lastSeen = t
            s.peers.values[i].lastHeartbeatSeq = seq
            s.peers.values[i].epoch = epoch
            s.peers.values[i].term = term
            s.peers.values[i].lastLSN = lsn
            s.peers.values[i].role = newRole
            if oldRole == .primary ? (newRole != .primary || oldTerm != term) : newRole == .primary {
                s.primaryClaimChanged(nodeID, at: t)
            }
        }
    }

    // MARK: - Package

    /// The answer to an announcement from a known node (the seed's `UpdateNodeHeartbeat` on it):
    /// stamps `lastSeen`, sets the epoch, and sets the term unless the node is recorded as
    /// primary (a primary's term is what its heartbeats say: an unauthenticated announcement must
    /// not make it look deposed). Role, address and sequence number are untouched. The caller
    /// checks the ranges. Throws `.nodeNotFound` when unknown.
    package func refreshFromAnnouncement(_ nodeID: String, epoch: UInt64, term: UInt64) throws(ClusterError) {
        let t = now()
        try mutate { (s: inout MembershipState) throws(ClusterError) in
            guard let i = s.peers.index(forKey: nodeID) else { throw .nodeNotFound }
            s.peers.values[i].lastSeen = t
            s.peers.values[i].epoch = epoch
            if s.peers.values[i].role != .primary { s.peers.values[i].term = term }
        }
    }

    // MARK: - Private

    /// Throws unless both are below `ElectionCore.maxAcceptedTerm`.
    @inline(__always)
    private static func checkRange(epoch: UInt64, term: UInt64) throws(ClusterError) {
        guard term < ElectionCore.maxAcceptedTerm && epoch < ElectionCore.maxAcceptedTerm else {
            throw .protocolViolation("term or epoch out of range")
        }
    }

    /// Applies `change` to the node `nodeID` (the local one included, as in the seed), then the
    /// primary rule if its role or term changed.
    private func update(_ nodeID: String, at t: Date, _ change: (inout NodeInfo) -> Void) throws(ClusterError) {
        try mutate { (s: inout MembershipState) throws(ClusterError) in
            let isLocal = nodeID == s.local.id
            guard isLocal || s.peers[nodeID] != nil else { throw .nodeNotFound }
            var n = isLocal ? s.local : s.peers[nodeID]!
            let oldRole = n.role
            let oldTerm = n.term
            change(&n)
            if !isLocal && n.role == .primary && n.term < s.primaryTerm { n.role = .replica }
            if isLocal { s.local = n } else { s.peers[nodeID] = n }
            if oldRole == .primary || n.role == .primary, oldRole != n.role || oldTerm != n.term {
                s.primaryClaimChanged(nodeID, at: t)
            }
        }
    }

    /// Runs `body` under the lock, then delivers the changes it made (see `addObserver(_:)`).
    /// `body` must throw before it changes anything.
    private func mutate<R, E: Error>(_ body: (inout MembershipState) throws(E) -> R) throws(E) -> R {
        var deliver = false
        defer { if deliver { deliverPending() } }
        return try state.withLock { (s: inout MembershipState) throws(E) -> R in
            defer { deliver = s.claimDelivery() }
            return try body(&s)
        }
    }

    /// Calls the observers with the pending changes, one at a time, until none is left. Only the
    /// thread that claimed the delivery runs this.
    private func deliverPending() {
        while true {
            let next = state.withLock { s -> (MembershipChange, [MembershipObserver])? in
                guard !s.pending.isEmpty else {
                    s.delivering = false
                    return nil
                }
                let (change, observers) = s.pending.removeFirst()
                // Only those still registered: a removed observer is not called again.
                return (change, observers.filter { o in s.observers.contains { $0.token == o.token } })
            }
            guard let (change, observers) = next else { return }
            for observer in observers { observer.call(change) }
        }
    }

    /// Sorts by id, outside the lock: the lock only guards the copy.
    private static func sorted(_ nodes: [NodeInfo]) -> [NodeInfo] {
        nodes.sorted { $0.id < $1.id }
    }
}

/// An observer and its token.
private struct MembershipObserver: Sendable {
    let token: MembershipObserverToken
    let call: @Sendable (MembershipChange) -> Void
}

/// The membership's mutable state. Only ever touched under the lock.
private struct MembershipState {
    /// The local node. Its stored `lastSeen` is meaningless: reads report now.
    var local: NodeInfo
    /// Every other node, by id.
    var peers: [String: NodeInfo] = [:]
    var epoch: UInt64 = 0
    /// The newest term in which a node was recorded as primary. Never decreases: a claim in an
    /// older term is stale.
    var primaryTerm: UInt64 = 0
    /// The node `primary` names. Kept up to date by `primaryClaimChanged`.
    var primaryID: String?
    /// Members learned from the network that have not linked yet, with when each was added.
    var unlinked: [String: Date] = [:]
    var unlinkedLimit = Int.max
    /// Members forgotten (expired or force-left), until when.
    var forgotten: [String: Date] = [:]
    /// What the gossip layer says of members (see `setGossipState`).
    var gossip: [String: (state: GossipMemberState, incarnation: UInt64)] = [:]

    var observers: [MembershipObserver] = []
    var nextObserverToken: UInt64 = 0
    /// Changes not delivered yet, each with the observers registered when it was made.
    var pending: [(MembershipChange, [MembershipObserver])] = []
    /// True while a thread delivers `pending`.
    var delivering = false

    init(local: NodeInfo) { self.local = local }

    func localSnapshot(at t: Date) -> NodeInfo {
        var n = local
        n.lastSeen = t
        return n
    }

    func snapshot(of id: String, at t: Date) -> NodeInfo? {
        id == local.id ? localSnapshot(at: t) : peers[id]
    }

    mutating func setEpoch(_ e: UInt64) {
        epoch = e
        local.epoch = e
    }

    mutating func setAddr(_ addr: String, of id: String, at t: Date) {
        if id == local.id {
            guard local.addr != addr else { return }
            local.addr = addr
            let snapshot = localSnapshot(at: t)
            emit(.addressChanged(snapshot))
        } else if var n = peers[id], n.addr != addr {
            n.addr = addr
            peers[id] = n
            emit(.addressChanged(n))
        }
    }

    /// Queues a change for the observers there are now; nothing without observers.
    mutating func emit(_ change: MembershipChange) {
        if !observers.isEmpty { pending.append((change, observers)) }
    }

    /// True when the caller is to deliver the pending changes (no other thread is at it).
    mutating func claimDelivery() -> Bool {
        guard !pending.isEmpty, !delivering else { return false }
        delivering = true
        return true
    }

    /// Applies the primary rule after node `id` was added, removed, or changed role or term (when
    /// it is or was primary), and finds `primaryID` again. `id` is no longer a member when removed.
    /// A peer whose claim is older than `primaryTerm` is already recorded as a replica.
    mutating func primaryClaimChanged(_ id: String, at t: Date) {
        let claimant = id == local.id ? local : peers[id]
        if let claimant, claimant.role == .primary, claimant.term > primaryTerm {
            primaryTerm = claimant.term
            // Every peer's claim of an older term is stale now.
            for (peerID, peer) in peers where peer.role == .primary && peer.term < primaryTerm {
                peers[peerID]?.role = .replica
            }
        }
        var best: (id: String, term: UInt64)? = local.role == .primary ? (local.id, local.term) : nil
        for (peerID, peer) in peers where peer.role == .primary {
            if let b = best, b.term > peer.term || (b.term == peer.term && b.id < peerID) { continue }
            best = (peerID, peer.term)
        }
        if best?.id != primaryID {
            primaryID = best?.id
            let primary = best.flatMap { snapshot(of: $0.id, at: t) }
            emit(.primaryChanged(primary))
        }
    }
}

/// `MembershipState` behind a `CoreLock` (a pthread mutex; Foundation's `NSLock` would bring
/// Foundation into every node).
private final class LockedMembershipState: @unchecked Sendable {
    private let lock = CoreLock()
    // Reached only inside the lock, one access at a time: the runtime's exclusivity check on
    // every heartbeat would check what the lock already guarantees.
    @exclusivity(unchecked) private var value: MembershipState

    init(_ value: MembershipState) { self.value = value }

    func withLock<R, E: Error>(_ body: (inout MembershipState) throws(E) -> R) throws(E) -> R {
        try lock.withLock { () throws(E) -> R in try body(&value) }
    }
}
