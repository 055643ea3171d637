// The values of the gossip membership layer (SWIM with Lifeguard): members, the updates that
// spread about them, and the messages that carry the updates. Pure values: no I/O.

/// What a member is, as one member sees it.
///
/// `alive` → `suspect` (a probe went unanswered) → `failed` (the suspicion timed out), and back
/// to `alive` when the member refutes with a higher incarnation. `left` is a member's own
/// announcement that it went away on purpose: it is never suspected, and stays `left` until it
/// comes back with a higher incarnation.
package enum GossipMemberState: UInt8, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    case alive = 0
    case suspect = 1
    case failed = 2
    case left = 3

    package var description: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .failed: "failed"
        case .left: "left"
        }
    }
}

/// One member as a member sees it.
package struct GossipMember: Sendable, Equatable {
    package var id: String
    /// Where its datagrams go: `host:port`.
    package var address: String
    package var state: GossipMemberState
    /// The member's own counter: only the member raises it (to refute a suspicion, to announce a
    /// change of its own, to leave). A newer incarnation overrides anything said of an older one.
    package var incarnation: UInt64
    /// Whether the member votes in elections (gossiped; set by the member itself).
    package var voter: Bool

    package init(id: String, address: String, state: GossipMemberState, incarnation: UInt64, voter: Bool) {
        self.id = id
        self.address = address
        self.state = state
        self.incarnation = incarnation
        self.voter = voter
    }
}

/// The primary as a member last heard of it: the newest (term, epoch) wins; equal (term, epoch)
/// with another leader id is settled by the id (the greater wins), so that every member ends at
/// the same value.
package struct GossipPrimary: Sendable, Equatable, Hashable, CustomStringConvertible {
    package var term: UInt64
    package var epoch: UInt64
    package var leaderID: String

    package init(term: UInt64, epoch: UInt64, leaderID: String) {
        self.term = term
        self.epoch = epoch
        self.leaderID = leaderID
    }

    /// Whether `self` replaces `other`.
    package func isNewer(than other: GossipPrimary?) -> Bool {
        guard let other else { return true }
        if term != other.term { return term > other.term }
        if epoch != other.epoch { return epoch > other.epoch }
        return leaderID > other.leaderID
    }

    package var description: String { "term \(term) epoch \(epoch) leader \(leaderID)" }
}

/// One piece of news, piggybacked on probes and acks and sent by gossip.
package enum GossipUpdate: Sendable, Equatable {
    /// The member is alive at `incarnation`, at `address`, voting or not.
    case alive(id: String, incarnation: UInt64, address: String, voter: Bool)
    /// `from` suspects the member at `incarnation` (Lifeguard counts distinct `from`s as
    /// independent confirmations).
    case suspect(id: String, incarnation: UInt64, from: String)
    /// `from` declared the member failed at `incarnation`.
    case failed(id: String, incarnation: UInt64, from: String)
    /// The member left at `incarnation`.
    case left(id: String, incarnation: UInt64)
    /// The primary.
    case primary(GossipPrimary)

    /// The member the update is about (`nil` for the primary).
    package var memberID: String? {
        switch self {
        case .alive(let id, _, _, _), .suspect(let id, _, _), .failed(let id, _, _), .left(let id, _): id
        case .primary: nil
        }
    }
}

/// A gossip datagram: who sent it, what it asks, and the news it carries.
package struct GossipMessage: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        /// A probe of `target` (the id the sender believes lives at the address: a process with
        /// another id does not answer).
        case ping(seq: UInt32, target: String)
        /// The answer to the ping `seq` (also relayed to the origin of a ping-req).
        case ack(seq: UInt32)
        /// Asks the receiver to probe `target` at `targetAddress` and relay its ack, as `seq`.
        case pingReq(seq: UInt32, target: String, targetAddress: String)
        /// Lifeguard: the relay of ping-req `seq` got no ack from the target in time, so the
        /// origin knows the relay itself is working.
        case nack(seq: UInt32)
        /// News only.
        case gossip
    }

    /// The sender's member id.
    package var sender: String
    package var kind: Kind
    package var updates: [GossipUpdate]

    package init(sender: String, kind: Kind, updates: [GossipUpdate] = []) {
        self.sender = sender
        self.kind = kind
        self.updates = updates
    }
}

/// A member's whole view, exchanged now and then over TCP (anti-entropy, and a join).
package struct GossipFullState: Sendable, Equatable {
    /// The sender's member id.
    package var sender: String
    /// This state answers one the receiver sent (no answer to it is wanted).
    package var isReply: Bool
    /// The members the sender knows, itself included.
    package var members: [GossipMember]
    package var primary: GossipPrimary?

    package init(sender: String, isReply: Bool, members: [GossipMember], primary: GossipPrimary?) {
        self.sender = sender
        self.isReply = isReply
        self.members = members
        self.primary = primary
    }
}
