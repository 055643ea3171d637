// The vocabulary of the pure election core: what goes in (events), what comes out (directives),
// and what must survive a restart (durable state). The core itself is `ElectionCore`.
//
// Glossary (after apple/swift-cluster-membership's handbook):
// - Core: the election state machine of one node. No I/O, no clock, no global randomness.
// - Driver (shell): what runs a core: the libuv node, or the simulator. It feeds events in,
//   with the time, and carries out the directives that come out, in order.
// - Directive: one thing the driver must do, in order. A `.persist` starts a write, possibly
//   asynchronous; the driver reports its outcome later as `.persisted` or `.persistFailed`. The
//   core withholds whatever depends on a state until that state is reported written (persist
//   before send), so the driver buffers nothing.
// - Voter: a member whose vote counts. The core's voter set includes itself.

/// Time as the core sees it: nanoseconds since an origin the driver chooses. Never read from a
/// clock by the core; always passed in.
public struct CoreInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static let zero = CoreInstant(nanoseconds: 0)

    public static func < (a: CoreInstant, b: CoreInstant) -> Bool { a.nanoseconds < b.nanoseconds }

    public static func + (a: CoreInstant, ns: UInt64) -> CoreInstant {
        CoreInstant(nanoseconds: a.nanoseconds &+ ns)
    }

    public var description: String { "\(Double(nanoseconds) / 1e6)ms" }
}

/// What one node must keep across restarts. The core sends a vote, a vote request of a new term,
/// or acts as primary of a new epoch only once the state holding it is reported written (fsync'd)
/// by ``ElectionEvent/persisted(_:)``.
public struct DurableElectionState: Sendable, Equatable, Codable {
    /// The highest term this node has seen.
    public var term: UInt64
    /// Whom this node voted for in `term` (nil: nobody yet).
    public var votedFor: String?
    /// The highest epoch this node has seen or made, or promised by a vote: granting a vote
    /// raises it to the candidate's epoch + 1 (see `ElectionCore.step(_:now:)`, "Voting").
    public var epoch: UInt64
    /// The newest voter configuration this node has stored (``VoterConfiguration/none``: never
    /// bootstrapped nor told one). A state file written before configurations existed has none.
    public var configuration: VoterConfiguration

    public init(term: UInt64 = 0, votedFor: String? = nil, epoch: UInt64 = 0, configuration: VoterConfiguration = .none) {
        self.term = term
        self.votedFor = votedFor
        self.epoch = epoch
        self.configuration = configuration
    }

    enum CodingKeys: String, CodingKey { case term, votedFor, epoch, configuration }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        term = try c.decode(UInt64.self, forKey: .term)
        votedFor = try c.decodeIfPresent(String.self, forKey: .votedFor)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        configuration = try c.decodeIfPresent(VoterConfiguration.self, forKey: .configuration) ?? .none
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(term, forKey: .term)
        try c.encodeIfPresent(votedFor, forKey: .votedFor)
        try c.encode(epoch, forKey: .epoch)
        if !configuration.isNone { try c.encode(configuration, forKey: .configuration) }
    }
}

/// A heartbeat as the core sees it. Every node heartbeats every voter each interval; the wire
/// form is a fixed-size binary frame (see PROTOCOL.md).
public struct HeartbeatMessage: Sendable, Equatable, Hashable {
    /// The sender's node id.
    public var from: String
    /// The sender's heartbeat sequence number (one counter per sender, increasing).
    public var seq: UInt64
    public var epoch: UInt64
    public var term: UInt64
    /// The sender's last LSN.
    public var lsn: UInt64
    /// The sender's role.
    public var role: NodeRole
    /// The highest heartbeat sequence the sender has received from the receiver (0: none):
    /// heartbeats acknowledge each other, no separate ack is sent.
    public var ackSeq: UInt64
    /// Asks the receiver for an immediate heartbeat back (to measure a round trip).
    public var probe: Bool

    public init(
        from: String, seq: UInt64, epoch: UInt64, term: UInt64, lsn: UInt64, role: NodeRole,
        ackSeq: UInt64 = 0, probe: Bool = false
    ) {
        self.from = from
        self.seq = seq
        self.epoch = epoch
        self.term = term
        self.lsn = lsn
        self.role = role
        self.ackSeq = ackSeq
        self.probe = probe
    }
}

/// Sent by a leader to the target of a leadership transfer: stand now (etcd-io/raft's
/// `MsgTimeoutNow`; Raft thesis §3.10). The target acts on it only if `from` is the leader it
/// follows and `term` is its own current term; it then skips PreVote and stands at term + 1, its
/// vote requests marked `transfer` (see ``ElectionCore/step(_:now:)``, "Leadership transfer").
public struct TimeoutNowMessage: Sendable, Equatable, Hashable {
    /// The sending leader's node id.
    public var from: String
    /// The sending leader's term.
    public var term: UInt64

    public init(from: String, term: UInt64) {
        self.from = from
        self.term = term
    }
}

/// A message between two election cores.
public enum ElectionMessage: Sendable, Equatable, Hashable {
    case voteRequest(VoteRequest)
    case voteResponse(VoteResponse)
    case heartbeat(HeartbeatMessage)
    /// A leader tells the target of its leadership transfer to stand now.
    case timeoutNow(TimeoutNowMessage)
    /// A primary tells a node the voter configuration it holds.
    case configuration(ConfigurationMessage)
    /// A node tells the primary which configuration it has stored (durably).
    case configurationAck(ConfigurationAck)
}

/// What goes into a core. Every event comes with the current time.
public enum ElectionEvent: Sendable, Equatable {
    /// Time has passed; the core checks its timers (election timeout, CheckQuorum, vote timeout).
    case tick
    /// A message from a peer arrived (`from` is the peer as the transport knows it: the one id the
    /// core counts a vote under or accepts a heartbeat from; a body naming another sender is dropped).
    /// A vote request through this door is granted only to a known voter, and not while a live
    /// primary is heard (see ``ElectionCore/step(_:now:)``, "Disruptive servers").
    case receive(from: String, ElectionMessage)
    /// A vote request the application vouches for (the seed's `HandleVoteRequest`, where the
    /// application carries vote requests itself): answered by the seed's rules, to any candidate,
    /// live primary or not. The range rules (``ElectionCore/maxTermJump``) still apply. The answer
    /// is a `.send(to: request.candidateID, .voteResponse)`.
    case vouchedVoteRequest(VoteRequest)
    /// The application forces an election now (the seed's `StartElection`): term + 1 at once,
    /// no PreVote.
    case startElection
    /// The application asks the leader to step down (the seed's `StepDown(term)`).
    case stepDown(term: UInt64)
    /// The local log position moved.
    case setLocalLSN(UInt64)
    /// The application asks this node, as leader, to hand its leadership over (a planned
    /// switchover; etcd-io/raft's `MsgTransferLeader`, Raft thesis §3.10): to the voter `to`, or
    /// with nil to the most up-to-date voter heard within an election timeout (the highest LSN
    /// its heartbeats reported, then the highest priority, then the smallest id). The answer comes
    /// as ``ElectionDirective/transferStarted(target:)``, or at once as
    /// ``ElectionDirective/transferEnded(target:succeeded:reason:)`` with the refusal's reason.
    /// See ``ElectionCore/step(_:now:)``, "Leadership transfer".
    case transferLeadership(to: String?)
    /// The priority a voter announced (its hello): the leader prefers the higher one when it picks
    /// a transfer target among voters of equal LSN. A voter never reported counts as priority 1.
    case setVoterPriority(String, Int)
    /// The driver sets the voter set itself, outside the consent of the voters (idempotent): a
    /// driver that manages the configuration by other means (the simulator's membership model,
    /// tests). The node runtime never uses it: its voters change by ``changeVoters(_:)`` only.
    case addVoter(String)
    /// The driver removes a voter itself (idempotent; never the local node). See ``addVoter(_:)``.
    case removeVoter(String)
    /// The first configuration of a cluster, if this node has none (bootstrap: `--voters`, or the
    /// set the bootstrap agreement settled on). Ignored by a node that holds a configuration: a
    /// restarted node keeps the one it stored, whatever it is started with.
    case bootstrap([String])
    /// Asks this node, as primary, to change the voter set by one voter, with the consent of the
    /// current voters (see "Voter configuration" on ``ElectionCore``). The answer comes as
    /// ``ElectionDirective/voterChangeEnded(_:succeeded:reason:)``: at once with the refusal's
    /// reason, or once the new configuration is committed (a majority of its voters stored it).
    case changeVoters(VoterChange)
    /// The transport's link to a peer ended (the peer's kernel closed it, as when its process
    /// dies, or the driver closed it after an election timeout of silence). A follower takes the
    /// end of its link to its leader as crash evidence: its lease on that leader ends and it
    /// stands soon, after `(behind + r) · T/4 / priority` (see "Crash evidence" on
    /// ``ElectionCore``); any other peer's link, and any link on a leader or candidate, changes
    /// nothing. The driver SHOULD deliver it whenever a peer's link ends.
    case peerUnreachable(String)
    /// The write started by ``ElectionDirective/persist(_:)`` with this state is durable. The core
    /// now sends what waited for it (a vote, its vote requests, its leadership) and starts the next
    /// write if the state changed meanwhile. A report for a state other than the one being written
    /// is ignored.
    case persisted(DurableElectionState)
    /// The write started by ``ElectionDirective/persist(_:)`` with this state failed: nothing of it
    /// may be relied on. The core drops what waited for it (a withheld vote is answered with a
    /// refusal, a pending candidate or leader becomes follower), forgets a vote it did not write,
    /// refuses votes and does not stand until a later write succeeds, and retries the write no
    /// sooner than ``ElectionCore/persistRetryDelay`` later (on a tick or any event).
    case persistFailed(DurableElectionState)
}

/// What comes out of a core, to be carried out by the driver in order.
public enum ElectionDirective: Sendable, Equatable {
    /// Start writing this state durably (possibly asynchronously; later directives need not wait
    /// for it) and report the outcome as ``ElectionEvent/persisted(_:)`` or
    /// ``ElectionEvent/persistFailed(_:)`` with the same state. At most one write is in flight per
    /// core: the next `.persist` comes only after that report.
    case persist(DurableElectionState)
    /// Send a message to one peer.
    case send(to: String, ElectionMessage)
    /// Send a heartbeat to every voter now (a new primary announces itself at once). The driver
    /// builds each heartbeat with `ElectionCore.heartbeat(seq:ackSeq:probe:)`.
    case broadcastHeartbeat
    /// The state changed (once per transition). `leader` is the known leader, if any.
    case stateChanged(ElectionState, term: UInt64, leader: String?)
    /// The known leader changed (nil: none known).
    case leaderChanged(String?)
    /// ``ElectionCore/fencingEpoch`` rose: this node became primary with a new epoch (once that
    /// epoch was durable), or it learned a newer primary's epoch from a heartbeat.
    case epochChanged(UInt64)
    /// Two different nodes claimed to be primary in the same term. The rules make this
    /// impossible; seeing it means misconfiguration.
    case dualPrimaryDetected(term: UInt64, primaries: [String])
    /// A leadership transfer to `target` started (``ElectionEvent/transferLeadership(to:)`` was
    /// accepted): ``ElectionCore/transfer`` holds it until it ends. While it lasts the
    /// application should hold new writes, so that the target can catch up (etcd drops proposals
    /// meanwhile).
    case transferStarted(target: String)
    /// A leadership transfer ended, or a request for one was refused (then in the step of the
    /// request, `target` nil when none was named and none could be chosen). `succeeded`: this
    /// node learned that `target` leads a newer term. Otherwise `reason` says why not: one of the
    /// `ElectionCore.transfer…Reason` constants. Every `transferStarted` is followed by exactly
    /// one `transferEnded` for it, by ``ElectionCore/Transfer/deadline`` (within one election
    /// timeout of the request while the node leads, two at most), unless the node restarts first.
    case transferEnded(target: String?, succeeded: Bool, reason: String?)
    /// The configuration this node holds changed (it adopted a newer one, made one as primary, or
    /// learned that the one it holds is committed).
    case configurationChanged(VoterConfiguration, committed: Bool)
    /// A ``ElectionEvent/changeVoters(_:)`` ended: refused (in the step of the request), committed,
    /// or abandoned when this node stopped being primary before it committed (the change may then
    /// still take effect: the next primary may hold it).
    case voterChangeEnded(VoterChange, succeeded: Bool, reason: String?)
}

/// A seeded pseudo-random generator (SplitMix64): passed explicitly to whatever needs
/// randomness, so that a run replays from its seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
