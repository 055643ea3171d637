import ClusterCore
import Dispatch
import Logging
import UV

/// The view of the election that any thread may read, refreshed by the loop after each change.
struct ElectionSnapshot: Sendable, Equatable {
    var state: ElectionState = .follower
    var term: UInt64 = 0
    var leaderID: String?
    var epoch: UInt64 = 0
    var listenAddress: HostPort?
}

/// What an observer of `ElectionManager.addObserver` is told after each change.
public struct ElectionStatus: Sendable, Equatable, CustomStringConvertible {
    public var state: ElectionState
    public var term: UInt64
    public var leaderID: String?
    public var epoch: UInt64

    public var description: String { "\(state) term \(term) leader \(leaderID ?? "-") epoch \(epoch)" }
}

/// The callbacks of `ElectionManager.setCallbacks`.
struct TransitionCallbacks: Sendable {
    var onLeader: (@Sendable () -> Void)?
    var onFollower: (@Sendable () -> Void)?
    var onCandidate: (@Sendable () -> Void)?
}

/// One node's runtime on its libuv loop: the election core, the listener, the peer links, the
/// timers. It joins the pure core (`ElectionCore`, `ClusterMembership`, the wire codec) and the
/// libuv layer.
///
/// Threading: every stored property is touched on the loop thread only, except the ones named
/// `shared*`, which are locked. Other threads reach the runtime through `loop.execute`. That is
/// why it can be `@unchecked Sendable`.
final class NodeRuntime: @unchecked Sendable {
    let loop: UVLoop
    /// False when the loop came from `NodeOptions.loop`: its owner shuts it down.
    private let ownsLoop: Bool
    let config: ClusterConfig
    let options: NodeOptions
    let membership: ClusterMembership
    var logger: Logger
    private(set) var core: ElectionCore
    private let store: DurableStateStore?
    /// Set when durable state could not be read: the node then refuses to vote or stand.
    let storageError: ClusterError?

    let sharedSnapshot = UVLocked(ElectionSnapshot())
    let sharedCallbacks = UVLocked(TransitionCallbacks())
    let sharedObservers = UVLocked([@Sendable (ElectionStatus) -> Void]())
    private var lastStatus = ElectionStatus(state: .follower, term: 0, leaderID: nil, epoch: 0)
    private let callbackQueue: DispatchQueue

    private var listener: UVTCPListener?
    private var peers: [String: Peer] = [:]
    private var links: [Int: Link] = [:]
    private var nextLinkID = 0
    private var dirty: [Link] = []
    private var heartbeatTimer: UVTimer?
    private var tickTimer: UVTimer?
    private var tickArmedFor: UInt64?
    private var running = false
    private var heartbeatSeq: UInt64 = 0
    private let originNs: UInt64
    private var random: SplitMix64
    var faults = NetworkFaults()
    var stats = NodeStats()
    private let localTag: UInt64

    init(config: ClusterConfig, membership: ClusterMembership, options: NodeOptions) {
        self.config = config
        self.options = options
        self.membership = membership
        var logger = options.logger
        logger[metadataKey: "node"] = "\(config.nodeID)"
        self.logger = logger
        (loop, ownsLoop) = options.resolveLoop(name: "cluster-\(config.nodeID)")
        callbackQueue = DispatchQueue(label: "cluster.callbacks.\(config.nodeID)")
        originNs = UVLoop.hrtimeNs()
        let seed = options.randomSeed ?? UInt64.random(in: .min ... .max)
        random = SplitMix64(seed: seed ^ 0x5DEE_CE66_D1CE_4E5B)
        localTag = Wire.fnv1a64(config.nodeID)
        var durable = DurableElectionState()
        var storeError: ClusterError?
        var store: DurableStateStore?
        if let dir = options.dataDirectory {
            do {
                let s = try DurableStateStore(directory: dir)
                durable = try s.load()
                store = s
            } catch {
                storeError = error
            }
        }
        self.store = store
        self.storageError = storeError
        let voters = membership.allNodes.map(\.id)
        core = ElectionCore(
            id: config.nodeID, settings: ElectionCore.Settings(config: config), durable: durable,
            voters: voters, seed: seed, now: CoreInstant(nanoseconds: 0))
        membership.setLocalTerm(durable.term)
        publishSnapshot()
    }

    var now: CoreInstant { CoreInstant(nanoseconds: UVLoop.hrtimeNs() &- originNs) }

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
        let addr = try HostPort(parsing: config.nodeAddr)
        do {
            listener = try UVTCPListener(loop: loop, host: addr.host, port: addr.port, onAcceptError: { [unowned self] error in
                logger.warning("accept failed: \(error)")
            }) { [unowned self] conn in
                accept(conn)
            }
        } catch {
            throw .io("cannot listen on \(config.nodeAddr): \(error)")
        }
        let bound = HostPort(host: addr.host, port: listener!.port)
        membership.setLocalAddr(bound.description)
        running = true
        do {
            let hb = try UVTimer(loop: loop)
            let intervalMs = max(1, config.heartbeatInterval.nanoseconds / 1_000_000)
            try hb.start(timeoutMs: intervalMs, repeatMs: intervalMs) { [unowned self] in
                onHeartbeatTimer()
            }
            heartbeatTimer = hb
            tickTimer = try UVTimer(loop: loop)
        } catch {
            stopOnLoop()
            throw .io("cannot start timers: \(error)")
        }
        logger.info("listening on \(bound)")
        syncMembers()
        step(.tick)
        publishSnapshot()
    }

    func stop() {
        _ = sync { rt in rt.stopOnLoop() }
    }

    private func stopOnLoop() {
        guard running || listener != nil else { return }
        // A stopped node hears no one and no timer runs: it must not go on claiming to lead.
        if core.state == .leader { step(.stepDown(term: core.term)) }
        running = false
        listener?.close()
        listener = nil
        heartbeatTimer?.close()
        heartbeatTimer = nil
        tickTimer?.close()
        tickTimer = nil
        tickArmedFor = nil
        for link in Array(links.values) { closeLink(link, reason: "node stopping") }
        for peer in peers.values {
            peer.redialTimer?.close()
            peer.redialTimer = nil
            peer.dialing?.conn.close()
            peer.dialing = nil
        }
        publishSnapshot()
    }

    /// Stops the network and the loop thread. The runtime is unusable afterwards.
    func shutdown() {
        stop()
        if ownsLoop { loop.shutdown() }
    }

    // MARK: - Election core

    /// Feeds one event to the core and carries out what it says, with what the core releases when
    /// its writes are reported. Returns the event's own directives; `intercept` sees every one.
    @discardableResult
    func step(_ event: ElectionEvent, intercept: ((ElectionDirective) -> Bool)? = nil) -> [ElectionDirective] {
        let directives = core.step(event, now: now)
        if !directives.isEmpty { apply(directives, intercept: intercept) }
        if core.term != lastStatus.term || core.state != lastStatus.state || core.leaderID != lastStatus.leaderID
            || core.fencingEpoch != lastStatus.epoch {
            publishSnapshot()
        }
        armTick()
        return directives
    }

    private func apply(_ directives: [ElectionDirective], intercept: ((ElectionDirective) -> Bool)?) {
        carryOut(directives, intercept: intercept)
        flush()
    }

    /// Carries out directives in order. A write is synchronous here: its outcome goes back to the
    /// core at once, and what the core then releases (or refuses) is carried out in its place.
    private func carryOut(_ directives: [ElectionDirective], intercept: ((ElectionDirective) -> Bool)?) {
        for directive in directives {
            if let intercept, intercept(directive) { continue }
            switch directive {
            case .persist(let state):
                if let store {
                    do {
                        try store.save(state)
                    } catch {
                        // The core refuses votes and does not stand until a retried write succeeds.
                        stats.persistFailures += 1
                        logger.error("cannot persist election state, not voting: \(error)")
                        carryOut(core.step(.persistFailed(state), now: now), intercept: intercept)
                        continue
                    }
                }
                membership.setLocalTerm(state.term)
                carryOut(core.step(.persisted(state), now: now), intercept: intercept)
            case .send(let to, let message):
                send(message, to: to)
            case .broadcastHeartbeat:
                sendHeartbeats()
            case .stateChanged(let state, let term, _):
                membership.setLocalRole(state.role)
                membership.setLocalTerm(term)
                logger.info("became \(state) in term \(term)")
                let callbacks = sharedCallbacks.withLock { $0 }
                let callback: (@Sendable () -> Void)?
                switch state {
                case .leader: callback = callbacks.onLeader
                case .follower: callback = callbacks.onFollower
                case .candidate: callback = callbacks.onCandidate
                }
                if let callback { callbackQueue.async(execute: callback) }
            case .leaderChanged(let leader):
                logger.debug("leader is now \(leader ?? "unknown")")
            case .epochChanged(let epoch):
                membership.observeEpoch(epoch)
                logger.info("fencing epoch \(epoch)")
            case .dualPrimaryDetected(let term, let primaries):
                stats.dualPrimaryDetected += 1
                logger.critical("\(ClusterError.dualPrimaryDetected): term \(term), primaries \(primaries.joined(separator: ", "))")
            }
        }
    }

    func publishSnapshot() {
        let snap = ElectionSnapshot(
            state: core.state, term: core.term, leaderID: core.leaderID, epoch: core.fencingEpoch,
            listenAddress: listener.map { HostPort(host: $0.boundAddress.host, port: $0.port) })
        sharedSnapshot.withLock { $0 = snap }
        let status = ElectionStatus(state: snap.state, term: snap.term, leaderID: snap.leaderID, epoch: snap.epoch)
        if status != lastStatus {
            lastStatus = status
            let observers = sharedObservers.withLock { $0 }
            if !observers.isEmpty {
                callbackQueue.async { for observer in observers { observer(status) } }
            }
        }
    }

    private func armTick() {
        guard running, let timer = tickTimer, let deadline = core.nextDeadline else { return }
        if let armed = tickArmedFor, armed <= deadline.nanoseconds { return }
        let nowNs = now.nanoseconds
        let delayMs = deadline.nanoseconds > nowNs ? (deadline.nanoseconds - nowNs + 999_999) / 1_000_000 : 0
        tickArmedFor = deadline.nanoseconds
        try? timer.start(timeoutMs: delayMs) { [unowned self] in
            tickArmedFor = nil
            step(.tick)
        }
    }

    /// Answers a vote request from outside the peer links (the public API or a JSON client).
    func answerVoteRequest(_ request: VoteRequest) -> VoteResponse {
        stats.voteRequestsReceived += 1
        if let storageError {
            return VoteResponse(voterID: config.nodeID, term: core.term, voteGranted: false, reason: storageError.description)
        }
        guard ElectionCore.isInRange(.voteRequest(request)) else {
            return VoteResponse(voterID: config.nodeID, term: core.term, voteGranted: false, reason: "term or epoch out of range")
        }
        var answer: VoteResponse?
        step(.receive(from: request.candidateID, .voteRequest(request))) { directive in
            if case .send(let to, .voteResponse(let response)) = directive, to == request.candidateID, answer == nil {
                answer = response
                return true
            }
            return false
        }
        return answer ?? VoteResponse(
            voterID: config.nodeID, term: core.term, voteGranted: false,
            reason: stats.persistFailures > 0 ? "vote could not be made durable" : "no answer")
    }

    // MARK: - Members and dialling

    /// Brings peers and the core's voters in line with the membership.
    func syncMembers() {
        let members = membership.allNodes
        var seen = Set<String>()
        for node in members where node.id != config.nodeID {
            seen.insert(node.id)
            let addr = try? HostPort(parsing: node.addr)
            if let peer = peers[node.id] {
                if peer.addr != addr { peer.addr = addr }
            } else {
                peers[node.id] = Peer(id: node.id, addr: addr)
            }
            if !core.voters.contains(node.id) { step(.addVoter(node.id)) }
        }
        for (id, peer) in peers where !seen.contains(id) {
            peers[id] = nil
            peer.redialTimer?.close()
            peer.dialing?.conn.close()
            if let link = peer.link { closeLink(link, reason: "removed from the cluster") }
            step(.removeVoter(id))
        }
        guard running else { return }
        for peer in peers.values where peer.link == nil && peer.dialing == nil && peer.redialTimer == nil {
            dial(peer)
        }
    }

    private func dial(_ peer: Peer) {
        guard running, let addr = peer.addr, peer.link == nil, peer.dialing == nil else { return }
        let timeoutMs = max(1, options.connectTimeout.nanoseconds / 1_000_000)
        do {
            let id = nextLinkID
            nextLinkID += 1
            var pending: Link?
            let conn = try UVTCPConnection.connect(loop: loop, host: addr.host, port: addr.port, timeoutMs: timeoutMs) {
                [unowned self] result in
                guard let link = pending else { return }
                if peer.dialing === link { peer.dialing = nil }
                switch result {
                case .success:
                    guard running else { link.conn.close(); return }
                    links[link.id] = link
                    link.kind = .binary
                    link.conn.onClose = { [unowned self, weak link] in if let link { linkClosed(link) } }
                    queue(hello(), on: link)
                    startReading(link)
                    flush()
                case .failure(let error):
                    stats.dialFailures += 1
                    if peer.failedDials == 0 { logger.debug("dial \(peer.id) at \(addr) failed: \(error)") }
                    scheduleRedial(peer)
                }
            }
            let link = Link(conn: conn, outbound: true, expectedPeer: peer.id, id: id)
            pending = link
            peer.dialing = link
        } catch {
            stats.dialFailures += 1
            logger.warning("cannot dial \(peer.id) at \(addr): \(error)")
            scheduleRedial(peer)
        }
    }

    private func scheduleRedial(_ peer: Peer) {
        guard running, peers[peer.id] === peer, peer.link == nil, peer.redialTimer == nil else { return }
        peer.failedDials += 1
        let delayNs = Backoff.delayNs(
            failures: peer.failedDials, baseNs: options.reconnectBackoffBase.nanoseconds,
            capNs: options.reconnectBackoffMax.nanoseconds, using: &random)
        guard let timer = try? UVTimer(loop: loop) else { return }
        peer.redialTimer = timer
        try? timer.start(timeoutMs: max(1, delayNs / 1_000_000)) { [unowned self] in
            timer.close()
            peer.redialTimer = nil
            if peers[peer.id] === peer { dial(peer) }
        }
    }

    // MARK: - Accepting and reading

    private func accept(_ conn: UVTCPConnection) {
        stats.connectionsAccepted += 1
        guard running, links.count < options.maxConnections else {
            stats.connectionsRefused += 1
            logger.warning("refusing a connection: \(links.count) open, limit \(options.maxConnections)")
            conn.close()
            return
        }
        let link = Link(conn: conn, outbound: false, expectedPeer: nil, id: nextLinkID)
        nextLinkID += 1
        links[link.id] = link
        conn.onClose = { [unowned self, weak link] in if let link { linkClosed(link) } }
        if let timer = try? UVTimer(loop: loop) {
            link.helloTimer = timer
            try? timer.start(timeoutMs: max(1, options.helloTimeout.nanoseconds / 1_000_000)) { [unowned self, weak link] in
                guard let link else { return }
                link.helloTimer?.close()
                link.helloTimer = nil
                if link.kind == .undecided || (link.kind == .binary && link.peerID == nil) {
                    violation(on: link, "no hello within \(options.helloTimeout)")
                }
            }
        }
        startReading(link)
    }

    private func startReading(_ link: Link) {
        do {
            try link.conn.startReading(onRead: { [unowned self, weak link] bytes in
                guard let link else { return }
                received(bytes, on: link)
                flush()
            }, onEnd: { [unowned self, weak link] error in
                guard let link else { return }
                if let error, error.code != UVError.connectionReset {
                    logger.debug("link \(link.description) ended: \(error)")
                }
                closeLink(link, reason: nil)
            })
        } catch {
            closeLink(link, reason: nil)
        }
    }

    private func received(_ bytes: RawSpan, on link: Link) {
        guard !link.isClosed, bytes.byteCount > 0 else { return }
        if link.kind == .undecided {
            switch Wire.classify(firstByte: bytes.unsafeLoadUnaligned(fromByteOffset: 0, as: UInt8.self)) {
            case .json:
                link.kind = .json
                link.helloTimer?.close()
                link.helloTimer = nil
            case .binary:
                link.kind = .binary
            case .stranger:
                violation(on: link, "not a cluster protocol (first byte \(bytes.unsafeLoadUnaligned(fromByteOffset: 0, as: UInt8.self)))")
                return
            }
        }
        switch link.kind {
        case .binary: receivedFrames(bytes, on: link)
        case .json: receivedLines(bytes, on: link)
        case .undecided: break
        }
    }

    // MARK: - Binary frames

    private func receivedFrames(_ bytes: RawSpan, on link: Link) {
        do throws(WireError) {
            try link.decoder.feed(bytes) { (frame) throws(WireError) in
                guard !link.isClosed else { return }
                try handleFrame(frame, on: link)
            }
        } catch {
            violation(on: link, "\(error)")
        }
    }

    private func handleFrame(_ frame: WireFrame, on link: Link) throws(WireError) {
        switch frame {
        case .hello(let hello):
            try receivedHello(hello, on: link)
            return
        case .goodbye(let reason):
            logger.debug("link \(link.description) said goodbye: \(reason)")
            closeLink(link, reason: nil)
            return
        default:
            break
        }
        guard let peerID = link.peerID else { throw .malformed("\(frame.type) before hello") }
        // A link that lost the one-link-per-pair choice may still deliver a frame or two before
        // it closes: the other link carries this peer now.
        guard let peer = peers[peerID], peer.link === link else { return }
        switch frame {
        case .heartbeat(let hb):
            guard hb.senderTag == link.peerTag else { throw .malformed("heartbeat sender tag does not match the hello") }
            receivedHeartbeat(hb, from: peer, on: link)
        case .voteRequest(let request):
            guard !faults.blocks(peerID) else { return }
            stats.voteRequestsReceived += 1
            step(.receive(from: peerID, .voteRequest(request)))
        case .voteResponse(let response):
            guard !faults.blocks(peerID) else { return }
            step(.receive(from: peerID, .voteResponse(response)))
        case .hello, .goodbye:
            break
        }
    }

    private func receivedHeartbeat(_ hb: HeartbeatFrame, from peer: Peer, on link: Link) {
        guard !faults.blocks(peer.id) else { return }
        stats.heartbeatsReceived &+= 1
        if hb.seq > peer.lastSeqReceived { peer.lastSeqReceived = hb.seq }
        if hb.reply && hb.ackSeq == peer.probeSeq && peer.probeSentNs != 0 {
            peer.roundTripNs = now.nanoseconds &- peer.probeSentNs
            stats.lastRoundTripNs = peer.roundTripNs
            peer.probeSentNs = 0
        }
        try? membership.recordHeartbeat(from: peer.id, seq: hb.seq, epoch: hb.epoch, term: hb.term, lsn: hb.lsn, role: hb.role)
        let message = HeartbeatMessage(
            from: peer.id, seq: hb.seq, epoch: hb.epoch, term: hb.term, lsn: hb.lsn, role: hb.role,
            ackSeq: hb.ackSeq, probe: hb.probe)
        step(.receive(from: peer.id, .heartbeat(message)))
        if hb.probe { sendHeartbeat(to: peer, reply: true) }
    }

    private func receivedHello(_ hello: HelloMessage, on link: Link) throws(WireError) {
        guard link.peerID == nil else { throw .malformed("second hello") }
        guard hello.nodeID != config.nodeID else {
            violation(on: link, "connected to itself")
            return
        }
        if let expected = link.expectedPeer, expected != hello.nodeID {
            violation(on: link, "dialled \(expected) but \(hello.nodeID) answered")
            return
        }
        guard let peer = peers[hello.nodeID] else {
            stats.connectionsRefused += 1
            goodbye(link, "unknown node \(hello.nodeID): not a member of this cluster")
            return
        }
        link.peerID = hello.nodeID
        link.peerTag = peer.tag
        link.helloTimer?.close()
        link.helloTimer = nil
        if !link.outbound { queue(self.hello(), on: link) }
        attach(link, to: peer)
    }

    /// Makes `link` the peer's link. Two nodes that dial each other at once end up with two
    /// links; both keep the one dialled by the node with the smaller id.
    private func attach(_ link: Link, to peer: Peer) {
        if let existing = peer.link, existing !== link {
            let preferOutbound = config.nodeID < peer.id
            let keepNew: Bool
            if existing.outbound == link.outbound {
                keepNew = true  // a reconnection replaces a stale link
            } else {
                keepNew = link.outbound == preferOutbound
            }
            stats.duplicateLinksClosed += 1
            if keepNew {
                peer.link = nil
                goodbye(existing, "duplicate connection")
            } else {
                goodbye(link, "duplicate connection")
                return
            }
        }
        peer.link = link
        peer.failedDials = 0
        peer.redialTimer?.close()
        peer.redialTimer = nil
        if let dialing = peer.dialing, dialing !== link, !(config.nodeID < peer.id) {
            // Our own dial would lose anyway.
            dialing.conn.close()
            peer.dialing = nil
        }
        stats.peerLinksEstablished += 1
        logger.debug("link \(link.description) established")
        sendHeartbeat(to: peer, reply: false)
    }

    private func hello() -> [UInt8] {
        var out: [UInt8] = []
        // The id and address were validated at start; an over-long one fails here, loudly.
        do {
            try Wire.encodeHello(HelloMessage(nodeID: config.nodeID, nodeAddr: membership.localNode.addr, priority: config.priority), into: &out)
        } catch {
            logger.error("cannot encode hello: \(error)")
        }
        return out
    }

    // MARK: - Sending

    private func send(_ message: ElectionMessage, to peerID: String) {
        guard !faults.blocks(peerID), let peer = peers[peerID], let link = peer.link else { return }
        switch message {
        case .voteRequest(let request):
            do { try Wire.encodeVoteRequest(request, into: &link.out) } catch { logger.error("cannot encode \(request): \(error)") }
        case .voteResponse(let response):
            do { try Wire.encodeVoteResponse(response, into: &link.out) } catch { logger.error("cannot encode \(response): \(error)") }
        case .heartbeat:
            sendHeartbeat(to: peer, reply: false)
            return
        }
        markDirty(link)
    }

    private func onHeartbeatTimer() {
        // The application may set the LSN through the membership (the seed's SetLocalLSN).
        let lsn = membership.localNode.lastLSN
        if lsn != core.localLSN { step(.setLocalLSN(lsn)) }
        sendHeartbeats()
        flush()
        // Catch up with membership changes made through the API.
        if membership.nodeCount != peers.count + 1 || peers.keys.contains(where: { !membership.contains($0) }) {
            syncMembers()
            flush()
        }
    }

    private func sendHeartbeats() {
        guard running else { return }
        heartbeatSeq &+= 1
        stats.heartbeatRounds &+= 1
        // Every `probeEveryRounds`-th round asks for an immediate reply, to measure round trips
        // (plain heartbeats acknowledge each other only at the peer's next interval).
        let probe = stats.heartbeatRounds % Self.probeEveryRounds == 1
        if probe { stats.probeRounds &+= 1 }
        for peer in peers.values { sendHeartbeat(to: peer, reply: false, probe: probe, seq: heartbeatSeq) }
    }

    static let probeEveryRounds: UInt64 = 10

    private func sendHeartbeat(to peer: Peer, reply: Bool, probe: Bool = false, seq: UInt64? = nil) {
        guard let link = peer.link, !faults.blocks(peer.id) else { return }
        if link.conn.writeQueueSize > options.maxQueuedBytes {
            stats.heartbeatsSkipped &+= 1
            return
        }
        let seq = seq ?? {
            heartbeatSeq &+= 1
            return heartbeatSeq
        }()
        let frame = HeartbeatFrame(
            seq: seq, epoch: core.epoch, term: core.term, lsn: core.localLSN, role: core.role,
            ackSeq: peer.lastSeqReceived, senderTag: localTag, probe: probe, reply: reply)
        Wire.encodeHeartbeat(frame, into: &link.out)
        if probe {
            peer.probeSeq = seq
            peer.probeSentNs = now.nanoseconds
        }
        stats.heartbeatsSent &+= 1
        markDirty(link)
    }

    private func queue(_ bytes: [UInt8], on link: Link) {
        link.out.append(contentsOf: bytes)
        markDirty(link)
    }

    @inline(__always)
    private func markDirty(_ link: Link) {
        if !link.isDirty {
            link.isDirty = true
            dirty.append(link)
        }
    }

    /// Writes what each link queued during this pass, one write per link.
    func flush() {
        guard !dirty.isEmpty else { return }
        for link in dirty {
            link.isDirty = false
            guard !link.isClosed, !link.out.isEmpty else {
                link.out.removeAll(keepingCapacity: true)
                continue
            }
            do {
                try link.conn.write(link.out)
            } catch {
                logger.debug("write to \(link.description) failed: \(error)")
            }
            link.out.removeAll(keepingCapacity: true)
        }
        dirty.removeAll(keepingCapacity: true)
    }

    // MARK: - Closing

    private func violation(on link: Link, _ reason: String) {
        stats.protocolErrors += 1
        logger.warning("closing \(link.description): \(reason)")
        if link.kind == .json {
            queue(JSONMessage.error(reason).encodeLine(), on: link)
            flush()
            closeLink(link, reason: nil)
        } else if link.kind == .binary {
            goodbye(link, reason)
        } else {
            closeLink(link, reason: nil)
        }
    }

    private func goodbye(_ link: Link, _ reason: String) {
        var out: [UInt8] = []
        Wire.encodeGoodbye(reason, into: &out)
        queue(out, on: link)
        flush()
        closeLink(link, reason: nil)
    }

    private func closeLink(_ link: Link, reason: String?) {
        guard !link.isClosed else { return }
        if let reason, link.kind == .binary, link.peerID != nil {
            var out: [UInt8] = []
            Wire.encodeGoodbye(reason, into: &out)
            try? link.conn.write(out)
        }
        link.isClosed = true
        link.helloTimer?.close()
        link.helloTimer = nil
        link.conn.close()
        detach(link)
    }

    private func linkClosed(_ link: Link) {
        link.isClosed = true
        link.helloTimer?.close()
        link.helloTimer = nil
        detach(link)
    }

    private func detach(_ link: Link) {
        links[link.id] = nil
        guard let peerID = link.peerID ?? link.expectedPeer, let peer = peers[peerID] else { return }
        if peer.link === link {
            peer.link = nil
            logger.debug("link \(link.description) lost")
            step(.peerUnreachable(peerID))
            scheduleRedial(peer)
        } else if link.outbound && peer.link == nil && peer.dialing == nil {
            // Our dial connected but never became the link (the peer refused or vanished before
            // its hello): try again later, as after a failed dial.
            scheduleRedial(peer)
        }
    }

    // MARK: - JSON lines

    private func receivedLines(_ bytes: RawSpan, on link: Link) {
        do throws(WireError) {
            try link.lines.feed(bytes) { line in
                guard !link.isClosed else { return }
                handleLine(line, on: link)
            }
        } catch {
            violation(on: link, "\(error)")
        }
    }

    private func handleLine(_ line: RawSpan, on link: Link) {
        let message: JSONMessage
        do throws(WireError) {
            message = try JSONMessage.decode(line: line)
        } catch {
            if case .unknownMessageType = error, link.jsonErrors < 16 {
                link.jsonErrors += 1
                stats.protocolErrors += 1
                queue(JSONMessage.error("\(error)").encodeLine(), on: link)
                return
            }
            violation(on: link, "\(error)")
            return
        }
        switch message {
        case .voteRequest(let request):
            queue(JSONMessage.voteResponse(answerVoteRequest(request)).encodeLine(), on: link)
        case .announcement(let announcement):
            queue(JSONMessage.nodeList(handleAnnouncement(announcement)).encodeLine(), on: link)
        case .heartbeat(let hb):
            guard let peer = peers[hb.from] else {
                queue(JSONMessage.error("unknown node \(hb.from)").encodeLine(), on: link)
                return
            }
            guard !faults.blocks(peer.id) else { return }
            stats.heartbeatsReceived &+= 1
            try? membership.recordHeartbeat(from: hb.from, seq: hb.seq, epoch: hb.epoch, term: hb.term, lsn: hb.lsn, role: hb.role)
            step(.receive(from: hb.from, .heartbeat(hb)))
            if hb.probe {
                let reply = HeartbeatMessage(
                    from: config.nodeID, seq: heartbeatSeq, epoch: core.epoch, term: core.term, lsn: core.localLSN,
                    role: core.role, ackSeq: hb.seq)
                queue(JSONMessage.heartbeat(reply).encodeLine(), on: link)
            }
        case .status:
            queue(JSONMessage.statusResponse(status()).encodeLine(), on: link)
        case .hello:
            queue(JSONMessage.hello(HelloMessage(nodeID: config.nodeID, nodeAddr: membership.localNode.addr, priority: config.priority)).encodeLine(), on: link)
        case .goodbye:
            closeLink(link, reason: nil)
        case .voteResponse, .nodeList, .statusResponse, .error:
            link.jsonErrors += 1
            queue(JSONMessage.error("unexpected message from a client").encodeLine(), on: link)
        }
    }

    /// The seed's `HandleAnnouncement` (see `Discovery`), answered on a JSON connection; a
    /// refusal is a `node_list` with `success: false` and the reason.
    func handleAnnouncement(_ announcement: AnnouncementMessage) -> DiscoveryResponse {
        do {
            let response = try Discovery.handleAnnouncement(announcement, membership: membership)
            syncMembers()
            return response
        } catch {
            return DiscoveryResponse(success: false, error: error.description)
        }
    }

    func status() -> StatusResponse {
        StatusResponse(
            nodeID: config.nodeID, role: core.role, state: core.state, term: core.term, epoch: core.fencingEpoch,
            leaderID: core.leaderID, lsn: core.localLSN, members: membership.allNodes)
    }

    // MARK: - Commands from the API

    func currentStats() -> NodeStats {
        var s = stats
        s.peersConnected = peers.values.reduce(0) { $0 + ($1.link == nil ? 0 : 1) }
        s.openConnections = links.count
        return s
    }

    func setLocalLSN(_ lsn: UInt64) {
        step(.setLocalLSN(lsn))
    }
}
