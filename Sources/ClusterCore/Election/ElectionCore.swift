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
    public internal(set) var state: ElectionState = .follower
    /// What must survive a restart (term, vote, epoch), as the core holds it now; every change is
    /// emitted as `.persist`. It may be ahead of ``persisted`` while a write is pending or failed.
    public internal(set) var durable: DurableElectionState
    /// The last state reported written (``ElectionEvent/persisted(_:)``), or the one the core
    /// started from: what a restart would find.
    public internal(set) var persisted: DurableElectionState
    /// True from a ``ElectionEvent/persistFailed(_:)`` until the next ``ElectionEvent/persisted(_:)``:
    /// the node refuses votes and PreVotes (``notDurableReason``) and does not stand.
    public internal(set) var lastWriteFailed = false
    /// The fencing token the application reads: the epoch of the newest primary this node knows,
    /// its own once durable or the one a primary's heartbeat carries. Never decreases; 0 until this
    /// core leads or hears a primary (it is not restored on restart: a follower learns it from the
    /// primary's next heartbeat). Every rise is emitted as ``ElectionDirective/epochChanged(_:)``.
    /// ``epoch`` can be ahead of it: a voter's promise, or a new primary's epoch not yet durable.
    public internal(set) var fencingEpoch: UInt64 = 0
    /// The leader of the current term, if this node knows one (itself when leader).
    public internal(set) var leaderID: String?
    /// The local log position, as last set by ``ElectionEvent/setLocalLSN(_:)``.
    public internal(set) var localLSN: UInt64 = 0
    /// The leadership transfer under way on this node, if any: set by an accepted
    /// ``ElectionEvent/transferLeadership(to:)``, cleared when
    /// ``ElectionDirective/transferEnded(target:succeeded:reason:)`` reports its end. It outlives
    /// this node's leadership once the target was told to stand (the old leader waits to hear who
    /// won). While it is set on a leader, the application should hold new writes.
    public internal(set) var transfer: Transfer?
    /// The members whose votes count: the voters of ``configuration``. This node may not be one
    /// of them (``isVoter``).
    public internal(set) var voters: Set<String>
    /// True when this node's vote counts: it may stand and vote. A node that is not a voter
    /// follows the primary it hears and does nothing else.
    public internal(set) var isVoter: Bool
    /// The newest voter configuration this node holds (and stores: it is part of ``durable``).
    @inlinable public var configuration: VoterConfiguration { durable.configuration }
    /// This node knows that ``configuration`` is committed: a majority of its voters stored it (as
    /// primary, from their acknowledgements; otherwise, as the primary said). A bootstrap
    /// configuration counts as committed.
    public internal(set) var configurationCommitted: Bool
    /// The voter change this primary is making, from its request until it commits.
    public internal(set) var voterChange: VoterChange?

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
    /// Whether `node` acknowledged the configuration this node holds (as primary: the condition
    /// of adding it as a voter).
    public func hasAcknowledgedConfiguration(_ node: String) -> Bool {
        peers[node]?.configAck == configuration.id
    }

    public var configurationMessage: ConfigurationMessage? {
        guard state == .leader else { return nil }
        return ConfigurationMessage(from: id, term: term, configuration: configuration, committed: configurationCommitted)
    }

    /// The latest time at which the driver must deliver the next ``ElectionEvent/tick``; nil when no
    /// timer runs (a follower without `autoFailover` that knows no leader; a candidate waiting for
    /// its self-vote or its new epoch to be durable: the write's report moves it on). Kept up to
    /// date by every step: the driver reads it after each one, and a stored property is read in
    /// place, where a computed one would copy the whole core to call its getter.
    public internal(set) var nextDeadline: CoreInstant?

    func computeNextDeadline() -> CoreInstant? {
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
    var voterList: [String]
    var rng: SplitMix64
    /// This node's current randomised election timeout, drawn at every state change.
    var randomizedElectionTimeout: UInt64
    /// When a follower's election timer fires.
    var electionDeadline: CoreInstant
    /// When a leader next checks that it still hears a quorum.
    var checkQuorumDeadline: CoreInstant
    var campaign: Campaign?
    /// Failed attempts in a row (PreVote rounds and candidacies) with no leader heard in between.
    var consecutiveFailures = 0
    /// What this node knows of the other voters: when each was last heard from (any message),
    /// what its last heartbeat reported, its priority.
    var peers: [String: PeerView] = [:]
    /// When the current leader was last heard from (meaningful while `leaderID` is a peer).
    var lastLeaderContact: CoreInstant = .zero
    /// The link to the current leader ended (``ElectionEvent/peerUnreachable(_:)``) and the leader
    /// has not been heard since: the lease no longer holds (see `linkLost`).
    var leaderLinkLost = false
    /// The election timer was brought forward by crash evidence (`linkLost`) and has not fired.
    var evidenceTimer = false
    /// The first node seen claiming primary in the current term (itself when it won).
    var termPrimary: String?
    var reportedDualPrimaries: Set<DualPrimaryReport> = []
    /// `durable` changed since the last `.persist` (or must be written again after a failure).
    var durableDirty = false
    /// The state of the `.persist` whose outcome is not yet reported (at most one).
    var writing: DurableElectionState?
    /// After a failed write: no retry before this time.
    var retryWriteAt: CoreInstant = .zero
    /// A vote granted but not yet durable: its response goes out when it is.
    var withheldGrant: WithheldGrant?
    /// The candidate of a vote granted but not yet durable: its response goes out once the write
    /// in flight is reported (a refusal if it failed), or never if the term moves on first.
    public var withheldVoteCandidate: String? { withheldGrant?.candidate }
    /// The epoch of an election this candidate won, while that epoch is not yet durable.
    package internal(set) var pendingLeaderEpoch: UInt64?
    /// As primary: when the configuration next goes again to the nodes that have not acknowledged
    /// it (nil: all have, or it waits for its own write).
    var configResendAt: CoreInstant?
    /// As primary: who is told of the configuration (its voters, and the voters the change removed).
    var configRecipients: [String] = []
    /// The primary to acknowledge the configuration to once it is durable.
    var configAckTo: String?
    /// The leader this node follows leads a term behind this node's own (it follows as a member
    /// that does not vote): forgotten if this node becomes a voter.
    var followsBehind = false
    /// No pull of a newer configuration from this node's voters before this time.
    var nextConfigurationPull: CoreInstant = .zero

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
    mutating func tickElection(now: CoreInstant, _ directives: inout [ElectionDirective]) {
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
    mutating func tickCheckQuorum(now: CoreInstant, _ directives: inout [ElectionDirective]) {
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

    // MARK: Helpers

    /// Adopts a higher term (Raft §5.1): no vote yet, no known leader, follower.
    mutating func adoptTerm(_ newTerm: UInt64, now: CoreInstant, _ directives: inout [ElectionDirective]) {
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
    mutating func adoptEpoch(_ newEpoch: UInt64) {
        guard state == .follower else { return }
        durable.epoch = newEpoch
        durableDirty = true
    }

    mutating func setLeader(_ leader: String?, _ directives: inout [ElectionDirective]) {
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
    func disruptionRefusal(_ request: VoteRequest, vouched: Bool, now: CoreInstant) -> String? {
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
    func isTransferExempt(_ request: VoteRequest) -> Bool {
        guard request.transfer, !request.preVote, request.term == term + 1 else { return false }
        guard state == .leader else { return true }
        guard let transfer else { return false }
        return transfer.timeoutNowSent && transfer.target == request.candidateID
    }

    /// A candidate the network door may vote for: a voter here.
    func isKnownVoter(_ candidate: String) -> Bool {
        disabledRules.contains(.knownVoters) || voters.contains(candidate)
    }

    /// A message term and epoch within reach of this node's (see ``maxTermJump``); a candidate's
    /// epoch at most this node's epoch + 1.
    func isWithinReach(term messageTerm: UInt64, epoch messageEpoch: UInt64, candidateEpoch: Bool = false) -> Bool {
        if disabledRules.contains(.reach) { return true }
        let epochLimit = epoch + (candidateEpoch ? 1 : Self.maxTermJump)
        return messageTerm <= term + Self.maxTermJump && messageEpoch <= epochLimit
    }

    /// The transport's `from` is the one sender the core knows (issue #12): a message whose body
    /// names another sender is dropped, so one link cannot vote or heartbeat for others. A
    /// heartbeat or vote response must also come from a voter (a vote request from a non-voter
    /// is refused by the voting rules, so that it gets an answer).
    func admitsSender(_ from: String, of message: ElectionMessage) -> Bool {
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
    func hasLiveLeader(now: CoreInstant) -> Bool {
        if state == .leader { return true }
        guard leaderID != nil, !leaderLinkLost else { return false }
        return now < lastLeaderContact + settings.electionTimeout
    }

    mutating func noteHeard(from peer: String, now: CoreInstant) {
        if peer != id, voters.contains(peer) { peers[peer, default: PeerView()].heardAt = now }
    }

    mutating func reportDualPrimary(_ a: String, _ b: String, _ directives: inout [ElectionDirective]) {
        let report = DualPrimaryReport(term: term, first: Swift.min(a, b), second: Swift.max(a, b))
        guard reportedDualPrimaries.insert(report).inserted else { return }
        directives.append(.dualPrimaryDetected(term: term, primaries: [report.first, report.second]))
    }

    /// Draws a new randomised election timeout and restarts the election timer with it. The
    /// timeout is T + r·T/max(1, priority), r uniform in [0, 1): within [T, 2T), shorter on
    /// average for a higher priority. After `maxElectionRetries` consecutive failures the wait
    /// gets one more full randomised timeout (back-off).
    mutating func resetElectionTimer(now: CoreInstant) {
        evidenceTimer = false
        randomizedElectionTimeout = drawElectionTimeout()
        var wait = randomizedElectionTimeout
        if consecutiveFailures >= Swift.max(0, settings.maxElectionRetries) && consecutiveFailures > 0 {
            wait += drawElectionTimeout()
        }
        electionDeadline = now + wait
    }

    mutating func drawElectionTimeout() -> UInt64 {
        let timeout = settings.electionTimeout
        let spread = rng.next(upperBound: timeout) / UInt64(Swift.max(1, settings.priority))
        return timeout + spread
    }

    /// Appends a send of something that depends on no pending write (what does is withheld, see
    /// `releaseWithheld`).
    mutating func send(to peer: String, _ message: ElectionMessage, _ directives: inout [ElectionDirective]) {
        directives.append(.send(to: peer, message))
    }

    /// Raises the fencing token (never lowers it) and reports the rise.
    mutating func raiseFencingEpoch(_ newEpoch: UInt64, _ directives: inout [ElectionDirective]) {
        guard newEpoch > fencingEpoch else { return }
        fencingEpoch = newEpoch
        directives.append(.epochChanged(newEpoch))
    }

    /// Starts the next write when the state changed and none is in flight; after a failure, not
    /// before the retry time (a driver whose writes keep failing gets one attempt per delay).
    mutating func persistIfNeeded(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard durableDirty, writing == nil else { return }
        if lastWriteFailed, now < retryWriteAt { return }
        durableDirty = false
        writing = durable
        directives.append(.persist(durable))
    }

}
