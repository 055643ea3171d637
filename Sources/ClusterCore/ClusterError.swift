/// Every error the cluster library throws. The seed's errors keep the seed's messages verbatim.
public enum ClusterError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    // Configuration errors
    case invalidNodeID
    case invalidNodeAddr
    case electionTimeoutTooSmall
    case invalidQuorumSize
    case noSeedNodes
    // Election errors
    case notLeader
    case alreadyVoted
    case staleTerm
    case staleLSN
    case electionTimeout
    case insufficientQuorum
    case dualPrimaryDetected
    // Membership errors
    case nodeNotFound
    case nodeAlreadyExists
    case cannotRemoveSelf
    case clusterTooSmall
    // Discovery errors
    case noHealthySeeds
    case discoveryFailed
    // Added by this project (not in the seed).
    /// An address that is not `host:port` with a numeric port in 1...65535 (0 allowed to listen).
    case invalidAddress(String)
    /// A network or event-loop failure, with the underlying reason.
    case io(String)
    /// Something arrived that does not follow the protocol, with the reason.
    case protocolViolation(String)
    /// Durable state could not be read or written, with the reason.
    case storage(String)
    /// The component was used in a state that does not allow the call (e.g. started twice).
    case invalidState(String)
    /// A leadership transfer did not happen, with the reason.
    case transferFailed(String)
    /// A change of the voter set was refused or did not commit; the reason says which.
    case voterChangeFailed(String)

    public var description: String {
        switch self {
        case .invalidNodeID: return "node ID cannot be empty"
        case .invalidNodeAddr: return "node address cannot be empty"
        case .electionTimeoutTooSmall: return "election timeout must be greater than heartbeat interval"
        case .invalidQuorumSize: return "quorum size must be at least 1"
        case .noSeedNodes: return "seed nodes required when auto-failover is enabled"
        case .notLeader: return "not the current leader"
        case .alreadyVoted: return "already voted in this term"
        case .staleTerm: return "term is older than current term"
        case .staleLSN: return "candidate LSN is behind local LSN"
        case .electionTimeout: return "election timed out without winning"
        case .insufficientQuorum: return "insufficient nodes for quorum"
        case .dualPrimaryDetected: return "dual primary detected - split brain"
        case .nodeNotFound: return "node not found in membership"
        case .nodeAlreadyExists: return "node already exists in membership"
        case .cannotRemoveSelf: return "cannot remove self from cluster"
        case .clusterTooSmall: return "cluster too small to maintain quorum"
        case .noHealthySeeds: return "no healthy seed nodes available"
        case .discoveryFailed: return "node discovery failed"
        case .invalidAddress(let a): return "invalid address \"\(a)\": expected host:port"
        case .io(let why): return "I/O error: \(why)"
        case .protocolViolation(let why): return "protocol violation: \(why)"
        case .storage(let why): return "storage error: \(why)"
        case .transferFailed(let why): return "leadership transfer failed: \(why)"
        case .voterChangeFailed(let why): return "voter change failed: \(why)"
        case .invalidState(let why): return "invalid state: \(why)"
        }
    }
}
