import ClusterCore
import CoreMetrics
import FoundationEssentials
import Logging
import UV

/// One node's runtime on its libuv loop: drives the election core and carries out its
/// directives. The jobs around it each have a type of their own:
/// - ``LinkTable``: the listener, the peer links and clients, their slots and liveness;
/// - ``PeerProtocol``: frames, hello and goodbye, sender binding, heartbeats out;
/// - ``JSONService``: the JSON-lines service;
/// - ``Outbox``: buffered writes and the write limits;
/// - ``Persister``: the durable election state, written off the loop;
/// - ``StatusPublisher``: the status other threads read, observers and callbacks.
///
/// Threading: every stored property is touched on the loop thread only, except the publisher,
/// which is locked. Other threads reach the runtime through `loop.execute`. That is why it can be
/// `@unchecked Sendable`. The state every frame touches (the core, the stats, the read's clock)
/// is `@exclusivity(unchecked)`, as in ``Link``, ``Peer``, ``PeerProtocol`` and ``Outbox``: one
/// thread, no overlapping access, and the dynamic checks cost a tenth of a frame.
final class NodeRuntime: @unchecked Sendable {
    /// What the runtime's callbacks on the loop hold instead of a weak reference to it (see
    /// `RuntimeAnchor`); it points here from the end of `init` until `shutdown()`.
    let anchor = RuntimeAnchor()
    let loop: UVLoop
    /// False when the loop came from `NodeOptions.loop`: its owner shuts it down.
    private let ownsLoop: Bool
    let config: ClusterConfig
    let options: NodeOptions
    let membership: ClusterMembership
    let logger: Logger
    @exclusivity(unchecked) private(set) var core: ElectionCore
    let publisher: StatusPublisher
    let outbox: Outbox
    private(set) lazy var links = LinkTable(node: self, seed: seed)
    private(set) lazy var peerProtocol = PeerProtocol(node: self)
    private(set) lazy var jsonService = JSONService(node: self)
    private(set) lazy var datagrams = DatagramChannel(node: self)
    private(set) lazy var gossip = GossipService(node: self)
    let persister: Persister?
    let metrics: NodeMetrics
    /// `cluster bench`'s probes, or nil.
    let benchHooks: BenchHooks?
    private var metricsTimer: UVTimer?
    /// Set when durable state could not be read: the node then refuses to vote or stand.
    let storageError: ClusterError?

    private var heartbeatTimer: UVTimer?
    private var tickTimer: UVTimer?
    @exclusivity(unchecked) private var tickArmedFor: UInt64?
    @exclusivity(unchecked) private var running = false
    @exclusivity(unchecked) private var lastView = StepView()
    private let originNs: UInt64
    let seed: UInt64
    @exclusivity(unchecked) var faults = NetworkFaults()
    @exclusivity(unchecked) var stats = NodeStats()
    private var membershipObserver: MembershipObserverToken?
    /// True while a pass of `membersChanged` is queued on the loop (any thread sets it).
    private let membersChangeScheduled = UVLocked(false)
    /// Vote requests from outside the peer links (the API, JSON clients) waiting for the core's
    /// answer: a grant goes out only once it is durable.
    private var voteWaiters: [(candidate: String, answer: (VoteResponse) -> Void)] = []
    /// Answers decided during a step, given once the step is done (see `step`).
    private var readyAnswers: [() -> Void] = []
    /// Who waits for the outcome of the leadership transfer under way.
    private var transferWaiters: [(Result<String, ClusterError>) -> Void] = []
    /// Who waits for the outcome of a voter change.
    private var voterChangeWaiters: [(change: VoterChange, answer: (Result<VoterConfiguration, ClusterError>) -> Void)] = []
    /// The election state read from the data directory at start.
    private let restored: DurableElectionState
    /// While this node bootstraps the first voters with others (`NodeOptions.Bootstrap.expect`).
    private var bootstrapAgreement: BootstrapAgreement?
    /// The last bootstrap problem logged, so that each is said once.
    private var bootstrapProblemLogged: String?
    /// The voters last logged, so that a new configuration of the same voters is not said again.
    private var votersLogged: [String]?
    /// Durable writes failed in a row (0: the last one succeeded), and when the last failure was
    /// logged: the first failure is said in full, a run of them once every ten seconds, the
    /// recovery once.
    private var failedWritesInRow = 0
    private var failureLoggedNs: UInt64 = 0

    init(config: ClusterConfig, membership: ClusterMembership, options: NodeOptions) {
        self.config = config
        self.options = options
        self.membership = membership
        var logger = options.logger
        logger[metadataKey: "node"] = "\(config.nodeID)"
        self.logger = logger
        (loop, ownsLoop) = options.resolveLoop(name: "cluster-\(config.nodeID)")
        publisher = StatusPublisher(label: "cluster.callbacks.\(config.nodeID)")
        metrics = NodeMetrics(nodeID: config.nodeID, factory: options.metricsFactory ?? MetricsSystem.factory)
        benchHooks = options.benchHooks
        outbox = Outbox(softLimit: options.maxQueuedBytes, hardLimit: options.maxQueuedBytesHard, clientLimit: options.maxClientReplyBytes)
        originNs = UVLoop.hrtimeNs()
        seed = options.randomSeed ?? UInt64.random(in: .min ... .max)
        var durable = DurableElectionState()
        var storeError: ClusterError?
        var persister: Persister?
        if let dir = options.dataDirectory {
            do {
                let store = try DurableStateStore(directory: dir)
                let saved = try store.load()
                durable = saved.state
                persister = Persister(store: store, sequence: saved.sequence, loop: loop, beforeSync: options.persistBeforeSync)
            } catch {
                storeError = error
            }
        }
        self.persister = persister
        self.storageError = storeError
        restored = durable
        // The library's way (the membership's members at start are the first voters) is re-derived
        // at each start, as the core's own argument; the others are stepped in at start and written.
        let initialVoters = options.bootstrap == .members ? membership.allNodes.map(\.id) : []
        core = ElectionCore(
            id: config.nodeID, settings: ElectionCore.Settings(config: config), durable: durable,
            voters: initialVoters, seed: seed, now: CoreInstant(nanoseconds: 0))
        membership.setLocalTerm(durable.term)
        outbox.findLink = { [anchor] id in anchor.runtime?.links.links[id] }
        outbox.onDrained = { [anchor] link in
            if link.kind == .json, let runtime = anchor.runtime {
                runtime.jsonService.resume(link)
                runtime.outbox.flush()
            } else {
                link.conn.resumeReading()
            }
        }
        outbox.onOverflow = { [unowned self] link in
            stats.writeOverflows &+= 1
            links.logLimited(.warning, "overflow", "closing \(link.description): more than \(outbox.hardLimit) bytes queued")
            links.close(link)
        }
        lastView = StepView(core)
        publish()
        anchor.runtime = self
    }

    deinit {
        // Normally `shutdown()` cleared it on the loop already; then this only reads it (the
        // loop's callbacks may be reading it at the same time: reads only).
        if anchor.runtime != nil { anchor.runtime = nil }
    }

    /// What a heartbeat carries, read from the core in place (reading `core.epoch` from another
    /// type copies the whole core first).
    @inline(__always)
    func heartbeatState() -> (epoch: UInt64, term: UInt64, lsn: UInt64, role: NodeRole) {
        (core.epoch, core.term, core.localLSN, core.role)
    }

    /// Loop time: nanoseconds since the runtime was made. While a read is handled
    /// (``handlingRead(_:)``), the time it arrived: its frames were read at one instant, and the
    /// clock is read once for all of them.
    var nowNs: UInt64 { readNs ?? (UVLoop.hrtimeNs() &- originNs) }
    /// ``nowNs`` on libuv's clock (`UVLoop.hrtimeNs()`), which every node of a process shares:
    /// the benchmark's timestamps, compared across nodes.
    var hrtimeNs: UInt64 { nowNs &+ originNs }
    /// A ``nowNs`` reading already taken, on libuv's clock.
    func hrtimeNs(at now: UInt64) -> UInt64 { now &+ originNs }
    var now: CoreInstant { CoreInstant(nanoseconds: nowNs) }
    @exclusivity(unchecked) private var readNs: UInt64?
    @exclusivity(unchecked) private var readDate: Date?

    /// Runs `body` (the handling of one read) with the clock read once: ``nowNs`` and
    /// ``wallNow`` return the read's time throughout.
    @inline(__always)
    func handlingRead(_ body: (UInt64) -> Void) {
        let ns = UVLoop.hrtimeNs() &- originNs
        readNs = ns
        body(ns)
        readNs = nil
        readDate = nil
    }

    /// The wall clock (the membership's `lastSeen`), read at most once per read handled.
    func wallNow() -> Date {
        if readNs == nil { return Date() }
        if let readDate { return readDate }
        let date = Date()
        readDate = date
        return date
    }

    // MARK: - Running calls from other threads

    /// Runs `body` on the loop and waits for its result; nil once the loop is gone.
    func sync<T: Sendable>(_ body: @escaping @Sendable (NodeRuntime) -> T) -> T? {
        loop.executeAndWait { body(self) }
    }

    // MARK: - Start and stop

    func start() throws(ClusterError) {
        if let storageError { throw storageError }
        let result: ClusterError?? = sync { rt in
            do throws(ClusterError) { try rt.startOnLoop() } catch { return error }
            return nil
        }
        guard let result else { throw .invalidState("the node's event loop has stopped") }
        if let error = result { throw error }
    }

    private func startOnLoop() throws(ClusterError) {
        guard !running else { throw .invalidState("already started") }
        membership.unlinkedLimit = max(1, options.maxUnlinkedMembers)
        guard options.clusterName.utf8.count <= Wire.maxClusterNameBytes else {
            throw .invalidState("the cluster name is longer than \(Wire.maxClusterNameBytes) bytes")
        }
        keyringVersion = options.keyring?.version ?? 0
        let addr = try HostPort(parsing: config.nodeAddr)
        let bound = try links.start(listeningOn: addr)
        membership.setLocalAddr(bound.description)
        datagrams.start(host: bound.host, port: bound.port)
        outbox.datagrams = datagrams
        running = true
        do throws(ClusterError) {
            try gossip.start(address: bound.description, seeds: config.seedNodes)
        } catch {
            stopOnLoop()
            throw error
        }
        do {
            let hb = try UVTimer(loop: loop)
            let intervalMs = max(1, config.heartbeatInterval.nanoseconds / 1_000_000)
            // The first round at a point of the interval of this node's own (from its seed), as
            // the phases of a real cluster's nodes are spread: nodes started together do not
            // all send at the same instant. On a fixed schedule, so that the phases stay spread
            // when many nodes share a busy loop.
            let phaseMs = 1 + (seed ^ (seed >> 29)) % intervalMs
            try hb.startPeriodic(firstTimeoutMs: phaseMs, periodMs: intervalMs) { [anchor] in
                anchor.runtime?.onHeartbeatTimer()
            }
            heartbeatTimer = hb
            tickTimer = try UVTimer(loop: loop)
            let reporter = try UVTimer(loop: loop)
            // Spread too: nodes started together report at different points of the second.
            try reporter.start(timeoutMs: 1000 + (seed >> 7) % 1000, repeatMs: 1000) { [anchor] in anchor.runtime?.reportMetrics() }
            metricsTimer = reporter
        } catch {
            stopOnLoop()
            throw .io("cannot start timers: \(error)")
        }
        // Membership changes made by the application or by discovery reach the loop as events.
        let loop = self.loop
        // Changes coalesce: one pass over the members serves every change made before it runs
        // (a cluster of N learning its members would otherwise make N passes of N each).
        let scheduled = membersChangeScheduled
        // The observer runs on the thread that changed the membership: it touches only the lock
        // and the loop; the anchor is read on the loop.
        let anchor = self.anchor
        membershipObserver = membership.addObserver { _ in
            let first = scheduled.withLock { pending -> Bool in
                defer { pending = true }
                return !pending
            }
            guard first else { return }
            _ = loop.execute {
                scheduled.withLock { $0 = false }
                anchor.runtime?.membersChanged()
            }
        }
        logger.info("listening on \(bound)")
        startVoters()
        membersChanged()
        step(.tick)
        publish()
    }

    func stop() {
        _ = sync { rt in rt.stopOnLoop() }
    }

    /// Leaves the gossip for good (see `GossipService.leave`): `done` runs on the loop once the
    /// news went out, or after two seconds at most, exactly once.
    func leaveGossip(_ done: @escaping () -> Void) {
        guard running, gossip.isRunning, let timer = try? UVTimer(loop: loop) else { return done() }
        var finished = false
        let finish = {
            guard !finished else { return }
            finished = true
            timer.close()
            done()
        }
        try? timer.start(timeoutMs: 2_000) { finish() }
        gossip.leave { finish() }
    }

    /// `cluster bench failover --mode crash`: every connection closed at once, no goodbye, no
    /// step-down message (as when the process is killed); the core then steps down unheard, so
    /// that `start()` brings the node back as a follower.
    func crash() {
        _ = sync { rt in
            guard rt.running else { return }
            rt.links.stop(crashing: true)
            rt.stopOnLoop()
        }
    }

    private func stopOnLoop() {
        guard running else { return }
        // A stopped node hears no one and no timer runs: it must not go on claiming to lead.
        if core.state == .leader { step(.stepDown(term: core.term)) }
        let waiters = transferWaiters
        transferWaiters.removeAll()
        for waiter in waiters { waiter(.failure(.transferFailed("the node stopped"))) }
        let changeWaiters = voterChangeWaiters
        voterChangeWaiters.removeAll()
        for waiter in changeWaiters { waiter.answer(.failure(.voterChangeFailed("the node stopped"))) }
        running = false
        if let membershipObserver {
            membership.removeObserver(membershipObserver)
            self.membershipObserver = nil
        }
        heartbeatTimer?.close()
        heartbeatTimer = nil
        tickTimer?.close()
        tickTimer = nil
        metricsTimer?.close()
        metricsTimer = nil
        tickArmedFor = nil
        links.stop()
        gossip.stop()
        outbox.flush()
        outbox.datagrams = nil
        datagrams.stop()
        publish()
    }

    /// Stops the network and, if the runtime owns it, the loop thread. Unusable afterwards.
    func shutdown() {
        stop()
        // From here on the loop's callbacks find no runtime: cleared on the loop, before the
        // runtime can be freed (see `RuntimeAnchor`).
        _ = loop.executeAndWait { [anchor] in anchor.runtime = nil }
        if ownsLoop { loop.shutdown() }
    }

    // MARK: - Election core

    /// Feeds one event to the core and carries out what it says. Returns the event's own
    /// directives.
    @discardableResult
    func step(_ event: ElectionEvent) -> [ElectionDirective] {
        let directives = core.step(event, now: now)
        if !directives.isEmpty {
            carryOut(directives)
            outbox.flush()
        }
        let after = StepView(core)
        if after != lastView { apply(from: lastView, to: after) }
        armTick()
        if !voteWaiters.isEmpty { settleVoteWaiters() }
        // Answers go out last: whoever waits for one reads a status that already shows its effect.
        while !readyAnswers.isEmpty {
            let answers = readyAnswers
            readyAnswers.removeAll()
            for answer in answers { answer() }
        }
        return directives
    }

    /// What a step can change that others are told of: the one difference computed after each
    /// step (``step(_:)``), whatever directives the core emitted on the way.
    struct StepView: Equatable {
        var term: UInt64 = 0
        var state: ElectionState = .follower
        var leaderID: String?
        /// The fencing epoch this node holds (its own as a durable primary, or the newest heard).
        var epoch: UInt64 = 0
        var votedFor: String?
        var transferTarget: String?

        init() {}
        init(_ core: borrowing ElectionCore) {
            term = core.term
            state = core.state
            leaderID = core.leaderID
            epoch = core.fencingEpoch
            votedFor = core.votedFor
            transferTarget = core.transfer?.target
        }
    }

    /// The effects of one step's difference, in one place: the membership's own role, term and
    /// epoch, the log lines, the metrics, the state callbacks and the published snapshot. A
    /// step that went through states it did not end in (a lone voter stands and wins in one) is
    /// told as the path it must have taken.
    private func apply(from before: StepView, to after: StepView) {
        lastView = after
        let newTerm = after.term != before.term
        if after.state != before.state || newTerm {
            membership.setLocalRole(after.state.role)
            membership.setLocalTerm(after.term)
        }
        // Standing: a candidate now, or a leader that was not one (it stood first).
        let stood = (after.state == .candidate && (before.state != .candidate || newTerm))
            || (after.state == .leader && before.state != .candidate && (before.state != .leader || newTerm))
        if stood {
            logger.info("stood for election in term \(after.term)")
            metrics.stateChanged(to: .candidate, nowNs: nowNs)
            publisher.transition(to: .candidate)
        }
        if after.state != before.state || (after.state == .leader && newTerm) {
            switch after.state {
            case .candidate: break  // said above
            case .leader: logger.info("elected primary in term \(after.term), epoch \(after.epoch)")
            case .follower where before.state == .leader: logger.info("stepped down in term \(after.term)")
            case .follower where after.leaderID == nil: logger.info("following no one yet in term \(after.term)")
            case .follower: break  // said below, with whom it follows
            }
            if after.state != .candidate {
                metrics.stateChanged(to: after.state, nowNs: nowNs)
                publisher.transition(to: after.state)
            }
        }
        if after.leaderID != before.leaderID {
            if let leader = after.leaderID, leader != config.nodeID, after.state == .follower {
                logger.info("following \(leader) in term \(after.term)")
            } else {
                logger.debug("leader is now \(after.leaderID ?? "unknown")")
            }
        }
        if after.epoch != before.epoch {
            // Its own as a durable primary, or a primary's it heard.
            if after.state == .leader, core.epoch == after.epoch {
                membership.setEpoch(after.epoch)
            } else {
                membership.observeEpoch(after.epoch)
            }
            logger.info("fencing epoch \(after.epoch)")
        }
        if let leader = after.leaderID, after.leaderID != before.leaderID || after.term != before.term || after.epoch != before.epoch {
            gossip.primaryChanged(leader: leader, term: after.term, epoch: after.epoch)
        }
        if after.votedFor != before.votedFor, let candidate = after.votedFor, candidate != config.nodeID {
            logger.debug("voted for \(candidate) in term \(after.term)")
        }
        publish()
    }

    /// Carries out directives in order. A durable write runs off the loop and reports to
    /// ``persistDone(_:_:)``; without a data directory a write is done at once, and what the core
    /// then releases is carried out in its place.
    private func carryOut(_ directives: [ElectionDirective]) {
        for directive in directives {
            switch directive {
            case .persist(let state):
                if let persister {
                    let startedNs = nowNs
                    persister.write(state) { [anchor] error in
                        guard let runtime = anchor.runtime else { return }
                        if error == nil { runtime.metrics.persisted(tookNs: runtime.nowNs &- startedNs) }
                        runtime.persistDone(state, error)
                    }
                } else {
                    membership.setLocalTerm(state.term)
                    carryOut(core.step(.persisted(state), now: now))
                }
            case .send(let to, .voteResponse(let response)) where voteWaiters.contains(where: { $0.candidate == to }):
                answerVoteWaiters(for: to, with: response)
            case .send(let to, let message):
                peerProtocol.send(message, to: to)
            case .broadcastHeartbeat:
                if running { peerProtocol.sendHeartbeatRound() }
            case .stateChanged, .leaderChanged, .epochChanged:
                break  // the step's difference says them (``apply(from:to:)``), once
            case .dualPrimaryDetected(let term, let primaries):
                stats.dualPrimaryDetected += 1
                metrics.dualPrimaryDetected()
                logger.critical("\(ClusterError.dualPrimaryDetected): term \(term), primaries \(primaries.joined(separator: ", "))")
            case .transferStarted(let target):
                logger.info("handing leadership over to \(target)")
            case .configurationChanged(let configuration, let committed):
                if gossip.isRunning {
                    gossip.voterChanged(core.isVoter)
                    membersChanged()
                }
                if configuration.voters != votersLogged {
                    votersLogged = configuration.voters
                    let role = core.isVoter ? "this node votes" : "this node does not vote"
                    logger.info("voters: \(configuration.voters.joined(separator: ", ")) (configuration \(configuration.id), \(committed ? "committed" : "not yet committed"); \(role))")
                } else {
                    logger.debug("configuration \(configuration.id)\(committed ? " committed" : "")")
                }
                if let message = core.configurationMessage {
                    // Members that do not vote hear it too: they show it, and a promoted one needs it.
                    for peer in links.peers.values where peer.link != nil && !core.voters.contains(peer.id) {
                        peerProtocol.send(.configuration(message), to: peer.id)
                    }
                }
            case .voterChangeEnded(let change, let succeeded, let reason):
                if succeeded {
                    logger.info("\(change): committed, voters now \(core.configuration.voters.joined(separator: ", "))")
                } else {
                    logger.warning("\(change) failed: \(reason ?? "unknown reason")")
                }
                let outcome: Result<VoterConfiguration, ClusterError> = succeeded
                    ? .success(core.configuration) : .failure(.voterChangeFailed(reason ?? "unknown reason"))
                var answers: [(Result<VoterConfiguration, ClusterError>) -> Void] = []
                voterChangeWaiters.removeAll { waiter in
                    guard waiter.change == change else { return false }
                    answers.append(waiter.answer)
                    return true
                }
                for answer in answers { readyAnswers.append { answer(outcome) } }
            case .transferEnded(let target, let succeeded, let reason):
                metrics.transferEnded(succeeded: succeeded)
                if succeeded {
                    logger.info("handed leadership over to \(target ?? "?")")
                } else {
                    logger.warning("leadership transfer\(target.map { " to \($0)" } ?? "") failed: \(reason ?? "unknown reason")")
                }
                let outcome: Result<String, ClusterError> = succeeded
                    ? .success(target ?? "") : .failure(.transferFailed(reason ?? "unknown reason"))
                let waiters = transferWaiters
                transferWaiters.removeAll()
                for waiter in waiters { readyAnswers.append { waiter(outcome) } }
            }
        }
    }

    /// The outcome of a durable write, on the loop thread.
    private func persistDone(_ state: DurableElectionState, _ error: ClusterError?) {
        if let error {
            // The core refuses votes and does not stand until a retried write succeeds.
            stats.persistFailures += 1
            failedWritesInRow += 1
            let now = nowNs
            if failedWritesInRow == 1 || now &- failureLoggedNs >= 10_000_000_000 {
                failureLoggedNs = now
                let retry = core.persistRetryDelay / 1_000_000
                logger.error("cannot persist election state, not voting: \(error). This node neither votes nor stands for election, nor leads, until its state is written; retrying every \(retry) ms (\(failedWritesInRow) failed write\(failedWritesInRow == 1 ? "" : "s") so far)")
            }
            step(.persistFailed(state))
        } else {
            if failedWritesInRow > 0 {
                logger.notice("election state written again after \(failedWritesInRow) failed write\(failedWritesInRow == 1 ? "" : "s"): voting and standing again")
                failedWritesInRow = 0
            }
            membership.setLocalTerm(state.term)
            step(.persisted(state))
        }
    }

    func publish() {
        let snap = ElectionSnapshot(
            state: core.state, term: core.term, leaderID: core.leaderID, epoch: core.fencingEpoch,
            listenAddress: links.boundAddress, transferTarget: core.transfer?.target)
        publisher.publish(snap)
    }

    private func armTick() {
        // The common case first, touching no object: the timer armed already fires in time.
        guard running, let deadline = core.nextDeadline else { return }
        if let armed = tickArmedFor, armed <= deadline.nanoseconds { return }
        guard let timer = tickTimer else { return }
        let nowNs = self.nowNs
        let delayMs = deadline.nanoseconds > nowNs ? (deadline.nanoseconds - nowNs + 999_999) / 1_000_000 : 0
        tickArmedFor = deadline.nanoseconds
        let dueNs = deadline.nanoseconds
        try? timer.start(timeoutMs: delayMs) { [anchor] in
            guard let runtime = anchor.runtime else { return }
            runtime.tickArmedFor = nil
            runtime.tickDue(dueNs)
        }
    }

    /// The core's deadline `dueNs` has come. A timer that runs long after it was due finds a loop
    /// that was stalled (the process paused, the machine overloaded): the peers were not silent
    /// for all that time, this node was not listening. libuv runs timers before it polls the
    /// sockets, so judged at once, every stall would look like the peers' silence: a leader
    /// stepping down, followers standing, after a host merely paused. So the tick waits a grace
    /// (two heartbeat intervals, at most half an election timeout) in which the node reads and
    /// sends as usual (its heartbeats go out, the peers' answers come in), then judges. A tick
    /// that ends a grace never starts another: a loop late at every turn still decides.
    private func tickDue(_ dueNs: UInt64, endsGrace: Bool = false) {
        let now = nowNs
        if !endsGrace, now > dueNs, loopStalled(lateNs: now - dueNs), let timer = tickTimer {
            // No earlier deadline re-arms the timer meanwhile (the core's are all later than `dueNs`).
            tickArmedFor = dueNs
            try? timer.start(timeoutMs: max(1, stallGraceNs / 1_000_000)) { [anchor] in
                guard let runtime = anchor.runtime else { return }
                runtime.tickArmedFor = nil
                runtime.tickDue(0, endsGrace: true)
            }
            return
        }
        refreshLSN()
        step(.tick)
    }

    /// Whether a timer that ran `lateNs` after it was due found the loop stalled: later than a
    /// quarter of an election timeout. Counted (`NodeStats.loopStalls`) and logged at most once a
    /// second.
    func loopStalled(lateNs: UInt64) -> Bool {
        guard lateNs > stallToleranceNs else { return false }
        stats.loopStalls += 1
        links.logLimited(
            .warning, "stall",
            "the event loop ran \(lateNs / 1_000_000) ms late (the process was paused or starved of CPU): hearing the peers again before judging any of them silent")
        return true
    }

    /// How long judgments wait after a stall (see `tickDue`).
    var stallGraceNs: UInt64 {
        max(1_000_000, min(2 * config.heartbeatInterval.nanoseconds, config.electionTimeout.nanoseconds / 2))
    }

    private var stallToleranceNs: UInt64 { max(1_000_000, config.electionTimeout.nanoseconds / 4) }

    /// The application sets the LSN through the membership (the seed's `SetLocalLSN`) or
    /// `ElectionManager.setLocalLSN`; the core reads it here, at every decision that depends on
    /// it (a vote, a candidacy, a heartbeat round), never a stale copy.
    private func refreshLSN() {
        let lsn = membership.localNode.lastLSN
        if lsn != core.localLSN { step(.setLocalLSN(lsn)) }
    }

    // MARK: - What arrives

    /// A node this one does not know said hello (with a cluster key: proved it holds one). It has
    /// most likely just joined through a seed, which lists it: the discoveries on this membership
    /// announce to their seeds now and learn of it, rather than at their next interval (a join then
    /// takes a few round trips, not an announce interval). At most once per 10 ms; the discovery
    /// limits its early rounds again.
    func unknownNodeSaidHello(_ nodeID: String) {
        stats.unknownHellos &+= 1
        // A member forgotten here (expired, force-left) that is back: the seeds' reports of it
        // count again (its own announcement always did).
        membership.pardon(nodeID)
        let now = nowNs
        if let last = lastUnknownHelloNs, now &- last < 10_000_000 { return }
        lastUnknownHelloNs = now
        membership.requestAnnouncement()
    }

    private var lastUnknownHelloNs: UInt64?

    /// What a linked peer sends, decoded and checked once (`PeerProtocol.checked`: the sender
    /// is the link's peer, terms and epochs in range, the peer not cut off by a fault), entering
    /// the node through ``receive(_:from:)``.
    enum PeerInput {
        /// For the election core: a heartbeat, a vote request or answer, a timeout-now, a voter
        /// configuration or its acknowledgement.
        case election(ElectionMessage)
        /// For the membership: a member a peer learned (MEMBER), one an operator removed (LEAVE).
        case member(MemberMessage)
        case leave(String)
        /// For the bootstrap agreement (BOOTSTRAP).
        case bootstrap(BootstrapMessage)
    }

    /// The one door of everything a peer sends: each input goes to the piece of state that owns
    /// it, and nothing goes back up. An election message steps the core (a heartbeat's facts
    /// about its sender, its role, term, epoch and log position, are the membership's record of
    /// that member first); the membership and the bootstrap agreement take their own frames.
    func receive(_ input: PeerInput, from peer: Peer) {
        switch input {
        case .election(let message):
            if case .configurationAck = message, waitingVoterAdds.contains(where: { $0.node == peer.id }) {
                // A voter addition waiting for this acknowledgement: asked once the core has it.
                step(.receive(from: peer.id, message))
                return retryWaitingChanges()
            }
            switch message {
            case .heartbeat(let hb):
                stats.heartbeatsApplied &+= 1
                // A member that does not vote cannot lead: whatever role it claims, it is
                // recorded as a replica (the membership's `primary` names voters only).
                let role = hb.role == .replica || core.voters.contains(peer.id) ? hb.role : .replica
                try? membership.recordHeartbeat(
                    from: peer.id, seq: hb.seq, epoch: hb.epoch, term: hb.term, lsn: hb.lsn, role: role, at: wallNow())
            case .voteRequest:
                stats.voteRequestsReceived += 1
                refreshLSN()
            default:
                break
            }
            step(.receive(from: peer.id, message))
        case .member(let member):
            memberPushed(member, by: peer.id)
        case .leave(let id):
            memberLeft(id, by: peer.id)
        case .bootstrap(let message):
            bootstrapArrived(message, from: peer.id)
        }
    }

    /// One heartbeat from a member speaking JSON, identified as `peer`: counted, then received.
    /// False when it was dropped.
    func heartbeatArrived(_ hb: HeartbeatMessage, from peer: Peer) -> Bool {
        guard heartbeatCounted(hb, from: peer) else { return false }
        receive(.election(.heartbeat(hb)), from: peer)
        return true
    }

    /// A heartbeat's check and count: range-checked, counted, the peer's highest sequence noted
    /// (what this node's next heartbeat to it acknowledges). False when it was dropped.
    func heartbeatCounted(_ hb: HeartbeatMessage, from peer: Peer) -> Bool {
        guard ElectionCore.isInRange(.heartbeat(hb)) else {
            stats.protocolErrors &+= 1
            return false
        }
        stats.heartbeatsReceived &+= 1
        if hb.seq > peer.lastSeqReceived { peer.lastSeqReceived = hb.seq }
        return true
    }

    /// Answers a vote request that came from outside the peer links: the public API
    /// (`vouched`: the application vouches for the candidate, the seed's rules) or a JSON client
    /// (the network's rules). `answer` runs on the loop thread exactly once: at once, or, for a
    /// grant, once the vote is durable (a refusal if its write failed).
    func answerVoteRequest(_ request: VoteRequest, vouched: Bool, answer: @escaping (VoteResponse) -> Void) {
        stats.voteRequestsReceived += 1
        if let storageError {
            return answer(VoteResponse(voterID: config.nodeID, term: core.term, voteGranted: false, reason: storageError.description))
        }
        guard ElectionCore.isInRange(.voteRequest(request)) else {
            return answer(VoteResponse(voterID: config.nodeID, term: core.term, voteGranted: false, reason: "term or epoch out of range"))
        }
        refreshLSN()
        voteWaiters.append((request.candidateID, answer))
        step(vouched ? .vouchedVoteRequest(request) : .receive(from: request.candidateID, .voteRequest(request)))
    }

    private func answerVoteWaiters(for candidate: String, with response: VoteResponse) {
        var answers: [(VoteResponse) -> Void] = []
        voteWaiters.removeAll { waiter in
            guard waiter.candidate == candidate else { return false }
            answers.append(waiter.answer)
            return true
        }
        for answer in answers { readyAnswers.append { answer(response) } }
    }

    /// Waiters the core will not answer (it ignored the request, or dropped a withheld grant when
    /// the term moved on) get a refusal; those whose grant waits for its write keep waiting.
    private func settleVoteWaiters() {
        let withheld = core.withheldVoteCandidate
        for candidate in Set(voteWaiters.map(\.candidate)) where candidate != withheld {
            let reason = core.lastWriteFailed ? ElectionCore.notDurableReason : "no answer"
            answerVoteWaiters(
                for: candidate, with: VoteResponse(voterID: config.nodeID, term: core.term, voteGranted: false, reason: reason))
        }
    }

    /// A peer's link is up (hello exchanged). Linking makes nobody a voter: voters change only
    /// through the primary, with the voters' consent. The peer hears how this node stands on
    /// bootstrap, and the configuration this node holds: a peer that was away takes it if it is
    /// newer than its own and this node is one of its voters (a primary's reaches members that do
    /// not vote too, whose acknowledgement lets them be added).
    /// Drops the members learned from the network that never linked within
    /// `NodeOptions.unlinkedMemberExpiry` (the voters kept). Once a second.
    private func expireUnlinkedMembers() {
        let expiry = options.unlinkedMemberExpiry
        let forgotten = membership.expireUnlinked(
            addedBefore: membership.currentTime.addingTimeInterval(-expiry.seconds),
            keeping: Set(core.configuration.voters), forgetFor: expiry)
        guard !forgotten.isEmpty else { return }
        stats.unlinkedMembersExpired &+= UInt64(forgotten.count)
        let shown = forgotten.prefix(5).joined(separator: ", ") + (forgotten.count > 5 ? " and \(forgotten.count - 5) more" : "")
        logger.warning("forgot \(forgotten.count) member(s) never linked within \(expiry): \(shown)")
    }

    /// Voter additions waiting until they can be asked (see `changeVoters`): for the primary's
    /// link to the member (gossip), for its acknowledgement, or for the configuration to commit;
    /// each until its deadline (`expireWaitingVoterAdds`).
    private var waitingVoterAdds: [(node: String, change: VoterChange, answer: (Result<VoterConfiguration, ClusterError>) -> Void, deadlineNs: UInt64)] = []

    /// Asks the voter additions that were waiting and are ready now: linked, acknowledged, the
    /// configuration committed, no change or transfer under way.
    private func retryWaitingChanges() {
        guard core.state == .leader, core.configurationCommitted, core.voterChange == nil, core.transfer == nil else { return }
        guard let i = waitingVoterAdds.firstIndex(where: { links.hasLiveLink($0.node) && core.hasAcknowledgedConfiguration($0.node) }) else {
            return
        }
        let waiter = waitingVoterAdds.remove(at: i)
        changeVoters(waiter.change, waited: true, answer: waiter.answer)
    }

    private func expireWaitingVoterAdds() {
        let now = nowNs
        let expired = waitingVoterAdds.filter { $0.deadlineNs <= now || !running || core.state != .leader }
        guard !expired.isEmpty else { return }
        waitingVoterAdds.removeAll { $0.deadlineNs <= now || !running || core.state != .leader }
        for waiter in expired {
            if core.state == .leader, running, links.hasLiveLink(waiter.node) {
                // Linked, never acknowledged: the core says why it refuses.
                changeVoters(waiter.change, waited: true, answer: waiter.answer)
                continue
            }
            let why = core.state != .leader ? "this node is no longer the primary" : "\(waiter.node) did not link with the primary: is it reachable over TCP?"
            waiter.answer(.failure(.voterChangeFailed(why)))
        }
        membersChanged()
    }

    func peerLinked(_ peer: Peer, priority: Int) {
        membership.confirmLinked(peer.id)
        defer {
            // A voter addition that waited for this link (gossip): asked now, the link up.
            if let i = waitingVoterAdds.firstIndex(where: { $0.node == peer.id }) {
                let waiter = waitingVoterAdds.remove(at: i)
                changeVoters(waiter.change, answer: waiter.answer)
            }
        }
        step(.setVoterPriority(peer.id, priority))  // a transfer with no target named weighs it
        peerProtocol.sendBootstrap(bootstrapMessage(), to: peer)
        if !core.configuration.isNone {
            peerProtocol.send(.configuration(ConfigurationMessage(
                from: config.nodeID, term: core.term, configuration: core.configuration,
                committed: core.configurationCommitted)), to: peer.id)
        }
    }

    /// Hands leadership over (see `ElectionManager.transferLeadership`); `answer` gets the new
    /// leader's id or why it did not happen, on the loop thread, exactly once.
    func transferLeadership(to target: String?, answer: @escaping (Result<String, ClusterError>) -> Void) {
        guard running else { return answer(.failure(.invalidState("the node is not running"))) }
        refreshLSN()
        transferWaiters.append(answer)
        step(.transferLeadership(to: target))
        // A request the core neither started nor refused (it always does one or the other).
        if core.transfer == nil, let waiter = transferWaiters.popLast() {
            waiter(.failure(.transferFailed("the transfer did not start")))
        }
    }

    /// A peer's link is gone.
    func peerLost(_ peerID: String) {
        step(.peerUnreachable(peerID))
    }

    // MARK: - Members

    /// Brings the link table in line with the membership: new members are dialled, removed
    /// ones unlinked. The voters do not follow the membership: they change only by consent.
    func membersChanged() {
        guard running else { return }
        if gossip.isRunning, !core.configuration.isNone {
            let dialling = linkedByGossipRule()
            // A member that does not vote keeps the links voters make to it (a primary making it a
            // voter); a voter, only those it dials.
            let keeping = core.isVoter ? dialling : Set(core.configuration.voters)
            // Only the members a link may be kept with, and those that hold a connection now (to
            // close it): no one else holds a link, and a pass over every member would make N
            // members learning of each other pay N passes of N each.
            var ids = dialling.union(keeping)
            for peer in links.peers.values where peer.link != nil || peer.dialing != nil { ids.insert(peer.id) }
            ids.remove(config.nodeID)
            let members = ids.compactMap { id in (try? membership.node(id)).map { (id: id, addr: $0.addr) } }
            _ = links.sync(members: members, dialling: dialling, keeping: keeping)
        } else {
            let members = membership.unsortedNodes.filter { $0.id != config.nodeID }.map { (id: $0.id, addr: $0.addr) }
            if gossip.isRunning {
                // Agreeing on the first voters: links with the members (see `linkedByGossipRule`).
                _ = links.sync(members: members, dialling: linkedByGossipRule(), keeping: Set(members.map(\.id)))
            } else {
                _ = links.sync(members: members)
            }
        }
        outbox.flush()
    }

    /// With the gossip layer, whom this node dials: a voter dials the voters of the configuration
    /// it holds (its members among them, being made voters), a member that does not vote dials
    /// no one (the gossip watches it; a primary that makes it a voter dials it).
    private func linkedByGossipRule() -> Set<String> {
        if core.configuration.isNone {
            // Agreeing on the first voters takes links with the members; a node that joins
            // learns the configuration from its seeds' links.
            let members = membership.allNodes.filter { $0.id != config.nodeID }
            if bootstrapAgreement != nil { return Set(members.map(\.id)) }
            let seeds = Set(config.seedNodes)
            return Set(members.filter { seeds.contains($0.addr) }.map(\.id))
        }
        guard core.isVoter else { return [] }
        var voters = Set(core.configuration.voters)
        for waiter in waitingVoterAdds { voters.insert(waiter.node) }
        voters.remove(config.nodeID)
        return voters
    }

    private func reportMetrics() {
        expireUnlinkedMembers()
        let timeout = config.electionTimeout
        metrics.report(
            stats: currentStats(), role: core.role, term: core.term, epoch: core.fencingEpoch,
            nodes: membership.nodeCount, healthy: membership.healthyNodeCount(timeout: timeout),
            quorum: membership.hasQuorum(minQuorum: config.minQuorumSize, healthTimeout: timeout))
    }

    private func onHeartbeatTimer() {
        if !waitingVoterAdds.isEmpty {
            retryWaitingChanges()
            expireWaitingVoterAdds()
        }
        if options.keyring != nil { checkKeyring() }
        if bootstrapAgreement != nil { bootstrapProgress() }
        if options.votersTarget != nil { autopilot() }
        refreshLSN()
        peerProtocol.sendHeartbeatRound()
        outbox.flush()
    }

    /// The seed's `HandleAnnouncement` (see `Discovery`), answered on a JSON connection; a
    /// refusal is a `node_list` with `success: false` and the reason.
    ///
    /// An announcement of another cluster name is refused; with a keyring, so is one without a
    /// valid MAC under one of its keys (unless `allowUnauthenticatedJSON`, for unsigned ones).
    /// The answer carries this node's cluster name and, with a keyring, a MAC under the primary
    /// key bound to the announcement's MAC.
    func handleAnnouncement(_ announcement: AnnouncementMessage) -> DiscoveryResponse {
        var response: DiscoveryResponse
        if let refusal = announcementRefusal(announcement) {
            stats.authenticationFailures &+= 1
            links.logOncePerCause(.warning, "announcement \(announcement.nodeID): \(refusal)", "refusing an announcement from \(announcement.nodeID): \(refusal)")
            response = DiscoveryResponse(nodes: [], success: false, error: refusal)
        } else {
            let known = membership.contains(announcement.nodeID)
            response = Discovery.answer(announcement, membership: membership, seeds: config.seedNodes)
            if options.pushesMembers, response.success, !known, membership.contains(announcement.nodeID) {
                // A new member: the linked peers hear of it now, not at their next announcement.
                stats.membersPushed &+= 1
                peerProtocol.pushMember(MemberMessage(
                    nodeID: announcement.nodeID, nodeAddr: announcement.nodeAddr, priority: announcement.priority))
            }
        }
        response.cluster = options.clusterName
        if let key = options.keyring?.primary {
            response.keyID = key.idString
            response.mac = LinkAuth.nodeListMAC(response, requestMAC: announcement.mac, key: key)
        }
        return response
    }

    /// A peer's MEMBER frame (through ``receive(_:from:)``): the member is added as an announcement would add it (a valid id and
    /// address, a replica, within `Discovery.defaultMaxMembers`), and told to no one else. A member
    /// already known, this node, or an invalid one changes nothing.
    private func memberPushed(_ member: MemberMessage, by peerID: String) {
        guard member.nodeID != config.nodeID, !membership.contains(member.nodeID) else { return }
        let announcement = AnnouncementMessage(nodeID: member.nodeID, nodeAddr: member.nodeAddr, priority: member.priority)
        if let problem = Discovery.problem(with: announcement, membership: membership) {
            logger.warning("ignoring member \(member.nodeID) from \(peerID): \(problem)")
            return
        }
        guard membership.nodeCount < Discovery.defaultMaxMembers else { return }
        do {
            try membership.addLearned(
                NodeInfo(id: member.nodeID, addr: member.nodeAddr, role: .replica, priority: member.priority), firstHand: false)
            stats.membersLearnedFromPeers &+= 1
            logger.info("learned member \(member.nodeID) at \(member.nodeAddr) from \(peerID)")
        } catch {
            // Known meanwhile, forgotten, or too many members not linked yet: nothing to add.
        }
    }

    /// Why `id` may not be removed by `cluster force-leave` here, or nil: never this node, a node
    /// linked and alive, or a voter (its vote goes first, through the primary).
    private func forceLeaveRefusal(_ id: String) -> String? {
        if id == config.nodeID { return "\(id) is this node: stop it instead" }
        if !membership.contains(id) { return "\(id) is not a member" }
        if links.hasLiveLink(id) { return "\(id) is linked and alive: stop it first" }
        if gossip.isRunning, let said = membership.gossipState(of: id), said.state == .alive || said.state == .suspect {
            return "\(id) is \(said.state) by the gossip: stop it first"
        }
        if core.configuration.voters.contains(id) {
            return "\(id) is a voter: remove its vote first (cluster voters remove \(id))"
        }
        return nil
    }

    /// A JSON `force_leave` (from this node's own host): the member is removed here and every
    /// linked peer is told (LEAVE frames); seeds' and peers' reports of it do not bring it back for
    /// `NodeOptions.unlinkedMemberExpiry` (its own announcement or hello does).
    func forceLeave(_ id: String) -> ForceLeaveResponse {
        if let refusal = forceLeaveRefusal(id) { return ForceLeaveResponse(success: false, error: refusal) }
        do {
            try membership.forget(id, for: options.unlinkedMemberExpiry)
        } catch {
            return ForceLeaveResponse(success: false, error: "\(error)")
        }
        var told = 0
        for peer in links.peers.values where peer.link != nil {
            peerProtocol.sendLeave(id, to: peer.id)
            told += 1
        }
        // Members without links hear it by gossip: it is left, not failed, for all.
        gossip.step(.forceLeave(id))
        outbox.flush()
        logger.warning("\(id) force-left the cluster (operator request); \(told) peer(s) told\(gossip.isRunning ? ", the others by gossip" : "")")
        return ForceLeaveResponse(success: true, peersTold: told)
    }

    /// A peer's LEAVE frame (through ``receive(_:from:)``): the operator removed `id` through it. Taken on the same terms as a
    /// request here (never this node, one linked and alive, or a voter): a stranger's LEAVE can
    /// remove at most a member that is gone and has no vote, which its own announcement brings back.
    private func memberLeft(_ id: String, by peerID: String) {
        if let refusal = forceLeaveRefusal(id) {
            if id != config.nodeID, membership.contains(id) {
                links.logLimited(.warning, "leave", "ignoring \(peerID)'s word that \(id) left: \(refusal)")
            }
            return
        }
        guard (try? membership.forget(id, for: options.unlinkedMemberExpiry)) != nil else { return }
        gossip.step(.forceLeave(id))
        logger.warning("\(id) force-left the cluster (told by \(peerID))")
    }

    private func announcementRefusal(_ a: AnnouncementMessage) -> String? {
        let name = options.clusterName
        if a.cluster != name && !(a.cluster.isEmpty && options.allowUnauthenticatedJSON) {
            return "cluster name mismatch: this node is in cluster \"\(name)\", the announcement is from \"\(a.cluster)\""
        }
        guard let keyring = options.keyring else { return nil }
        if a.mac.isEmpty {
            return options.allowUnauthenticatedJSON ? nil : "this cluster requires announcements signed with the cluster key"
        }
        guard let id = ClusterKey.parseID(a.keyID), let key = keyring.key(id: id) else {
            return "the announcement is signed with key \(a.keyID), which is not in this node's keyring"
        }
        guard LinkAuth.macsEqual(LinkAuth.announcementMAC(a, key: key), a.mac) else {
            return "the announcement's MAC does not match its content"
        }
        return nil
    }

    // MARK: - Voters

    /// At start: says what was restored, and starts the first configuration if none was stored
    /// (`NodeOptions.bootstrap`).
    private func startVoters() {
        if restored.term > 0 {
            logger.info("restored term \(restored.term), vote \(restored.votedFor ?? "none"), epoch \(restored.epoch) from \(options.dataDirectory ?? "")")
        }
        if !restored.configuration.isNone {
            if options.bootstrap != .members, options.bootstrap != .join {
                logger.info("using the stored voter configuration; bootstrap options apply to a node that has none")
            }
            return  // the configuration it stored, never flags
        }
        switch options.bootstrap {
        case .members:
            votersLogged = core.configuration.voters
            logger.info("voters: \(core.configuration.voters.joined(separator: ", ")) (the members at start)")
        case .voters(let voters):
            step(.bootstrap(voters))
        case .expect(let count):
            let settle = 2 * max(1, config.heartbeatInterval.nanoseconds)
            bootstrapAgreement = BootstrapAgreement(id: config.nodeID, expect: count, settle: settle, now: now)
            logger.info("waiting for \(count) nodes to agree on the first voters (bootstrap)")
            bootstrapProgress()
        case .join:
            logger.info("joining as a member that does not vote: the primary tells this node the voters")
        }
    }

    /// What this node tells the nodes it links to of how it stands on bootstrap.
    private func bootstrapMessage() -> BootstrapMessage {
        if let bootstrapAgreement { return bootstrapAgreement.message }
        let configuration = core.configuration
        return BootstrapMessage(
            expect: 0, configured: !configuration.isNone, locked: !configuration.isNone, nodes: configuration.voters)
    }

    /// A linked node's BOOTSTRAP frame (through ``receive(_:from:)``).
    private func bootstrapArrived(_ message: BootstrapMessage, from peerID: String) {
        guard bootstrapAgreement != nil else { return }
        if bootstrapAgreement!.received(message, from: peerID, now: now) { advertiseBootstrap() }
        bootstrapProgress()
    }

    /// Locks or decides the bootstrap when it can, and says what stands in its way, once per cause.
    private func bootstrapProgress() {
        guard var agreement = bootstrapAgreement else { return }
        guard core.configuration.isNone else {
            bootstrapAgreement = nil  // told the configuration by a primary meanwhile
            return
        }
        let changed = agreement.tick(now: now)
        let decision = agreement.decision
        let wasJoining = bootstrapAgreement?.joinsExistingCluster ?? false
        bootstrapAgreement = agreement
        if let problem = agreement.disagreement ?? agreement.problem, problem != bootstrapProblemLogged {
            bootstrapProblemLogged = problem
            logger.warning("bootstrap: \(problem)")
        }
        if agreement.joinsExistingCluster, !wasJoining {
            logger.info("a linked node holds a voter configuration: joining that cluster as a member that does not vote")
        }
        if let voters = decision {
            bootstrapAgreement = nil
            logger.info("bootstrap: \(voters.count) nodes agreed on the first voters")
            step(.bootstrap(voters))
            advertiseBootstrap()
        } else if changed {
            if let locked = agreement.locked {
                logger.info("bootstrap: locked \(locked.joined(separator: ", ")); waiting for each of them to lock the same")
            }
            advertiseBootstrap()
        }
    }

    private func advertiseBootstrap() {
        let message = bootstrapMessage()
        for peer in links.peers.values where peer.link != nil { peerProtocol.sendBootstrap(message, to: peer) }
        outbox.flush()
    }

    /// Since when each node has been linked (autopilot's view, on the primary): a member is
    /// promoted once linked for the stabilization time, a voter replaced once unlinked for the grace.
    private var linkedSince: [String: UInt64] = [:]
    private var unlinkedSince: [String: UInt64] = [:]

    /// One pass of autopilot (`NodeOptions.votersTarget`), on the primary, every heartbeat round:
    /// at most one change asked, and only when none is under way.
    private func autopilot() {
        guard let target = options.votersTarget, core.state == .leader else {
            linkedSince.removeAll()
            unlinkedSince.removeAll()
            return
        }
        let now = nowNs
        let gossipStates = gossip.isRunning ? membership.gossipStates : [:]
        for member in membership.allNodes where member.id != config.nodeID {
            // With the gossip layer, a member that does not vote is up while the gossip says alive.
            let up = gossipStates[member.id].map { core.voters.contains(member.id) ? links.hasLiveLink(member.id) : $0.state == .alive }
                ?? links.hasLiveLink(member.id)
            if up {
                unlinkedSince[member.id] = nil
                if linkedSince[member.id] == nil { linkedSince[member.id] = now }
            } else {
                linkedSince[member.id] = nil
                if unlinkedSince[member.id] == nil { unlinkedSince[member.id] = now }
            }
        }
        guard core.configurationCommitted, core.voterChange == nil, core.transfer == nil, waitingVoterAdds.isEmpty else { return }
        let voters = core.voters
        let stable = options.autopilotStabilization.nanoseconds
        let grace = options.autopilotDeadVoterGrace.nanoseconds
        let dead = voters.filter { voter in
            voter != config.nodeID && unlinkedSince[voter].map { now &- $0 >= grace } == true
        }.sorted()
        let promotable = linkedSince.filter { !voters.contains($0.key) && now &- $0.value >= stable }.keys.sorted()
        let change: VoterChange
        let why: String
        if let member = promotable.first, voters.count < target || (!dead.isEmpty && voters.count <= target) {
            change = .add(member)
            why = voters.count < target ? "\(voters.count) voters, target \(target)" : "to replace \(dead[0])"
        } else if let voter = dead.first, voters.count > target {
            change = .remove(voter)
            why = "down for \((now &- unlinkedSince[voter]!) / 1_000_000_000) s"
        } else {
            return
        }
        logger.info("autopilot: \(change) (\(why))")
        changeVoters(change) { _ in }  // its outcome is logged with the directive
    }

    /// Changes the voter set by one voter (see `ElectionManager.changeVoters`); `answer` gets the
    /// configuration once the change is committed, or why it was not, on the loop thread, once.
    func changeVoters(
        _ change: VoterChange, waited: Bool = false, answer: @escaping (Result<VoterConfiguration, ClusterError>) -> Void
    ) {
        guard running else { return answer(.failure(.invalidState("the node is not running"))) }
        if case .add(let node) = change, core.state == .leader, !core.voters.contains(node) {
            // Only a running member can be made a voter: a voter that never answers lowers the
            // cluster's tolerance of failures from the moment it is added.
            guard membership.contains(node) else {
                return answer(.failure(.voterChangeFailed("\(node) is not a member: start it with this cluster's seeds first")))
            }
            if !links.hasLiveLink(node), gossip.isRunning, membership.gossipState(of: node)?.state == .alive {
                // With the gossip layer no one links with a member that does not vote: the
                // primary dials it first, and asks once the link is up (`peerLinked`).
                if !waitingVoterAdds.contains(where: { $0.node == node }) {
                    waitingVoterAdds.append((node, change, answer, nowNs &+ 4 * config.electionTimeout.nanoseconds))
                    membersChanged()
                } else {
                    answer(.failure(.voterChangeFailed("a change adding \(node) is already under way")))
                }
                return
            }
            guard links.hasLiveLink(node) else {
                return answer(.failure(.voterChangeFailed("\(node) is not linked to the primary: is it running?")))
            }
            if !waited, core.voterChange == nil, !core.configurationCommitted || !core.hasAcknowledgedConfiguration(node),
               !waitingVoterAdds.contains(where: { $0.node == node }) {
                // Linked, but not ready: the configuration is new (a handover or an election made
                // one, not committed yet) or the member has not acknowledged it yet (just linked).
                // It is sent again, and the change asked once both hold (`retryWaitingChanges`,
                // `receive`), or refused with the core's reason at the deadline.
                waitingVoterAdds.append((node, change, answer, nowNs &+ 4 * config.electionTimeout.nanoseconds))
                if let message = core.configurationMessage {
                    peerProtocol.send(.configuration(message), to: node)
                    outbox.flush()
                }
                return
            }
        }
        voterChangeWaiters.append((change, answer))
        step(.changeVoters(change))
    }

    // MARK: - Cluster keys

    private var keyringVersion: UInt64 = 0

    /// Brings the links in line with the keyring if it changed (checked every heartbeat round
    /// and after each change made through the API).
    func checkKeyring() {
        guard let keyring = options.keyring else { return }
        let version = keyring.version
        guard version != keyringVersion else { return }
        keyringVersion = version
        peerProtocol.keyringChanged()
        gossip.keyringChanged()
    }

    /// A JSON `keyring` request: list, install, use or remove.
    func keyringRequest(_ request: KeyringRequest) -> KeyringResponse {
        guard let keyring = options.keyring else {
            return KeyringResponse(success: false, error: "this node has no cluster key")
        }
        do throws(ClusterError) {
            switch request.op {
            case "list":
                break
            case "install":
                guard let text = request.key else { throw .invalidState("install needs \"key\"") }
                keyring.install(try ClusterKey(text: text))
            case "use", "remove":
                guard let text = request.keyID, let id = ClusterKey.parseID(text) else {
                    throw .invalidState("\(request.op) needs \"key_id\" (16 hex digits)")
                }
                if request.op == "use" { try keyring.use(id: id) } else { try keyring.remove(id: id) }
            default:
                throw .invalidState("unknown keyring op \"\(request.op)\" (list, install, use, remove)")
            }
        } catch {
            return KeyringResponse(success: false, primary: keyring.primary.idString, keys: keyring.keys.map(\.idString), error: "\(error)")
        }
        if request.op != "list" { logger.info("keyring \(request.op): now \(keyring)") }
        checkKeyring()
        return KeyringResponse(success: true, primary: keyring.primary.idString, keys: keyring.keys.map(\.idString))
    }

    func status() -> StatusResponse {
        let members = membership.allNodes
        let now = membership.currentTime
        let liveness = memberLiveness(members, now: now)
        let timeout = config.electionTimeout
        var quorum = membership.hasQuorum(minQuorum: config.minQuorumSize, healthTimeout: timeout)
        if !core.configuration.isNone {
            let voters = core.configuration.voters
            quorum = quorum && voters.filter { liveness[$0]?.status == .alive }.count > voters.count / 2
        }
        // A member without links (gossip, not a voter) knows the primary from the gossip.
        let gossiped = core.leaderID == nil ? gossip.core?.primary : nil
        return StatusResponse(
            nodeID: config.nodeID, role: core.role, state: core.state, term: max(core.term, gossiped?.term ?? 0),
            epoch: max(core.fencingEpoch, gossiped?.epoch ?? 0),
            leaderID: core.leaderID ?? gossiped?.leaderID, lsn: core.localLSN, members: members,
            time: now, healthTimeoutMs: timeout.nanoseconds / 1_000_000,
            configuration: core.configuration.isNone ? nil : core.configuration,
            configurationCommitted: core.configurationCommitted,
            liveness: liveness, left: membership.forgottenMembers, hasQuorum: quorum)
    }

    /// Each member's status as this node judges it (the one place it is decided; a gossip layer
    /// may supply it instead): itself alive; a peer alive when linked and heard within the health
    /// timeout (the election timeout), suspect when heard within twice that, else failed
    /// (`MemberStatus.judge`). Incarnation 0: nothing counts them yet.
    func memberLiveness(_ members: [NodeInfo], now: Date) -> [String: MemberLiveness] {
        let voters = Set(core.configuration.voters)
        let gossipStates = gossip.isRunning ? membership.gossipStates : [:]
        var result: [String: MemberLiveness] = [:]
        for member in members {
            let status: MemberStatus
            var incarnation: UInt64 = 0
            if member.id == config.nodeID {
                status = .alive
                incarnation = gossip.core?.incarnation ?? 0
            } else if let said = gossipStates[member.id] {
                // With the gossip layer, its word: a member without links is never "heard".
                status = MemberStatus(said.state)
                incarnation = said.incarnation
            } else {
                let never = member.lastSeen.timeIntervalSince1970 <= GoTime.zero.timeIntervalSince1970
                let ago = max(0, now.timeIntervalSince(member.lastSeen))
                status = MemberStatus.judge(
                    linked: links.peers[member.id]?.link != nil,
                    sinceHeard: never ? nil : .nanoseconds(Int64(ago * 1e9)), healthTimeout: config.electionTimeout)
            }
            // Who votes: a voter's configuration is current; one that does not vote may hold an
            // old one, and takes the gossip's word (each member says whether it votes).
            let votes = core.isVoter || !gossip.isRunning
                ? voters.contains(member.id) : (gossip.core?.member(member.id)?.voter ?? voters.contains(member.id))
            result[member.id] = MemberLiveness(status: status, incarnation: incarnation, voter: votes)
        }
        return result
    }

    // MARK: - Commands from the API

    func currentStats() -> NodeStats {
        var s = stats
        s.peersConnected = links.linkedPeerCount
        s.openConnections = links.links.count
        s.readsPaused = outbox.readsPaused
        s.gossipDatagramsSent = gossip.datagramsSent
        s.gossipDatagramsReceived = gossip.datagramsReceived
        s.gossipDatagramsRejected = gossip.datagramsRejected
        s.gossipExchanges = gossip.exchanges
        s.gossipBytesSent = gossip.bytesSent
        if let core = gossip.core {
            for member in core.members {
                switch member.state {
                case .alive: s.gossipMembersAlive += 1
                case .suspect: s.gossipMembersSuspect += 1
                case .failed: s.gossipMembersFailed += 1
                case .left: s.gossipMembersLeft += 1
                }
            }
        }
        return s
    }

    func setLocalLSN(_ lsn: UInt64) {
        step(.setLocalLSN(lsn))
    }
}

/// What callbacks on a runtime's loop (timers, dials, accepts, closes, durable writes, membership
/// changes) hold to reach the runtime, instead of a weak reference to it: an object that is the
/// target of a weak reference keeps its counts in a side table, and every retain and release of
/// it takes a slow path, and the runtime is retained on every heartbeat.
///
/// Safety: `runtime` is read and cleared on the loop thread only. `NodeRuntime.shutdown()` (run
/// by `ElectionManager.deinit`, the runtime's one owner) clears it on the loop before the runtime
/// can be freed, so a callback that runs later finds nil. `deinit` clears it too, for a runtime
/// freed without a shutdown, which the runtime's owner never does.
final class RuntimeAnchor: @unchecked Sendable {
    unowned(unsafe) var runtime: NodeRuntime?
}
