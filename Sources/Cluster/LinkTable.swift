import ClusterCore
import Logging
import UV

/// A node's connections: the listener, one link per peer (dialled with back-off, or accepted),
/// JSON clients, and the limits on all of them. Loop thread only. The one place that owns
/// connection slots and liveness:
/// - at most `NodeOptions.maxConnections` connections are open at once (peer links and clients
///   share them); more are closed at once;
/// - a connection must say hello (binary) or send its first JSON line within
///   `NodeOptions.helloTimeout`, dialled ones included;
/// - a JSON client silent for `NodeOptions.clientIdleTimeout` is closed;
/// - a peer link on whose stream nothing arrived for an election timeout (one and a half while the
///   peer's datagrams arrive) is replaced: closed and redialled (a half-open link to a rebooted
///   peer does not linger until the kernel gives up). A heartbeat datagram does not count as
///   hearing the link: a link proves itself on its own stream, by the keepalives of
///   `PeerProtocol.sendHeartbeat`, else a TCP flow lost while UDP passes would keep a link that
///   carries no vote;
/// - a hello naming a member whose link is live does not take that link over.
final class LinkTable {
    /// The runtime that owns this (a `lazy var` of it) and alone calls it: it cannot outlive the
    /// runtime. `unowned(unsafe)`, not `unowned`: every access would otherwise retain and release
    /// the runtime through its side table (it has weak references), a fifth of the CPU of a
    /// heartbeat in the mesh benchmark's profile.
    unowned(unsafe) let node: NodeRuntime
    // Callbacks reach this table through the runtime's anchor (`RuntimeAnchor`), never through a
    // weak reference: an object with a weak reference pays a slow path on every retain and
    // release, and the table is touched by every heartbeat.
    private let loop: UVLoop
    private var logger: Logger { node.logger }
    private(set) var peers: [String: Peer] = [:]
    private(set) var links: [Int: Link] = [:]
    private var nextLinkID = 0
    private var listener: UVTCPListener?
    private var sweepTimer: UVTimer?
    /// The sweep's period, when it last ran, and whether it put its judgments off (`sweep`).
    private var sweepPeriodNs: UInt64 = 0
    private var lastSweepNs: UInt64 = 0
    private var sweepPostponed = false
    /// JSON clients whose input waits for the next pass of the loop (`continueNextPass`), and
    /// the timer (0 ms: the next pass, after the loop has polled every connection) that serves them.
    private var waitingInput: [Link] = []
    private var nextPassTimer: UVTimer?
    /// Connections open at most: `NodeOptions.maxConnections`, and the descriptor limit less
    /// `NodeOptions.descriptorReserve` (set at start).
    private(set) var connectionCap: Int
    /// Repeated log lines of strangers' making, at most one a second per cause.
    private var logLimiter = LogLimiter()
    /// Full-state exchanges this node dialled that have not ended (connecting, or waiting for the
    /// answer), and the most at once.
    private(set) var exchangesInFlight = 0
    static let maxExchangesInFlight = 4
    private var reminderLimiter = LogLimiter(intervalNs: 60_000_000_000)
    private let helloTimeoutNs: UInt64
    private let clientIdleNs: UInt64
    private let silenceNs: UInt64
    /// Two nodes that dial each other at once both see two links, within a few round trips of
    /// each other; within this time (an election timeout, far longer than any round trip that
    /// keeps a cluster up, so both sides decide alike) of a link becoming a peer's link, the
    /// one-link-per-pair rule may replace it (see `attach`).
    private let raceWindowNs: UInt64
    /// See `NodeOptions.dialDeferral`.
    private let dialDeferralNs: UInt64
    private var random: SplitMix64
    private(set) var running = false

    init(node: NodeRuntime, seed: UInt64) {
        self.node = node
        loop = node.loop
        let options = node.options
        helloTimeoutNs = max(1_000_000, options.helloTimeout.nanoseconds)
        clientIdleNs = max(1_000_000, options.clientIdleTimeout.nanoseconds)
        silenceNs = max(1_000_000, node.config.electionTimeout.nanoseconds)
        raceWindowNs = max(1_000_000, node.config.electionTimeout.nanoseconds)
        dialDeferralNs = (options.dialDeferral ?? node.config.heartbeatInterval).nanoseconds
        random = SplitMix64(seed: seed ^ 0x5DEE_CE66_D1CE_4E5B)
        connectionCap = max(1, options.maxConnections)
    }

    /// The connection cap under the process's descriptor limit: that limit less the reserve
    /// (never below 16), and at most `maxConnections`.
    static func connectionCap(maxConnections: Int, reserve: Int, limit: UInt64?) -> Int {
        let cap = max(1, maxConnections)
        guard let limit, limit < UInt64(Int.max) else { return cap }
        return min(cap, max(16, Int(limit) - max(0, reserve)))
    }

    /// Logs `message` at `level` unless a line of this `cause` was logged within the last
    /// second; the next line logged says how many were left out.
    func logLimited(_ level: Logger.Level, _ cause: String, _ message: @autoclosure () -> String) {
        guard logger.logLevel <= level, let skipped = logLimiter.admit(cause, nowNs: UVLoop.hrtimeNs()) else { return }
        let text = message()
        logger.log(level: level, "\(skipped > 0 ? "\(text) (and \(skipped) more like it in the last second)" : text)")
    }

    /// Logs `message` at `level` the first time its `cause` comes, then at most once a minute
    /// (saying how many were left out), the others at debug: for what repeats at every
    /// announcement or dial while nothing changes (a peer that holds another key).
    func logOncePerCause(_ level: Logger.Level, _ cause: String, _ message: @autoclosure () -> String) {
        let text = message()
        guard let skipped = reminderLimiter.admit(cause, nowNs: UVLoop.hrtimeNs()) else {
            logger.debug("\(text)")
            return
        }
        logger.log(level: level, "\(skipped > 0 ? "\(text) (again; \(skipped) more like it in the last minute, said at debug)" : "\(text) (said once a minute while it lasts)")")
    }

    var boundAddress: HostPort? {
        listener.map { HostPort(host: $0.boundAddress.host, port: $0.port) }
    }

    var linkedPeerCount: Int { linkedPeers.count }
    /// The peers with a link, by id (kept with `setLink`): a heartbeat round goes through these
    /// only, not through every member (with the gossip layer most members have none).
    private(set) var linkedPeers: [String: Peer] = [:]

    /// Sets `peer`'s link (nil: none), keeping `linkedPeers`.
    private func setLink(_ peer: Peer, _ link: Link?) {
        peer.link = link
        if link != nil { linkedPeers[peer.id] = peer } else if linkedPeers[peer.id] === peer { linkedPeers[peer.id] = nil }
    }

    // MARK: - Start and stop

    /// Listens on `addr`; returns the bound address.
    func start(listeningOn addr: HostPort) throws(ClusterError) -> HostPort {
        do {
            listener = try UVTCPListener(loop: loop, host: addr.host, port: addr.port, onAcceptError: { [anchor = node.anchor] error in
                anchor.runtime?.links.logLimited(.warning, "accept", "accept failed: \(error)")
            }) { [anchor = node.anchor] conn in
                guard let table = anchor.runtime?.links else { conn.close(); return }
                table.accept(conn)
            }
        } catch {
            throw .io("cannot listen on \(addr): \(UVError.cause(of: error))")
        }
        running = true
        connectionCap = Self.connectionCap(
            maxConnections: node.options.maxConnections, reserve: node.options.descriptorReserve,
            limit: UVProcess.descriptorLimits()?.soft)
        do {
            nextPassTimer = try UVTimer(loop: loop)
            let timer = try UVTimer(loop: loop)
            let periodNs = max(5_000_000, min(helloTimeoutNs, clientIdleNs, silenceNs) / 4)
            let periodMs = periodNs / 1_000_000
            sweepPeriodNs = periodMs * 1_000_000
            lastSweepNs = 0
            sweepPostponed = false
            // The first sweep at a point of the period of this node's own (nodes started
            // together do not all sweep at once).
            try timer.start(timeoutMs: 1 + random.next() % periodMs, repeatMs: periodMs) { [anchor = node.anchor] in
                anchor.runtime?.links.sweep()
            }
            sweepTimer = timer
        } catch {
            stop()
            throw .io("cannot start the link timer: \(error)")
        }
        return boundAddress ?? addr
    }

    /// Closes the listener and every connection: a goodbye to each peer first, or, `crashing`,
    /// at once with nothing more sent (what a killed process's kernel does).
    func stop(crashing: Bool = false) {
        running = false
        listener?.close()
        listener = nil
        sweepTimer?.close()
        sweepTimer = nil
        nextPassTimer?.close()
        nextPassTimer = nil
        waitingInput.removeAll()
        for link in Array(links.values) {
            if crashing {
                link.isClosed = true
                link.conn.close()
                detach(link)
            } else {
                close(link, goodbye: "node stopping")
            }
        }
        for peer in peers.values {
            peer.redialTimer?.close()
            peer.redialTimer = nil
            peer.dialing?.conn.close()
            peer.dialing = nil
        }
    }

    // MARK: - Peers

    /// Brings the peer table in line with `members` (ids and addresses, this node excluded):
    /// new members are dialled, removed ones closed. Returns the ids removed.
    /// `dialling`: the members this node dials (nil: all of them); of the others, the links of
    /// those in `keeping` are kept when they dial this node, and the rest are closed.
    @discardableResult
    func sync(members: [(id: String, addr: String)], dialling: Set<String>? = nil, keeping: Set<String> = []) -> [String] {
        var seen = Set<String>()
        for member in members {
            seen.insert(member.id)
            let peer: Peer
            if let known = peers[member.id] {
                peer = known
                // Parsed only when it changed: a pass goes over every member.
                if peer.addrText != member.addr {
                    peer.addrText = member.addr
                    peer.addr = try? HostPort(parsing: member.addr)
                }
            } else {
                peer = Peer(id: member.id, addr: try? HostPort(parsing: member.addr))
                peer.addrText = member.addr
                peers[member.id] = peer
            }
            let dialled = dialling?.contains(member.id) ?? true
            if peer.dialled != dialled {
                peer.dialled = dialled
                if !dialled {
                    peer.redialTimer?.close()
                    peer.redialTimer = nil
                }
            }
            if !dialled, !keeping.contains(member.id) {
                peer.dialing?.conn.close()
                peer.dialing = nil
                if let link = peer.link {
                    setLink(peer, nil)
                    close(link, goodbye: "not linked: neither node votes (the gossip watches both)")
                }
            }
        }
        var removed: [String] = []
        for (id, peer) in peers where !seen.contains(id) {
            peers[id] = nil
            removed.append(id)
            peer.redialTimer?.close()
            peer.redialTimer = nil
            peer.dialing?.conn.close()
            peer.dialing = nil
            if let link = peer.link {
                setLink(peer, nil)
                close(link, goodbye: "removed from the cluster")
            }
        }
        if running {
            for peer in peers.values where peer.dialled && peer.link == nil && peer.dialing == nil && peer.redialTimer == nil {
                dial(peer)
            }
        }
        return removed
    }

    /// Dials `peer` at its recorded address; `checking`: even though it has a link (an inbound
    /// one whose claim another connection disputes: see `attach`).
    private func dial(_ peer: Peer, checking: Bool = false) {
        guard running, let addr = peer.addr, peer.link == nil || checking, peer.dialing == nil else { return }
        if dialDeferralNs > 0, !checking, !peer.dialDeferred, peer.id < node.config.nodeID {
            // The peer, which learns of us as we learn of it, dials us now, and its link is the
            // one both keep (`attach`): give it that long first. Its link arriving cancels this.
            peer.dialDeferred = true
            startDialTimer(peer, delayNs: dialDeferralNs)
            return
        }
        if dialDeferralNs > 0, !checking, !peer.handshakeWaited, let id = peer.handshakingLinkID, let pending = links[id], !pending.isClosed {
            // The peer's own dial is proving itself (a keyed handshake): wait for it as well, but
            // once only. The hello came before any proof, so anyone who knows a member's id and
            // the key's id can send it: an unproven handshake never holds this dial longer.
            peer.handshakeWaited = true
            startDialTimer(peer, delayNs: dialDeferralNs)
            return
        }
        peer.dialDeferred = false
        peer.handshakeWaited = false
        let timeoutMs = max(1, node.options.connectTimeout.nanoseconds / 1_000_000)
        let id = nextLinkID
        nextLinkID += 1
        do {
            // The completion may run after this table is gone (a shared loop outlives a node): it
            // holds the runtime's anchor, and finds the peer and its dial by id. (No weak reference to
            // a peer or a link is ever made: one would send every retain and release of it down
            // the runtime's slow path, on the heartbeat path.)
            let peerID = peer.id
            let conn = try UVTCPConnection.connect(loop: loop, host: addr.host, port: addr.port, timeoutMs: timeoutMs) {
                [anchor = node.anchor] result in
                guard let table = anchor.runtime?.links, let peer = table.peers[peerID], let link = peer.dialing, link.id == id else {
                    if case .success(let conn) = result { conn.close() }
                    return
                }
                table.dialFinished(result, link: link, peer: peer)
            }
            let link = Link(conn: conn, outbound: true, expectedPeer: peer.id, id: id, nowNs: node.nowNs)
            peer.dialing = link
        } catch {
            node.stats.dialFailures += 1
            logger.warning("cannot dial \(peer.id) at \(addr): \(error)")
            scheduleRedial(peer)
        }
    }

    /// A gossip full-state exchange (`GossipService`): dials `address`, writes `frame` (a
    /// FULL_STATE frame) and reads the answer, which `PeerProtocol` hands to the gossip layer and
    /// which ends the connection. A connection of its own, not a peer's link: it takes a slot
    /// while it lasts, and the hello timeout bounds it (`sweep`). A failed dial is dropped (the
    /// gossip layer tries again when it needs to). At most `maxExchangesInFlight` at a time: more
    /// are dropped too (a loop short of time would otherwise pile up exchanges it cannot finish).
    func exchange(with address: HostPort, _ frame: [UInt8]) {
        guard running, links.count < connectionCap, exchangesInFlight < Self.maxExchangesInFlight else { return }
        exchangesInFlight += 1
        let timeoutMs = max(1, node.options.connectTimeout.nanoseconds / 1_000_000)
        let id = nextLinkID
        nextLinkID += 1
        do {
            _ = try UVTCPConnection.connect(loop: loop, host: address.host, port: address.port, timeoutMs: timeoutMs) {
                [anchor = node.anchor] result in
                guard let table = anchor.runtime?.links else {
                    if case .success(let conn) = result { conn.close() }
                    return
                }
                guard case .success(let conn) = result, table.running, table.links.count < table.connectionCap else {
                    if case .success(let conn) = result { conn.close() }
                    table.exchangesInFlight -= 1
                    return
                }
                let link = Link(conn: conn, outbound: true, expectedPeer: nil, id: id, nowNs: table.node.nowNs)
                link.kind = .binary
                link.isExchange = true
                table.links[id] = link
                conn.onClose = { [anchor] in
                    if let table = anchor.runtime?.links, let link = table.links[id] { table.closed(link) }
                }
                table.node.outbox.append(frame, to: link)
                table.startReading(link)
                table.node.outbox.flush()
            }
        } catch {
            exchangesInFlight -= 1
            logger.debug("gossip: cannot dial \(address) for a full-state exchange: \(error)")
        }
    }

    private func dialFinished(_ result: Result<UVTCPConnection, UVError>, link: Link, peer: Peer) {
        if peer.dialing === link { peer.dialing = nil }
        switch result {
        case .success:
            guard running, peers[peer.id] === peer, links.count < node.options.maxConnections else {
                link.conn.close()
                return
            }
            links[link.id] = link
            link.kind = .binary
            let linkID = link.id
            link.conn.onClose = { [anchor = node.anchor] in
                if let table = anchor.runtime?.links, let link = table.links[linkID] { table.closed(link) }
            }
            node.outbox.append(node.peerProtocol.helloBytes(for: link), to: link)
            startReading(link)
            node.outbox.flush()
        case .failure(let error):
            node.stats.dialFailures += 1
            if peer.failedDials == 0 { logger.debug("dial \(peer.id) failed: \(error)") }
            scheduleRedial(peer)
        }
    }

    private func scheduleRedial(_ peer: Peer) {
        guard running, peer.dialled, peers[peer.id] === peer, peer.link == nil, peer.dialing == nil, peer.redialTimer == nil else { return }
        peer.failedDials += 1
        // A member that has never linked is redialled ever more slowly, up to a much longer cap:
        // a stranger's announcements of members at a third party's address cannot make the
        // cluster dial that address more than a few times a minute per made-up member.
        let cap = peer.everLinked
            ? node.options.reconnectBackoffMax : max(node.options.reconnectBackoffMax, node.options.unlinkedMemberBackoffMax)
        let delayNs = Backoff.delayNs(
            failures: peer.failedDials, baseNs: node.options.reconnectBackoffBase.nanoseconds,
            capNs: cap.nanoseconds, using: &random)
        startDialTimer(peer, delayNs: delayNs)
    }

    /// Dials `peer` after `delayNs` (its `redialTimer`, which a link to it cancels).
    private func startDialTimer(_ peer: Peer, delayNs: UInt64) {
        guard let timer = try? UVTimer(loop: loop) else { return }
        peer.redialTimer = timer
        let peerID = peer.id
        try? timer.start(timeoutMs: max(1, delayNs / 1_000_000)) { [anchor = node.anchor, weak timer] in
            timer?.close()
            guard let table = anchor.runtime?.links, let peer = table.peers[peerID] else { return }
            peer.redialTimer = nil
            table.dial(peer)
        }
    }

    // MARK: - Accepting and reading

    /// A connection the listener accepted (or a test handed over, see `ElectionManager.accept`):
    /// a link of no kind yet, reading, or closed at once when the table is full or stopped.
    func accept(_ conn: any LinkConnection) {
        node.stats.connectionsAccepted += 1
        if running, links.count >= connectionCap, let stale = longestUndecided() {
            // Full: the connection that has waited longest without saying what it is makes room
            // (a stranger holding a slot; a peer's link or a client is never closed for this).
            node.stats.connectionsRefused += 1
            logLimited(.warning, "evict", "at the connection limit (\(connectionCap)): closing \(stale.description), which has not said hello")
            close(stale)
        }
        guard running, links.count < connectionCap else {
            node.stats.connectionsRefused += 1
            logLimited(.warning, "refuse", "refusing a connection: \(links.count) open, limit \(connectionCap)")
            conn.close()
            return
        }
        let link = Link(conn: conn, outbound: false, expectedPeer: nil, id: nextLinkID, nowNs: node.nowNs)
        nextLinkID += 1
        links[link.id] = link
        let linkID = link.id
        conn.onClose = { [anchor = node.anchor] in
            if let table = anchor.runtime?.links, let link = table.links[linkID] { table.closed(link) }
        }
        startReading(link)
    }

    /// The inbound connection, open longest, that has not said what it is (no byte yet, or a
    /// binary one whose hello has not come).
    private func longestUndecided() -> Link? {
        var oldest: Link?
        for link in links.values where !link.outbound && !link.isClosed
            && (link.kind == .undecided || (link.kind == .binary && link.peerID == nil)) {
            if oldest == nil || link.id < oldest!.id { oldest = link }
        }
        return oldest
    }

    /// `link` (a JSON client holding input, reading paused) gets its next turn in the next pass
    /// of the loop, after the loop has polled every connection (`JSONService.resume`).
    func continueNextPass(_ link: Link) {
        guard running, !link.inputScheduled, let timer = nextPassTimer else { return }
        link.inputScheduled = true
        waitingInput.append(link)
        guard waitingInput.count == 1 else { return }
        try? timer.start(timeoutMs: 0) { [anchor = node.anchor] in
            anchor.runtime?.links.nextPass()
        }
    }

    private func nextPass() {
        let batch = waitingInput
        waitingInput.removeAll(keepingCapacity: true)
        for link in batch {
            link.inputScheduled = false
            node.jsonService.resume(link)
        }
        node.outbox.flush()
    }

    private func startReading(_ link: Link) {
        if let bytes = node.options.socketBufferBytes {
            try? link.conn.setSendBufferSize(bytes)
            try? link.conn.setReceiveBufferSize(bytes)
        }
        let linkID = link.id
        do {
            // The read path, taken for every frame, makes no weak load and no lookup. The link
            // is held strongly: its connection drops this closure when it closes, which ends the
            // cycle. The table is held `unowned(unsafe)`: a connection delivers reads only while
            // the table runs (`stop()` closes every link, and a closing or flushing connection
            // delivers nothing), and the runtime that owns the table stops before it is freed
            // (`ElectionManager.deinit`).
            try link.conn.startReading(onRead: { [unowned(unsafe) self, link] bytes in
                self.read(bytes, on: link)
            }, onEnd: { [anchor = node.anchor] error in
                guard let table = anchor.runtime?.links, let link = table.links[linkID] else { return }
                table.readEnded(link, error)
            })
        } catch {
            close(link)
        }
    }

    /// Bytes read from `link`'s connection (valid during the call only): every read of every
    /// link comes here, then goes out through the outbox in one write per link.
    private func read(_ bytes: RawSpan, on link: Link) {
        guard !link.isClosed, !link.blackholed else { return }
        node.handlingRead { now in
            link.lastHeardNs = now
            node.peerProtocol.received(bytes, on: link)
        }
        node.outbox.flush()
    }

    /// Reading from `link` ended: end of stream (nil) or an error.
    private func readEnded(_ link: Link, _ error: UVError?) {
        if let error, error.code != UVError.connectionReset {
            logger.debug("link \(link.description) ended: \(error)")
        }
        close(link)
    }

    // MARK: - Hello and the one link per pair

    enum AttachOutcome { case attached, refused(String) }

    /// Makes `link` (hello received, `link.peerID` set) the link of `peer`, unless a live link
    /// serves it already. Two nodes that dial each other at once end up with two links; both keep
    /// the one dialled by the node with the smaller id (decided within `raceWindowNs` of the first
    /// link's hello). Otherwise a live link (heard within an election timeout) is never taken over
    /// by a newcomer claiming the same id; a silent one is replaced. (Without a cluster key, a
    /// newcomer in the race window of a fresh link can still win the race by claiming the smaller
    /// id: only authentication closes that.)
    func attach(_ link: Link, to peer: Peer) -> AttachOutcome {
        let now = node.nowNs
        if let existing = peer.link, existing !== link {
            let live = now &- existing.lastHeardNs < silenceNs
            let racing = now &- existing.attachedNs < raceWindowNs && existing.outbound != link.outbound
            let keepNew: Bool
            if racing {
                keepNew = link.outbound == (node.config.nodeID < peer.id)
            } else {
                // A node that answers this node's own dial at the member's address, and says
                // hello as the member, is the member: it replaces an inbound link that only
                // claimed the id (an impostor of a member that was down, on a cluster without a
                // key). The member itself would have refused this dial had its link been live.
                keepNew = !live || (link.outbound && !existing.outbound)
            }
            node.stats.duplicateLinksClosed += 1
            guard keepNew else {
                node.stats.duplicateLinksRefused += 1
                if !racing {
                    // Not two dials crossing: a second node claims an id whose link is live (two
                    // nodes started with one id, or a stranger): say so, naming both addresses.
                    let other = link.conn.peerAddress.map { "\($0)" } ?? "?"
                    let linked = existing.conn.peerAddress.map { "\($0)" } ?? "?"
                    logLimited(
                        .warning, "duplicate-id",
                        "refusing a connection from \(other) that says it is \(peer.id): \(peer.id) is linked already, from \(linked) (two nodes with one --id?)")
                }
                if !link.outbound, !existing.outbound, now >= peer.checkDialAfterNs {
                    // Two connections claim one member: ask its address who is there (once per
                    // election timeout). The member, back, answers and takes its place.
                    peer.checkDialAfterNs = now &+ silenceNs
                    dial(peer, checking: true)
                }
                return .refused("duplicate connection")
            }
            setLink(peer, nil)
            close(existing, goodbye: "duplicate connection")
        }
        link.attachedNs = now
        setLink(peer, link)
        peer.failedDials = 0
        peer.everLinked = true
        peer.redialTimer?.close()
        peer.redialTimer = nil
        peer.dialDeferred = false
        peer.handshakeWaited = false
        peer.handshakingLinkID = nil
        if let dialing = peer.dialing, dialing !== link, !(node.config.nodeID < peer.id) {
            // Our own dial would lose anyway.
            dialing.conn.close()
            peer.dialing = nil
        }
        node.stats.peerLinksEstablished += 1
        logger.debug("link \(link.description) established")
        return .attached
    }

    /// A peer's link whose peer has been heard within an election timeout.
    func hasLiveLink(_ peerID: String) -> Bool {
        guard let link = peers[peerID]?.link else { return false }
        return node.nowNs &- link.lastHeardNs < silenceNs
    }

    // MARK: - Liveness

    /// Closes connections past their deadlines: no hello, idle clients, silent peer links.
    private func sweep() {
        let now = node.nowNs
        let previous = lastSweepNs
        lastSweepNs = now
        if previous != 0, now &- previous > sweepPeriodNs, !sweepPostponed,
           node.loopStalled(lateNs: now &- previous &- sweepPeriodNs) {
            // The loop was stalled: what the peers sent meanwhile waits unread (libuv runs timers
            // before it polls). Judge no link silent before the next pass, which comes after a
            // poll has read it. Once: a loop late at every pass still sweeps every other pass.
            sweepPostponed = true
            return
        }
        sweepPostponed = false
        for link in Array(links.values) where !link.isClosed {
            if link.security?.peerKeyRetiredAtNs != nil { node.peerProtocol.checkRetiredKey(on: link, now: now) }
            switch link.kind {
            case .undecided where now &- link.openedNs >= helloTimeoutNs,
                 .http where now &- link.openedNs >= helloTimeoutNs,
                 .binary where link.peerID == nil && now &- link.openedNs >= helloTimeoutNs:
                node.stats.connectionsTimedOut += 1
                node.peerProtocol.violation(on: link, "no hello within \(node.options.helloTimeout)")
            case .json where now &- link.lastHeardNs >= clientIdleNs:
                node.stats.connectionsTimedOut += 1
                node.jsonService.close(link, "idle for \(node.options.clientIdleTimeout)")
            case .binary where link.peerID != nil && now &- link.lastHeardNs >= silenceNs:
                // While the peer's datagrams still arrive the peer is alive and its keepalives
                // come every half election timeout: a stalled loop gets half an election timeout
                // more before the stream is judged gone (the slack heartbeats had before).
                if let peer = link.attachedPeer, peer.lastDatagramNs != 0, now &- peer.lastDatagramNs < silenceNs,
                   now &- link.lastHeardNs < silenceNs + silenceNs / 2 {
                    break
                }
                node.stats.connectionsTimedOut += 1
                logger.info("link \(link.description) silent on its stream for an election timeout: replacing it")
                close(link, goodbye: "silent for an election timeout")
            default:
                break
            }
        }
        node.outbox.flush()
    }

    // MARK: - Closing

    /// Closes a link. A peer link gets `goodbye` first (if given); queued output is flushed and
    /// the stream shut down before it closes, within `NodeOptions.closeGracePeriod`.
    func close(_ link: Link, goodbye: String? = nil) {
        guard !link.isClosed else { return }
        if let goodbye, link.kind == .binary, link.peerID != nil {
            node.peerProtocol.appendGoodbye(goodbye, to: link)
        }
        node.outbox.flush(link)
        link.isClosed = true
        link.conn.closeAfterFlush(timeoutMs: max(1, node.options.closeGracePeriod.nanoseconds / 1_000_000))
        detach(link)
    }

    private func closed(_ link: Link) {
        link.isClosed = true
        detach(link)
    }

    private func detach(_ link: Link) {
        links[link.id] = nil
        if link.isExchange && link.outbound { exchangesInFlight -= 1 }
        if link.inputScheduled {
            link.inputScheduled = false
            waitingInput.removeAll { $0 === link }
        }
        link.heldInput = []
        node.datagrams.closed(link)
        guard let peerID = link.peerID ?? link.expectedPeer, let peer = peers[peerID] else { return }
        if peer.link === link {
            setLink(peer, nil)
            logger.info("lost the link to \(peerID)")
            node.peerLost(peerID)
            scheduleRedial(peer)
        } else if link.outbound && peer.link == nil && peer.dialing == nil {
            // Our dial connected but never became the link (the peer refused or vanished before
            // its hello): try again later, as after a failed dial.
            scheduleRedial(peer)
        }
    }
}

// MARK: - A connection without a socket

extension ElectionManager {
    /// Hands the started runtime `conn` as if its listener had just accepted it: from here on the
    /// link takes every step a socket's does (slots, the hello timeout, reads through the
    /// callbacks `conn` gets in `startReading`, writes through the outbox, closing). For tests
    /// and the fuzz harness. Loop thread only.
    package func accept(_ conn: any LinkConnection) {
        runtime.loop.preconditionInEventLoop()
        runtime.links.accept(conn)
    }

    /// The connections the runtime has open (peer links, clients, links of no kind yet). Loop
    /// thread only.
    package var openLinkCount: Int {
        runtime.loop.preconditionInEventLoop()
        return runtime.links.links.count
    }

    /// A copy of the runtime's election core: term, vote, epochs, leader, voters. Loop thread only.
    package var electionCore: ElectionCore {
        runtime.loop.preconditionInEventLoop()
        return runtime.core
    }
}
