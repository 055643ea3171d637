// The election state machine of one node: Raft's leader election (terms, one vote per term,
// randomised timeouts), PreVote and CheckQuorum from Ongaro's thesis, and the seed's two extra
// rules (the LSN rule and the epoch as fencing token). Pure: no I/O, no clock, no global
// randomness. Every input comes through `step(_:now:)`; every output is a directive.
//
// References used in comments and tests:
// - Raft paper: Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm"
//   (§5.1 terms, §5.2 leader election, §5.4.1 election restriction).
// - Raft thesis: Ongaro, "Consensus: Bridging Theory and Practice" (§3.10 leadership transfer,
//   §6.2 CheckQuorum and the leader lease, §9.6 PreVote).
// - etcd-io/raft (raft.go): leadership transfer (`MsgTransferLeader`, `MsgTimeoutNow`,
//   `leadTransferee`, `campaignTransfer`, the `force` that skips the lease check).

/// The election state machine of one node.
///
/// A driver (the libuv node, or the simulator) owns one `ElectionCore` per node and:
/// - MUST feed every event through ``step(_:now:)`` with the current time, and carry out the
///   returned directives in order.
/// - MUST start a durable write of the state of every ``ElectionDirective/persist(_:)`` and report
///   its outcome, once known, as ``ElectionEvent/persisted(_:)`` (the state is durable) or
///   ``ElectionEvent/persistFailed(_:)`` (it may not be relied on), carrying the same state. The
///   write may be asynchronous and slow: directives after a `.persist` need not wait for it. A
///   synchronous driver feeds `.persisted` right after the write returns.
/// - MUST deliver a ``ElectionEvent/tick`` no later than ``nextDeadline`` (earlier or extra ticks
///   are harmless).
/// - MUST send a heartbeat to every voter every `heartbeatInterval` and on
///   ``ElectionDirective/broadcastHeartbeat``, built from ``term``, ``epoch``, ``localLSN`` and
///   ``role``: the core decides, the driver sends.
/// - MUST construct a restarted core from the last persisted ``DurableElectionState``.
/// - For leadership transfer: SHOULD report each voter's priority
///   (``ElectionEvent/setVoterPriority(_:_:)``, from its hello); SHOULD hold new writes while a
///   leader's ``transfer`` is set, so that the target catches up; answers whoever asked for a
///   transfer from ``ElectionDirective/transferEnded(target:succeeded:reason:)`` (a restart ends a
///   transfer unreported).
///
/// Persist before send (etcd's `Ready` contract, with the waiting done by the core): at most one
/// write is in flight; changes made meanwhile go out as the next `.persist` once it is reported.
/// The core withholds everything that depends on a state until that state is reported written: a
/// granted vote's response (the vote and the epoch it promises), its own vote requests as a
/// candidate (the new term and its self-vote), and its leadership (a won election emits no
/// `stateChanged(.leader)`, `epochChanged` or `broadcastHeartbeat`, and ``state`` stays
/// `.candidate`, until the new epoch is durable). What depends on nothing durable goes out at
/// once: refusals, PreVote traffic, heartbeat contents (a follower's term may be ahead of its
/// disk; a term lost in a crash is learned again). After a failed write the node does not act on
/// what it failed to write: see ``ElectionEvent/persistFailed(_:)``.
///
/// Guarantees (tested rule by rule in `ElectionRulesTests`, and as invariants by the simulator):
/// - At most one leader per term (Raft §5.2): one durable vote per term, and a real majority
///   (``quorumSize``) is needed to win.
/// - A vote goes only to a candidate whose LSN is not behind the voter's and whose epoch is not
///   behind the voter's (see ``step(_:now:)``, "Voting").
/// - Leaders' epochs strictly increase with their terms, so the epoch is a fencing token; a
///   leader's epoch and term are durable before it acts as leader.
/// - A node that failed to write refuses votes and does not stand until a write succeeds.
/// - The lease (thesis §4.2.3): a node that is leader, or heard its leader within T over a link
///   that has not ended since, refuses PreVotes and votes from the network. A broken link ends
///   the lease of the one follower at its end, so it cannot depose a primary whose lease a
///   majority holds.
///
/// Crash evidence: a killed process's kernel closes its sockets, so its followers' links to it
/// end at once. A follower whose link to its leader ends stops counting the leader as heard for
/// the lease and starts a PreVote round soon, instead of an election timeout after the last
/// heartbeat: a crashed primary is replaced in a fraction of T, a silent one (no link closes
/// until the driver closes a link silent for T) in a little over T. The event moves a timer and
/// ends one node's lease, nothing else: why safety is unchanged is written on `linkLost`.
///
/// Timers, in nanoseconds of ``CoreInstant``:
/// - Election timer (follower): a randomised timeout in [T, 2T), T = `electionTimeout`, shorter
///   for a higher priority. Reset by a heartbeat from the current leader and by granting a vote.
///   On expiry the follower forgets the leader and, with `autoFailover`, starts a PreVote round.
///   Crash evidence brings it forward: when the follower's link to its leader ends
///   (``ElectionEvent/peerUnreachable(_:)``), it fires within `(behind + r) · T/4 / priority`,
///   r in [0, 1), `behind` the live voters whose heartbeats reported a higher LSN (see
///   "Crash evidence" below, `linkLost`).
/// - Campaign timer (PreVote round or candidacy): `voteRequestTimeout`. On expiry the attempt
///   failed: the node is a follower again and waits a fresh randomised election timeout, then
///   retries with a PreVote round, even after a forced election; without `autoFailover` it does
///   not retry (a forced election is one attempt; the application may force another). After
///   `maxElectionRetries` consecutive failed attempts (none won, no leader heard in between) it
///   backs off: each wait gets one extra randomised election timeout ([2T, 4T) in all) until it
///   hears a leader or wins.
/// - CheckQuorum timer (leader): a leader that has not heard from a quorum of voters within T
///   steps down (thesis §6.2).
///
/// `stateChanged` is emitted once per actual change of ``state``, and also when a candidate starts
/// a new candidacy at a higher term (a forced election while already candidate). A follower that
/// adopts a higher term stays a follower and emits no `stateChanged`. `leaderChanged` is emitted
/// once per change of ``leaderID``.
public struct ElectionCore: Sendable {
    /// The election timing and quorum settings. All times are in nanoseconds.
    public struct Settings: Sendable, Equatable {
        /// T: a follower waits a randomised time in [T, 2T) without hearing a leader before it
        /// stands; a leader steps down when it has not heard from a quorum within T.
        public var electionTimeout: UInt64
        /// How often the driver heartbeats every voter. The core does not use it itself; it is
        /// kept here so that a driver has all timings in one place.
        public var heartbeatInterval: UInt64
        /// How long a PreVote round or a candidacy waits for a quorum of votes.
        public var voteRequestTimeout: UInt64
        /// A floor on ``ElectionCore/quorumSize``: set it to a majority of the intended cluster.
        public var minQuorumSize: Int
        /// A higher priority waits less before standing: T + r·T/max(1, priority), r in [0, 1).
        public var priority: Int
        /// With `false`, no election ever starts by timer; only ``ElectionEvent/startElection`` starts one.
        public var autoFailover: Bool
        /// Consecutive failed attempts after which a node backs off (waits an extra timeout).
        public var maxElectionRetries: Int
        /// The voters' configuration is replicated by the primary, and changed only with their
        /// consent (``ElectionEvent/changeVoters(_:)``). `false`: the driver sets each node's
        /// voters itself (``ElectionEvent/addVoter(_:)``); no CONFIG is sent or taken, and a new
        /// primary makes no configuration of its term (the simulator's model of per-node views).
        public var replicatesConfiguration = true

        public init(
            electionTimeout: UInt64, heartbeatInterval: UInt64, voteRequestTimeout: UInt64,
            minQuorumSize: Int, priority: Int, autoFailover: Bool, maxElectionRetries: Int
        ) {
            self.electionTimeout = electionTimeout
            self.heartbeatInterval = heartbeatInterval
            self.voteRequestTimeout = voteRequestTimeout
            self.minQuorumSize = minQuorumSize
            self.priority = priority
            self.autoFailover = autoFailover
            self.maxElectionRetries = maxElectionRetries
        }

        /// The settings of a ``ClusterConfig``, its durations converted to nanoseconds.
        public init(config: ClusterConfig) {
            self.init(
                electionTimeout: Self.nanoseconds(config.electionTimeout),
                heartbeatInterval: Self.nanoseconds(config.heartbeatInterval),
                voteRequestTimeout: Self.nanoseconds(config.voteRequestTimeout),
                minQuorumSize: config.minQuorumSize,
                priority: config.priority,
                autoFailover: config.enableAutoFailover,
                maxElectionRetries: config.maxElectionRetries
            )
        }

        /// A duration in whole nanoseconds; negative durations count as zero.
        static func nanoseconds(_ duration: Duration) -> UInt64 {
            let (seconds, attoseconds) = duration.components
            if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
            let (whole, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
            if overflow { return UInt64.max }
            return whole &+ UInt64(max(0, attoseconds) / 1_000_000_000)
        }
    }

    /// An attempt to be elected: a PreVote round (the node stays a follower) or a candidacy.
    struct Campaign: Sendable {
        enum Kind: Sendable { case preVote, vote }
        var kind: Kind
        /// The term asked for: term + 1 for a PreVote round, the (new) current term for a candidacy.
        var term: UInt64
        /// The epoch sent in the requests. A candidate adopts no epoch while it campaigns, so a
        /// winner's epoch is exactly `epoch + 1` (see `becomeLeader`).
        var epoch: UInt64
        var deadline: CoreInstant
        /// Granted votes so far, by voter, with the epoch each voter reported (its own included).
        var grants: [String: UInt64]
        /// False while a candidacy's term and self-vote are not yet durable: its vote requests are
        /// withheld (and `deadline` runs from when they are sent). Always true for a PreVote round.
        var requestsSent = true
        /// A candidacy started by a leader's TimeoutNow: its vote requests carry `transfer`.
        var transfer = false
    }

    /// A leadership transfer under way on this node (etcd-io/raft's `leadTransferee`), from the
    /// accepted ``ElectionEvent/transferLeadership(to:)`` to its
    /// ``ElectionDirective/transferEnded(target:succeeded:reason:)``.
    public struct Transfer: Sendable, Equatable {
        /// The voter that is to lead next.
        public var target: String
        /// The term this node led when the transfer started; success is the target leading a later one.
        public var term: UInt64
        /// When the transfer was asked for.
        public var startedAt: CoreInstant
        /// When the transfer is given up if not completed: one election timeout after
        /// `startedAt` (a leader then abandons it and goes on leading), moved to one election
        /// timeout after the node stopped leading, if it stopped once its target was told to stand
        /// (it waits that long to hear who won). So at most two election timeouts after `startedAt`.
        public var deadline: CoreInstant
        /// True once a TimeoutNow went to the target (it may stand at any moment from then on).
        public var timeoutNowSent: Bool
    }

    /// What this node knows of another voter (one dictionary, so that a heartbeat costs one
    /// lookup).
    struct PeerView: Sendable {
        /// When it was last heard from, by any message (nil: not since it became a voter).
        var heardAt: CoreInstant?
        /// The term and LSN its last heartbeat reported (nil: none yet): what a leader picks and
        /// waits for a transfer target by.
        var reportedTerm: UInt64?
        var reportedLSN: UInt64 = 0
        /// Its priority, as the driver reported it (``ElectionEvent/setVoterPriority(_:_:)``).
        var priority = 1
        /// It is a voter (in `voters`): kept with `voters`, so that a heartbeat finds the voter
        /// check and its sender's record in one lookup.
        var isVoter = false
        /// As primary: the configuration it acknowledged having stored in this node's term.
        var configAck: ConfigurationID?

        mutating func heard(at now: CoreInstant, term: UInt64, lsn: UInt64) {
            heardAt = now
            reportedTerm = term
            reportedLSN = lsn
        }
    }

    /// A granted vote whose response waits for the write that makes it durable.
    struct WithheldGrant: Sendable {
        var candidate: String
        var response: VoteResponse
        /// The epoch promised to the candidate (its epoch + 1): the written state must hold it.
        var promisedEpoch: UInt64
    }

    /// A reported pair of primaries in one term (primaries sorted), so each is reported once.
    struct DualPrimaryReport: Hashable, Sendable {
        var term: UInt64
        var first: String
        var second: String
    }

    /// The refusal reason for a candidate whose epoch is behind the voter's.
    public static let staleEpochReason = "candidate epoch is behind local epoch"
    /// The refusal reason for a PreVote (thesis §9.6) or a vote (thesis §4.2.3) while the voter
    /// still hears a live primary.
    public static let liveLeaderReason = "a live primary is known"
    /// The refusal reason for a vote request from the network whose candidate is not a voter here.
    public static let unknownCandidateReason = "candidate is not a known voter"
    /// The refusal reason for a vote request whose term or epoch is out of range or out of reach
    /// (see ``maxTermJump``).
    public static let outOfRangeReason = "term or epoch out of range"
    /// How far ahead of this node's own term (or epoch) a message's term (or epoch) may be: a
    /// message further ahead is dropped (a vote request refused) and nothing of it is adopted or
    /// saved. A vote request's epoch may be at most this node's epoch + 1 (a candidate knows no
    /// epoch that no voter was told of: see "Voting" on ``step(_:now:)``).
    ///
    /// Why 2^32: a real cluster moves its term by one per candidacy and its epoch by one per
    /// primary, and every node hears every voter's term and epoch in its heartbeats, so a node
    /// lags only by the elections it missed: 2^32 of them (136 years at one a second) is out of
    /// reach, so the bound costs no liveness, even for a node that lost its data directory. From
    /// outside, a stranger moves nothing (it is no voter), and even a hostile voter needs 2^31
    /// accepted messages to push a node's term near ``maxAcceptedTerm``, where it could no
    /// longer stand: no single message makes a node unusable.
    public static let maxTermJump: UInt64 = 1 << 32
    /// The refusal reason while the node's last durable write failed, and for a vote whose write
    /// failed.
    public static let notDurableReason = "vote could not be made durable"
    /// A transfer refused: this node is not the leader (a candidate whose epoch is not yet durable
    /// is not leader either).
    public static let transferNotLeaderReason = "not the leader"
    /// A transfer refused: another one is under way (at most one at a time).
    public static let transferUnderWayReason = "a leadership transfer is already under way"
    /// A transfer refused: the named target is this node.
    public static let transferToSelfReason = "the transfer target is this node"
    /// A transfer refused: the named target is not a voter here.
    public static let transferUnknownTargetReason = "the transfer target is not a known voter"
    /// A transfer refused: no target named, and no other voter was heard within an election timeout.
    public static let transferNoTargetReason = "no other live voter to transfer to"
    /// A transfer abandoned: not completed within one election timeout of the request.
    public static let transferTimedOutReason = "the transfer did not complete within an election timeout"
    /// A transfer ended because this node stopped leading before the target was told to stand.
    public static let transferLostLeadershipReason = "leadership was lost before the target was told to stand"
    /// A transfer ended because its target left the voter set.
    public static let transferTargetRemovedReason = "the transfer target left the voter set"
    /// A transfer ended because a node other than the target was elected in a later term.
    public static let transferOtherLeaderReason = "a node other than the target was elected"

    /// The refusal reason for a vote request to a node that is not a voter itself.
    public static let notVoterReason = "this node is not a voter"
    /// The refusal reason for a candidate whose voter configuration is behind the voter's.
    public static let staleConfigurationReason = "candidate's voter configuration is behind local configuration"
    /// A voter change refused: this node is not the primary.
    public static let changeNotLeaderReason = "not the primary"
    /// A voter change refused: the configuration this primary holds is not committed yet (its own
    /// term's, made at its election, or the previous change's).
    public static let changeUncommittedReason = "a voter change is under way (the primary's configuration is not committed yet)"
    /// A voter change refused while a leadership transfer is under way.
    public static let changeDuringTransferReason = "a leadership transfer is under way"
    /// A voter change abandoned: the primary stopped leading before it committed.
    public static let changeLostLeadershipReason =
        "leadership was lost before the change was committed (the next primary may still hold it)"

    /// Terms and epochs at or above this bound (2^63) are out of range: no cluster gets there by
    /// elections, so a message carrying one is dropped (and a vote request refused by the driver).
    /// This keeps every `+ 1` on terms and epochs far from overflow, whatever arrives.
    public static let maxAcceptedTerm: UInt64 = 1 << 63

    /// True when a message's term and epoch are within range (see ``maxAcceptedTerm``).
    public static func isInRange(_ message: ElectionMessage) -> Bool {
        switch message {
        case .heartbeat(let h): return h.term < maxAcceptedTerm && h.epoch < maxAcceptedTerm
        case .voteRequest(let r): return r.term < maxAcceptedTerm && r.epoch < maxAcceptedTerm
        case .voteResponse(let r): return r.term < maxAcceptedTerm && r.epoch < maxAcceptedTerm
        case .timeoutNow(let t): return t.term < maxAcceptedTerm
        case .configuration(let c):
            return c.term < maxAcceptedTerm && c.configuration.term <= c.term && c.configuration.version < maxAcceptedTerm
        case .configurationAck(let a):
            return a.term < maxAcceptedTerm && a.configuration.term <= a.term && a.configuration.version < maxAcceptedTerm
        }
    }

    // MARK: Public state

    /// This node's id.
    public let id: String
    /// Rules switched off, to show that the simulator's checker catches their absence (tests only).
    package var disabledRules: DisabledRules = []
    /// The settings this core runs with.
    public let settings: Settings
    /// Follower, candidate or leader. A node in a PreVote round is still a follower; a candidate
    /// that won stays a candidate until its new epoch is durable.
    public private(set) var state: ElectionState = .follower
    /// What must survive a restart (term, vote, epoch), as the core holds it now; every change is
    /// emitted as `.persist`. It may be ahead of ``persisted`` while a write is pending or failed.
    public private(set) var durable: DurableElectionState
    /// The last state reported written (``ElectionEvent/persisted(_:)``), or the one the core
    /// started from: what a restart would find.
    public private(set) var persisted: DurableElectionState
    /// True from a ``ElectionEvent/persistFailed(_:)`` until the next ``ElectionEvent/persisted(_:)``:
    /// the node refuses votes and PreVotes (``notDurableReason``) and does not stand.
    public private(set) var lastWriteFailed = false
    /// The fencing token the application reads: the epoch of the newest primary this node knows,
    /// its own once durable or the one a primary's heartbeat carries. Never decreases; 0 until this
    /// core leads or hears a primary (it is not restored on restart: a follower learns it from the
    /// primary's next heartbeat). Every rise is emitted as ``ElectionDirective/epochChanged(_:)``.
    /// ``epoch`` can be ahead of it: a voter's promise, or a new primary's epoch not yet durable.
    public private(set) var fencingEpoch: UInt64 = 0
    /// The leader of the current term, if this node knows one (itself when leader).
    public private(set) var leaderID: String?
    /// The local log position, as last set by ``ElectionEvent/setLocalLSN(_:)``.
    public private(set) var localLSN: UInt64 = 0
    /// The leadership transfer under way on this node, if any: set by an accepted
    /// ``ElectionEvent/transferLeadership(to:)``, cleared when
    /// ``ElectionDirective/transferEnded(target:succeeded:reason:)`` reports its end. It outlives
    /// this node's leadership once the target was told to stand (the old leader waits to hear who
    /// won). While it is set on a leader, the application should hold new writes.
    public private(set) var transfer: Transfer?
    /// The members whose votes count: the voters of ``configuration``. This node may not be one
    /// of them (``isVoter``).
    public private(set) var voters: Set<String>
    /// True when this node's vote counts: it may stand and vote. A node that is not a voter
    /// follows the primary it hears and does nothing else.
    public private(set) var isVoter: Bool
    /// The newest voter configuration this node holds (and stores: it is part of ``durable``).
    @inlinable public var configuration: VoterConfiguration { durable.configuration }
    /// This node knows that ``configuration`` is committed: a majority of its voters stored it (as
    /// primary, from their acknowledgements; otherwise, as the primary said). A bootstrap
    /// configuration counts as committed.
    public private(set) var configurationCommitted: Bool
    /// The voter change this primary is making, from its request until it commits.
    public private(set) var voterChange: VoterChange?

    /// The current term (Raft §5.1).
    @inlinable public var term: UInt64 { durable.term }
    /// Whom this node voted for in the current term.
    @inlinable public var votedFor: String? { durable.votedFor }
    /// The highest epoch this node has seen, made, or promised by a vote (see "Voting"); the
    /// voting rules use it. The fencing token is ``fencingEpoch``.
    @inlinable public var epoch: UInt64 { durable.epoch }
    /// How long after a failed write the core retries it (on the first tick or event from then
    /// on): a quarter of the election timeout.
    public var persistRetryDelay: UInt64 { Swift.max(1, settings.electionTimeout / 4) }
    /// The role this node announces in its heartbeats.
    @inlinable public var role: NodeRole { state.role }
    /// The votes needed to win: `max(minQuorumSize, voters.count / 2 + 1)`, a real majority of the
    /// voters this node knows, and never below the configured floor.
    public var quorumSize: Int { Swift.max(settings.minQuorumSize, voters.count / 2 + 1) }

    /// What this node, as primary, tells other nodes of its configuration (nil: not primary).
    public var configurationMessage: ConfigurationMessage? {
        guard state == .leader else { return nil }
        return ConfigurationMessage(from: id, term: term, configuration: configuration, committed: configurationCommitted)
    }

    /// The latest time at which the driver must deliver the next ``ElectionEvent/tick``; nil when no
    /// timer runs (a follower without `autoFailover` that knows no leader; a candidate waiting for
    /// its self-vote or its new epoch to be durable: the write's report moves it on). Kept up to
    /// date by every step: the driver reads it after each one, and a stored property is read in
    /// place, where a computed one would copy the whole core to call its getter.
    public private(set) var nextDeadline: CoreInstant?

    private func computeNextDeadline() -> CoreInstant? {
        let timer: CoreInstant?
        switch state {
        case .leader:
            timer = configResendAt.map { Swift.min($0, checkQuorumDeadline) } ?? checkQuorumDeadline
        case .candidate:
            timer = campaign?.requestsSent == true ? campaign?.deadline : nil
        case .follower:
            if let campaign {
                timer = campaign.deadline
            } else if settings.autoFailover || leaderID != nil {
                timer = electionDeadline
            } else {
                timer = nil
            }
        }
        var deadline = timer
        if let transfer {  // a transfer is abandoned on time
            deadline = deadline.map { Swift.min($0, transfer.deadline) } ?? transfer.deadline
        }
        guard lastWriteFailed, writing == nil else { return deadline }
        return deadline.map { Swift.min($0, retryWriteAt) } ?? retryWriteAt  // the retry of a failed write
    }

    /// The heartbeat this node sends now (to any voter): its id, term, epoch, LSN and role. The
    /// driver keeps the sequence numbers.
    public func heartbeat(seq: UInt64, ackSeq: UInt64 = 0, probe: Bool = false) -> HeartbeatMessage {
        HeartbeatMessage(
            from: id, seq: seq, epoch: epoch, term: term, lsn: localLSN, role: role, ackSeq: ackSeq, probe: probe)
    }

    // MARK: Private state

    /// `voters`, sorted: every message to all voters goes out in this order, so runs replay.
    private var voterList: [String]
    private var rng: SplitMix64
    /// This node's current randomised election timeout, drawn at every state change.
    private var randomizedElectionTimeout: UInt64
    /// When a follower's election timer fires.
    private var electionDeadline: CoreInstant
    /// When a leader next checks that it still hears a quorum.
    private var checkQuorumDeadline: CoreInstant
    private var campaign: Campaign?
    /// Failed attempts in a row (PreVote rounds and candidacies) with no leader heard in between.
    private var consecutiveFailures = 0
    /// What this node knows of the other voters: when each was last heard from (any message),
    /// what its last heartbeat reported, its priority.
    private var peers: [String: PeerView] = [:]
    /// When the current leader was last heard from (meaningful while `leaderID` is a peer).
    private var lastLeaderContact: CoreInstant = .zero
    /// The link to the current leader ended (``ElectionEvent/peerUnreachable(_:)``) and the leader
    /// has not been heard since: the lease no longer holds (see `linkLost`).
    private var leaderLinkLost = false
    /// The election timer was brought forward by crash evidence (`linkLost`) and has not fired.
    private var evidenceTimer = false
    /// The first node seen claiming primary in the current term (itself when it won).
    private var termPrimary: String?
    private var reportedDualPrimaries: Set<DualPrimaryReport> = []
    /// `durable` changed since the last `.persist` (or must be written again after a failure).
    private var durableDirty = false
    /// The state of the `.persist` whose outcome is not yet reported (at most one).
    private var writing: DurableElectionState?
    /// After a failed write: no retry before this time.
    private var retryWriteAt: CoreInstant = .zero
    /// A vote granted but not yet durable: its response goes out when it is.
    private var withheldGrant: WithheldGrant?
    /// The candidate of a vote granted but not yet durable: its response goes out once the write
    /// in flight is reported (a refusal if it failed), or never if the term moves on first.
    public var withheldVoteCandidate: String? { withheldGrant?.candidate }
    /// The epoch of an election this candidate won, while that epoch is not yet durable.
    package private(set) var pendingLeaderEpoch: UInt64?
    /// As primary: when the configuration next goes again to the nodes that have not acknowledged
    /// it (nil: all have, or it waits for its own write).
    private var configResendAt: CoreInstant?
    /// As primary: who is told of the configuration (its voters, and the voters the change removed).
    private var configRecipients: [String] = []
    /// The primary to acknowledge the configuration to once it is durable.
    private var configAckTo: String?
    /// The leader this node follows leads a term behind this node's own (it follows as a member
    /// that does not vote): forgotten if this node becomes a voter.
    private var followsBehind = false
    /// No pull of a newer configuration from this node's voters before this time.
    private var nextConfigurationPull: CoreInstant = .zero

    /// A core starting as a follower, from the durable state of its last run (or a fresh one).
    ///
    /// - Parameters:
    ///   - voters: the first configuration's voters, used only when `durable` holds no
    ///     configuration (`id` is added if missing); empty: none (the node is no voter until it
    ///     is bootstrapped or told a configuration).
    ///   - seed: seeds the core's own random generator (election timeouts).
    ///   - now: the current time; the election timer starts here.
    public init(
        id: String, settings: Settings, durable: DurableElectionState, voters: [String], seed: UInt64,
        now: CoreInstant
    ) {
        var settings = settings
        settings.electionTimeout = Swift.max(1, settings.electionTimeout)
        self.id = id
        self.settings = settings
        var durable = durable
        if durable.configuration.isNone, !voters.isEmpty {
            // A bootstrap configuration from the driver: not written until the next write (a
            // restart with the same arguments makes it again), so it counts as stored.
            durable.configuration = .bootstrap(voters + [id])
        }
        self.durable = durable
        self.persisted = durable
        let voterSet = Set(durable.configuration.voters)
        self.voters = voterSet
        self.isVoter = voterSet.contains(id)
        self.configurationCommitted = !durable.configuration.isNone && durable.configuration.term == 0
        self.voterList = voterSet.sorted()
        self.rng = SplitMix64(seed: seed)
        self.randomizedElectionTimeout = settings.electionTimeout
        self.electionDeadline = now
        self.checkQuorumDeadline = now
        resetElectionTimer(now: now)
        nextDeadline = computeNextDeadline()
        for voter in voterSet where voter != id { peers[voter, default: PeerView()].isVoter = true }
    }

    // MARK: The one door

    /// Feeds one event into the core, at time `now`, and returns what the driver must do, in order.
    ///
    /// Terms (Raft §5.1): a node MUST adopt any higher term it sees in any message (PreVote
    /// requests and responses excepted: they change no state; and a TimeoutNow, which acts only
    /// in the receiver's own term) and become follower; a message of a lower term is stale.
    ///
    /// Voting (Raft §5.2, §5.4.1): in one term a node MUST grant at most one vote (durably: the
    /// response is withheld until the state holding the vote is reported written). It grants a
    /// candidate only if the candidate's `lastLSN` is not below its `localLSN` (the seed's election
    /// restriction) AND the candidate's epoch is not below its own. Why the epoch: a candidate that has not seen the latest primary
    /// change (lower epoch) may hold an LSN of a superseded history, where a high LSN means nothing;
    /// refusing it keeps the fencing token monotonic. To make that hold across elections, a voter
    /// that grants a vote durably raises its epoch to `candidate epoch + 1`, the epoch the candidate
    /// makes if it wins: any later winner must then get the vote of some voter of this one (the
    /// quorums intersect), so it must know that epoch and makes a higher one. The response carries
    /// the voter's epoch before the grant. A repeated grant of the term's vote to the same
    /// candidate needs a candidate epoch of at least the voter's epoch - 1 (see `grantEpochFloor`).
    ///
    /// Disruptive servers (thesis §4.2.3, §9.6): a node that has heard from a live primary within
    /// `electionTimeout` (or is the primary) neither grants a vote (or PreVote) to any candidate
    /// nor adopts the term of its request (a retry of a vote already given excepted), so neither a
    /// removed member nor a stranger nor a forced election deposes a healthy primary through votes. A vote request that
    /// arrives from the network (``ElectionEvent/receive(from:_:)``) is granted only to a known
    /// voter, whose id is the `from` the transport vouches for. ``ElectionEvent/vouchedVoteRequest(_:)``
    /// (the application vouches for the candidate) keeps the seed's rules: any candidate, lease or not.
    ///
    /// Range (see ``maxTermJump``): a message whose term or epoch is at or above
    /// ``maxAcceptedTerm``, or more than ``maxTermJump`` ahead of this node's, is dropped, and a
    /// vote request whose epoch is more than this node's epoch + 1 is refused: nothing of either
    /// is adopted or saved. A heartbeat or vote response from a node that is not a voter here is
    /// dropped; a vote request from one is refused.
    ///
    /// While its last write failed, a node refuses every vote and PreVote (``notDurableReason``).
    ///
    /// Leadership transfer (Raft thesis §3.10, as etcd-io/raft does it): a leader asked by
    /// ``ElectionEvent/transferLeadership(to:)`` picks its target (named, or the voter heard within
    /// T with the highest reported LSN, then priority, then the smallest id), and waits until a
    /// heartbeat of the target, in the leader's term, reports an LSN at least the leader's
    /// ``localLSN`` (the application replicates meanwhile); it then sends the target a
    /// ``TimeoutNowMessage``, and again at each such heartbeat while it still leads (etcd resends
    /// on every up-to-date append response: a lost TimeoutNow costs a heartbeat interval, a
    /// duplicate is ignored by a target that already stood). A target that gets a TimeoutNow from
    /// the leader it follows, in its own term, stands at once: no PreVote (the leader vouches that
    /// the cluster is healthy), term + 1, its vote requests marked `transfer`, even without
    /// `autoFailover` (the application asked), but not while its last write failed. A voter exempts
    /// such a request from the disruptive-server rule only (etcd's `force`), and only when its term
    /// is exactly the voter's term + 1 (a transfer candidate comes from the voter's own term) and,
    /// on a leader, only for the target it told to stand (a leader knows its own transfer); the
    /// range, known-voter, one-vote-per-term, LSN, epoch and durability rules all still hold. The
    /// old leader grants the target's request like any voter and steps down on its term. A
    /// transfer ends with ``ElectionDirective/transferEnded(target:succeeded:reason:)``: success
    /// when this node hears the target lead a later term; failure when another node does, when the
    /// node stops leading before any TimeoutNow went out, when the target leaves the voter set,
    /// or one election timeout after the request (etcd's abort after an election timeout): a
    /// leader that still leads then simply goes on. A node that stopped leading after its target
    /// was told to stand (it voted for it, most likely) instead waits one election timeout from
    /// then to hear who won (``Transfer/deadline``). A TimeoutNow delivered after an abandonment
    /// may still make the target stand: a later, ordinary change of leader.
    ///
    /// Who may set `transfer`: like etcd-io/raft and hashicorp/raft, this core honours the flag
    /// from any known voter (through ``ElectionEvent/receive(from:_:)``, whose `from` the transport
    /// vouches for; strangers and removed members are refused before the lease is looked at). A
    /// voter cannot check that the candidate really got a TimeoutNow, so a hostile member can use
    /// the flag to force an election on a healthy primary. That gives it no power it lacks: any
    /// voter's heartbeat of a higher term deposes a leader already (Raft §5.1, the term rule),
    /// which the lease does not guard. The lease guards against honest members that stand
    /// needlessly (a node back from a partition, a forced election), and those never set the
    /// flag. A driver whose transport does not vouch for the sender (a JSON line claiming a
    /// member's id) must clear `transfer` before stepping the request (the node runtime does).
    ///
    /// Heartbeats are the hot path: a heartbeat that changes nothing allocates nothing and does
    /// only dictionary updates.
    public mutating func step(_ event: ElectionEvent, now: CoreInstant) -> [ElectionDirective] {
        var directives: [ElectionDirective] = []
        switch event {
        case .tick:
            if let transfer, now >= transfer.deadline {
                endTransfer(succeeded: false, reason: Self.transferTimedOutReason, &directives)  // etcd's abortLeaderTransfer
            }
            switch state {
            case .leader: tickCheckQuorum(now: now, &directives)
            case .candidate, .follower: tickElection(now: now, &directives)
            }
        case .receive(_, let message) where !Self.isInRange(message):
            break  // out of range: dropped, see `maxAcceptedTerm`
        case .receive(let from, .heartbeat(let heartbeat)) where !disabledRules.contains(.knownVoters):
            // The hot path, every heartbeat: `admitsSender`'s checks and the sender's record in
            // one lookup (a voter has a record that says so).
            guard disabledRules.contains(.senderBinding) || heartbeat.from == from, heartbeat.from != id,
                  let index = peers.index(forKey: heartbeat.from), peers.values[index].isVoter,
                  isWithinReach(term: heartbeat.term, epoch: heartbeat.epoch)
            else { break }
            peers.values[index].heard(at: now, term: heartbeat.term, lsn: heartbeat.lsn)
            stepHeartbeat(heartbeat, recorded: true, now: now, &directives)
        case .receive(let from, let message) where !admitsSender(from, of: message):
            break  // a body naming another sender, or a non-voter's heartbeat or response: dropped
        case .receive(let from, let message):
            switch message {
            case .heartbeat(let heartbeat):
                guard isWithinReach(term: heartbeat.term, epoch: heartbeat.epoch) else { break }
                stepHeartbeat(heartbeat, recorded: false, now: now, &directives)
            case .voteRequest(let request):
                noteHeard(from: from, now: now)
                if request.preVote {
                    stepPreVoteRequest(request, vouched: false, now: now, &directives)
                } else {
                    stepVoteRequest(request, vouched: false, now: now, &directives)
                }
            case .voteResponse(let response):
                guard isWithinReach(term: response.term, epoch: response.epoch) else { break }
                noteHeard(from: from, now: now)
                if response.preVote {
                    stepPreVoteResponse(response, now: now, &directives)
                } else {
                    stepVoteResponse(response, now: now, &directives)
                }
            case .timeoutNow(let timeoutNow):
                guard isWithinReach(term: timeoutNow.term, epoch: epoch) else { break }
                noteHeard(from: from, now: now)
                stepTimeoutNow(timeoutNow, now: now, &directives)
            case .configuration(let message):
                guard isWithinReach(term: message.term, epoch: epoch) else { break }
                noteHeard(from: from, now: now)
                stepConfiguration(message, now: now, &directives)
            case .configurationAck(let ack):
                guard isWithinReach(term: ack.term, epoch: epoch) else { break }
                noteHeard(from: from, now: now)
                stepConfigurationAck(ack, now: now, &directives)
            }
        case .vouchedVoteRequest(let request):
            if request.preVote {
                stepPreVoteRequest(request, vouched: true, now: now, &directives)
            } else {
                stepVoteRequest(request, vouched: true, now: now, &directives)
            }
        case .startElection:
            becomeCandidate(now: now, &directives)
        case .stepDown(let newTerm):
            // Never saves a term it could not stand in: at most `maxTermJump` ahead.
            stepDown(term: Swift.min(newTerm, Self.maxAcceptedTerm - 1, term + Self.maxTermJump), now: now, &directives)
        case .setLocalLSN(let lsn):
            localLSN = lsn
        case .transferLeadership(let requested):
            startTransfer(to: requested, now: now, &directives)
        case .setVoterPriority(let voter, let priority):
            peers[voter, default: PeerView()].priority = priority
        case .addVoter(let voter):
            addVoter(voter)
        case .removeVoter(let voter):
            removeVoter(voter, now: now, &directives)
        case .bootstrap(let initial):
            guard configuration.isNone, !initial.isEmpty else { break }
            applyConfiguration(.bootstrap(initial), now: now, &directives)
            configurationCommitted = true
            durableDirty = true
            directives.append(.configurationChanged(configuration, committed: true))
        case .changeVoters(let change):
            startVoterChange(change, now: now, &directives)
        case .peerUnreachable(let peer):
            linkLost(to: peer, now: now)
        case .persisted(let state):
            guard let writing, writing == state else { break }  // not the write in flight: ignored
            self.writing = nil
            persisted = state
            lastWriteFailed = false
            releaseWithheld(now: now, &directives)
        case .persistFailed(let state):
            guard let writing, writing == state else { break }
            self.writing = nil
            writeFailed(now: now, &directives)
        }
        persistIfNeeded(now: now, &directives)
        nextDeadline = computeNextDeadline()
        return directives
    }

    // MARK: Ticks

    /// Follower and candidate timers: the election timer, and the campaign timer of a PreVote
    /// round or candidacy.
    private mutating func tickElection(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        if let campaign {
            // A candidacy whose self-vote is not yet durable waits for the write's report.
            if campaign.requestsSent, now >= campaign.deadline { failCampaign(now: now, &directives) }
            return
        }
        guard state == .follower, now >= electionDeadline else { return }
        let onEvidence = evidenceTimer
        evidenceTimer = false
        if leaderID != nil {
            // The leader is lost: forget it, so that PreVotes from others can succeed.
            setLeader(nil, &directives)
        }
        if lastWriteFailed || !isVoter {
            resetElectionTimer(now: now)  // it does not stand on a state it cannot write, nor when it has no vote
        } else if onEvidence, disabledRules.contains(.preVoteOnCrashEvidence) {
            becomeCandidate(now: now, &directives)  // a test's broken core: no PreVote round
        } else if settings.autoFailover {
            becomePreCandidate(now: now, &directives)
        }
    }

    /// CheckQuorum (thesis §6.2): a leader that has not heard from a quorum of voters (itself
    /// counted) within `electionTimeout` MUST step down, so that a leader cut off from the
    /// majority stops acting as primary, and the PreVote lease on the majority side runs out.
    private mutating func tickCheckQuorum(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        if let resend = configResendAt, now >= resend { resendConfiguration(now: now, &directives) }
        guard now >= checkQuorumDeadline else { return }
        var heard = 1  // itself
        var earliestExpiry: CoreInstant?
        for voter in voterList where voter != id {
            guard let at = peers[voter]?.heardAt else { continue }
            let expiry = at + settings.electionTimeout
            if now < expiry {
                heard += 1
                earliestExpiry = Swift.min(earliestExpiry ?? expiry, expiry)
            }
        }
        if heard >= quorumSize {
            // Check again when the first of the voters heard stops counting (or later, if heard again).
            checkQuorumDeadline = earliestExpiry ?? now + settings.electionTimeout
        } else {
            becomeFollower(now: now, leader: nil, &directives)
        }
    }

    // MARK: Crash evidence

    /// The width of one rank of the crash-evidence delay: a quarter of the election timeout.
    /// A follower whose link to its leader ends stands after
    /// `(behind + r) · evidenceSlot / max(1, priority)`, r uniform in [0, 1) (see `linkLost`).
    package var evidenceSlot: UInt64 { Swift.max(1, settings.electionTimeout / 4) }

    /// ``ElectionEvent/peerUnreachable(_:)``: the transport's link to `peer` ended. When a process
    /// dies its kernel closes its sockets, so every follower's link to a crashed leader ends at
    /// once: evidence, not proof (a link also ends when only it broke, or when the runtime's sweep
    /// closes one silent for an election timeout). A follower whose link to its current leader
    /// ends therefore:
    /// - (a) stops counting that leader as heard for the lease (`hasLiveLeader`): it grants
    ///   PreVotes and votes from others, as it would an election timeout after the last
    ///   heartbeat; the leader's next heartbeat (over a new link) restores the lease;
    /// - (b) with `autoFailover`, brings its election timer forward to
    ///   `now + (behind + r) · evidenceSlot / max(1, priority)`, r uniform in [0, 1), `behind` the
    ///   number of other voters heard within T whose heartbeats reported a higher LSN than this
    ///   node's: the most up-to-date, highest-priority follower usually stands first (the others
    ///   would refuse a less up-to-date one anyway). When the timer fires it forgets the leader and
    ///   starts a PreVote round, exactly as on an election timeout. A follower that grants a
    ///   PreVote while such a timer runs waits at least a vote request timeout from then (another
    ///   follower stood first on the same evidence; two candidacies at once would split the vote).
    ///
    /// Ignored by a leader (CheckQuorum judges its followers by silence), a candidate, a follower
    /// for any peer but its leader, and a follower whose evidence timer already runs.
    ///
    /// Why safety is unchanged: the event touches no term, vote or epoch and persists nothing; it
    /// only moves a timer and ends one node's lease. Raft's safety (one leader per term, Raft
    /// §5.2) never depended on timing: the election still goes through a PreVote round that needs
    /// a real majority (``quorumSize``) of grants, a candidacy that raises the term only after
    /// that round is won (or by the operator's `startElection`, or a leader's TimeoutNow, as
    /// before), one durable vote per term, and persist before send. The lease itself is a
    /// liveness guard against disruptive servers (thesis §4.2.3), not a safety rule; etcd-io/raft
    /// likewise grants votes as soon as a follower no longer counts its leader as live (its
    /// `inLease` test) and uses the transport's unreachability reports (`MsgUnreachable`) only on
    /// the leader. What the lease protects still holds: a link that broke only between two live
    /// nodes ends the lease of the one follower at its end; the primary's other followers still
    /// hear it and refuse PreVotes (and votes) by their leases, so while the nodes holding a lease
    /// on the primary (it included) are a majority, no PreVote round against it can win, nobody's
    /// term moves (thesis §9.6), and it stays primary. The follower's failed round counts as a
    /// failed attempt (the back-off), and the leader's next heartbeat ends it.
    private mutating func linkLost(to peer: String, now: CoreInstant) {
        let aboutLeader = peer == leaderID || disabledRules.contains(.evidenceFromLeaderLinkOnly)
        guard state == .follower, peer != id, leaderID != nil, aboutLeader, !leaderLinkLost else { return }
        leaderLinkLost = true
        guard settings.autoFailover, campaign == nil, !lastWriteFailed else { return }
        let deadline = now + evidenceDelay(now: now)
        if deadline < electionDeadline {
            electionDeadline = deadline
            evidenceTimer = true
        }
    }

    /// `(behind + r) · evidenceSlot / max(1, priority)`: see `linkLost`.
    private mutating func evidenceDelay(now: CoreInstant) -> UInt64 {
        var behind: UInt64 = 0
        for voter in voterList where voter != id && voter != leaderID {
            guard let peer = peers[voter], let heard = peer.heardAt, now < heard + settings.electionTimeout,
                  peer.reportedLSN > localLSN
            else { continue }
            behind += 1
        }
        let slot = evidenceSlot
        return (behind * slot + rng.next(upperBound: slot)) / UInt64(Swift.max(1, settings.priority))
    }

    // MARK: Messages

    /// `recorded`: the sender's record (`peers`) already notes the heartbeat.
    private mutating func stepHeartbeat(
        _ heartbeat: HeartbeatMessage, recorded: Bool, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        guard heartbeat.from != id else { return }
        // Not recorded yet only with the known-voters rule switched off (a test's): a voter's
        // heartbeat is still recorded then, a stranger's is not.
        if !recorded, voters.contains(heartbeat.from) {
            peers[heartbeat.from, default: PeerView()].heard(at: now, term: heartbeat.term, lsn: heartbeat.lsn)
        }
        if heartbeat.term > term {
            adoptTerm(heartbeat.term, now: now, &directives)
        }
        if heartbeat.epoch > epoch {
            adoptEpoch(heartbeat.epoch)
        }
        if heartbeat.role == .primary, heartbeat.epoch > fencingEpoch {
            raiseFencingEpoch(heartbeat.epoch, &directives)  // a newer primary than any known
        }
        if heartbeat.term < term, !isVoter, heartbeat.role == .primary, settings.replicatesConfiguration {
            // A member that does not vote follows the primary it hears even behind its own term
            // (a term it reached while it voted, or standing alone): its term never goes down, it
            // has no vote to protect, and the voters never take a non-voter's term.
            setLeader(heartbeat.from, &directives)
            followsBehind = true
            lastLeaderContact = now
            electionDeadline = now + randomizedElectionTimeout
            return
        }
        guard heartbeat.term == term else { return }  // stale sender: it adopts our term from our heartbeats
        if let transfer, heartbeat.from == transfer.target {
            sendTimeoutNowIfCaughtUp(&directives)  // the target may have caught up
        }
        if heartbeat.role == .primary {
            acceptPrimary(heartbeat.from, now: now, &directives)
        } else if heartbeat.from == leaderID {
            // Our leader stepped down (StepDown or CheckQuorum) in this term: it is no longer live.
            setLeader(nil, &directives)
        }
    }

    /// A heartbeat of the current term from a node claiming primary.
    private mutating func acceptPrimary(
        _ primary: String, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        if let known = termPrimary, known != primary {
            reportDualPrimary(known, primary, &directives)
            return
        }
        termPrimary = primary
        if let transfer, term > transfer.term {
            // A later term's leader: the transfer worked if it is the target.
            let succeeded = primary == transfer.target
            endTransfer(succeeded: succeeded, reason: succeeded ? nil : Self.transferOtherLeaderReason, &directives)
        }
        if state == .candidate {
            becomeFollower(now: now, leader: primary, &directives)  // Raft §5.2: a candidate yields
        }
        campaign = nil
        setLeader(primary, &directives)
        lastLeaderContact = now
        leaderLinkLost = false  // heard again: the link is back
        evidenceTimer = false
        consecutiveFailures = 0
        electionDeadline = now + randomizedElectionTimeout
    }

    /// A real vote request (Raft §5.2, §5.4.1; see "Voting" and "Disruptive servers" on
    /// ``step(_:now:)``). `vouched`: it came through ``ElectionEvent/vouchedVoteRequest(_:)``.
    private mutating func stepVoteRequest(
        _ request: VoteRequest, vouched: Bool, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        let candidate = request.candidateID
        guard candidate != id else { return }
        // Refusals that adopt nothing: the request's term is not this node's business.
        if let reason = disruptionRefusal(request, vouched: vouched, now: now) {
            let refusal = VoteResponse(voterID: id, term: term, voteGranted: false, reason: reason, epoch: epoch)
            send(to: candidate, .voteResponse(refusal), &directives)
            return
        }
        if request.term > term {
            adoptTerm(request.term, now: now, &directives)
        }
        let reason: String
        if request.term < term {
            reason = ClusterError.staleTerm.description
        } else if lastWriteFailed {
            reason = Self.notDurableReason
        } else if let votedFor, votedFor != candidate {
            reason = ClusterError.alreadyVoted.description
        } else if request.lastLSN < localLSN {
            reason = ClusterError.staleLSN.description
        } else if !vouched, request.configuration < configuration.id, !disabledRules.contains(.configurationRule) {
            reason = Self.staleConfigurationReason
        } else if request.epoch < grantEpochFloor(votedFor: votedFor), !disabledRules.contains(.epochRule) {
            reason = Self.staleEpochReason
        } else {
            reason = ""
        }
        guard reason.isEmpty else {
            let refusal = VoteResponse(voterID: id, term: term, voteGranted: false, reason: reason, epoch: epoch)
            send(to: candidate, .voteResponse(refusal), &directives)
            return
        }
        let epochBeforeGrant = Swift.min(epoch, request.epoch)
        if votedFor == nil {
            durable.votedFor = candidate
            durableDirty = true
        }
        if request.epoch >= epoch, !disabledRules.contains(.epochRule) {
            durable.epoch = request.epoch + 1  // the epoch this candidate makes if it wins
            durableDirty = true
        }
        campaign = nil  // we back this candidate: drop our own PreVote round
        electionDeadline = now + randomizedElectionTimeout
        evidenceTimer = false
        let grant = VoteResponse(
            voterID: id, term: term, voteGranted: true, epoch: epochBeforeGrant, configuration: configuration.id)
        // The response waits until the vote and the promised epoch are durable (a repeated grant
        // of a vote already written goes out at once).
        let promised = disabledRules.contains(.epochRule) ? 0 : request.epoch + 1  // a core without the rule promises nothing
        withheldGrant = WithheldGrant(candidate: candidate, response: grant, promisedEpoch: promised)
        releaseWithheld(now: now, &directives)
    }

    /// The lowest candidate epoch a vote request may carry: this node's epoch for a first grant in
    /// the term; for a repeated grant (`votedFor` is the candidate) one less, since the first grant
    /// raised the epoch to its request's epoch + 1. The repeat must still make, if it wins, at
    /// least every epoch this node holds: its request may differ from the first (a hostile member
    /// may have asked first in its name, with a higher epoch), and a repeat that skipped the rule
    /// let a candidate win with an epoch a leader had already held (issue 16, seed 3940).
    private func grantEpochFloor(votedFor: String?) -> UInt64 {
        guard votedFor != nil else { return epoch }
        return epoch > 0 ? epoch - 1 : 0
    }

    /// A PreVote request (thesis §9.6): "would you vote for me at `request.term`?" Changes no state.
    /// Granted iff the request's term is above ours (or equal, with no vote given to another), no
    /// live primary has been heard within `electionTimeout`, and the LSN and epoch rules hold
    /// (and, from the network, the candidate is a known voter; see ``stepVoteRequest``).
    private mutating func stepPreVoteRequest(
        _ request: VoteRequest, vouched: Bool, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        let candidate = request.candidateID
        guard candidate != id else { return }
        let reason: String
        if !isWithinReach(term: request.term, epoch: request.epoch, candidateEpoch: true) {
            reason = Self.outOfRangeReason
        } else if !vouched, !isVoter, !disabledRules.contains(.knownVoters) {
            reason = Self.notVoterReason
        } else if !vouched, !isKnownVoter(candidate) {
            reason = Self.unknownCandidateReason
        } else if request.term < term {
            reason = ClusterError.staleTerm.description
        } else if lastWriteFailed {
            reason = Self.notDurableReason
        } else if request.term == term, let votedFor, votedFor != candidate {
            reason = ClusterError.alreadyVoted.description
        } else if hasLiveLeader(now: now) {
            reason = Self.liveLeaderReason
        } else if request.lastLSN < localLSN {
            reason = ClusterError.staleLSN.description
        } else if !vouched, request.configuration < configuration.id, !disabledRules.contains(.configurationRule) {
            reason = Self.staleConfigurationReason
        } else if request.epoch < epoch, !disabledRules.contains(.epochRule) {
            reason = Self.staleEpochReason
        } else {
            reason = ""
        }
        let response = VoteResponse(
            voterID: id, term: request.term, voteGranted: reason.isEmpty, reason: reason, preVote: true,
            epoch: epoch, configuration: configuration.id)
        send(to: candidate, .voteResponse(response), &directives)
        if reason.isEmpty, evidenceTimer, campaign == nil {
            // Another follower stood first on the same evidence, and this node would vote for it:
            // give it one campaign's time before standing too, so that the two do not split the vote.
            electionDeadline = Swift.max(electionDeadline, now + settings.voteRequestTimeout)
        }
        if reason.isEmpty, !vouched, let own = campaign, own.kind == .preVote, own.term == request.term,
           (request.priority, id) > (settings.priority, candidate)
        {
            // Two PreVote rounds for one term at once, each granting the other: both would stand
            // and split the vote (with two voters, every time). The one of lower priority (then the
            // larger id) yields, and waits a fresh election timeout; the other stands.
            campaign = nil
            resetElectionTimer(now: now)
        }
    }

    private mutating func stepVoteResponse(
        _ response: VoteResponse, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        if response.term > term {
            adoptTerm(response.term, now: now, &directives)
        }
        if response.epoch > epoch {
            adoptEpoch(response.epoch)
        }
        guard response.voteGranted, response.term == term, state == .candidate,
              campaign?.kind == .vote, campaign?.requestsSent == true, response.voterID != id
        else { return }
        // A vote from a non-voter is not counted (and the voter is not added): see `tallyCampaign`.
        // Nor one from a voter whose configuration is newer than this node's: an honest voter
        // refuses this node's own request, so the grant answered one forged in its name.
        guard !grantAnsweredAnotherRequest(response) else { return }
        campaign?.grants[response.voterID] = response.epoch
        tallyCampaign(now: now, &directives)
    }

    private mutating func stepPreVoteResponse(
        _ response: VoteResponse, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        guard response.voteGranted, state == .follower, let campaign, campaign.kind == .preVote,
              response.term == campaign.term, response.voterID != id
        else { return }
        guard !grantAnsweredAnotherRequest(response) else { return }
        self.campaign?.grants[response.voterID] = response.epoch
        tallyCampaign(now: now, &directives)
    }

    /// A grant from a voter whose configuration is newer than this node's: not an answer to this
    /// node's own request (which carried its configuration, and which that voter refuses).
    private func grantAnsweredAnotherRequest(_ response: VoteResponse) -> Bool {
        settings.replicatesConfiguration && !disabledRules.contains(.configurationRule)
            && response.configuration > configuration.id
    }

    // MARK: Transitions

    /// Becomes (or stays) follower in the current term, with a fresh randomised election timer.
    private mutating func becomeFollower(
        now: CoreInstant, leader: String?, _ directives: inout [ElectionDirective]
    ) {
        let previous = state
        state = .follower
        campaign = nil
        pendingLeaderEpoch = nil
        if previous == .leader {
            configResendAt = nil
            if let change = voterChange {
                voterChange = nil
                directives.append(.voterChangeEnded(change, succeeded: false, reason: Self.changeLostLeadershipReason))
            }
        }
        if previous == .leader, let transfer {
            if !transfer.timeoutNowSent {
                // Nobody was told to stand: nothing can complete it (etcd aborts it on any step-down).
                endTransfer(succeeded: false, reason: Self.transferLostLeadershipReason, &directives)
            } else {
                // Most likely it voted for its target: it waits an election timeout to hear the winner.
                self.transfer?.deadline = Swift.max(transfer.deadline, now + settings.electionTimeout)
            }
        }
        resetElectionTimer(now: now)
        if previous != .follower {
            directives.append(.stateChanged(.follower, term: term, leader: leader))
        }
        setLeader(leader, &directives)
    }

    /// Starts a PreVote round (thesis §9.6) for term + 1, without changing term or vote: the node
    /// stays a follower (and announces itself as a replica), so a node cut off from the cluster
    /// cannot inflate its term and depose a healthy leader when it comes back.
    private mutating func becomePreCandidate(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        let preTerm = term + 1
        campaign = Campaign(
            kind: .preVote, term: preTerm, epoch: epoch, deadline: now + settings.voteRequestTimeout,
            grants: [id: epoch])
        let request = VoteRequest(
            candidateID: id, term: preTerm, lastLSN: localLSN, epoch: epoch, priority: settings.priority,
            preVote: true, configuration: configuration.id)
        for voter in voterList where voter != id {
            send(to: voter, .voteRequest(request), &directives)
        }
        tallyCampaign(now: now, &directives)
    }

    /// Starts a candidacy (Raft §5.2): term + 1, vote for itself, persist; once that is durable,
    /// ask every voter (see `releaseWithheld`). Reached from a successful PreVote round, or at once
    /// by ``ElectionEvent/startElection``. A node whose last write failed does not stand.
    private mutating func becomeCandidate(
        now: CoreInstant, transfer: Bool = false, _ directives: inout [ElectionDirective]
    ) {
        guard !lastWriteFailed, isVoter else {
            campaign = nil
            return
        }
        durable.term += 1
        durable.votedFor = id
        durableDirty = true
        termPrimary = nil
        reportedDualPrimaries.removeAll()
        withheldGrant = nil  // a vote of an older term
        pendingLeaderEpoch = nil
        state = .candidate
        campaign = Campaign(
            kind: .vote, term: term, epoch: epoch, deadline: now + settings.voteRequestTimeout,
            grants: [id: epoch], requestsSent: false, transfer: transfer)
        directives.append(.stateChanged(.candidate, term: term, leader: nil))
        setLeader(nil, &directives)
    }

    /// Wins the term: makes a new epoch, `max(own epoch, every granting voter's epoch) + 1`, and
    /// persists it. The node becomes leader only once that epoch is durable (`assumeLeadership`):
    /// the fencing token is durable before anyone hears of it.
    private mutating func becomeLeader(
        now: CoreInstant, grantEpoch: UInt64, _ directives: inout [ElectionDirective]
    ) {
        let newEpoch = Swift.max(epoch, grantEpoch) + 1
        durable.epoch = newEpoch
        if settings.replicatesConfiguration {
            // The configuration of its own term, written with the epoch (one write): it may change
            // voters only once this one is committed (Raft's rule that a leader first commits an
            // entry of its own term; without it, single-server changes of two terms can form
            // disjoint quorums).
            durable.configuration = configuration.next(voters: configuration.voters, term: term)
            configurationCommitted = false
        }
        durableDirty = true
        campaign = nil
        pendingLeaderEpoch = newEpoch
    }

    /// The won election's epoch is durable: leader, with that epoch as fencing token, announced
    /// at once.
    private mutating func assumeLeadership(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        pendingLeaderEpoch = nil
        state = .leader
        if transfer != nil {  // this node won a later term than its transfer's: not the target
            endTransfer(succeeded: false, reason: Self.transferOtherLeaderReason, &directives)
        }
        consecutiveFailures = 0
        termPrimary = id
        checkQuorumDeadline = now + settings.electionTimeout
        raiseFencingEpoch(epoch, &directives)
        directives.append(.stateChanged(.leader, term: term, leader: id))
        setLeader(id, &directives)
        directives.append(.broadcastHeartbeat)
        guard settings.replicatesConfiguration else { return }
        directives.append(.configurationChanged(configuration, committed: false))
        for voter in voterList { peers[voter]?.configAck = nil }
        configRecipients = voterList.filter { $0 != id }
        resendConfiguration(now: now, &directives)
    }

    /// A PreVote round or candidacy ran out of time: back to follower, wait a fresh randomised
    /// timeout (with the back-off after `maxElectionRetries` consecutive failures), try again.
    private mutating func failCampaign(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        consecutiveFailures += 1
        campaign = nil
        if state == .candidate {
            becomeFollower(now: now, leader: nil, &directives)
        } else {
            resetElectionTimer(now: now)
        }
    }

    /// Counts the granted votes of the running campaign; on a quorum, moves on (PreVote round →
    /// candidacy, candidacy → leadership). Only votes of current voters count; a candidacy counts
    /// nothing before its self-vote is durable and its requests are out.
    private mutating func tallyCampaign(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard let campaign, campaign.requestsSent else { return }
        var granted = 0
        var grantEpoch: UInt64 = 0
        for (voter, voterEpoch) in campaign.grants where voters.contains(voter) {
            granted += 1
            grantEpoch = Swift.max(grantEpoch, voterEpoch)
        }
        guard granted >= quorumSize else { return }
        switch campaign.kind {
        case .preVote: becomeCandidate(now: now, &directives)
        case .vote: becomeLeader(now: now, grantEpoch: grantEpoch, &directives)
        }
    }

    /// The seed's StepDown(term). A `term` above the current one is adopted (as from any message):
    /// the node becomes a follower of that term with no vote. Otherwise a leader, or a candidate
    /// that won and waits for its epoch to be durable, steps down to follower in its own term (it
    /// cannot win this term again) and other states are unchanged.
    private mutating func stepDown(term newTerm: UInt64, now: CoreInstant, _ directives: inout [ElectionDirective]) {
        if newTerm > term {
            adoptTerm(newTerm, now: now, &directives)
        } else if state == .leader || pendingLeaderEpoch != nil {
            becomeFollower(now: now, leader: nil, &directives)
        }
    }

    // MARK: Leadership transfer

    /// ``ElectionEvent/transferLeadership(to:)`` (etcd-io/raft's `MsgTransferLeader` on a leader):
    /// refuses at once, or starts the transfer and tells the target to stand if it is caught up.
    /// Unlike etcd, a second request while one is under way is refused rather than replacing it:
    /// the first may already have a target standing.
    private mutating func startTransfer(
        to requested: String?, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        let refusal: String?
        if state != .leader {
            refusal = Self.transferNotLeaderReason
        } else if transfer != nil {
            refusal = Self.transferUnderWayReason
        } else if let requested, requested == id {
            refusal = Self.transferToSelfReason
        } else if let requested, !voters.contains(requested) {
            refusal = Self.transferUnknownTargetReason
        } else {
            refusal = nil
        }
        if let refusal {
            directives.append(.transferEnded(target: requested, succeeded: false, reason: refusal))
            return
        }
        guard let target = requested ?? bestTransferTarget(now: now) else {
            directives.append(.transferEnded(target: nil, succeeded: false, reason: Self.transferNoTargetReason))
            return
        }
        // As etcd resets electionElapsed: the transfer has one election timeout from now.
        transfer = Transfer(
            target: target, term: term, startedAt: now, deadline: now + settings.electionTimeout, timeoutNowSent: false)
        directives.append(.transferStarted(target: target))
        sendTimeoutNowIfCaughtUp(&directives)
    }

    /// The voter heard within an election timeout whose heartbeats reported the highest LSN, then
    /// the highest priority, then the smallest id (nil: none).
    private func bestTransferTarget(now: CoreInstant) -> String? {
        var best: (id: String, lsn: UInt64, priority: Int)?
        for voter in voterList where voter != id {  // sorted: the first of equals is the smallest id
            guard let peer = peers[voter], let heard = peer.heardAt, now < heard + settings.electionTimeout else { continue }
            let lsn = peer.reportedLSN
            let priority = peer.priority
            if let b = best, (lsn, priority) <= (b.lsn, b.priority) { continue }
            best = (voter, lsn, priority)
        }
        return best?.id
    }

    /// Sends the target a TimeoutNow if this node still leads and the target's last heartbeat, of
    /// this term, reported an LSN at least ``localLSN`` (the thesis's "brings it up to date",
    /// etcd's `pr.Match == lastIndex`): the target then wins the voters this leader would.
    private mutating func sendTimeoutNowIfCaughtUp(_ directives: inout [ElectionDirective]) {
        guard state == .leader, let target = transfer?.target, let peer = peers[target],
              peer.reportedTerm == term, peer.reportedLSN >= localLSN
        else { return }
        transfer?.timeoutNowSent = true
        send(to: target, .timeoutNow(TimeoutNowMessage(from: id, term: term)), &directives)
    }

    /// Reports the end of the transfer under way and forgets it.
    private mutating func endTransfer(succeeded: Bool, reason: String?, _ directives: inout [ElectionDirective]) {
        guard let transfer else { return }
        self.transfer = nil
        directives.append(.transferEnded(target: transfer.target, succeeded: succeeded, reason: reason))
    }

    /// A TimeoutNow (etcd-io/raft's `MsgTimeoutNow`, stepped by a follower: `hup(campaignTransfer)`)
    /// makes this node stand only if it comes from the leader this node follows, in this node's
    /// term; otherwise it changes nothing. Unlike etcd, its term is not adopted when higher: a
    /// node that adopted it would know no leader in that term and ignore the message anyway, and
    /// heartbeats carry terms already, so it would only give a peer one more way to move terms.
    /// A leader, a candidate, and a node whose last write failed ignore it.
    private mutating func stepTimeoutNow(
        _ message: TimeoutNowMessage, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        guard message.term == term, state == .follower, leaderID == message.from, message.from != id,
              !lastWriteFailed, isVoter
        else { return }
        becomeCandidate(now: now, transfer: true, &directives)  // no PreVote: the leader vouches for the cluster
    }

    // MARK: Voter configuration

    /// Makes `new` the configuration this node holds: its voters become ``voters``. A voter the
    /// change removed is forgotten (its priority stays); a transfer to it ends; a candidate that
    /// lost its vote stands down; after a removal a running campaign is recounted.
    private mutating func applyConfiguration(
        _ new: VoterConfiguration, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        let removed = voters.subtracting(new.voters)
        let wasVoter = isVoter
        durable.configuration = new
        voters = Set(new.voters)
        voterList = new.voters
        isVoter = voters.contains(id)
        for voter in new.voters where voter != id { peers[voter, default: PeerView()].isVoter = true }
        for voter in removed where voter != id {
            peers[voter]?.isVoter = false
            peers[voter]?.heardAt = nil
            peers[voter]?.reportedTerm = nil
        }
        if let target = transfer?.target, !voters.contains(target) {  // as etcd aborts a transfer to a removed voter
            endTransfer(succeeded: false, reason: Self.transferTargetRemovedReason, &directives)
        }
        if !isVoter {
            if state == .candidate { becomeFollower(now: now, leader: leaderID, &directives) }
            campaign = nil
        } else if !wasVoter, followsBehind {
            setLeader(nil, &directives)  // a voter follows a leader of its own term only
        }
        // A removal may lower the quorum: recount. An addition only raises it (and a grant a
        // campaign holds from before a voter left does not count again when it is back).
        if !removed.isEmpty { tallyCampaign(now: now, &directives) }
    }

    /// A driver's own change of the voter set (``ElectionEvent/addVoter(_:)``): the configuration
    /// is edited in place, outside the voters' consent, and written with the next write.
    private mutating func addVoter(_ voter: String) {
        guard !voters.contains(voter) else { return }
        var edited = VoterConfiguration(
            voters: voterList + [voter], version: Swift.max(1, configuration.version), term: configuration.term)
        if configuration.isNone { edited.version = 1 }
        var ignored: [ElectionDirective] = []
        applyConfiguration(edited, now: .zero, &ignored)
    }

    /// A driver's own removal of a voter (never this node): see `addVoter`. The quorum may
    /// shrink, so a running campaign is recounted.
    private mutating func removeVoter(_ voter: String, now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard voter != id, voters.contains(voter) else { return }
        let edited = VoterConfiguration(
            voters: voterList.filter { $0 != voter }, version: configuration.version, term: configuration.term)
        applyConfiguration(edited, now: now, &directives)
    }

    /// ``ElectionEvent/changeVoters(_:)`` on this node: refused at once, or the next
    /// configuration made, written, and then sent to the old and new voters (`releaseWithheld`);
    /// it commits once a majority of its voters acknowledged storing it (`tallyConfiguration`).
    /// One voter at a time, one uncommitted change at a time, and only once this primary's own
    /// configuration (made at its election) is committed.
    private mutating func startVoterChange(
        _ change: VoterChange, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        var newVoters = voters
        var refusal: String?
        if !settings.replicatesConfiguration {
            refusal = "this node's voters are set by its driver"
        } else if state != .leader {
            refusal = Self.changeNotLeaderReason
        } else if !configurationCommitted || voterChange != nil {
            refusal = Self.changeUncommittedReason
        } else if transfer != nil {
            refusal = Self.changeDuringTransferReason
        } else {
            switch change {
            case .add(let node):
                if node.isEmpty || node.utf8.count > 255 {
                    refusal = "not a valid node id: \"\(node)\""
                } else if voters.count >= VoterConfiguration.maxVoters {
                    refusal = "a configuration holds at most \(VoterConfiguration.maxVoters) voters"
                } else if voters.contains(node) {
                    refusal = "\(node) is already a voter"
                } else if peers[node]?.configAck != configuration.id {
                    // It must hold this configuration: a node that holds another (a stale one, or
                    // one a stranger made up) would count votes by it once it votes.
                    refusal = "\(node) has not acknowledged the primary's configuration \(configuration.id) (is it linked? it may hold another: restart it with an empty data directory)"
                }
                newVoters.insert(node)
            case .remove(let node):
                if !voters.contains(node) {
                    refusal = "\(node) is not a voter"
                } else if node == id {
                    refusal = "the primary cannot remove itself: hand leadership over first (cluster transfer)"
                } else if voters.count - 1 < settings.minQuorumSize {
                    refusal = "removing \(node) would leave \(voters.count - 1) voters, fewer than the quorum floor of \(settings.minQuorumSize) (--min-quorum)"
                }
                newVoters.remove(node)
            }
        }
        if let refusal {
            directives.append(.voterChangeEnded(change, succeeded: false, reason: refusal))
            return
        }
        let old = configuration
        applyConfiguration(old.next(voters: newVoters, term: term), now: now, &directives)
        configurationCommitted = false
        durableDirty = true
        voterChange = change
        configRecipients = Set(old.voters).union(newVoters).subtracting([id]).sorted()
        for node in configRecipients { peers[node, default: PeerView()].configAck = nil }
        configResendAt = nil  // it goes out once durable (`releaseWithheld`)
        directives.append(.configurationChanged(configuration, committed: false))
    }

    /// As primary: sends the configuration to every node it goes to that has not acknowledged
    /// it, and again every heartbeat interval until each has (a node that missed a change, was
    /// down, or restarted catches up within an interval of being back).
    private mutating func resendConfiguration(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard state == .leader, persisted.configuration == configuration else {
            configResendAt = nil
            return
        }
        tallyConfiguration(now: now, &directives)
        let message = ConfigurationMessage(from: id, term: term, configuration: configuration, committed: configurationCommitted)
        var waiting = false
        for node in configRecipients where peers[node]?.configAck != configuration.id {
            waiting = true
            send(to: node, .configuration(message), &directives)
        }
        configResendAt = waiting ? now + Swift.max(1, settings.heartbeatInterval) : nil
    }

    /// As primary: the configuration is committed once this node and enough of its voters to make
    /// ``quorumSize`` have stored it; every recipient then hears that it is.
    private mutating func tallyConfiguration(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard state == .leader, !configurationCommitted, persisted.configuration == configuration else { return }
        var stored = isVoter ? 1 : 0
        for voter in voterList where voter != id && peers[voter]?.configAck == configuration.id { stored += 1 }
        guard stored >= quorumSize else { return }
        configurationCommitted = true
        directives.append(.configurationChanged(configuration, committed: true))
        if let change = voterChange {
            voterChange = nil
            directives.append(.voterChangeEnded(change, succeeded: true, reason: nil))
        }
        let message = ConfigurationMessage(from: id, term: term, configuration: configuration, committed: true)
        for node in configRecipients { send(to: node, .configuration(message), &directives) }
    }

    /// A primary's configuration (frame CONFIG): a newer one than this node holds is stored
    /// (Raft's followers take the leader's entries, an uncommitted one of an older term replaced),
    /// and acknowledged once durable; a stale primary's is ignored. Only a voter here sends one
    /// that is taken (a node that holds none takes one from a voter of it: see `admitsSender`).
    private mutating func stepConfiguration(
        _ message: ConfigurationMessage, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        // From the primary, or relayed by any voter of this node's configuration (a node that was
        // away catches up from whichever voter it links to first: see `admitsSender`).
        // A configuration is taken whenever it is newer than this node's, whatever the sender's
        // term: configurations are ordered by the term of the primary that made each, and one
        // newer than a committed one was made from it (a stale relay is older, and not taken).
        guard settings.replicatesConfiguration, message.from != id else { return }
        // Taken from a voter of this node's configuration (a node that holds none takes its first
        // from a voter of the configuration sent). A newer one from another sender (a primary
        // this node does not know as a voter: it missed changes) is not taken: this node asks its
        // own voters for theirs instead, at most once a heartbeat interval, and each voter that
        // holds a newer one relays it (`stepConfigurationAck`), one step closer each time.
        let trusted = voters.contains(message.from)
            || (configuration.isNone && message.configuration.contains(message.from))
        guard trusted else {
            if message.configuration.id > configuration.id, now >= nextConfigurationPull {
                nextConfigurationPull = now + Swift.max(1, settings.heartbeatInterval)
                let pull = ConfigurationAck(from: id, term: term, configuration: configuration.id)
                for voter in voterList where voter != id { send(to: voter, .configurationAck(pull), &directives) }
            }
            return
        }
        let newTerm = Swift.max(message.term, message.configuration.term)
        if newTerm > term, isWithinReach(term: newTerm, epoch: epoch) { adoptTerm(newTerm, now: now, &directives) }
        guard state != .leader || message.configuration.term > term else { return }  // a leader's own term's are its own
        if message.configuration.id > configuration.id, message.configuration.term <= term {
            applyConfiguration(message.configuration, now: now, &directives)
            configurationCommitted = message.committed
            durableDirty = true
            directives.append(.configurationChanged(configuration, committed: message.committed))
        } else if message.configuration.id == configuration.id, message.committed, !configurationCommitted {
            configurationCommitted = true
            directives.append(.configurationChanged(configuration, committed: true))
        }
        if message.term == term { configAckTo = message.from }  // the primary of this term, or a relay
        releaseWithheld(now: now, &directives)
    }

    /// A node acknowledges the configuration it stored: counted toward commit when it is this
    /// primary's current one and the node is one of its voters; a member's tells whether it may
    /// be added.
    private mutating func stepConfigurationAck(
        _ ack: ConfigurationAck, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        if ack.term > term, voters.contains(ack.from) { adoptTerm(ack.term, now: now, &directives) }
        if ack.configuration < configuration.id, !configuration.isNone {
            // The sender holds an older configuration: tell it this one (it takes it if this node
            // is one of its voters; a primary resends to its voters anyway).
            send(to: ack.from, .configuration(ConfigurationMessage(
                from: id, term: term, configuration: configuration, committed: configurationCommitted)), &directives)
        }
        guard state == .leader, ack.term == term else { return }
        if ack.configuration != configuration.id {
            peers[ack.from]?.configAck = nil
            return
        }
        peers[ack.from, default: PeerView()].configAck = ack.configuration
        tallyConfiguration(now: now, &directives)
        if configurationCommitted, configRecipients.allSatisfy({ peers[$0]?.configAck == configuration.id }) {
            configResendAt = nil
        }
    }

    // MARK: Helpers

    /// Adopts a higher term (Raft §5.1): no vote yet, no known leader, follower.
    private mutating func adoptTerm(_ newTerm: UInt64, now: CoreInstant, _ directives: inout [ElectionDirective]) {
        durable.term = newTerm
        durable.votedFor = nil
        durableDirty = true
        withheldGrant = nil  // a vote of an older term: never sent
        termPrimary = nil
        reportedDualPrimaries.removeAll()
        campaign = nil  // a PreVote round for an older term is void
        if state != .follower {
            becomeFollower(now: now, leader: nil, &directives)
        } else {
            setLeader(nil, &directives)
        }
    }

    /// Learns a higher epoch. Only a follower does: a leader keeps the epoch it made (its fencing
    /// token), and a candidate keeps the epoch it asked with, so that if it wins it makes exactly
    /// `requested epoch + 1` (see "Voting" on ``step(_:now:)``); either learns later epochs from
    /// heartbeats once it is a follower again.
    private mutating func adoptEpoch(_ newEpoch: UInt64) {
        guard state == .follower else { return }
        durable.epoch = newEpoch
        durableDirty = true
    }

    private mutating func setLeader(_ leader: String?, _ directives: inout [ElectionDirective]) {
        followsBehind = false
        guard leader != leaderID else { return }
        leaderID = leader
        leaderLinkLost = false  // evidence against the old leader says nothing of a new one
        directives.append(.leaderChanged(leader))
    }

    /// Why a vote request must be refused without adopting its term, if it must (nil: it is
    /// judged by the voting rules). The network door refuses an unknown candidate, and any
    /// candidate (the primary itself too: a forced election on a healthy primary spreads its term
    /// by heartbeats, not by votes) while a live primary is heard (thesis §4.2.3: the lease of a
    /// healthy primary); the repeated grant of this term's vote to the same candidate (a retry)
    /// is not refused.
    /// A leadership transfer's request is the one exception to the lease (`isTransferExempt`).
    private func disruptionRefusal(_ request: VoteRequest, vouched: Bool, now: CoreInstant) -> String? {
        let candidate = request.candidateID
        if !isWithinReach(term: request.term, epoch: request.epoch, candidateEpoch: true) {
            return Self.outOfRangeReason
        }
        if vouched { return nil }
        if !isVoter, !disabledRules.contains(.knownVoters) { return Self.notVoterReason }
        if !isKnownVoter(candidate) { return Self.unknownCandidateReason }
        let repeatedGrant = request.term == term && votedFor == candidate
        if !repeatedGrant, !disabledRules.contains(.lease), !isTransferExempt(request), hasLiveLeader(now: now) {
            return Self.liveLeaderReason
        }
        return nil
    }

    /// A vote request the lease does not refuse because it comes from a leadership transfer
    /// (etcd-io/raft's `force`, hashicorp/raft's `LeadershipTransfer`): marked `transfer`, not a
    /// PreVote, for exactly this node's term + 1 (the term a target of this node's leader stands
    /// in), and, on a leader, from the target this leader told to stand. Who may set the mark, and
    /// why that is safe enough: "Leadership transfer" on ``step(_:now:)``.
    private func isTransferExempt(_ request: VoteRequest) -> Bool {
        guard request.transfer, !request.preVote, request.term == term + 1 else { return false }
        guard state == .leader else { return true }
        guard let transfer else { return false }
        return transfer.timeoutNowSent && transfer.target == request.candidateID
    }

    /// A candidate the network door may vote for: a voter here.
    private func isKnownVoter(_ candidate: String) -> Bool {
        disabledRules.contains(.knownVoters) || voters.contains(candidate)
    }

    /// A message term and epoch within reach of this node's (see ``maxTermJump``); a candidate's
    /// epoch at most this node's epoch + 1.
    private func isWithinReach(term messageTerm: UInt64, epoch messageEpoch: UInt64, candidateEpoch: Bool = false) -> Bool {
        if disabledRules.contains(.reach) { return true }
        let epochLimit = epoch + (candidateEpoch ? 1 : Self.maxTermJump)
        return messageTerm <= term + Self.maxTermJump && messageEpoch <= epochLimit
    }

    /// The transport's `from` is the one sender the core knows (issue #12): a message whose body
    /// names another sender is dropped, so one link cannot vote or heartbeat for others. A
    /// heartbeat or vote response must also come from a voter (a vote request from a non-voter
    /// is refused by the voting rules, so that it gets an answer).
    private func admitsSender(_ from: String, of message: ElectionMessage) -> Bool {
        let claimed: String
        switch message {
        case .heartbeat(let h): claimed = h.from
        case .voteRequest(let r): claimed = r.candidateID
        case .voteResponse(let r): claimed = r.voterID
        case .timeoutNow(let t): claimed = t.from
        case .configuration(let c): claimed = c.from
        case .configurationAck(let a): claimed = a.from
        }
        if !disabledRules.contains(.senderBinding), claimed != from { return false }
        switch message {
        case .voteRequest: return true
        case .configurationAck:
            // Any linked node's: it says which configuration it holds. Only voters' count toward
            // a commit; a member's must name the primary's before the member can be added.
            return true
        case .configuration:
            // Who may change this node's configuration is decided in `stepConfiguration`; a
            // newer one from anyone else makes it ask its own voters (a pull).
            return true
        default: return disabledRules.contains(.knownVoters) || voters.contains(claimed)
        }
    }

    /// The lease (thesis §4.2.3): this node is the leader, or it heard its leader within an
    /// election timeout and its link to the leader has not ended since (see `linkLost`).
    private func hasLiveLeader(now: CoreInstant) -> Bool {
        if state == .leader { return true }
        guard leaderID != nil, !leaderLinkLost else { return false }
        return now < lastLeaderContact + settings.electionTimeout
    }

    private mutating func noteHeard(from peer: String, now: CoreInstant) {
        if peer != id, voters.contains(peer) { peers[peer, default: PeerView()].heardAt = now }
    }

    private mutating func reportDualPrimary(_ a: String, _ b: String, _ directives: inout [ElectionDirective]) {
        let report = DualPrimaryReport(term: term, first: Swift.min(a, b), second: Swift.max(a, b))
        guard reportedDualPrimaries.insert(report).inserted else { return }
        directives.append(.dualPrimaryDetected(term: term, primaries: [report.first, report.second]))
    }

    /// Draws a new randomised election timeout and restarts the election timer with it. The
    /// timeout is T + r·T/max(1, priority), r uniform in [0, 1): within [T, 2T), shorter on
    /// average for a higher priority. After `maxElectionRetries` consecutive failures the wait
    /// gets one more full randomised timeout (back-off).
    private mutating func resetElectionTimer(now: CoreInstant) {
        evidenceTimer = false
        randomizedElectionTimeout = drawElectionTimeout()
        var wait = randomizedElectionTimeout
        if consecutiveFailures >= Swift.max(0, settings.maxElectionRetries) && consecutiveFailures > 0 {
            wait += drawElectionTimeout()
        }
        electionDeadline = now + wait
    }

    private mutating func drawElectionTimeout() -> UInt64 {
        let timeout = settings.electionTimeout
        let spread = rng.next(upperBound: timeout) / UInt64(Swift.max(1, settings.priority))
        return timeout + spread
    }

    /// Appends a send of something that depends on no pending write (what does is withheld, see
    /// `releaseWithheld`).
    private mutating func send(to peer: String, _ message: ElectionMessage, _ directives: inout [ElectionDirective]) {
        directives.append(.send(to: peer, message))
    }

    /// Raises the fencing token (never lowers it) and reports the rise.
    private mutating func raiseFencingEpoch(_ newEpoch: UInt64, _ directives: inout [ElectionDirective]) {
        guard newEpoch > fencingEpoch else { return }
        fencingEpoch = newEpoch
        directives.append(.epochChanged(newEpoch))
    }

    /// Starts the next write when the state changed and none is in flight; after a failure, not
    /// before the retry time (a driver whose writes keep failing gets one attempt per delay).
    private mutating func persistIfNeeded(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard durableDirty, writing == nil else { return }
        if lastWriteFailed, now < retryWriteAt { return }
        durableDirty = false
        writing = durable
        directives.append(.persist(durable))
    }

    // MARK: Durability

    /// Sends what waited for a write, now that ``persisted`` may hold it: a granted vote, a
    /// candidacy's vote requests, a won election's leadership. Each goes out only if the written
    /// state holds exactly what it depends on.
    private mutating func releaseWithheld(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        if let withheld = withheldGrant {
            if persisted.term == withheld.response.term, persisted.votedFor == withheld.candidate,
               persisted.epoch >= withheld.promisedEpoch
            {
                withheldGrant = nil
                send(to: withheld.candidate, .voteResponse(withheld.response), &directives)
            }
        }
        if state == .candidate, var campaign, campaign.kind == .vote, !campaign.requestsSent,
           persisted.term == term, persisted.votedFor == id
        {
            campaign.requestsSent = true
            campaign.deadline = now + settings.voteRequestTimeout  // the campaign's time starts now
            self.campaign = campaign
            let request = VoteRequest(
                candidateID: id, term: term, lastLSN: localLSN, epoch: campaign.epoch, priority: settings.priority,
                transfer: campaign.transfer, configuration: configuration.id)
            for voter in voterList where voter != id {
                send(to: voter, .voteRequest(request), &directives)
            }
            tallyCampaign(now: now, &directives)  // a single-voter cluster wins at once
        }
        if state == .candidate, let newEpoch = pendingLeaderEpoch, persisted.term == term,
           persisted.votedFor == id, persisted.epoch >= newEpoch, persisted.configuration == configuration
        {
            assumeLeadership(now: now, &directives)
        }
        if let primary = configAckTo, persisted.configuration == configuration {
            configAckTo = nil
            send(to: primary, .configurationAck(ConfigurationAck(from: id, term: term, configuration: configuration.id)), &directives)
        }
        if state == .leader, configResendAt == nil, !configurationCommitted, persisted.configuration == configuration {
            resendConfiguration(now: now, &directives)  // a change's configuration is durable here: out it goes
        }
    }

    /// The write in flight failed. Nothing that waited for it is sent: a withheld vote is refused
    /// instead, a pending candidate or leader becomes follower, a PreVote round stops, and a vote
    /// not written is forgotten (a retried request must be decided, and written, afresh). The term
    /// and epoch are kept (they only rise) and written again at the retry.
    private mutating func writeFailed(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        lastWriteFailed = true
        retryWriteAt = now + persistRetryDelay
        durableDirty = true  // the retry: a successful write is what ends this
        if let withheld = withheldGrant {
            withheldGrant = nil
            let refusal = VoteResponse(
                voterID: id, term: term, voteGranted: false, reason: Self.notDurableReason, epoch: epoch)
            send(to: withheld.candidate, .voteResponse(refusal), &directives)
        }
        if durable.votedFor != nil, persisted.term != durable.term || persisted.votedFor != durable.votedFor {
            durable.votedFor = nil
        }
        if state == .candidate {
            becomeFollower(now: now, leader: nil, &directives)
        } else if campaign != nil {
            campaign = nil  // a PreVote round
            resetElectionTimer(now: now)
        }
    }
}
