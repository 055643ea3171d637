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
    }

    private var rng: SplitMix64
    private var nowNanoseconds: UInt64 = 0
    private var queue = EventQueue()
    private var nodes: [Node] = []
    private var indexByID: [String: Int] = [:]
    /// Partition group of each node: messages pass only within a group.
    private var group: [Int]
    private var lossPercent = 0
    private var healed = false
    private var healedAtNanoseconds: UInt64 = 0
    private var checker = InvariantChecker()
    private var steps = 0
    private var writes = 0
    private var writesFailed = 0
    private var messagesSent = 0
    private var messagesDelivered = 0
    private var events = 0
    private var finished = false

    /// A simulation of `config`; nothing runs until ``run()``.
    public init(config: SimulationConfig) {
        self.config = config
        rng = SplitMix64(seed: config.seed)
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
                minQuorumSize = 1 + rng.index(majority)  // any floor: a majority is needed anyway
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
            let settings = ElectionCore.Settings(
                electionTimeout: config.electionTimeoutNanoseconds,
                heartbeatInterval: config.heartbeatIntervalNanoseconds,
                voteRequestTimeout: config.voteRequestTimeoutNanoseconds,
                minQuorumSize: minQuorumSize,
                priority: 1 + Int(rng.uniform(3)),
                autoFailover: true,
                maxElectionRetries: config.maxElectionRetries)
            let core = ElectionCore(
                id: id, settings: settings, durable: DurableElectionState(), voters: voters, seed: rng.next(),
                now: .zero)
            nodes.append(Node(id: id, core: core, settings: settings, voters: voters))
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
        while !finished, checker.violations.isEmpty, let (time, event) = queue.pop() {
            events += 1
            if events > config.maxEvents {
                checker.report("more than \(config.maxEvents) events: runaway run", atNanoseconds: time)
                break
            }
            nowNanoseconds = time
            handle(event)
        }
        var leaders = checker.leaderByTerm.map { term, record in
            SimulationResult.Leader(term: term, node: record.node, epoch: record.epoch, atNanoseconds: record.atNanoseconds)
        }
        leaders.sort { $0.term < $1.term }
        return SimulationResult(
            config: config, violations: checker.violations, leaders: leaders, steps: steps, writes: writes,
            writesFailed: writesFailed,
            messagesSent: messagesSent, messagesDelivered: messagesDelivered, healedAtNanoseconds: healedAtNanoseconds,
            leaderElectedAfterHealNanoseconds: electedAfterHeal, trace: trace)
    }

    private var electedAfterHeal: UInt64?
    private var trace: [String] = []

    // MARK: Events

    private mutating func handle(_ event: SimulationEvent) {
        switch event {
        case .deliver(let from, let to, let message):
            guard nodes[to].up, group[from] == group[to] else { return }
            messagesDelivered += 1
            step(to, .receive(from: nodes[from].id, message))
            if case .heartbeat(let heartbeat) = message, heartbeat.role == .primary,
               nodes[to].up, nodes[to].core.leaderID == heartbeat.from, heartbeat.lsn > nodes[to].lsn,
               rng.uniform(2) == 0
            {
                nodes[to].lsn = heartbeat.lsn  // replication caught up with the leader
                step(to, .setLocalLSN(heartbeat.lsn))
            }
        case .tick(let index, let incarnation):
            guard nodes[index].up, nodes[index].incarnation == incarnation,
                  nodes[index].tickAtNanoseconds == nowNanoseconds
            else { return }
            nodes[index].tickAtNanoseconds = nil
            step(index, .tick)
        case .heartbeat(let index, let incarnation):
            guard nodes[index].up, nodes[index].incarnation == incarnation else { return }
            if nodes[index].core.state == .leader, rng.uniform(2) == 0 {
                nodes[index].lsn += 1 + rng.uniform(3)  // the primary took writes
                step(index, .setLocalLSN(nodes[index].lsn))
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
            checkLiveness()
            finished = true
        }
    }

    /// Feeds one event to a node's core and carries out its directives, checking as it goes.
    private mutating func step(_ index: Int, _ event: ElectionEvent) {
        let now = nowNanoseconds
        let id = nodes[index].id
        let core = nodes[index].core
        if case .receive(_, .voteRequest(let request)) = event {
            let before = NodeSnapshot(term: core.term, votedFor: core.votedFor, epoch: core.epoch, localLSN: core.localLSN)
            checker.noteVoteRequest(node: id, request, before: before)
        }
        let directives = nodes[index].core.step(event, now: CoreInstant(nanoseconds: now))
        steps += 1
        if let from = config.traceFromNanoseconds, now >= from, !directives.isEmpty {
            trace.append("\(Double(now) / 1e6)ms \(id) \(event) -> \(directives)")
        }
        for directive in directives {
            switch directive {
            case .persist(let state):
                startWrite(index, state)
            case .send(let peer, let message):
                checker.noteSend(node: id, to: peer, message, disk: nodes[index].disk, atNanoseconds: now)
                if let to = indexByID[peer] { transmit(from: index, to: to, message) }
            case .broadcastHeartbeat:
                sendHeartbeats(index)
            case .stateChanged(let state, let term, _):
                if state == .leader {
                    checker.noteLeader(
                        node: id, term: term, epoch: nodes[index].core.fencingEpoch, disk: nodes[index].disk,
                        atNanoseconds: now)
                }
            case .epochChanged(let epoch):
                let own = nodes[index].core.state == .leader && nodes[index].core.epoch == epoch
                checker.noteFencingEpoch(node: id, epoch, own: own, atNanoseconds: now)
            case .leaderChanged:
                break
            case .dualPrimaryDetected(let term, let primaries):
                checker.report("\(id) detected two primaries in term \(term): \(primaries)", atNanoseconds: now)
            }
        }
        checker.checkLiveTerm(node: id, term: nodes[index].core.term, atNanoseconds: now)
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
        let fails = !healed && config.writeFailurePercent > 0 && rng.uniform(100) < UInt64(config.writeFailurePercent)
        if fails { writesFailed += 1 }
        queue.push(
            .writeDone(node: index, incarnation: nodes[index].incarnation, fails: fails),
            atNanoseconds: nowNanoseconds + delay)
    }

    /// A write reaches the node's disk.
    private mutating func land(_ index: Int, _ state: DurableElectionState) {
        nodes[index].disk = state
        checker.notePersist(node: nodes[index].id, state, atNanoseconds: nowNanoseconds)
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
        for voter in nodes[index].voters where voter != nodes[index].id {
            nodes[index].heartbeatSeq += 1
            let heartbeat = core.heartbeat(seq: nodes[index].heartbeatSeq)
            if let to = indexByID[voter] { transmit(from: index, to: to, .heartbeat(heartbeat)) }
        }
    }

    /// Puts a message on the simulated network: maybe lost, maybe duplicated, each copy with its
    /// own random delay (so messages reorder).
    private mutating func transmit(from: Int, to: Int, _ message: ElectionMessage) {
        messagesSent += 1
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
        nodes[index].core = ElectionCore(
            id: node.id, settings: node.settings, durable: node.disk, voters: node.voters, seed: rng.next(),
            now: CoreInstant(nanoseconds: nowNanoseconds))
        nodes[index].up = true
        nodes[index].incarnation += 1
        nodes[index].tickAtNanoseconds = nil
        checker.noteRestart(node: node.id, term: nodes[index].core.term, atNanoseconds: nowNanoseconds)
        if isTracing { note("\(node.id) restarted from \(node.disk)") }
        step(index, .setLocalLSN(node.lsn))
        queue.push(
            .heartbeat(node: index, incarnation: nodes[index].incarnation),
            atNanoseconds: nowNanoseconds + rng.uniform(config.heartbeatIntervalNanoseconds))
    }

    private mutating func heal() {
        healed = true
        healedAtNanoseconds = nowNanoseconds
        lossPercent = 0
        for i in group.indices { group[i] = 0 }
        for index in nodes.indices where !nodes[index].up { restart(index) }
        queue.push(
            .end, atNanoseconds: nowNanoseconds + config.electionBoundNanoseconds + config.stabilityWindowNanoseconds)
    }

    // MARK: Liveness

    /// After the heal: one leader, known to every node at its term, elected within the bound.
    private mutating func checkLiveness() {
        guard config.knowledge == .full else { return }
        let leaders = nodes.filter { $0.core.state == .leader }
        guard leaders.count == 1, let leader = leaders.first else {
            checker.report(
                "no single leader at the end (\(leaders.map(\.id))), \(Double(nowNanoseconds - healedAtNanoseconds) / 1e6)ms"
                    + " after the heal; states: \(stateSummary)", atNanoseconds: nowNanoseconds)
            return
        }
        let term = leader.core.term
        let lagging = nodes.filter { $0.core.term != term || $0.core.leaderID != leader.id }
        if !lagging.isEmpty {
            checker.report(
                "\(leader.id) leads term \(term) but not every node follows it; states: \(stateSummary)",
                atNanoseconds: nowNanoseconds)
            return
        }
        let electedAt = checker.leaderByTerm[term]?.atNanoseconds ?? 0
        let after = electedAt > healedAtNanoseconds ? electedAt - healedAtNanoseconds : 0
        if after > config.electionBoundNanoseconds {
            checker.report(
                "leader \(leader.id) of term \(term) elected \(Double(after) / 1e6)ms after the heal,"
                    + " beyond the bound of \(Double(config.electionBoundNanoseconds) / 1e6)ms", atNanoseconds: nowNanoseconds)
            return
        }
        electedAfterHeal = after
    }

    private var stateSummary: String {
        nodes.map { "\($0.id):\($0.core.state)/t\($0.core.term)/e\($0.core.epoch)/lsn\($0.lsn)/leader=\($0.core.leaderID ?? "-")" }
            .joined(separator: " ")
    }
}
