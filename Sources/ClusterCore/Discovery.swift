/// The pure part of seed-based discovery: what a seed does with an announcement, and what a node
/// learns from a seed's answer. No I/O; `NodeDiscovery` (module `Cluster`) does the talking.
public enum Discovery {
    /// The members a node accepts through discovery at most, itself included.
    public static let defaultMaxMembers = 1024

    /// The seed's `HandleAnnouncement`: registers the announcing node (or refreshes what is known
    /// of it: role, epoch, term, priority) and returns every member, this node included.
    /// Throws `.invalidNodeID` or `.invalidNodeAddr` for an announcement without them, and
    /// `.invalidState` when a new node would take the membership past `maxMembers` (announcements
    /// are not authenticated: the cap keeps a flood of made-up ids from growing it without end).
    public static func handleAnnouncement(
        _ announcement: AnnouncementMessage, membership: ClusterMembership, maxMembers: Int = defaultMaxMembers
    ) throws(ClusterError) -> DiscoveryResponse {
        if announcement.nodeID.isEmpty { throw .invalidNodeID }
        if announcement.nodeAddr.isEmpty { throw .invalidNodeAddr }
        if !membership.contains(announcement.nodeID) && membership.nodeCount >= maxMembers {
            throw .invalidState("the cluster is full (\(maxMembers) members)")
        }
        if announcement.nodeID != membership.localNodeID {
            if membership.contains(announcement.nodeID) {
                try? membership.updateNodeRole(announcement.nodeID, role: announcement.role)
            } else {
                try? membership.addNode(NodeInfo(
                    id: announcement.nodeID, addr: announcement.nodeAddr, role: announcement.role,
                    epoch: announcement.epoch, term: announcement.term, priority: announcement.priority))
            }
        }
        return DiscoveryResponse(nodes: membership.allNodes, success: true)
    }

    /// Adds the nodes of a seed's answer that the membership does not know yet (never the local
    /// node, never a node without an id or address). Returns the ids added. A refusal
    /// (`success == false`) adds nothing.
    @discardableResult
    public static func learn(
        from response: DiscoveryResponse, into membership: ClusterMembership, maxMembers: Int = defaultMaxMembers
    ) -> [String] {
        guard response.success else { return [] }
        var added: [String] = []
        for node in response.nodes where !node.id.isEmpty && !node.addr.isEmpty && !membership.contains(node.id) {
            if membership.nodeCount >= maxMembers { break }
            do {
                try membership.addNode(NodeInfo(
                    id: node.id, addr: node.addr, role: node.role, lastHeartbeatSeq: 0,
                    epoch: node.epoch, term: node.term, lastLSN: node.lastLSN, priority: node.priority))
                added.append(node.id)
            } catch {
                continue  // added concurrently: fine
            }
        }
        return added
    }
}
