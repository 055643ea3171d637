/// The pure part of seed-based discovery: what a seed does with an announcement, and what a node
/// learns from a seed's answer. No I/O; `NodeDiscovery` (module `Cluster`) does the talking.
///
/// Announcements are not authenticated, so what one can do is limited: it can add a replica with
/// a valid id and a dialable address (up to `maxMembers`), and refresh a known node's `lastSeen`,
/// epoch and term; it cannot change a member's role or address, nor make a primary.
public enum Discovery {
    /// The members a node accepts through discovery at most, itself included.
    public static let defaultMaxMembers = 1024

    /// The seed's `HandleAnnouncement`: registers the announcing node, or refreshes what is known
    /// of it, and answers with the members (see `nodeList(of:seeds:maxLineBytes:)`).
    ///
    /// - A new node is added as a replica with the announced address, epoch, term and priority
    ///   (its role is what its heartbeats will say: an announcement cannot make a primary).
    /// - A known node gets the seed's `UpdateNodeHeartbeat`: `lastSeen` now, the announced epoch,
    ///   and the announced term unless it is recorded as primary (see
    ///   `ClusterMembership.primary`). Its role, address and sequence number stay as they are.
    /// - An announcement of this node's own id at this node's address changes nothing.
    ///
    /// An announcement is refused, as the seed does, with a `node_list` whose `success` is false
    /// and whose `error` says why, changing nothing: an id that is not 1...255 bytes of visible
    /// characters, an address a node cannot dial (`NodeInfo.addrProblem`), a term or epoch at or
    /// above `ElectionCore.maxAcceptedTerm`, this node's id at another address, or a new node when
    /// the membership already has `maxMembers` (a flood of made-up ids cannot grow it without end).
    public static func answer(
        _ announcement: AnnouncementMessage, membership: ClusterMembership, seeds: [String] = [],
        maxMembers: Int = defaultMaxMembers, maxLineBytes: Int = Wire.maxLineBytes
    ) -> DiscoveryResponse {
        if let why = problem(with: announcement, membership: membership) {
            return DiscoveryResponse(success: false, error: why)
        }
        let id = announcement.nodeID
        if id != membership.localNodeID {
            do {
                try membership.refreshFromAnnouncement(id, epoch: announcement.epoch, term: announcement.term)
            } catch {
                // Not a member (yet).
                if membership.nodeCount >= maxMembers {
                    return DiscoveryResponse(success: false, error: "the cluster is full (\(maxMembers) members)")
                }
                do {
                    try membership.addLearned(NodeInfo(
                        id: id, addr: announcement.nodeAddr, role: .replica, epoch: announcement.epoch,
                        term: announcement.term, priority: announcement.priority), firstHand: true)
                } catch .tooManyUnlinked(let limit) {
                    return DiscoveryResponse(
                        success: false, error: "\(limit) members have not linked yet: try again later")
                } catch {
                    // Added by another thread in between: refresh it as a known node.
                    try? membership.refreshFromAnnouncement(id, epoch: announcement.epoch, term: announcement.term)
                }
            }
        }
        return DiscoveryResponse(nodes: nodeList(of: membership, seeds: seeds, maxLineBytes: maxLineBytes), success: true)
    }

    /// `answer(_:membership:seeds:maxMembers:maxLineBytes:)`, for callers that keep the seed's
    /// throwing signature (`NodeDiscovery.handleAnnouncement`). It does not throw: an invalid
    /// announcement is answered with `success: false` and the reason, as the seed does.
    public static func handleAnnouncement(
        _ announcement: AnnouncementMessage, membership: ClusterMembership, seeds: [String] = [],
        maxMembers: Int = defaultMaxMembers
    ) throws(ClusterError) -> DiscoveryResponse {
        answer(announcement, membership: membership, seeds: seeds, maxMembers: maxMembers)
    }

    /// Why an announcement is refused (see `answer`), or nil when it is not.
    package static func problem(with announcement: AnnouncementMessage, membership: ClusterMembership) -> String? {
        if let why = NodeInfo.idProblem(announcement.nodeID) { return why }
        if let why = NodeInfo.addrProblem(announcement.nodeAddr) { return why }
        guard announcement.term < ElectionCore.maxAcceptedTerm && announcement.epoch < ElectionCore.maxAcceptedTerm else {
            return "term or epoch out of range"
        }
        if announcement.nodeID == membership.localNodeID {
            let local = membership.localNode.addr
            if normalized(announcement.nodeAddr) != normalized(local) {
                return "node ID \"\(announcement.nodeID)\" is this node's own, at \(local)"
            }
        }
        return nil
    }

    /// The members a `node_list` answer carries: as many as fit in one JSON line of
    /// `maxLineBytes` (the line limit every node reads with), in this order:
    /// 1. this node (a seed's answer always names the seed itself);
    /// 2. the members at the addresses in `seeds` (so that a joiner learns the other seeds);
    /// 3. the members this node has had a heartbeat from (`lastHeartbeatSeq > 0`): these linked
    ///    and spoke, unlike a made-up announcement;
    /// 4. the rest.
    /// Within each group the most recently heard from come first, then by id. The list stops at
    /// the first node that does not fit, by an upper bound of its encoded size
    /// (`NodeInfo.jsonSizeBound`). About 400 typical members fit in the default 64 KiB; a node
    /// left out is learned from another seed or a later answer once the list changes.
    public static func nodeList(of membership: ClusterMembership, seeds: [String] = [], maxLineBytes: Int = Wire.maxLineBytes) -> [NodeInfo] {
        let local = membership.localNodeID
        let seedAddrs = Set(seeds.map(normalized))
        func rank(_ n: NodeInfo) -> Int {
            if n.id == local { return 0 }
            if seedAddrs.contains(normalized(n.addr)) { return 1 }
            return n.lastHeartbeatSeq > 0 ? 2 : 3
        }
        let ranked = membership.unsortedNodes.map { (rank: rank($0), node: $0) }.sorted { a, b in
            if a.rank != b.rank { return a.rank < b.rank }
            if a.node.lastSeen != b.node.lastSeen { return a.node.lastSeen > b.node.lastSeen }
            return a.node.id < b.node.id
        }
        let budget = maxLineBytes - emptyNodeListBytes
        var used = 0
        var list: [NodeInfo] = []
        list.reserveCapacity(ranked.count)
        for (_, node) in ranked {
            let size = node.jsonSizeBound + (list.isEmpty ? 0 : 1)
            guard used + size <= budget else { break }
            used += size
            list.append(node)
        }
        return list
    }

    /// The bytes of a successful `node_list` line without nodes, its newline not counted.
    static let emptyNodeListBytes = JSONMessage.nodeList(DiscoveryResponse(nodes: [], success: true)).encodeLine().count - 1

    /// Adds the nodes of a seed's answer that the membership does not know yet, with the roles,
    /// epochs, terms, LSNs and priorities the seed reports. Returns the ids added, in the answer's
    /// order. Never the local node; never a node with an id or address that `answer` would refuse
    /// or a term or epoch out of range (a seed may be an older one that checks nothing); no more
    /// once the membership has `maxMembers`. Known nodes are left as they are: their own
    /// heartbeats say more than a seed's second-hand report. A refusal (`success == false`) adds
    /// nothing.
    ///
    /// Safe to call again and again (each announce round): a seed that went away and came back
    /// with an empty membership answers with fewer nodes, which removes none; a node that joined
    /// late is learned from the first answer that names it.
    @discardableResult
    public static func learn(
        from response: DiscoveryResponse, into membership: ClusterMembership, maxMembers: Int = defaultMaxMembers
    ) -> [String] {
        guard response.success else { return [] }
        var added: [String] = []
        for node in response.nodes where !membership.contains(node.id) {
            guard NodeInfo.idProblem(node.id) == nil, NodeInfo.addrProblem(node.addr) == nil,
                  node.term < ElectionCore.maxAcceptedTerm, node.epoch < ElectionCore.maxAcceptedTerm
            else { continue }
            if membership.nodeCount >= maxMembers { break }
            do {
                try membership.addLearned(NodeInfo(
                    id: node.id, addr: node.addr, role: node.role, lastHeartbeatSeq: 0,
                    epoch: node.epoch, term: node.term, lastLSN: node.lastLSN, priority: node.priority), firstHand: false)
                added.append(node.id)
            } catch {
                continue  // added concurrently, forgotten here, or too many not linked yet
            }
        }
        return added
    }

    /// `addr` as `HostPort` writes it (`localhost` as 127.0.0.1), or as given when it does not parse.
    private static func normalized(_ addr: String) -> String {
        (try? HostPort(parsing: addr))?.description ?? addr
    }
}
