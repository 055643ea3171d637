/// A node's role in the cluster, as announced to others. Encoded in JSON as the integer.
public enum NodeRole: Int, Codable, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case replica = 0
    case candidate = 1
    case primary = 2

    public var description: String {
        switch self {
        case .replica: return "replica"
        case .candidate: return "candidate"
        case .primary: return "primary"
        }
    }
}

/// This node's state in the election state machine.
public enum ElectionState: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case follower = 0
    case candidate = 1
    case leader = 2

    public var description: String {
        switch self {
        case .follower: return "follower"
        case .candidate: return "candidate"
        case .leader: return "leader"
        }
    }

    /// The role a node in this state announces.
    public var role: NodeRole {
        switch self {
        case .follower: return .replica
        case .candidate: return .candidate
        case .leader: return .primary
        }
    }
}
