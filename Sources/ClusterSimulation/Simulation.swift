import ClusterCore

/// What one simulated schedule found.
public struct SimulationResult: Sendable {
    /// One elected leader, as the checker saw it.
    public struct Leader: Sendable, Equatable {
        public var term: UInt64
        public var node: String
        public var epoch: UInt64
        public var atNanoseconds: UInt64
    }

    public var config: SimulationConfig
    /// Every invariant that failed, with the simulated time; empty when the run passed.
    public var violations: [String]
    /// Every leader elected during the run, by term.
    public var leaders: [Leader]
    /// Core steps taken (events fed into cores).
    public var steps: Int
    /// Durable writes started, and how many of them failed.
    public var writes: Int
    public var writesFailed: Int
    public var messagesSent: Int
    public var messagesDelivered: Int
    /// When the network healed for good.
    public var healedAtNanoseconds: UInt64
    /// How long after the heal the final leader was elected (nil: no stable leader, or liveness
    /// not checked in this configuration; 0: the leader was elected before the heal and stayed).
    public var leaderElectedAfterHealNanoseconds: UInt64?
    /// Leadership transfers asked for (``SimulationConfig/transfers``), refused at once, started,
    /// and how the started ones ended (a transfer whose leader crashed has no end).
    public var transfersRequested = 0
    public var transfersRefused = 0
    public var transfersStarted = 0
    public var transfersSucceeded = 0
    public var transfersFailed = 0
    /// How many refusals and failures each reason ended.
    public var transferEndReasons: [String: Int] = [:]
    /// For each transfer whose target became leader (before it was abandoned): the time from
    /// the request to the target's leadership.
    public var transferLatenciesNanoseconds: [UInt64] = []
    /// Link ends the cores were told of (`.peerUnreachable`): crash evidence, sweeps, drops.
    public var linkEnds = 0
    /// Candidacies started (each a term some node stood in); `leaders.count` of them won.
    public var candidacies = 0
    /// A failover probe (``SimulationConfig/failoverFault``): from the primary's fault until every
    /// survivor named the same new primary (nil: not a probe, or it did not happen).
    public var failoverLatencyNanoseconds: UInt64?
    /// A failover probe: the candidacies started between the fault and its end (1: no split vote).
    public var failoverCandidacies = 0

    /// The trace of the run, when ``SimulationConfig/traceFromNanoseconds`` asked for one.
    public var trace: [String]

    public var passed: Bool { violations.isEmpty }
}

/// A deterministic simulation of a cluster of election cores (after TigerBeetle's simulator):
/// a simulated clock, a seeded network with delay, loss, duplication, reordering and partitions,
/// crashes and restarts, and a checker that runs after every step.
///
/// Each node has a driver like the real one: it delivers ticks at the core's `nextDeadline`,
/// heartbeats every voter every interval and on `.broadcastHeartbeat`, writes each `.persist` to
/// its simulated disk asynchronously (after a random delay, some writes slower than an election
/// timeout, some failing) and reports the outcome as `.persisted` or `.persistFailed`, and
/// restarts a crashed node as a new core from what its disk holds (a write in flight at the crash
/// lands or not). The checker judges every send and every leader against the disk. LSNs advance
/// at random on the primary; a follower catches up from its leader's heartbeats now and then, so
/// candidates' LSNs differ and the LSN rule matters.
///
/// Schedule: faults for `chaosDurationNanoseconds`, then the heal (no partition, no loss, no slow
/// or failing write to the end, every node up), then `electionBoundNanoseconds` within which a
/// leader MUST be elected, then `stabilityWindowNanoseconds` during which it MUST stay leader.
public struct Simulation {
    public let config: SimulationConfig

    private struct Node {
        var id: String
        var core: ElectionCore
        var settings: ElectionCore.Settings
        /// The voters this node knows (itself included), sorted.
        var voters: [String]
        var up = true
        var incarnation = 0
        /// What the node's disk holds: the last write that landed.
        var disk = DurableElectionState()
        /// The write in flight (at most one: the core waits for each outcome).
        var writing: DurableElectionState?
        var lsn: UInt64 = 0
        var heartbeatSeq: UInt64 = 0
        /// When the pending tick event fires (nil: none pending).
        var tickAtNanoseconds: UInt64?
        /// The voters this node knows when no member is away (its configured view).
        var baseVoters: [String] = []
        /// What the disk held before the last write landed (for ``SimulationConfig/Sabotage/restartFromOlderState``).
        var olderDisk = DurableElectionState()
        /// The voters and quorum this node's core won its election with, while its leadership
        /// waits for the new epoch to be durable: what the checker counts the real votes against.
        var won: (term: UInt64, voters: Set<String>, quorumSize: Int)?
        /// The core has not been told the driver's LSN yet (``SimulationConfig/Sabotage/staleLSN``).
        var lsnUntold = false
        /// When this node last heard each peer (by index) on its link to it, and whether that link
        /// is open: the sweep closes a link silent for an election timeout (as the runtime's
        /// `LinkTable` does), and the next message from the peer opens it again (a redial).
        var lastHeard: [UInt64] = []
        var linkOpen: [Bool] = []

        /// What the checker judges the node's next step against.
        func snapshot() -> NodeSnapshot {
            NodeSnapshot(
                term: core.term, votedFor: core.votedFor, epoch: core.epoch, localLSN: lsn, state: core.state,
                leaderID: core.leaderID, voters: core.settings.replicatesConfiguration ? core.voters : Set(voters),
                toldToStand: core.transfer.flatMap { $0.timeoutNowSent ? $0.target : nil })
        }
    }

    private var rng: SplitMix64
    private var nowNanoseconds: UInt64 = 0
    private var queue = EventQueue<SimulationEvent>()
    private var nodes: [Node] = []
    private var indexByID: [String: Int] = [:]
    /// Partition group of each node: messages pass only within a group.
    private var group: [Int]
    private var lossPercent = 0
    private var healed = false
    private var healedAtNanoseconds: UInt64 = 0
    private var checker: InvariantChecker
    /// Directed links that drop everything (from * nodes + to): one-way partitions.
    private var blockedOneWay: Set<Int> = []
    /// Nodes that are away from the other nodes' voter sets (or on their way out or back).
    private var removedMembers: Set<Int> = []
    private var steps = 0
    private var writes = 0
    private var writesFailed = 0
    private var messagesSent = 0
    private var messagesDelivered = 0
    private var events = 0
    private var finished = false
    /// Transfer faults (``SimulationConfig/transfers``): leaders whose TimeoutNow messages are lost,
    /// targets that crash or are cut off right after they get one, nodes whose next write fails.
    private var dropsTimeoutNow: Set<Int> = []
    private var afterTimeoutNow: [Int: TransferFault] = [:]
    private var failsNextWrite: Set<Int> = []
    /// Started transfers whose target has not led yet, by target: the node asked, the term they
    /// started in and when.
    private var awaitingTransferLeader: [String: (leader: Int, term: UInt64, atNanoseconds: UInt64)] = [:]
    private var transferStats = (requested: 0, refused: 0, started: 0, succeeded: 0, failed: 0)
    private var transferLatencies: [UInt64] = []
    private var transferEndReasons: [String: Int] = [:]
    /// The link model's own random stream, so that the schedules of the other faults stay what they were.
    private var linkRng: SplitMix64
    /// Node pairs (smaller * nodes + larger) whose link dropped: nothing passes until then.
    private var linkDownUntil: [Int: UInt64] = [:]
    private var linkEnds = 0
    private var candidacies = 0
    /// The failover probe: the failed primary, when it failed, how long until every survivor
    /// named the new primary, and the candidacies meanwhile.
    private var failedPrimary: Int?
    private var failoverAtNanoseconds: UInt64?
    private var failoverLatency: UInt64?
    private var failoverCandidacies = 0

    /// What happens to a transfer's target right after it gets a TimeoutNow.
    private enum TransferFault { case crash, cutOff }

    /// A simulation of `config`; nothing runs until ``run()``.
    public init(config: SimulationConfig) {
        self.config = config
        rng = SplitMix64(seed: config.seed)
        linkRng = SplitMix64(seed: config.seed ^ 0x11E4_D0E5_0000_0009)
        checker = InvariantChecker(electionTimeoutNanoseconds: config.electionTimeoutNanoseconds)
        checker.checksPersistBeforeSend = config.checksPersistBeforeSend
        group = Array(repeating: 0, count: config.nodes)
        let ids = (0..<config.nodes).map { "n\($0)" }
        let majority = config.nodes / 2 + 1
        for (index, id) in ids.enumerated() {
            var voters: [String]
            var minQuorumSize: Int
            switch config.knowledge {
            case .full:
                voters = ids
                // Any floor while the voter sets agree (a majority is needed anyway); with members
                // leaving and joining one view at a time, the floor rule: a majority of the cluster.
                let floor = 1 + rng.index(majority)
                minQuorumSize = config.membershipChanges ? majority : floor
            case .partial:
                let others = ids.filter { $0 != id }
                let known = max(0, majority - 1) + rng.index(others.count - max(0, majority - 1) + 1)
                var shuffled = others
                shuffled.shuffle(using: &rng)
                voters = [id] + shuffled.prefix(known)
                minQuorumSize = majority
            case .disjointGroups:
                let half = (config.nodes + 1) / 2
                voters = index < half ? Array(ids[..<half]) : Array(ids[half...])
                minQuorumSize = 1
            }
            voters.sort()
            var settings = ElectionCore.Settings(
                electionTimeout: config.electionTimeoutNanoseconds,
                heartbeatInterval: config.heartbeatIntervalNanoseconds,
                voteRequestTimeout: config.voteRequestTimeoutNanoseconds,
                minQuorumSize: minQuorumSize,
                priority: 1 + Int(rng.uniform(UInt64(max(1, config.priorityMax)))),
                autoFailover: true,
                maxElectionRetries: config.maxElectionRetries)
            // Each node's view of the voters is the driver's (partial knowledge, churn one view at
            // a time), as it was before configurations were replicated; unless they change by
            // consent: then every node starts from one bootstrap configuration of the first
            // `initialVoters` nodes, which the primary changes.
            settings.replicatesConfiguration = config.voterChanges
            var durable = DurableElectionState()
            if config.voterChanges {
                settings.minQuorumSize = 1
                durable.configuration = .bootstrap(ids.prefix(config.initialVoters))
            }
            var core = ElectionCore(
                id: id, settings: settings, durable: durable, voters: config.voterChanges ? [] : voters, seed: rng.next(),
                now: .zero)
            core.disabledRules = config.disabledCoreRules
            var node = Node(id: id, core: core, settings: settings, voters: voters, baseVoters: voters)
            if config.voterChanges {
                // The bootstrap configuration is on every disk from the start (as `--voters` writes it).
                node.disk = durable
                node.olderDisk = durable
                checker.noteStoredConfiguration(node: id, durable.configuration, term: 0, atNanoseconds: 0)
            }
            node.lastHeard = Array(repeating: 0, count: config.nodes)
            node.linkOpen = Array(repeating: true, count: config.nodes)
            nodes.append(node)
            indexByID[id] = index
        }
    }

    /// A schedule drawn from `seed` with every voter known.
    public init(seed: UInt64, nodes: Int) {
        self.init(config: SimulationConfig(seed: seed, nodes: nodes))
    }

    /// Runs the schedule to its end (or to the first violation) and reports.
    public mutating func run() -> SimulationResult {
        for index in nodes.indices {
            queue.push(.heartbeat(node: index, incarnation: 0), atNanoseconds: rng.uniform(config.heartbeatIntervalNanoseconds))
            scheduleTick(index)
        }
        if config.chaosDurationNanoseconds > 0 {
            queue.push(.chaos, atNanoseconds: nextChaosGap())
        }
        queue.push(.heal, atNanoseconds: config.chaosDurationNanoseconds)
        if config.lsnChanges { queue.push(.lsnChange, atNanoseconds: rng.uniform(config.heartbeatIntervalNanoseconds)) }
        if config.membershipChanges || config.oneWayPartitions, config.chaosDurationNanoseconds > 0 {
            queue.push(.adversity, atNanoseconds: nextChaosGap())
        }
        if config.hostilePeers { queue.push(.hostile, atNanoseconds: nextHostileGap()) }
        if config.transfers, config.chaosDurationNanoseconds > 0 { queue.push(.transfer, atNanoseconds: nextTransferGap()) }
        for index in nodes.indices {
            queue.push(.sweep(node: index, incarnation: 0), atNanoseconds: linkRng.uniform(sweepPeriod))
        }
        if config.linkDrops, config.chaosDurationNanoseconds > 0 { queue.push(.linkDrop, atNanoseconds: nextLinkDropGap()) }
        if config.failoverFault != nil {
            queue.push(
                .failoverFault,
                atNanoseconds: 3 * config.electionTimeoutNanoseconds + linkRng.uniform(config.heartbeatIntervalNanoseconds))
        }
        while !finished, checker.violations.isEmpty, let (time, event) = queue.pop() {
            events += 1
            if events > config.maxEvents {
                checker.report("more than \(config.maxEvents) events: runaway run", atNanoseconds: time)
                break
            }
            nowNanoseconds = time
            handle(event)
            if failoverAtNanoseconds != nil, failoverLatency == nil { checkFailoverDone() }
        }
        var leaders = checker.leaderByTerm.map { term, record in
            SimulationResult.Leader(term: term, node: record.node, epoch: record.epoch, atNanoseconds: record.atNanoseconds)
        }
        leaders.sort { $0.term < $1.term }
        return SimulationResult(
            config: config, violations: checker.violations, leaders: leaders, steps: steps, writes: writes,
            writesFailed: writesFailed,
            messagesSent: messagesSent, messagesDelivered: messagesDelivered, healedAtNanoseconds: healedAtNanoseconds,
            leaderElectedAfterHealNanoseconds: electedAfterHeal, transfersRequested: transferStats.requested,
            transfersRefused: transferStats.refused, transfersStarted: transferStats.started,
            transfersSucceeded: transferStats.succeeded, transfersFailed: transferStats.failed,
            transferEndReasons: transferEndReasons, transferLatenciesNanoseconds: transferLatencies, linkEnds: linkEnds, candidacies: candidacies,
            failoverLatencyNanoseconds: failoverLatency, failoverCandidacies: failoverCandidacies, trace: trace)
    }

    private var electedAfterHeal: UInt64?
    /// Voter changes asked of a primary, and committed (with ``SimulationConfig/voterChanges``).
    private var voterChangesAsked = 0
    private var voterChangesCommitted = 0
    private var trace: [String] = []

    // MARK: Events

    private mutating func handle(_ event: SimulationEvent) {
        switch event {
        case .deliver(let from, let to, let message):
            guard nodes[to].up, group[from] == group[to], !blockedOneWay.contains(from * nodes.count + to),
                  !isLinkDown(from, to)
            else { return }
            if config.sabotage.contains(.dropVotesAfterHeal), healed, case .voteResponse = message { return }
            messagesDelivered += 1
            nodes[to].lastHeard[from] = nowNanoseconds
            nodes[to].linkOpen[from] = true
            if case .timeoutNow(let timeoutNow) = message {
                checker.noteTimeoutNowDelivered(node: nodes[to].id, from: nodes[from].id, term: timeoutNow.term)
            }
            step(to, .receive(from: nodes[from].id, message))
            if case .timeoutNow = message, let fault = afterTimeoutNow.removeValue(forKey: to) {
                switch fault {
                case .crash: crash(to)
                case .cutOff: for i in group.indices { group[i] = i == to ? 1 : 0 }
                }
            }
            if case .heartbeat(let heartbeat) = message, heartbeat.role == .primary,
               nodes[to].up, nodes[to].core.leaderID == heartbeat.from, heartbeat.lsn > nodes[to].lsn,
               nodes[from].core.transfer?.target == nodes[to].id || rng.uniform(2) == 0
            {
                // Replication caught up with the leader (at once for the target of its transfer:
                // the application brings it up to date, as etcd's leader sends it appends at once).
                setLSN(to, heartbeat.lsn)
            }
        case .tick(let index, let incarnation):
            guard nodes[index].up, nodes[index].incarnation == incarnation,
                  nodes[index].tickAtNanoseconds == nowNanoseconds
            else { return }
            nodes[index].tickAtNanoseconds = nil
            step(index, .tick)
        case .heartbeat(let index, let incarnation):
            guard nodes[index].up, nodes[index].incarnation == incarnation else { return }
            if nodes[index].lsnUntold {  // the broken driver tells the core only now
                nodes[index].lsnUntold = false
                step(index, .setLocalLSN(nodes[index].lsn))
            }
            // The primary took writes; not while it hands over (the application holds them).
            if nodes[index].core.state == .leader, nodes[index].core.transfer == nil, rng.uniform(2) == 0 {
                setLSN(index, nodes[index].lsn + 1 + rng.uniform(3))
            }
            sendHeartbeats(index)
            queue.push(.heartbeat(node: index, incarnation: incarnation), atNanoseconds: nowNanoseconds + config.heartbeatIntervalNanoseconds)
        case .writeDone(let index, let incarnation, let fails):
            guard nodes[index].up, nodes[index].incarnation == incarnation, let state = nodes[index].writing else { return }
            nodes[index].writing = nil
            let lands = !fails || rng.uniform(2) == 0  // a failed write may land all the same
            if lands { land(index, state) }
            if isTracing { note("\(nodes[index].id) write \(fails ? "failed" : "done")\(fails && lands ? " (landed)" : ""): \(state)") }
            if fails && !config.reportsFailedWritesAsDurable {
                step(index, .persistFailed(state))
            } else {
                step(index, .persisted(state))
            }
        case .chaos:
            guard !healed else { return }
            injectFault()
            queue.push(.chaos, atNanoseconds: nowNanoseconds + nextChaosGap())
        case .heal:
            heal()
        case .end:
            if config.failoverFault != nil {
                if failoverLatency == nil {
                    checker.report("failover probe: no new primary named by every survivor by the end", atNanoseconds: nowNanoseconds)
                }
            } else {
                checkLiveness()
            }
            finished = true
        case .lsnChange:
            changeSomeLSN()
            queue.push(.lsnChange, atNanoseconds: nowNanoseconds + 1 + rng.uniform(config.heartbeatIntervalNanoseconds))
        case .adversity:
            guard !healed else { return }
            injectAdversity()
            queue.push(.adversity, atNanoseconds: nowNanoseconds + nextChaosGap())
        case .voterChange(let index, let voter, let add):
            changeView(of: index, voter: voter, add: add)
        case .hostile:
            injectHostile()
            queue.push(.hostile, atNanoseconds: nowNanoseconds + nextHostileGap())
        case .inject(let from, let to, let message):
            guard nodes[to].up else { return }
            if case .timeoutNow(let timeoutNow) = message {
                checker.noteTimeoutNowDelivered(node: nodes[to].id, from: from, term: timeoutNow.term)
            }
            step(to, .receive(from: from, message))
        case .transfer:
            guard !healed else { return }
            requestTransfer()
            queue.push(.transfer, atNanoseconds: nowNanoseconds + nextTransferGap())
        case .sweep(let index, let incarnation):
            guard nodes[index].up, nodes[index].incarnation == incarnation else { return }
            sweep(index)
            queue.push(.sweep(node: index, incarnation: incarnation), atNanoseconds: nowNanoseconds + sweepPeriod)
        case .linkEnded(let index, let peer, let incarnation):
            guard nodes[index].up, nodes[index].incarnation == incarnation, nodes[index].linkOpen[peer] else { return }
            endLink(at: index, to: peer, tellPeer: false)
        case .linkDrop:
            guard !healed else { return }
            dropSomeLink()
            queue.push(.linkDrop, atNanoseconds: nowNanoseconds + nextLinkDropGap())
        case .failoverFault:
            failPrimary()
        }
    }

    /// Feeds one event to a node's core and carries out its directives, checking as it goes.
    private mutating func step(_ index: Int, _ event: ElectionEvent) {
        let now = nowNanoseconds
        let id = nodes[index].id
        // Read in place: a copy of the core held across its step would make every dictionary the
        // step writes (one per heartbeat) copy itself whole.
        let before = nodes[index].snapshot()
        let configurationBefore = nodes[index].core.configuration.id
        switch event {
        case .receive(let sender, .voteRequest(let request)):
            checker.noteVoteRequest(node: id, from: sender, request, before: before, atNanoseconds: now)
        case .vouchedVoteRequest(let request):
            checker.noteVoteRequest(node: id, from: nil, request, before: before, atNanoseconds: now)
        default:
            break
        }
        let directives = nodes[index].core.step(event, now: CoreInstant(nanoseconds: now))
        steps += 1
        if nodes[index].core.pendingLeaderEpoch != nil, nodes[index].won?.term != nodes[index].core.term {
            let core = nodes[index].core
            nodes[index].won = (term: core.term, voters: core.voters, quorumSize: core.quorumSize)
        }
        if let from = config.traceFromNanoseconds, now >= from, !directives.isEmpty {
            trace.append("\(Double(now) / 1e6)ms \(id) \(event) -> \(directives)")
        }
        for directive in directives {
            switch directive {
            case .persist(let state):
                if config.sabotage.contains(.sendBeforePersist) {
                    // The broken driver reports the write done before it is: what the core
                    // releases goes out, then the write lands.
                    step(index, .persisted(state))
                    land(index, state)
                } else {
                    startWrite(index, state)
                }
            case .send(let peer, let message):
                checker.noteSend(
                    node: id, to: peer, message, disk: nodes[index].disk, storageLSN: nodes[index].lsn, atNanoseconds: now)
                if let to = indexByID[peer] { transmit(from: index, to: to, message) }
            case .broadcastHeartbeat:
                sendHeartbeats(index)
            case .stateChanged(let state, let term, _):
                if state == .candidate {
                    checker.noteCandidacy(term: term, epoch: before.epoch)  // a candidate asks with its epoch
                    let cause: InvariantChecker.StandingCause
                    switch event {
                    case .startElection: cause = .forced
                    case .receive(let sender, .timeoutNow): cause = .timeoutNow(from: sender)
                    default: cause = .preVote
                    }
                    let core = nodes[index].core
                    checker.noteStanding(
                        node: id, term: term, cause: cause, voters: core.voters, quorumSize: core.quorumSize, atNanoseconds: now)
                    candidacies += 1
                    if failoverAtNanoseconds != nil, failoverLatency == nil { failoverCandidacies += 1 }
                }
                if state == .leader {
                    let after = nodes[index].core
                    // Counted as the core counted them when it won (the view may change while
                    // the new epoch is written).
                    let won = nodes[index].won.flatMap { $0.term == term ? $0 : nil } ?? (term: term, voters: after.voters, quorumSize: after.quorumSize)
                    nodes[index].won = nil
                    checker.noteLeader(
                        node: id, term: term, epoch: after.fencingEpoch, voters: won.voters, quorumSize: won.quorumSize,
                        disk: nodes[index].disk, atNanoseconds: now)
                    if config.voterChanges {
                        checker.noteLeaderConfiguration(node: id, term: term, nodes[index].disk.configuration, atNanoseconds: now)
                    }
                    if let awaited = awaitingTransferLeader[id], term > awaited.term {
                        awaitingTransferLeader[id] = nil
                        transferLatencies.append(now - awaited.atNanoseconds)
                    }
                }
            case .epochChanged(let epoch):
                let core = nodes[index].core
                checker.noteFencingEpoch(node: id, epoch, own: core.state == .leader && core.epoch == epoch, atNanoseconds: now)
            case .leaderChanged:
                break
            case .configurationChanged:
                // A primary's configuration reaches the members that do not vote too (the node
                // runtime sends it to every linked peer): they follow it, and may be added.
                if config.voterChanges, nodes[index].core.state == .leader {
                    let voters = nodes[index].core.voters
                    tellConfiguration(from: index, to: nodes.indices.filter { !voters.contains(nodes[$0].id) })
                }
            case .voterChangeEnded(_, let succeeded, _):
                if succeeded { voterChangesCommitted += 1 }
            case .dualPrimaryDetected(let term, let primaries):
                checker.report("\(id) detected two primaries in term \(term): \(primaries)", atNanoseconds: now)
            case .transferStarted(let target):
                transferStats.started += 1
                checker.noteTransferStarted(node: id, target: target, term: before.term, atNanoseconds: now)
                awaitingTransferLeader[target] = (index, before.term, now)
            case .transferEnded(let target, let succeeded, let reason):
                if let reason { transferEndReasons[reason, default: 0] += 1 }
                if case .transferLeadership = event {
                    transferStats.refused += 1  // refused in the step of the request
                    continue
                }
                if succeeded { transferStats.succeeded += 1 } else { transferStats.failed += 1 }
                checker.noteTransferEnded(node: id, target: target, succeeded: succeeded, atNanoseconds: now)
                if !succeeded, let target { awaitingTransferLeader[target] = nil }
                dropsTimeoutNow.remove(index)
                if let target, let targetIndex = indexByID[target] {
                    afterTimeoutNow[targetIndex] = nil
                }
            }
        }
        let after = nodes[index].core
        if config.voterChanges, after.configuration.id != configurationBefore,
           after.configuration.term == after.term, after.state == .leader || after.pendingLeaderEpoch != nil
        {
            // A configuration this node made as primary (of its term, at its election or for a
            // change), from the one it held: its lineage, for the checker.
            checker.noteConfigurationMade(
                node: id, after.configuration, parent: configurationBefore, atNanoseconds: now)
        }
        switch event {
        case .receive(_, .voteRequest(let request)), .vouchedVoteRequest(let request):
            // Given and not refused in this step: the grant waits for the write. A request the core
            // drops unanswered (out of range, a body naming another sender, its own id) decides
            // nothing, even when the node's vote already went to the candidate it names.
            var dropped = !ElectionCore.isInRange(.voteRequest(request)) || request.candidateID == id
            if case .receive(let sender, _) = event, sender != request.candidateID,
               !config.disabledCoreRules.contains(.senderBinding)
            {
                dropped = true
            }
            let refused = directives.contains {
                if case .send(let to, .voteResponse(let r)) = $0 { to == request.candidateID && !r.voteGranted } else { false }
            }
            let withheld = !request.preVote && !dropped && !refused && after.term == request.term
                && after.votedFor == request.candidateID
            checker.noteVoteRequestOutcome(withheld: withheld)
        default:
            break
        }
        checker.noteWithheldVote(node: id, candidate: after.withheldVoteCandidate, term: after.term)
        if case .receive(let sender, let message) = event {
            switch message {
            case .voteRequest(let request):
                // Granted, or withheld until the vote is durable: the core gave its vote in memory.
                let granted = after.term == request.term && after.votedFor == request.candidateID
                checker.noteVoteRequestStep(
                    node: id, from: sender, request, before: before, afterTerm: after.term, granted: granted, atNanoseconds: now)
            case .heartbeat(let heartbeat):
                // Accepted (a voter's, of this term) and naming the leader this node now follows.
                if heartbeat.role == .primary, heartbeat.from == sender, before.voters.contains(sender),
                   after.leaderID == sender, after.term == heartbeat.term
                {
                    checker.notePrimaryContact(node: id, primary: sender, atNanoseconds: now)
                }
            case .voteResponse, .timeoutNow, .configuration, .configurationAck:
                break
            }
        }
        checker.checkLiveTerm(node: id, term: after.term, atNanoseconds: now)
        checker.checkTransfersEnd(node: id, leads: after.state == .leader, atNanoseconds: now)
        checker.checkNode(
            node: id, term: after.term, epoch: after.epoch, fencingEpoch: after.fencingEpoch, leaderID: after.leaderID,
            votes: after.isVoter, atNanoseconds: now)
        scheduleTick(index)
    }

    /// Starts the asynchronous write of a `.persist`: its outcome is drawn now and reported when
    /// it completes. Until the heal, some writes are slow and some fail.
    private mutating func startWrite(_ index: Int, _ state: DurableElectionState) {
        if nodes[index].writing != nil {
            checker.report("\(nodes[index].id) started a write while one was in flight", atNanoseconds: nowNanoseconds)
        }
        nodes[index].writing = state
        writes += 1
        let delay: UInt64
        if !healed, config.slowWritePercent > 0, rng.uniform(100) < UInt64(config.slowWritePercent) {
            delay = rng.uniform(config.slowWriteMaxNanoseconds + 1)
        } else {
            delay = rng.uniform(config.writeDelayMaxNanoseconds + 1)
        }
        let forced = failsNextWrite.remove(index) != nil  // a transfer fault
        let fails = !healed && (forced || config.writeFailurePercent > 0 && rng.uniform(100) < UInt64(config.writeFailurePercent))
        if fails { writesFailed += 1 }
        queue.push(
            .writeDone(node: index, incarnation: nodes[index].incarnation, fails: fails),
            atNanoseconds: nowNanoseconds + delay)
    }

    /// A write reaches the node's disk.
    private mutating func land(_ index: Int, _ state: DurableElectionState) {
        nodes[index].olderDisk = nodes[index].disk
        nodes[index].disk = state
        checker.notePersist(node: nodes[index].id, state, atNanoseconds: nowNanoseconds)
        if config.voterChanges {  // otherwise the driver edits each node's voters in place (no lineage)
            checker.noteStoredConfiguration(
                node: nodes[index].id, state.configuration, term: state.term, atNanoseconds: nowNanoseconds)
        }
    }

    private mutating func scheduleTick(_ index: Int) {
        guard let deadline = nodes[index].core.nextDeadline else { return }
        let at = max(deadline.nanoseconds, nowNanoseconds)
        if let pending = nodes[index].tickAtNanoseconds, pending <= at { return }
        nodes[index].tickAtNanoseconds = at
        queue.push(.tick(node: index, incarnation: nodes[index].incarnation), atNanoseconds: at)
    }

    private mutating func sendHeartbeats(_ index: Int) {
        let core = nodes[index].core
        // With voters by consent, every node is heartbeated (members that do not vote follow the
        // primary too), as the node runtime heartbeats its linked peers.
        for voter in (config.voterChanges ? nodes.map(\.id) : nodes[index].voters) where voter != nodes[index].id {
            nodes[index].heartbeatSeq += 1
            let heartbeat = core.heartbeat(seq: nodes[index].heartbeatSeq)
            if let to = indexByID[voter] { transmit(from: index, to: to, .heartbeat(heartbeat)) }
        }
    }

    /// Puts a message on the simulated network: maybe lost, maybe duplicated, each copy with its
    /// own random delay (so messages reorder).
    private mutating func transmit(from: Int, to: Int, _ message: ElectionMessage) {
        messagesSent += 1
        if case .timeoutNow = message, dropsTimeoutNow.contains(from) { return }  // a transfer fault
        if lossPercent > 0, rng.uniform(100) < UInt64(lossPercent) { return }
        var copies = 1
        if config.duplicatePercent > 0, rng.uniform(100) < UInt64(config.duplicatePercent) { copies = 2 }
        for _ in 0..<copies {
            let spread = config.delayMaxNanoseconds - config.delayMinNanoseconds + 1
            let delay = config.delayMinNanoseconds + rng.uniform(spread)
            queue.push(.deliver(from: from, to: to, message), atNanoseconds: nowNanoseconds + delay)
        }
    }

    // MARK: Faults

    private mutating func nextChaosGap() -> UInt64 {
        let gap = max(8, config.chaosGapMaxNanoseconds)
        return gap / 8 + rng.uniform(gap - gap / 8)
    }

    private mutating func injectFault() {
        let n = nodes.count
        switch rng.uniform(100) {
        case 0..<25 where config.partitions:
            if rng.uniform(3) == 0 {
                let isolated = rng.index(n)  // cut one node off
                for i in 0..<n { group[i] = i == isolated ? 1 : 0 }
            } else {
                for i in 0..<n { group[i] = Int(rng.uniform(2)) }  // a random split
            }
        case 25..<40 where config.partitions:
            for i in 0..<n { group[i] = 0 }
        case 40..<55 where config.crashes:
            let candidates = nodes.indices.filter { nodes[$0].up }
            if !candidates.isEmpty { crash(candidates[rng.index(candidates.count)]) }
        case 55..<70 where config.crashes:
            let candidates = nodes.indices.filter { !nodes[$0].up }
            if !candidates.isEmpty { restart(candidates[rng.index(candidates.count)]) }
        case 70..<80 where config.forcedElections:
            let candidates = nodes.indices.filter { nodes[$0].up }
            if !candidates.isEmpty { step(candidates[rng.index(candidates.count)], .startElection) }
        case 80..<85 where config.forcedElections:
            if let leader = nodes.indices.first(where: { nodes[$0].up && nodes[$0].core.state == .leader }) {
                step(leader, .stepDown(term: nodes[leader].core.term))
            }
        default:
            lossPercent = config.lossMaxPercent == 0 ? 0 : rng.index(config.lossMaxPercent + 1)
        }
    }

    /// The node stops at once. A write in flight lands or not (even odds); its report never comes.
    private mutating func crash(_ index: Int) {
        nodes[index].up = false
        nodes[index].tickAtNanoseconds = nil
        // Its kernel closes its sockets: every peer the path reaches sees its link end, after
        // whatever the node sent before (TCP delivers the data before the end).
        for peer in nodes.indices where peer != index && nodes[peer].up && pathIsOpen(from: index, to: peer) {
            queue.push(
                .linkEnded(node: peer, peer: index, incarnation: nodes[peer].incarnation),
                atNanoseconds: nowNanoseconds + config.delayMaxNanoseconds + 1)
        }
        checker.noteCrash(node: nodes[index].id)
        awaitingTransferLeader = awaitingTransferLeader.filter { $0.value.leader != index }  // its transfer ends unreported
        var lost: DurableElectionState?
        if let state = nodes[index].writing {
            nodes[index].writing = nil
            if rng.uniform(2) == 0 { land(index, state) } else { lost = state }
        }
        if isTracing { note("\(nodes[index].id) crashed" + (lost.map { ", write in flight lost: \($0)" } ?? "")) }
    }

    /// True when a trace is recorded from now on.
    private var isTracing: Bool {
        guard let from = config.traceFromNanoseconds else { return false }
        return nowNanoseconds >= from
    }

    /// Adds a line to the trace (check ``isTracing`` first).
    private mutating func note(_ text: String) {
        trace.append("\(Double(nowNanoseconds) / 1e6)ms \(text)")
    }

    /// A new core from what the disk holds: whatever was not written is gone. The LSN is the
    /// storage's, which survives.
    private mutating func restart(_ index: Int) {
        let node = nodes[index]
        var durable = config.sabotage.contains(.restartFromOlderState) ? node.olderDisk : node.disk
        // The voters are the driver's (its membership model changes them with `addVoter` and
        // `removeVoter`): the restarted core takes them, not the configuration its disk holds;
        // unless they change by consent: then the disk's configuration is the node's.
        if !config.voterChanges { durable.configuration = .none }
        nodes[index].core = ElectionCore(
            id: node.id, settings: node.settings, durable: durable, voters: node.voters, seed: rng.next(),
            now: CoreInstant(nanoseconds: nowNanoseconds))
        nodes[index].core.disabledRules = config.disabledCoreRules
        nodes[index].up = true
        nodes[index].incarnation += 1
        nodes[index].tickAtNanoseconds = nil
        nodes[index].lastHeard = Array(repeating: nowNanoseconds, count: nodes.count)
        nodes[index].linkOpen = Array(repeating: true, count: nodes.count)
        if config.voterChanges {
            // Its links come back: it and every node tell each other the configuration they hold.
            tellConfiguration(from: index)
            for other in nodes.indices where other != index && nodes[other].up { tellConfiguration(from: other, to: [index]) }
        }
        queue.push(
            .sweep(node: index, incarnation: nodes[index].incarnation),
            atNanoseconds: nowNanoseconds + linkRng.uniform(sweepPeriod))
        checker.noteRestart(node: node.id, term: nodes[index].core.term, atNanoseconds: nowNanoseconds)
        if isTracing { note("\(node.id) restarted from \(durable)") }
        if config.sabotage.contains(.staleLSN) {
            nodes[index].lsnUntold = true
        } else {
            step(index, .setLocalLSN(toldLSN(node.lsn)))
        }
        queue.push(
            .heartbeat(node: index, incarnation: nodes[index].incarnation),
            atNanoseconds: nowNanoseconds + rng.uniform(config.heartbeatIntervalNanoseconds))
    }

    private mutating func heal() {
        healed = true
        healedAtNanoseconds = nowNanoseconds
        lossPercent = 0
        dropsTimeoutNow.removeAll()
        afterTimeoutNow.removeAll()
        failsNextWrite.removeAll()
        for i in group.indices { group[i] = 0 }
        blockedOneWay.removeAll()
        linkDownUntil.removeAll()
        for index in nodes.indices where !nodes[index].up { restart(index) }
        // The links come back: each node tells each other one the configuration it holds.
        if config.voterChanges { for index in nodes.indices { tellConfiguration(from: index) } }
        // Every view becomes whole again (partial knowledge: every node learns every voter), one
        // voter at a time, within a heartbeat interval: the membership converging.
        removedMembers.removeAll()
        for index in nodes.indices {
            let target = config.knowledge == .partial ? nodes.map(\.id) : nodes[index].baseVoters
            for voter in target where !nodes[index].voters.contains(voter) {
                guard let voterIndex = indexByID[voter] else { continue }
                queue.push(
                    .voterChange(node: index, voter: voterIndex, add: true),
                    atNanoseconds: nowNanoseconds + rng.uniform(config.heartbeatIntervalNanoseconds))
            }
        }
        queue.push(
            .end, atNanoseconds: nowNanoseconds + config.electionBoundNanoseconds + config.stabilityWindowNanoseconds)
    }

    // MARK: Liveness

    /// After the heal: one leader, known to every node at its term, elected within the bound. With
    /// partial knowledge the views have converged by then (see ``SimulationConfig/VoterKnowledge/partial``).
    private mutating func checkLiveness() {
        guard config.knowledge != .disjointGroups else { return }
        let views = nodes.map {
            LivenessView(id: $0.id, state: $0.core.state, term: $0.core.term, leaderID: $0.core.leaderID, votes: $0.core.isVoter)
        }
        electedAfterHeal = checker.checkLiveness(
            nodes: views, healedAtNanoseconds: healedAtNanoseconds, boundNanoseconds: config.electionBoundNanoseconds,
            atNanoseconds: nowNanoseconds)
    }
}

// MARK: - LSNs, membership, one-way partitions and hostile peers

extension Simulation {
    /// The driver's LSN moves; the core is told at once (the LSN rule must hold at every vote),
    /// unless the driver is deliberately broken (``SimulationConfig/Sabotage/staleLSN``).
    private mutating func setLSN(_ index: Int, _ lsn: UInt64) {
        nodes[index].lsn = lsn
        if config.sabotage.contains(.staleLSN) {
            nodes[index].lsnUntold = true
        } else {
            step(index, .setLocalLSN(toldLSN(lsn)))
        }
    }

    /// The LSN the driver tells its core: the storage's, or with
    /// ``SimulationConfig/Sabotage/inflatedLSN`` 10^6 more.
    private func toldLSN(_ lsn: UInt64) -> UInt64 {
        config.sabotage.contains(.inflatedLSN) ? lsn + 1_000_000 : lsn
    }

    /// An LSN change at a random moment: the primary took writes, or another node's storage moved
    /// (replication, or writes it took while it was primary and cut off). After the heal only the
    /// primary writes (and followers catch up from its heartbeats), so that liveness is judged on
    /// a cluster at rest.
    private mutating func changeSomeLSN() {
        let up = nodes.indices.filter { nodes[$0].up }
        guard !up.isEmpty else { return }
        let index = up[rng.index(up.count)]
        if nodes[index].core.state == .leader {
            if nodes[index].core.transfer == nil { setLSN(index, nodes[index].lsn + 1 + rng.uniform(3)) }
        } else if !healed {
            setLSN(index, nodes[index].lsn + 1 + rng.uniform(2))
        }
    }

    /// The next membership change or one-way partition.
    private mutating func injectAdversity() {
        let churn = (config.membershipChanges || config.voterChanges) && (!config.oneWayPartitions || rng.uniform(2) == 0)
        if churn, config.voterChanges {
            changeVotersByConsent()
        } else if churn {
            changeMembership()
        } else if config.oneWayPartitions {
            let n = nodes.count
            if rng.uniform(2) == 0 || n < 2 {
                blockedOneWay.removeAll()
            } else {
                for _ in 0..<(1 + rng.index(n)) {
                    let from = rng.index(n)
                    let to = (from + 1 + rng.index(n - 1)) % n
                    blockedOneWay.insert(from * n + to)
                }
            }
        }
    }

    /// A member leaves every other node's view, or one that left comes back, one view at a time
    /// within an election timeout. At most n - majority members are away at once.
    private mutating func changeMembership() {
        let n = nodes.count
        let maxAway = n - (n / 2 + 1)
        let comeBack = !removedMembers.isEmpty && (removedMembers.count >= maxAway || rng.uniform(2) == 0)
        let member: Int
        if comeBack {
            let away = removedMembers.sorted()
            member = away[rng.index(away.count)]
            removedMembers.remove(member)
        } else {
            let present = nodes.indices.filter { !removedMembers.contains($0) }
            guard maxAway > 0, !present.isEmpty else { return }
            member = present[rng.index(present.count)]
            removedMembers.insert(member)
        }
        for index in nodes.indices where index != member {
            if comeBack, !nodes[index].baseVoters.contains(nodes[member].id) { continue }
            queue.push(
                .voterChange(node: index, voter: member, add: comeBack),
                atNanoseconds: nowNanoseconds + rng.uniform(config.electionTimeoutNanoseconds))
        }
    }

    /// What the node runtime does when a link comes up: `from` tells the nodes `to` (by default
    /// all others) the configuration it holds. A node takes it if `from` is one of its voters and
    /// it is newer than its own.
    private mutating func tellConfiguration(from index: Int, to targets: [Int]? = nil) {
        let core = nodes[index].core
        guard nodes[index].up, !core.configuration.isNone else { return }
        let message = ConfigurationMessage(
            from: nodes[index].id, term: core.term, configuration: core.configuration, committed: core.configurationCommitted)
        for target in targets ?? Array(nodes.indices) where target != index {
            transmit(from: index, to: target, .configuration(message))
        }
    }

    /// The primary of the moment (if any node leads) is asked to add a member that does not vote,
    /// or to remove a voter other than itself: one voter at a time, by consent (issue 15). Most
    /// requests are refused while a change is under way or the primary's own configuration is not
    /// committed yet; the core says so, and the checker reads what the disks really hold.
    private mutating func changeVotersByConsent() {
        guard let leader = nodes.indices.first(where: { nodes[$0].up && nodes[$0].core.state == .leader }) else { return }
        let voters = nodes[leader].core.voters
        let members = nodes.map(\.id).filter { !voters.contains($0) }
        let removable = voters.filter { $0 != nodes[leader].id }.sorted()
        let change: VoterChange
        if !removable.isEmpty, members.isEmpty || rng.uniform(2) == 0 {
            change = .remove(removable[rng.index(removable.count)])
        } else if !members.isEmpty {
            change = .add(members[rng.index(members.count)])
        } else {
            return
        }
        voterChangesAsked += 1
        step(leader, .changeVoters(change))
    }

    /// One node's view gains or loses a voter. A removal that lands after the heal is void.
    private mutating func changeView(of index: Int, voter: Int, add: Bool) {
        let id = nodes[voter].id
        if add {
            guard !nodes[index].voters.contains(id) else { return }
            nodes[index].voters.append(id)
            nodes[index].voters.sort()
            if nodes[index].up { step(index, .addVoter(id)) }
        } else {
            guard !healed, nodes[index].voters.contains(id) else { return }
            nodes[index].voters.removeAll { $0 == id }
            if nodes[index].up { step(index, .removeVoter(id)) }
        }
    }

    private mutating func nextTransferGap() -> UInt64 {
        let gap = max(8, config.transferGapMaxNanoseconds)
        return gap / 8 + rng.uniform(gap - gap / 8)
    }

    /// A leadership transfer request: to a random up leader (one time in eight to another up
    /// node, which must refuse), to a random node (itself included, which it must refuse) or to
    /// none named. ``SimulationConfig/transferFaultPercent`` of them fail halfway, in one of five
    /// ways: the leader's TimeoutNow messages are lost, the target crashes or is cut off right
    /// after it gets one, the leader's or the target's next write fails.
    private mutating func requestTransfer() {
        let up = nodes.indices.filter { nodes[$0].up }
        guard !up.isEmpty else { return }
        let leaders = up.filter { nodes[$0].core.state == .leader }
        let asked = leaders.isEmpty || rng.uniform(8) == 0 ? up[rng.index(up.count)] : leaders[rng.index(leaders.count)]
        let named: String? = rng.uniform(2) == 0 ? nil : nodes[rng.index(nodes.count)].id
        let fault = rng.uniform(100) < UInt64(config.transferFaultPercent) ? rng.uniform(5) : 5
        if fault == 0 { dropsTimeoutNow.insert(asked) }
        transferStats.requested += 1
        if isTracing { note("\(nodes[asked].id) asked to transfer to \(named ?? "the best voter"), fault \(fault)") }
        step(asked, .transferLeadership(to: named))
        guard let target = nodes[asked].core.transfer?.target, let targetIndex = indexByID[target],
              nodes[asked].core.transfer?.startedAt.nanoseconds == nowNanoseconds
        else {
            dropsTimeoutNow.remove(asked)  // refused: nothing to lose
            return
        }
        switch fault {
        case 1: afterTimeoutNow[targetIndex] = .crash
        case 2: afterTimeoutNow[targetIndex] = .cutOff
        case 3: failsNextWrite.insert(asked)
        case 4: failsNextWrite.insert(targetIndex)
        default: break
        }
    }

    private mutating func nextHostileGap() -> UInt64 {
        1 + rng.uniform(config.electionTimeoutNanoseconds / 2)
    }

    /// One message from a stranger or a hostile peer to a random up node. A stranger has an id
    /// no node knows; a hostile member sends over its own (real) link, so the transport's `from`
    /// is its id, but the body may name another node. Everything but the members' in-reach
    /// vote requests (sent only before the heal) must leave no trace in any core.
    private mutating func injectHostile() {
        let up = nodes.indices.filter { nodes[$0].up }
        guard !up.isEmpty else { return }
        let target = up[rng.index(up.count)]
        let core = nodes[target].core
        let others = nodes.indices.filter { $0 != target }.map { nodes[$0].id }
        let stranger = "intruder\(rng.uniform(3))"
        let top: UInt64 = (1 << 63) - 1
        // Beyond reach however the target's term moves before it arrives: twice the jump.
        let farTerms = [top, core.term + 2 * ElectionCore.maxTermJump + rng.uniform(1000), core.term &+ (1 << 62)]
        let farTerm = farTerms[rng.index(farTerms.count)]
        let nearTerm = core.term + 1 + rng.uniform(3)
        let highLSN = UInt64(1) << 40
        var from = stranger
        let message: ElectionMessage
        switch rng.uniform(others.isEmpty ? 3 : config.transfers ? 10 : 8) {
        case 0:  // a stranger asks for votes, near or far
            let term = rng.uniform(2) == 0 ? nearTerm : farTerm
            let epoch = rng.uniform(2) == 0 ? core.epoch : top
            message = .voteRequest(
                VoteRequest(
                    candidateID: stranger, term: term, lastLSN: highLSN, epoch: epoch, preVote: rng.uniform(2) == 0,
                    configuration: core.configuration.id))
        case 1:  // a stranger claims to be primary
            let term = [core.term, nearTerm, farTerm][rng.index(3)]
            message = .heartbeat(HeartbeatMessage(from: stranger, seq: 1, epoch: core.epoch + 1, term: term, lsn: highLSN, role: .primary))
        case 2:  // a stranger votes
            message = .voteResponse(VoteResponse(voterID: stranger, term: core.term, voteGranted: true, epoch: core.epoch))
        case 3:  // a member forges another voter's vote
            from = others[rng.index(others.count)]
            let forged = ([core.id] + others).filter { $0 != from }
            message = .voteResponse(
                VoteResponse(voterID: forged[rng.index(forged.count)], term: core.term, voteGranted: true, epoch: core.epoch))
        case 4:  // a member forges another node's primary heartbeat, to keep it alive or depose the leader
            from = others[rng.index(others.count)]
            let forged = ([core.id] + others).filter { $0 != from }
            let term = rng.uniform(2) == 0 ? core.term : nearTerm
            message = .heartbeat(HeartbeatMessage(
                from: forged[rng.index(forged.count)], seq: 1, epoch: core.epoch, term: term, lsn: highLSN,
                role: rng.uniform(2) == 0 ? .primary : .replica))
        case 5:  // a member asks for votes for another node
            from = others[rng.index(others.count)]
            let forged = others.filter { $0 != from } + [stranger]
            message = .voteRequest(VoteRequest(
                candidateID: forged[rng.index(forged.count)], term: nearTerm, lastLSN: highLSN, epoch: core.epoch,
                configuration: core.configuration.id))
        case 6:  // a member sends a term or epoch beyond reach
            from = others[rng.index(others.count)]
            if rng.uniform(2) == 0 {
                let epoch = rng.uniform(2) == 0 ? core.epoch + 1_000 + rng.uniform(100) : top  // beyond epoch + 1
                message = .voteRequest(VoteRequest(
                    candidateID: from, term: farTerm, lastLSN: highLSN, epoch: epoch, configuration: core.configuration.id))
            } else {
                message = .heartbeat(HeartbeatMessage(from: from, seq: 1, epoch: core.epoch, term: farTerm, lsn: 0, role: .replica))
            }
        case 8:  // a member tells the node to stand now: ignored unless it is the node's leader (only while faults last)
            from = others[rng.index(others.count)]
            guard !healed else { return }
            message = .timeoutNow(TimeoutNowMessage(from: from, term: core.term))
        case 9:  // a member forges a transfer-marked vote request: honoured from a voter (only while faults last)
            from = others[rng.index(others.count)]
            guard !healed else { return }
            checker.noteHostileRequest(term: core.term + 1, epoch: core.epoch)
            message = .voteRequest(VoteRequest(
                candidateID: from, term: core.term + 1, lastLSN: highLSN, epoch: core.epoch, transfer: true,
                configuration: core.configuration.id))
        default:  // a member asks for votes with rising terms (only while faults last)
            from = others[rng.index(others.count)]
            guard !healed else { return }
            checker.noteHostileRequest(term: nearTerm, epoch: core.epoch)
            message = .voteRequest(VoteRequest(
                candidateID: from, term: nearTerm, lastLSN: highLSN, epoch: core.epoch, configuration: core.configuration.id))
        }
        let delay = rng.uniform(config.delayMaxNanoseconds + 1)
        queue.push(.inject(from: from, to: target, message), atNanoseconds: nowNanoseconds + delay)
    }
}

// MARK: - Links: crash evidence, the sweep, spurious drops; the failover probe

extension Simulation {
    /// How often a node's link sweep runs: as the runtime's `LinkTable`, a quarter of the election
    /// timeout (at least 5 ms).
    private var sweepPeriod: UInt64 { max(5_000_000, config.electionTimeoutNanoseconds / 4) }

    private func linkKey(_ a: Int, _ b: Int) -> Int { min(a, b) * nodes.count + max(a, b) }

    /// True while the link between `a` and `b` is down after a spurious drop.
    private func isLinkDown(_ a: Int, _ b: Int) -> Bool {
        guard let until = linkDownUntil[linkKey(a, b)] else { return false }
        return nowNanoseconds < until
    }

    /// Whether something `from` sends now can reach `to` (partitions, one-way cuts, a dropped link).
    private func pathIsOpen(from: Int, to: Int) -> Bool {
        group[from] == group[to] && !blockedOneWay.contains(from * nodes.count + to) && !isLinkDown(from, to)
    }

    /// The runtime's sweep: every open link whose peer has been silent for an election timeout
    /// is closed (the core learns it), and the peer sees its end too if the path to it is open.
    private mutating func sweep(_ index: Int) {
        for peer in nodes.indices where peer != index && nodes[index].linkOpen[peer]
            && nowNanoseconds - min(nowNanoseconds, nodes[index].lastHeard[peer]) >= config.electionTimeoutNanoseconds
        {
            endLink(at: index, to: peer, tellPeer: true)
        }
    }

    /// `index` sees its link to `peer` end: the core is stepped with `.peerUnreachable`. With
    /// `tellPeer` (this end closed it), the other end sees the end too, if the path reaches it.
    private mutating func endLink(at index: Int, to peer: Int, tellPeer: Bool) {
        nodes[index].linkOpen[peer] = false
        linkEnds += 1
        let peerID = nodes[peer].id
        if isTracing { note("\(nodes[index].id) lost its link to \(peerID)") }
        checker.noteLinkLost(node: nodes[index].id, peer: peerID)
        step(index, .peerUnreachable(peerID))
        if tellPeer, nodes[peer].up, pathIsOpen(from: index, to: peer) {
            queue.push(
                .linkEnded(node: peer, peer: index, incarnation: nodes[peer].incarnation),
                atNanoseconds: nowNanoseconds + config.delayMaxNanoseconds + 1)
        }
    }

    private mutating func nextLinkDropGap() -> UInt64 {
        let gap = max(8, config.linkDropGapMaxNanoseconds)
        return gap / 8 + linkRng.uniform(gap - gap / 8)
    }

    /// A spurious drop: the link between two live nodes ends at both ends (each sees it within a
    /// message delay) and carries nothing until it is dialled again, 1 ms to
    /// ``SimulationConfig/linkDropOutageMaxNanoseconds`` later.
    private mutating func dropSomeLink() {
        let up = nodes.indices.filter { nodes[$0].up }
        guard up.count >= 2 else { return }
        let a = up[linkRng.index(up.count)]
        let others = up.filter { $0 != a }
        let b = others[linkRng.index(others.count)]
        let outage = max(1_000_000, config.linkDropOutageMaxNanoseconds) - 1_000_000
        linkDownUntil[linkKey(a, b)] = nowNanoseconds + 1_000_000 + linkRng.uniform(outage + 1)
        if isTracing { note("the link between \(nodes[a].id) and \(nodes[b].id) dropped") }
        for (node, peer) in [(a, b), (b, a)] {
            queue.push(
                .linkEnded(node: node, peer: peer, incarnation: nodes[node].incarnation),
                atNanoseconds: nowNanoseconds + 1 + linkRng.uniform(config.delayMaxNanoseconds))
        }
    }

    /// The failover probe's fault: once a primary is followed by every node (checked again every
    /// heartbeat interval until then), it crashes or goes silent.
    private mutating func failPrimary() {
        guard let primary = nodes.indices.first(where: { nodes[$0].up && nodes[$0].core.state == .leader }),
              nodes.allSatisfy({ $0.up && $0.core.leaderID == nodes[primary].id && $0.core.term == nodes[primary].core.term })
        else {
            queue.push(.failoverFault, atNanoseconds: nowNanoseconds + config.heartbeatIntervalNanoseconds)
            return
        }
        failedPrimary = primary
        failoverAtNanoseconds = nowNanoseconds
        if isTracing { note("failover probe: \(nodes[primary].id) fails (\(config.failoverFault?.rawValue ?? "-"))") }
        switch config.failoverFault {
        case .crash: crash(primary)
        case .silent: for i in group.indices { group[i] = i == primary ? 1 : 0 }
        case nil: break
        }
    }

    /// The failover probe ends once every survivor names the same new primary, which leads its term.
    private mutating func checkFailoverDone() {
        guard let failed = failedPrimary, let since = failoverAtNanoseconds else { return }
        let survivors = nodes.indices.filter { $0 != failed && nodes[$0].up }
        guard let first = survivors.first, let leader = nodes[first].core.leaderID, leader != nodes[failed].id,
              let leaderIndex = indexByID[leader], nodes[leaderIndex].core.state == .leader
        else { return }
        let term = nodes[leaderIndex].core.term
        guard survivors.allSatisfy({ nodes[$0].core.leaderID == leader && nodes[$0].core.term == term }) else { return }
        failoverLatency = nowNanoseconds - since
        finished = true
    }
}
