import ClusterCore
import Logging
import UV

/// The peer protocol of PROTOCOL.md on a node's connections: tells binary links from JSON
/// clients and strangers by the first byte, decodes frames, handles hello and goodbye, binds
/// every message to the link's peer, and writes hellos and heartbeats. Loop thread only.
///
/// Sender binding: on a binary link every message is from the peer that said hello on it. A vote
/// request naming another candidate, a vote response naming another voter, or a heartbeat with
/// another sender tag is a protocol violation, so one link cannot forge another member's votes or
/// heartbeats.
final class PeerProtocol {
    /// The runtime that owns this (a `lazy var` of it) and alone calls it: it cannot outlive the
    /// runtime. `unowned(unsafe)`, not `unowned`: every access would otherwise retain and release
    /// the runtime through its side table (it has weak references), a fifth of the CPU of a
    /// heartbeat in the mesh benchmark's profile.
    unowned(unsafe) let node: NodeRuntime
    private var logger: Logger { node.logger }
    /// FNV-1a of this node's id, carried by every heartbeat it sends.
    let localTag: UInt64
    @exclusivity(unchecked) private var heartbeatSeq: UInt64 = 0
    @exclusivity(unchecked) private var rounds: UInt64 = 0

    /// Every `probeEveryRounds`-th round of heartbeats asks for an immediate reply, to measure
    /// round trips (plain heartbeats acknowledge each other only at the peer's next interval).
    static let probeEveryRounds: UInt64 = 10
    /// Which of the ten rounds probes, from this node's id: nodes started together do not all
    /// probe in the same round (their replies would come in one burst, and the round trips
    /// measured would be the burst's).
    private let probePhase: UInt64
    /// True when the node has a keyring: binary links are keyed (read once, not per frame).
    private let keyed: Bool

    /// `cluster bench`'s counters for this node's loop thread, or nil.
    private let benchShard: BenchHooks.Shard?

    init(node: NodeRuntime) {
        self.node = node
        localTag = Wire.fnv1a64(node.config.nodeID)
        probePhase = localTag % Self.probeEveryRounds
        keyed = node.options.keyring != nil
        benchShard = node.benchHooks?.shard(for: node.loop)
    }

    // MARK: - Receiving

    /// Bytes that arrived on `link` (valid during the call only).
    func received(_ bytes: RawSpan, on link: Link) {
        guard !link.isClosed, bytes.byteCount > 0 else { return }
        if link.kind == .undecided {
            let first = bytes.unsafeLoadUnaligned(fromByteOffset: 0, as: UInt8.self)
            switch Wire.classify(firstByte: first) {
            case .json: link.kind = .json
            case .binary: link.kind = .binary
            case .http: link.kind = .http
            case .stranger:
                violation(on: link, "not a cluster protocol (first byte \(first))")
                return
            }
        }
        switch link.kind {
        case .binary: receivedFrames(bytes, on: link)
        case .json: node.jsonService.received(bytes, on: link)
        case .http: receivedHTTP(bytes, on: link)
        case .undecided: break
        }
    }

    /// A metrics scraper: one `GET /metrics` answered, then the connection closed.
    private func receivedHTTP(_ bytes: RawSpan, on link: Link) {
        bytes.withUnsafeBytes { link.httpHead += $0 }
        guard case .respond(let response) = MetricsHTTP.step(link.httpHead, exporter: node.options.metricsExporter) else { return }
        link.httpHead = []
        node.outbox.append(response, to: link)
        node.links.close(link)
    }

    private func receivedFrames(_ bytes: RawSpan, on link: Link) {
        do throws(WireError) {
            if link.peerID == nil {
                // Before the hello: a gossip full-state exchange may come instead of one.
                try link.decoder.feedRaw(bytes) { (raw) throws(WireError) in
                    guard !link.isClosed else { return }
                    if raw.byteCount > 4, raw.unsafeLoadUnaligned(fromByteOffset: 4, as: UInt8.self) == GossipWire.fullStateFrameType {
                        try receivedFullState(raw, on: link)
                    } else if keyed {
                        try receivedKeyed(raw, on: link)
                    } else {
                        try handle(Wire.decodeFrame(raw), on: link)
                    }
                }
            } else if !keyed {
                try link.decoder.feed(bytes) { (frame) throws(WireError) in
                    guard !link.isClosed else { return }
                    try handle(frame, on: link)
                }
            } else {
                try link.decoder.feedRaw(bytes) { (raw) throws(WireError) in
                    guard !link.isClosed else { return }
                    try receivedKeyed(raw, on: link)
                }
            }
            applyPendingHeartbeat()
        } catch {
            applyPendingHeartbeat()
            if case .unauthenticated = error { node.stats.authenticationFailures &+= 1 }
            violation(on: link, "\(error)")
        }
    }

    /// The newest heartbeat of the read being handled (one read is one link's, so one peer's),
    /// not yet recorded in the membership nor stepped through the core. A heartbeat is the
    /// sender's whole state, so of several in one read (a backlog, probes in flight) the newest
    /// is the one that counts: each is checked, counted, acknowledged and, if it asks, answered
    /// at once, but only the newest is applied, once, when the read's frames are done or before
    /// any other kind of frame of the read (which keeps the order of everything else).
    @exclusivity(unchecked) private var pendingHeartbeat: (message: HeartbeatMessage, peer: Peer)?

    private func applyPendingHeartbeat() {
        guard let (message, peer) = pendingHeartbeat else { return }
        pendingHeartbeat = nil
        node.receive(.election(.heartbeat(message)), from: peer)
    }

    /// A FULL_STATE frame before any hello: one gossip full-state exchange, answered (unless it
    /// is itself the answer) and the connection closed. Never on a peer's link, and never on a
    /// connection that said hello.
    private func receivedFullState(_ raw: RawSpan, on link: Link) throws(WireError) {
        guard link.peerID == nil, link.security?.peerHello == nil, !link.isExchange || link.outbound else {
            throw .malformed("a second full state on one connection")
        }
        link.isExchange = true
        guard node.options.gossip else {
            goodbye(link, "this node does not gossip")
            return
        }
        if let reply = try node.gossip.fullStateArrived(raw, on: link) {
            node.outbox.append(reply, to: link)
        }
        node.links.close(link)
    }

    // MARK: - Keyed links

    /// One whole frame on a keyed link. Once the peer's AUTH has checked, every frame must carry
    /// its tag (`FrameOpener`); before, only HELLO, AUTH and GOODBYE may come, unsealed.
    private func receivedKeyed(_ raw: RawSpan, on link: Link) throws(WireError) {
        if let security = link.security, security.opener != nil {
            switch try security.opener!.open(raw) {
            case .frame(let frame):
                try handle(frame, on: link)
            case .rekey(let keyID):
                guard let key = node.options.keyring?.key(id: keyID) else {
                    throw .unauthenticated("the peer switched to key \(ClusterKey.idString(keyID)), which is not in this node's keyring")
                }
                security.opener!.rekey(to: key)
                link.datagramOpener?.switchKey(to: key)
                security.peerKeyRetiredAtNs = nil
            }
            return
        }
        if LinkAuth.type(of: raw) == LinkAuth.authType {
            try receivedAuth(LinkAuth.decodeAuth(raw), on: link)
            return
        }
        switch try Wire.decodeFrame(raw) {
        case .hello(let hello):
            try receivedHello(hello, raw: Wire.copyBytes(raw), on: link)
        case .goodbye(let reason):
            logger.warning("\(link.description) refused the link: \(reason)")
            node.links.close(link)
        case let frame:
            throw .malformed("\(frame.type) before authentication")
        }
    }

    /// The peer's proof: checked against the key its hello named; then the link is the peer's.
    private func receivedAuth(_ proof: [UInt8], on link: Link) throws(WireError) {
        guard let security = link.security, let hello = security.peerHello, let peerKey = security.peerKey,
              security.sealer != nil, security.opener == nil
        else { throw .malformed("auth before hello") }
        guard LinkAuth.checkProof(proof, key: peerKey, transcript: security.transcript, dialer: !link.outbound) else {
            throw .unauthenticated("\(hello.nodeID) did not prove that it holds cluster key \(peerKey.idString)")
        }
        let transcriptHash = LinkAuth.transcriptHash(security.transcript)
        security.opener = FrameOpener(key: peerKey, transcriptHash: transcriptHash, peerIsDialer: !link.outbound)
        if link.datagramToken != 0 {  // this node's hello offered datagrams: the peer may send some
            link.datagramOpener = DatagramOpener(key: peerKey, transcriptHash: transcriptHash, peerIsDialer: !link.outbound)
        }
        security.handshakeDone()
        guard let peer = node.links.peers[hello.nodeID] else {
            refuse(link, "unknown node \(hello.nodeID): not a member of this cluster", auth: false)
            node.unknownNodeSaidHello(hello.nodeID)
            return
        }
        attach(link, to: peer, hello: hello, sendHello: false)
    }

    /// A refusal before the link is the peer's: counted, logged, said in a goodbye, closed.
    private func refuse(_ link: Link, _ reason: String, auth: Bool) {
        node.stats.connectionsRefused += 1
        if auth {
            node.stats.authenticationFailures &+= 1
            node.links.logLimited(.warning, "unauthenticated", "refusing \(link.description): \(reason)")
        }
        goodbye(link, reason)
    }

    /// The keyring changed: links switch their sending half to the primary key (a REKEY frame),
    /// and links whose peer sends under a key no longer held are closed.
    func keyringChanged() {
        guard let keyring = node.options.keyring else { return }
        let primary = keyring.primary
        for link in Array(node.links.links.values) where !link.isClosed {
            guard let security = link.security else { continue }
            let peerKeyID = security.opener?.keyID ?? security.peerKey?.id
            if let peerKeyID, keyring.key(id: peerKeyID) == nil {
                // The peer may have switched already, its REKEY still on its way (a rotation
                // that removes the old key right after every node switched): it gets an election
                // timeout to do so (`checkRetiredKey`), then the link closes.
                if security.peerKeyRetiredAtNs == nil { security.peerKeyRetiredAtNs = node.nowNs }
                continue
            }
            if security.sealer != nil, security.sealer!.keyID != primary.id {
                node.outbox.append(to: link) { security.sealer!.rekey(to: primary, into: &$0) }
                link.datagramSealer?.switchKey(to: primary)
                security.ownKey = primary
            } else if security.sealer == nil {
                security.ownKey = primary  // its proof (still to be sent) will be made with it
            }
        }
        node.outbox.flush()
    }

    /// A link whose peer sends under a key this node has removed (see `keyringChanged`): fine
    /// once the peer has switched to a key of the keyring; closed, with the reason, once it has
    /// not within an election timeout. Called by the link sweep.
    func checkRetiredKey(on link: Link, now: UInt64) {
        guard let security = link.security, let since = security.peerKeyRetiredAtNs, !link.isClosed else { return }
        let peerKeyID = security.opener?.keyID ?? security.peerKey?.id
        if let peerKeyID, node.options.keyring?.key(id: peerKeyID) != nil {
            security.peerKeyRetiredAtNs = nil
            return
        }
        guard now &- since >= node.config.electionTimeout.nanoseconds else { return }
        let id = peerKeyID.map(ClusterKey.idString) ?? "?"
        node.stats.authenticationFailures &+= 1
        logger.warning("closing \(link.description): it still sends under key \(id), which was removed from the keyring")
        goodbye(link, "key \(id) was removed from this node's keyring")
    }

    private func handle(_ frame: WireFrame, on link: Link) throws(WireError) {
        if pendingHeartbeat != nil, frame.type != .heartbeat { applyPendingHeartbeat() }
        switch frame {
        case .hello(let hello):
            try receivedHello(hello, on: link)
            return
        case .goodbye(let reason):
            logger.debug("link \(link.description) said goodbye: \(reason)")
            node.links.close(link)
            return
        default:
            break
        }
        guard link.peerID != nil else { throw .malformed("\(frame.type) before hello") }
        // A link that lost the one-link-per-pair choice may still deliver a frame or two before
        // it closes: the other link carries this peer now (and this one has no `attachedPeer`).
        guard let peer = link.attachedPeer else { return }
        if case .heartbeat(let hb) = frame { return try heartbeatArrived(hb, from: peer) }
        guard let input = try checked(frame, from: peer) else { return }
        node.receive(input, from: peer)
    }

    /// A frame of a linked peer, checked once: the ids it carries must name the link's peer (a
    /// violation throws, and the link closes saying why), its terms and epochs must be in range
    /// (out of range: counted and dropped), and a fault may cut the peer off (dropped). Nil when
    /// dropped.
    private func checked(_ frame: WireFrame, from peer: Peer) throws(WireError) -> NodeRuntime.PeerInput? {
        let peerID = peer.id
        func sender(_ id: String, _ what: String) throws(WireError) {
            guard id == peerID else { throw .malformed("\(what) from \(id) on the link of \(peerID)") }
        }
        let input: NodeRuntime.PeerInput
        switch frame {
        case .voteRequest(let request):
            try sender(request.candidateID, "vote request")
            input = .election(.voteRequest(request))
        case .voteResponse(let response):
            try sender(response.voterID, "vote response")
            input = .election(.voteResponse(response))
        case .timeoutNow(let message):
            try sender(message.from, "timeout-now")
            input = .election(.timeoutNow(message))
        case .configuration(let message):
            try sender(message.from, "configuration")
            input = .election(.configuration(message))
        case .configurationAck(let ack):
            try sender(ack.from, "configuration ack")
            input = .election(.configurationAck(ack))
        case .member(let member):
            input = .member(member)
        case .leave(let id):
            input = .leave(id)
        case .bootstrap(let message):
            input = .bootstrap(message)
        case .hello, .goodbye, .heartbeat:
            return nil  // handled before: they are the link's, not the node's
        }
        guard !node.faults.blocks(peerID) else { return nil }
        if case .election(let message) = input, !ElectionCore.isInRange(message) {
            node.stats.protocolErrors &+= 1
            return nil
        }
        return input
    }

    /// A heartbeat datagram for `link` (token, mode and, on a keyed link, tag checked by the
    /// channel), at `now`: the peer's datagrams arrive. The link's stream is not heard from by
    /// it (see `DatagramChannel.keepaliveNs`). False when the heartbeat is not the peer's (its
    /// sender tag): dropped.
    func datagramArrived(_ hb: HeartbeatFrame, from peer: Peer, on link: Link, at now: UInt64) -> Bool {
        do throws(WireError) {
            try heartbeatArrived(hb, from: peer)
        } catch {
            // Only the peer on this link knows its token (and, keyed, its key): a frame it
            // should never send. Dropped; the link's stream is what says goodbye.
            return false
        }
        peer.lastDatagramNs = now
        applyPendingHeartbeat()
        return true
    }

    /// A heartbeat from `peer`, by its link or by datagram.
    private func heartbeatArrived(_ hb: HeartbeatFrame, from peer: Peer) throws(WireError) {
        guard hb.senderTag == peer.tag else { throw .malformed("heartbeat sender tag does not match the hello") }
        let peerID = peer.id
        guard !node.faults.blocks(peerID) else { return }
        // Sent both ways (by datagram and on the link, while the datagrams are not known to
        // arrive) or overtaken by a newer one: only the first of a sequence number counts.
        guard hb.seq > peer.lastSeqReceived else {
            node.stats.heartbeatDuplicates &+= 1
            return
        }
        // The peer says whether this node's datagrams reach it: they go alone while it does.
        peer.datagramsConfirmedNs = hb.datagramsArrive ? node.nowNs : 0
        if let shard = benchShard {
            benchReceived(hb, from: peer, shard)
        } else if hb.reply && hb.ackSeq == peer.probeSeq && peer.probeSentNs != 0 {
            peer.roundTripNs = node.nowNs &- peer.probeSentNs
            node.stats.lastRoundTripNs = peer.roundTripNs
            node.metrics.roundTrip(peer.roundTripNs)
            peer.probeSentNs = 0
        }
        let message = HeartbeatMessage(
            from: peerID, seq: hb.seq, epoch: hb.epoch, term: hb.term, lsn: hb.lsn, role: hb.role,
            ackSeq: hb.ackSeq, probe: hb.probe)
        guard node.heartbeatCounted(message, from: peer) else { return }
        // Superseded by this one if the read held an older one (see `pendingHeartbeat`).
        pendingHeartbeat = (message, peer)
        // The answer to a probe goes at once, acknowledging this heartbeat; it carries this
        // node's state as it is, before the heartbeat is applied (a term adopted from it goes
        // out with the next heartbeat, microseconds later: heartbeats are state, not votes).
        if hb.probe { sendHeartbeat(to: peer, reply: true) }
    }

    /// The peer's hello (`raw`: its bytes, on a keyed link). Without a key the link is the
    /// peer's at once; with one, this node answers with its hello (if it accepted the link) and
    /// its proof, and the link is the peer's once the peer's proof checks (`receivedAuth`).
    private func receivedHello(_ hello: HelloMessage, raw: [UInt8] = [], on link: Link) throws(WireError) {
        guard link.peerID == nil, link.security?.peerHello == nil else { throw .malformed("second hello") }
        guard hello.nodeID != node.config.nodeID else {
            violation(on: link, "connected to itself")
            return
        }
        if let expected = link.expectedPeer, expected != hello.nodeID {
            violation(on: link, "dialled \(expected) but \(hello.nodeID) answered")
            return
        }
        let name = node.options.clusterName
        guard hello.clusterName == name else {
            refuse(link, "cluster name mismatch: this node is in cluster \"\(name)\", \(hello.nodeID) in \"\(hello.clusterName)\"", auth: true)
            return
        }
        guard let keyring = node.options.keyring else {
            if let auth = hello.auth {
                refuse(link, "this node has no cluster key; \(hello.nodeID) offered key \(ClusterKey.idString(auth.keyID))", auth: true)
                return
            }
            guard let peer = node.links.peers[hello.nodeID] else {
                refuse(link, "unknown node \(hello.nodeID): not a member of this cluster", auth: false)
                node.unknownNodeSaidHello(hello.nodeID)
                return
            }
            attach(link, to: peer, hello: hello, sendHello: !link.outbound)
            return
        }
        guard let auth = hello.auth else {
            refuse(link, "this cluster requires a cluster key; \(hello.nodeID) presented none", auth: true)
            return
        }
        guard let peerKey = keyring.key(id: auth.keyID) else {
            refuse(link, "\(hello.nodeID)'s cluster key \(ClusterKey.idString(auth.keyID)) is not in this node's keyring (a wrong or retired key)", auth: true)
            return
        }
        guard let peer = node.links.peers[hello.nodeID] else {
            refuse(link, "unknown node \(hello.nodeID): not a member of this cluster", auth: false)
            return
        }
        // The peer's dial, a round trip (the proofs) from being its link: a dial of ours now
        // would only make a second connection (see `LinkTable.dial`).
        if !link.outbound {
            peer.handshakingLinkID = link.id
            node.outbox.append(helloBytes(for: link), to: link)
        }
        guard let security = link.security else { throw .malformed("hello on a link without a hello of this node") }
        security.peerHello = hello
        security.peerHelloBytes = raw
        security.peerKey = peerKey
        security.transcript = LinkAuth.transcript(
            clusterName: name, dialerHello: link.outbound ? security.ownHello : raw,
            acceptorHello: link.outbound ? raw : security.ownHello)
        let proof = LinkAuth.proof(key: security.ownKey, transcript: security.transcript, dialer: link.outbound)
        node.outbox.append(to: link) { LinkAuth.encodeAuth(proof, into: &$0) }
        let transcriptHash = LinkAuth.transcriptHash(security.transcript)
        security.sealer = FrameSealer(key: security.ownKey, transcriptHash: transcriptHash, dialer: link.outbound)
        if hello.datagrams != nil, node.datagrams.heartbeatPort != nil {  // the peer takes them, and this node sends them
            link.datagramSealer = DatagramSealer(key: security.ownKey, transcriptHash: transcriptHash, dialer: link.outbound)
        }
    }

    /// Makes `link` the peer's link (hello, and on a keyed link the proofs, done).
    private func attach(_ link: Link, to peer: Peer, hello: HelloMessage, sendHello: Bool) {
        link.peerID = hello.nodeID
        link.peerTag = peer.tag
        switch node.links.attach(link, to: peer) {
        case .attached:
            logger.info("linked to \(peer.id)")
            if sendHello { node.outbox.append(helloBytes(for: link), to: link) }
            node.datagrams.linked(link, to: peer, offer: hello.datagrams)
            peer.takesMembers = hello.takesMembers
            node.peerLinked(peer, priority: hello.priority)
            sendHeartbeat(to: peer, reply: false)
        case .refused(let reason):
            node.stats.connectionsRefused += 1
            goodbye(link, reason)
        }
    }

    // MARK: - Closing on errors

    /// Closes `link` for breaking the protocol, telling it why where it can listen: a goodbye on
    /// a binary link, an error line on a JSON one.
    func violation(on link: Link, _ reason: String) {
        node.stats.protocolErrors += 1
        node.links.logLimited(.warning, "violation", "closing \(link.description): \(reason)")
        switch link.kind {
        case .json: node.jsonService.close(link, reason)
        case .binary: goodbye(link, reason)
        case .undecided, .http: node.links.close(link)
        }
    }

    /// Says goodbye with `reason` on a binary link (even before its hello) and closes it.
    func goodbye(_ link: Link, _ reason: String) {
        appendGoodbye(reason, to: link)
        node.links.close(link)
    }

    /// Appends a goodbye to a binary link's output (sealed on a keyed link once this node has
    /// sent its proof).
    func appendGoodbye(_ reason: String, to link: Link) {
        append(to: link) { Wire.encodeGoodbye(reason, into: &$0) }
    }

    /// Lets `encode` append one frame to the link's output and seals it on a keyed link whose
    /// sending half is keyed. False when the outbox refused (closed or over its hard limit).
    @discardableResult
    @inline(__always)
    func append(to link: Link, _ encode: (inout [UInt8]) -> Void) -> Bool {
        node.outbox.append(to: link) { out in
            let start = out.count
            encode(&out)
            if out.count > start, let security = link.security, security.sealer != nil {
                security.sealer!.seal(&out, from: start)
            }
        }
    }

    // MARK: - Sending

    /// This node's hello on `link`: its cluster name and, with a keyring, the primary key's id
    /// and a fresh nonce (kept on the link for the handshake).
    func helloBytes(for link: Link) -> [UInt8] {
        var out: [UInt8] = []
        let key = node.options.keyring?.primary
        link.datagramToken = node.datagrams.newToken()
        let offer = node.datagrams.heartbeatPort.flatMap { port in
            link.datagramToken == 0 ? nil : HelloDatagrams(port: port, token: link.datagramToken)
        }
        var hello = HelloMessage(
            nodeID: node.config.nodeID, nodeAddr: node.membership.localNode.addr, priority: node.config.priority,
            clusterName: node.options.clusterName, auth: key.map { HelloAuth(keyID: $0.id, nonce: LinkAuth.nonce()) },
            datagrams: offer)
        hello.takesMembers = true
        // The id, address and name were validated at start; an over-long one fails here, loudly.
        do {
            try Wire.encodeHello(hello, into: &out)
        } catch {
            logger.error("cannot encode hello: \(error)")
        }
        if let key { link.security = LinkSecurity(ownHello: out, ownKey: key) }
        return out
    }

    /// Sends a vote request or response to a peer over its link (heartbeats go through
    /// ``sendHeartbeat(to:reply:probe:seq:)``).
    func send(_ message: ElectionMessage, to peerID: String) {
        guard !node.faults.blocks(peerID), let peer = node.links.peers[peerID], let link = peer.link else { return }
        switch message {
        case .voteRequest(let request):
            append(to: link) { out in
                do { try Wire.encodeVoteRequest(request, into: &out) } catch { logger.error("cannot encode \(request): \(error)") }
            }
        case .voteResponse(let response):
            append(to: link) { out in
                do { try Wire.encodeVoteResponse(response, into: &out) } catch { logger.error("cannot encode \(response): \(error)") }
            }
        case .heartbeat:
            sendHeartbeat(to: peer, reply: false)
        case .timeoutNow(let message):
            append(to: link) { out in
                do { try Wire.encodeTimeoutNow(message, into: &out) } catch { logger.error("cannot encode \(message): \(error)") }
            }
        case .configuration(let message):
            append(to: link) { out in
                do { try Wire.encodeConfiguration(message, into: &out) } catch { logger.error("cannot encode \(message): \(error)") }
            }
        case .configurationAck(let ack):
            append(to: link) { out in
                do { try Wire.encodeConfigurationAck(ack, into: &out) } catch { logger.error("cannot encode \(ack): \(error)") }
            }
        }
    }

    /// Tells a linked peer how this node stands on bootstrap (a BOOTSTRAP frame).
    func sendBootstrap(_ message: BootstrapMessage, to peer: Peer) {
        guard let link = peer.link, !node.faults.blocks(peer.id) else { return }
        append(to: link) { out in
            do { try Wire.encodeBootstrap(message, into: &out) } catch { logger.error("cannot encode \(message): \(error)") }
        }
    }

    /// A LEAVE frame to `peerID`: the operator removed member `id` (`cluster force-leave`).
    func sendLeave(_ id: String, to peerID: String) {
        guard !node.faults.blocks(peerID), let link = node.links.peers[peerID]?.link else { return }
        append(to: link) { out in
            do { try Wire.encodeLeave(id, into: &out) } catch { logger.error("cannot encode a leave of \(id): \(error)") }
        }
    }

    // MARK: - Benchmark

    /// What `cluster bench` measures of an arriving heartbeat (see `BenchHooks`): the delivery
    /// of a probe, the round trip of an answer; in mesh mode the next probe goes out at once.
    private func benchReceived(_ hb: HeartbeatFrame, from peer: Peer, _ shard: BenchHooks.Shard) {
        shard.heartbeatReceived()
        // The read's time (one clock reading for all its frames), as the node's own clock is.
        let now = node.hrtimeNs
        if hb.probe, shard.meshInflight == 0 { shard.hooks.probeDelivered(from: hb.senderTag, to: localTag, at: now) }
        guard hb.reply else { return }
        if shard.meshInflight > 0 {
            // Answers come back in the order the probes went (one TCP stream, answered at once).
            guard !peer.meshSentNs.isEmpty else { return }
            let sent = peer.meshSentNs.removeFirst()
            shard.roundTrip(now &- sent)
            sendHeartbeat(to: peer, reply: false, probe: true)
        } else if hb.ackSeq == peer.probeSeq, peer.probeSentNs != 0 {
            peer.roundTripNs = node.nowNs &- peer.probeSentNs
            node.stats.lastRoundTripNs = peer.roundTripNs
            shard.roundTrip(peer.roundTripNs)
            peer.probeSentNs = 0
        }
    }

    /// Mesh mode: `meshInflight` probes to every linked peer, each answer sending the next.
    func startMesh() {
        guard let hooks = node.benchHooks, hooks.meshInflight > 0 else { return }
        for peer in node.links.peers.values where peer.link != nil {
            for _ in peer.meshSentNs.count..<hooks.meshInflight { sendHeartbeat(to: peer, reply: false, probe: true) }
        }
    }

    /// One round: a heartbeat to every linked peer.
    func sendHeartbeatRound() {
        heartbeatSeq &+= 1
        rounds &+= 1
        node.stats.heartbeatRounds = rounds
        let probe = (rounds &+ probePhase) % Self.probeEveryRounds == 1
        if probe { node.stats.probeRounds &+= 1 }
        benchShard?.roundSent()
        let now = node.nowNs
        for peer in node.links.linkedPeers.values {
            sendHeartbeat(to: peer, reply: false, probe: probe, seq: heartbeatSeq, now: now)
        }
    }

    /// A heartbeat to one peer, built from the core's state (`now`: the time, if the caller has
    /// read it). By datagram alone while the peer reports that this node's datagrams arrive; on
    /// the link otherwise, and then by datagram too if the peer offered datagrams (so that it
    /// can report them arriving; the copy that comes second is dropped as a duplicate). Skipped
    /// on the link while the link is over the outbox's soft limit.
    func sendHeartbeat(to peer: Peer, reply: Bool, probe: Bool = false, seq: UInt64? = nil, now: UInt64? = nil) {
        guard let link = peer.link, !node.faults.blocks(peer.id) else { return }
        let now = now ?? node.nowNs
        // The token, not the target: testing a 128-byte optional copies it.
        let datagrams = peer.datagramToken != 0
        let datagramOnly = datagrams && peer.datagramsConfirmedNs != 0
            && now &- peer.datagramsConfirmedNs < node.datagrams.confirmWindowNs
        // The link's keepalive: the stream must carry something of this node's once in a while,
        // or the peer replaces the link (see `DatagramChannel.keepaliveNs`).
        let keepalive = datagramOnly && now &- link.lastSentNs >= node.datagrams.keepaliveNs
        if !datagramOnly && node.outbox.isCongested(link) {
            node.stats.heartbeatsSkipped &+= 1
            return
        }
        let seq = seq ?? {
            heartbeatSeq &+= 1
            return heartbeatSeq
        }()
        let state = node.heartbeatState()
        let frame = HeartbeatFrame(
            seq: seq, epoch: state.epoch, term: state.term, lsn: state.lsn, role: state.role,
            ackSeq: peer.lastSeqReceived, senderTag: localTag, probe: probe, reply: reply,
            datagramsArrive: peer.lastDatagramNs != 0 && now &- peer.lastDatagramNs < node.datagrams.arriveWindowNs
                && now &- link.lastHeardNs < node.datagrams.streamQuietNs)
        if datagrams { node.datagrams.append(frame, to: peer, on: link) }
        if !datagramOnly || keepalive {
            guard append(to: link, { Wire.encodeHeartbeat(frame, into: &$0) }) else { return }
            link.lastSentNs = now
            if keepalive { node.stats.linkKeepalivesSent &+= 1 }
        }
        if probe {
            peer.probeSeq = seq
            peer.probeSentNs = now
            if let shard = benchShard {
                let now = node.hrtimeNs(at: now)
                if shard.meshInflight > 0 {
                    peer.meshSentNs.append(now)  // mesh mode measures round trips only
                } else {
                    shard.hooks.probeSent(from: localTag, to: peer.tag, at: now)
                }
            }
        }
        node.stats.heartbeatsSent &+= 1
        benchShard?.heartbeatSent()
    }

    /// Tells every linked peer that understands MEMBER frames, but `member` itself, of a member
    /// this node has just added through an announcement.
    func pushMember(_ member: MemberMessage) {
        for peer in node.links.peers.values where peer.takesMembers && peer.id != member.nodeID {
            guard let link = peer.link, !node.faults.blocks(peer.id) else { continue }
            append(to: link) { out in
                do { try Wire.encodeMember(member, into: &out) } catch { logger.error("cannot encode \(member): \(error)") }
            }
        }
    }

    /// The heartbeat this node answers a JSON probe with.
    func heartbeatMessage(ackSeq: UInt64) -> HeartbeatMessage {
        node.core.heartbeat(seq: heartbeatSeq, ackSeq: ackSeq)
    }
}
