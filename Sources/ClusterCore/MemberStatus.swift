/// What a node knows of a member's liveness, as `cluster members` shows it and the status answer
/// carries it (`"status"` of each member, a JSON string).
///
/// A node judges it from its own link and what it last heard (`MemberStatus.judge`), or, with
/// the gossip layer (`NodeOptions.gossip`), takes the layer's word (with an incarnation).
public enum MemberStatus: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Linked, and heard within the health timeout.
    case alive
    /// Not alive, but heard within twice the health timeout: late, or its link just lost.
    case suspect
    /// Not heard within twice the health timeout (or never heard).
    case failed
    /// Removed (`cluster force-leave`, or a member learned from the network that never linked
    /// and expired) and remembered for a while as a tombstone: only its own return brings it back.
    case left

    public var description: String { rawValue }

    /// The status of a member (not the local node) from what this node knows: whether a link to
    /// it is up, and how long ago it was last heard (nil: never).
    public static func judge(linked: Bool, sinceHeard: Duration?, healthTimeout: Duration) -> MemberStatus {
        guard let sinceHeard else { return .failed }
        if linked && sinceHeard < healthTimeout { return .alive }
        if sinceHeard < healthTimeout * 2 { return .suspect }
        return .failed
    }

    /// What the gossip layer says of a member, as a status.
    package init(_ gossip: GossipMemberState) {
        switch gossip {
        case .alive: self = .alive
        case .suspect: self = .suspect
        case .failed: self = .failed
        case .left: self = .left
        }
    }
}

/// One member's entry beside its `NodeInfo` in a status answer: its status, incarnation (0 until
/// a gossip layer counts them) and whether it votes.
public struct MemberLiveness: Sendable, Equatable {
    public var status: MemberStatus
    public var incarnation: UInt64
    public var voter: Bool

    public init(status: MemberStatus, incarnation: UInt64 = 0, voter: Bool) {
        self.status = status
        self.incarnation = incarnation
        self.voter = voter
    }
}
