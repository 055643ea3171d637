import ClusterCore

/// The parameters of one simulated schedule. ``init(seed:nodes:knowledge:)`` derives everything
/// from the seed, so `(seed, nodes, knowledge)` replays a run exactly; the fields stay public so
/// that a test can pin one of them.
public struct SimulationConfig: Sendable, Equatable, CustomStringConvertible {
    /// Which voters each node knows.
    public enum VoterKnowledge: Sendable, Equatable, CustomStringConvertible {
        /// Every node knows every node (the normal configuration). All invariants are checked,
        /// liveness included.
        case full
        /// Each node knows itself and a random subset of at least a majority-minus-one of the
        /// others, with `minQuorumSize` a majority of the whole cluster, until the heal; then each
        /// node learns the voters it missed, one at a time within a heartbeat interval (as the
        /// membership converges), and liveness is checked from the heal like with `.full`.
        /// Views that stay partial have no liveness bound: a node is voted for only by nodes that
        /// know it, so with 3 nodes where a knows only b, b only c and c only a, nobody can win.
        case partial
        /// A deliberate misconfiguration (a test hook): two disjoint halves, each knowing only
        /// itself as voters, with `minQuorumSize` 1. Two leaders per term are expected; the
        /// checker must report them. Liveness is not checked.
        case disjointGroups

        public var description: String {
            switch self {
            case .full: return "full"
            case .partial: return "partial"
            case .disjointGroups: return "disjoint"
            }
        }
    }

    public var seed: UInt64
    public var nodes: Int
    public var knowledge: VoterKnowledge

    // Election settings of every node.
    public var electionTimeoutNanoseconds: UInt64
    public var heartbeatIntervalNanoseconds: UInt64
    public var voteRequestTimeoutNanoseconds: UInt64
    public var maxElectionRetries: Int

    // The network while faults are injected (after the heal: no partition, no loss).
    public var delayMinNanoseconds: UInt64
    public var delayMaxNanoseconds: UInt64
    /// Largest loss rate the fault injector picks, in percent.
    public var lossMaxPercent: Int
    /// Duplicated messages, in percent (also after the heal: duplicates are not loss).
    public var duplicatePercent: Int

    // Faults.
    /// How long faults are injected, from time 0.
    public var chaosDurationNanoseconds: UInt64
    /// Longest gap between two faults (gaps are uniform in [gap/8, gap]).
    public var chaosGapMaxNanoseconds: UInt64
    public var partitions: Bool
    public var crashes: Bool
    /// Forced elections (`.startElection`, no PreVote) and `.stepDown` on leaders.
    public var forcedElections: Bool
    /// LSNs change at any moment, on any node (writes on the primary, replication on the others),
    /// not only with heartbeats; the core is told at once, and the checker judges each vote by the
    /// driver's LSN.
    public var lsnChanges: Bool
    /// Members leave the other nodes' voter sets and come back, one node's view at a time; with it,
    /// `minQuorumSize` is a majority of the whole cluster (the quorum floor rule).
    public var membershipChanges: Bool
    /// The voters change by consent (issue 15): the first ``initialVoters`` nodes are the first
    /// voters, the others members that do not vote, and the primary of the moment is asked to add
    /// or remove one voter at a time. Replaces ``membershipChanges`` (the driver's per-node views)
    /// in the schedules that have it.
    public var voterChanges: Bool
    /// How many of the nodes are voters at the start (with ``voterChanges``; otherwise all).
    public var initialVoters: Int
    /// Messages from strangers and hostile peers: forged sender ids, terms and epochs far ahead or
    /// near 2^63, forged votes, and (during the faults) members' vote requests with rising terms.
    public var hostilePeers: Bool
    /// One-way partitions: some directed links drop everything while the reverse direction works.
    public var oneWayPartitions: Bool
    /// Leadership transfers while faults last: now and then a random leader (or, to be refused, a
    /// random other node) is asked to hand over, to a named or an unnamed target, and some
    /// transfers fail halfway (the TimeoutNow lost, the target crashed or cut off right after it
    /// got it, the leader's or the target's next write failing). With hostile peers, members also
    /// forge TimeoutNow messages and transfer-marked vote requests.
    public var transfers: Bool
    /// Longest gap between two transfer requests (gaps are uniform in [gap/8, gap]).
    public var transferGapMaxNanoseconds: UInt64
    /// The percentage of transfer requests given a fault that makes them fail halfway.
    public var transferFaultPercent: Int
    /// Spurious link drops while faults last: now and then the link between two live nodes ends
    /// at both ends (each core is stepped with `.peerUnreachable`) and carries nothing until it is
    /// dialled again, up to `linkDropOutageMaxNanoseconds` later. Crash evidence (every peer of a
    /// crashed node sees its link end) and the link sweep (a link silent for an election timeout
    /// is closed, at both ends if the path allows) are always modelled.
    public var linkDrops: Bool
    /// Longest gap between two spurious link drops (gaps are uniform in [gap/8, gap]).
    public var linkDropGapMaxNanoseconds: UInt64
    /// Longest time a dropped link carries nothing (outages are uniform in [1 ms, this]).
    public var linkDropOutageMaxNanoseconds: UInt64
    /// Each node's election priority is drawn uniformly in 1...priorityMax.
    public var priorityMax: Int
    /// A failover probe instead of a fault schedule (see ``failoverProbe(seed:nodes:fault:)``).
    public var failoverFault: FailoverFault?

    /// How the primary fails in a failover probe.
    public enum FailoverFault: String, Sendable, Equatable, CaseIterable {
        /// The process dies: its kernel closes its sockets, so every peer's link to it ends.
        case crash
        /// The process freezes, or a partition cuts it off: no link closes, it just goes quiet.
        case silent
    }
    /// A deliberately broken driver, or core rules switched off: for tests that show the checker
    /// catches what a working run never shows.
    package var sabotage: Sabotage = []
    package var disabledCoreRules: ElectionCore.DisabledRules = []

    /// Ways to break the driver, each a rule the checker must catch (tests only).
    package struct Sabotage: OptionSet, Sendable, Hashable {
        package var rawValue: UInt8
        package init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The core learns an LSN change only at the node's next heartbeat (issue 6, #4).
        package static let staleLSN = Sabotage(rawValue: 1 << 0)
        /// The sends of a batch go out before its persist.
        package static let sendBeforePersist = Sabotage(rawValue: 1 << 1)
        /// A restart starts from the state before the last persist.
        package static let restartFromOlderState = Sabotage(rawValue: 1 << 2)
        /// After the heal, vote responses are lost.
        package static let dropVotesAfterHeal = Sabotage(rawValue: 1 << 3)
        /// The driver tells its core an LSN 10^6 above its storage's: its vote requests claim a
        /// log it does not have (issue 16, hole 6).
        package static let inflatedLSN = Sabotage(rawValue: 1 << 4)
    }

    // Durable writes of each node's election state (asynchronous: the core hears the outcome later).
    /// A write completes after a uniform delay in [0, this].
    public var writeDelayMaxNanoseconds: UInt64
    /// Until the heal, this percentage of writes is slow: a uniform delay in [0, `slowWriteMaxNanoseconds`].
    public var slowWritePercent: Int
    /// The longest slow write; above the election timeout, so a write can outlast an election.
    public var slowWriteMaxNanoseconds: UInt64
    /// Until the heal, this percentage of writes fails. A failed write lands on disk or not (even
    /// odds: the error may come after the rename); a write in flight at a crash likewise.
    public var writeFailurePercent: Int
    /// A test hook: a broken driver that reports every failed write as durable (as the runtime
    /// once did, by keeping the state in memory). The checker must catch what follows.
    package var reportsFailedWritesAsDurable = false
    /// A test hook: with `false` the checker skips its persist-before-send checks (sends judged
    /// against the disk), to show that the invariants behind them (one vote per term across
    /// restarts, one leader per term, durable epochs) catch a broken driver on their own.
    package var checksPersistBeforeSend = true

    // Liveness.
    /// After the heal, a leader MUST be elected within this bound and stay leader to the end.
    public var electionBoundNanoseconds: UInt64
    /// How long the run goes on after the bound, to see that the leader stays.
    public var stabilityWindowNanoseconds: UInt64
    /// A limit on simulated events, against a runaway run (reported as a violation).
    public var maxEvents: Int
    /// Record a trace of every step that produced directives from this time on (nil: none).
    public var traceFromNanoseconds: UInt64?

    /// A schedule whose network and fault parameters are drawn from `seed`.
    public init(seed: UInt64, nodes: Int, knowledge: VoterKnowledge = .full) {
        self.seed = seed
        self.nodes = max(1, nodes)
        self.knowledge = knowledge
        var rng = SplitMix64(seed: seed ^ 0x5EED_C0FF_EE00_0001)
        let ms: UInt64 = 1_000_000
        electionTimeoutNanoseconds = 100 * ms
        heartbeatIntervalNanoseconds = 25 * ms
        voteRequestTimeoutNanoseconds = 50 * ms
        maxElectionRetries = 3
        delayMinNanoseconds = rng.uniform(2 * ms)
        delayMaxNanoseconds = delayMinNanoseconds + 1 * ms + rng.uniform(20 * ms)
        lossMaxPercent = Int(rng.uniform(41))
        duplicatePercent = Int(rng.uniform(11))
        chaosDurationNanoseconds = (10 + rng.uniform(11)) * electionTimeoutNanoseconds
        chaosGapMaxNanoseconds = (1 + rng.uniform(4)) * electionTimeoutNanoseconds
        partitions = rng.uniform(5) != 0
        crashes = rng.uniform(5) != 0
        forcedElections = rng.uniform(3) != 0
        writeDelayMaxNanoseconds = rng.uniform(3 * ms)
        slowWritePercent = rng.uniform(2) == 0 ? 0 : 1 + Int(rng.uniform(10))
        slowWriteMaxNanoseconds = 3 * electionTimeoutNanoseconds
        writeFailurePercent = rng.uniform(4) == 0 ? 0 : 1 + Int(rng.uniform(20))
        // A stream of its own, so that the schedules above stay what they were.
        var more = SplitMix64(seed: seed ^ 0xADD5_FA17_0000_0006)
        lsnChanges = more.uniform(5) != 0
        membershipChanges = more.uniform(3) != 0
        hostilePeers = more.uniform(4) != 0
        oneWayPartitions = more.uniform(3) != 0
        var third = SplitMix64(seed: seed ^ 0x7EA5_F3E5_0000_0007)  // leadership transfers (issue 7)
        // Not with the deliberate misconfiguration: it is there to show two leaders in one term,
        // and transfers move one half's terms away from the other's.
        transfers = third.uniform(3) != 0 && knowledge != .disjointGroups
        transferGapMaxNanoseconds = (2 + third.uniform(4)) * electionTimeoutNanoseconds
        transferFaultPercent = 50
        var fourth = SplitMix64(seed: seed ^ 0x11E4_D0E5_0000_0009)  // crash evidence and link drops (issue 9)
        linkDrops = fourth.uniform(3) != 0
        linkDropGapMaxNanoseconds = (1 + fourth.uniform(4)) * electionTimeoutNanoseconds / 2
        linkDropOutageMaxNanoseconds = electionTimeoutNanoseconds / 2
        var fifth = SplitMix64(seed: seed ^ 0xC0DF_16A7_0000_000F)  // voters by consent (issue 15)
        voterChanges = knowledge == .full && self.nodes > 1 && fifth.uniform(2) == 0
        initialVoters = voterChanges ? self.nodes / 2 + 1 + Int(fifth.uniform(UInt64(self.nodes - self.nodes / 2))) : self.nodes
        if voterChanges { membershipChanges = false }
        priorityMax = 3
        failoverFault = nil
        electionBoundNanoseconds = 10 * electionTimeoutNanoseconds
        stabilityWindowNanoseconds = 5 * electionTimeoutNanoseconds
        maxEvents = 2_000_000
    }

    /// A failover probe (as `cluster bench failover`): heartbeat 20 ms, election timeout 200 ms,
    /// a vote request timeout of one election timeout, every priority 1, a quiet LAN (0.05–0.5 ms
    /// per message, no loss), durable writes of 0–2 ms. No fault until a primary is followed by
    /// every node (from 3 T on); then the primary fails as `fault` says, and the run ends once
    /// every survivor names the same new primary (``SimulationResult/failoverLatencyNanoseconds``),
    /// or after 20 T (a violation).
    public static func failoverProbe(seed: UInt64, nodes: Int, fault: FailoverFault) -> SimulationConfig {
        var config = SimulationConfig(seed: seed, nodes: nodes)
        let ms: UInt64 = 1_000_000
        config.electionTimeoutNanoseconds = 200 * ms
        config.heartbeatIntervalNanoseconds = 20 * ms
        config.voteRequestTimeoutNanoseconds = 200 * ms
        config.delayMinNanoseconds = 50_000
        config.delayMaxNanoseconds = 500_000
        config.lossMaxPercent = 0
        config.duplicatePercent = 0
        config.chaosDurationNanoseconds = 0
        config.partitions = false
        config.crashes = false
        config.forcedElections = false
        config.lsnChanges = false
        config.membershipChanges = false
        config.voterChanges = false
        config.initialVoters = nodes
        config.hostilePeers = false
        config.oneWayPartitions = false
        config.transfers = false
        config.linkDrops = false
        config.writeDelayMaxNanoseconds = 2 * ms
        config.slowWritePercent = 0
        config.writeFailurePercent = 0
        config.priorityMax = 1
        config.failoverFault = fault
        config.electionBoundNanoseconds = 20 * config.electionTimeoutNanoseconds
        config.stabilityWindowNanoseconds = 0
        return config
    }

    public var description: String {
        let ms = 1_000_000.0
        func f(_ ns: UInt64) -> String { "\(Double(ns) / ms)ms" }
        return "seed=\(seed) nodes=\(nodes) knowledge=\(knowledge) delay=\(f(delayMinNanoseconds))-\(f(delayMaxNanoseconds))"
            + " lossMax=\(lossMaxPercent)% dup=\(duplicatePercent)% chaos=\(f(chaosDurationNanoseconds))"
            + " gapMax=\(f(chaosGapMaxNanoseconds)) partitions=\(partitions) crashes=\(crashes)"
            + " forced=\(forcedElections) lsn=\(lsnChanges) churn=\(membershipChanges) consent=\(voterChanges ? "\(initialVoters) of \(nodes)" : "false") hostile=\(hostilePeers)"
            + " oneWay=\(oneWayPartitions) transfers=\(transfers)(gap \(f(transferGapMaxNanoseconds)), faults \(transferFaultPercent)%)"
            + " linkDrops=\(linkDrops)(gap \(f(linkDropGapMaxNanoseconds)))"
            + (failoverFault.map { " failover=\($0.rawValue)" } ?? "")
            + " writes=0-\(f(writeDelayMaxNanoseconds))"
            + " slow=\(slowWritePercent)%(max \(f(slowWriteMaxNanoseconds))) failed=\(writeFailurePercent)%"
            + (reportsFailedWritesAsDurable ? " BROKEN-DRIVER" : "") + " T=\(f(electionTimeoutNanoseconds))"
            + " heartbeat=\(f(heartbeatIntervalNanoseconds)) voteTimeout=\(f(voteRequestTimeoutNanoseconds))"
    }

    /// The command that replays this schedule.
    public var replayCommand: String {
        let base = "swift run cluster sim --schedules 1 --seed \(seed) --nodes \(nodes)"
        return knowledge == .full ? base : base + " --knowledge \(knowledge)"
    }
}
