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
    private var heartbeatSeq: UInt64 = 0
    private var rounds: UInt64 = 0

    /// Every `probeEveryRounds`-th round of heartbeats asks for an immediate reply, to measure
    /// round trips (plain heartbeats acknowledge each other only at the peer's next interval).
    static let probeEveryRounds: UInt64 = 10

    init(node: NodeRuntime) {
        self.node = node
        localTag = Wire.fnv1a64(node.config.nodeID)
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
            try link.decoder.feed(bytes) { (frame) throws(WireError) in
                guard !link.isClosed else { return }
                try handle(frame, on: link)
            }
        } catch {
            violation(on: link, "\(error)")
        }
    }

    private func handle(_ frame: WireFrame, on link: Link) throws(WireError) {
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
        guard let peerID = link.peerID else { throw .malformed("\(frame.type) before hello") }
        // A link that lost the one-link-per-pair choice may still deliver a frame or two before
        // it closes: the other link carries this peer now.
        guard let peer = node.links.peers[peerID], peer.link === link else { return }
        switch frame {
        case .heartbeat(let hb):
            guard hb.senderTag == link.peerTag else { throw .malformed("heartbeat sender tag does not match the hello") }
            guard !node.faults.blocks(peerID) else { return }
            if let hooks = node.benchHooks {
                benchReceived(hb, from: peer, hooks)
            } else if hb.reply && hb.ackSeq == peer.probeSeq && peer.probeSentNs != 0 {
                peer.roundTripNs = node.nowNs &- peer.probeSentNs
                node.stats.lastRoundTripNs = peer.roundTripNs
                node.metrics.roundTrip(peer.roundTripNs)
                peer.probeSentNs = 0
            }
            let message = HeartbeatMessage(
                from: peerID, seq: hb.seq, epoch: hb.epoch, term: hb.term, lsn: hb.lsn, role: hb.role,
                ackSeq: hb.ackSeq, probe: hb.probe)
            if node.heartbeatArrived(message, from: peer), hb.probe {
                sendHeartbeat(to: peer, reply: true)
            }
        case .voteRequest(let request):
            guard request.candidateID == peerID else {
                throw .malformed("vote request for \(request.candidateID) on the link of \(peerID)")
            }
            guard !node.faults.blocks(peerID) else { return }
            node.voteRequestArrived(request, from: peerID)
        case .voteResponse(let response):
            guard response.voterID == peerID else {
                throw .malformed("vote response from \(response.voterID) on the link of \(peerID)")
            }
            guard !node.faults.blocks(peerID) else { return }
            node.step(.receive(from: peerID, .voteResponse(response)))
        case .timeoutNow(let message):
            guard message.from == peerID else {
                throw .malformed("timeout-now from \(message.from) on the link of \(peerID)")
            }
            guard !node.faults.blocks(peerID) else { return }
            node.step(.receive(from: peerID, .timeoutNow(message)))
        case .hello, .goodbye:
            break
        }
    }

    private func receivedHello(_ hello: HelloMessage, on link: Link) throws(WireError) {
        guard link.peerID == nil else { throw .malformed("second hello") }
        guard hello.nodeID != node.config.nodeID else {
            violation(on: link, "connected to itself")
            return
        }
        if let expected = link.expectedPeer, expected != hello.nodeID {
            violation(on: link, "dialled \(expected) but \(hello.nodeID) answered")
            return
        }
        guard let peer = node.links.peers[hello.nodeID] else {
            node.stats.connectionsRefused += 1
            goodbye(link, "unknown node \(hello.nodeID): not a member of this cluster")
            return
        }
        link.peerID = hello.nodeID
        link.peerTag = peer.tag
        switch node.links.attach(link, to: peer) {
        case .attached:
            logger.info("linked to \(peer.id)")
            if !link.outbound { node.outbox.append(helloBytes(), to: link) }
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
        logger.warning("closing \(link.description): \(reason)")
        switch link.kind {
        case .json: node.jsonService.close(link, reason)
        case .binary: goodbye(link, reason)
        case .undecided, .http: node.links.close(link)
        }
    }

    /// Says goodbye with `reason` on a binary link (even before its hello) and closes it.
    func goodbye(_ link: Link, _ reason: String) {
        node.outbox.append(to: link) { Wire.encodeGoodbye(reason, into: &$0) }
        node.links.close(link)
    }

    // MARK: - Sending

    func helloBytes() -> [UInt8] {
        var out: [UInt8] = []
        // The id and address were validated at start; an over-long one fails here, loudly.
        do {
            try Wire.encodeHello(
                HelloMessage(nodeID: node.config.nodeID, nodeAddr: node.membership.localNode.addr, priority: node.config.priority),
                into: &out)
        } catch {
            logger.error("cannot encode hello: \(error)")
        }
        return out
    }

    /// Sends a vote request or response to a peer over its link (heartbeats go through
    /// ``sendHeartbeat(to:reply:probe:seq:)``).
    func send(_ message: ElectionMessage, to peerID: String) {
        guard !node.faults.blocks(peerID), let peer = node.links.peers[peerID], let link = peer.link else { return }
        switch message {
        case .voteRequest(let request):
            node.outbox.append(to: link) { out in
                do { try Wire.encodeVoteRequest(request, into: &out) } catch { logger.error("cannot encode \(request): \(error)") }
            }
        case .voteResponse(let response):
            node.outbox.append(to: link) { out in
                do { try Wire.encodeVoteResponse(response, into: &out) } catch { logger.error("cannot encode \(response): \(error)") }
            }
        case .heartbeat:
            sendHeartbeat(to: peer, reply: false)
        case .timeoutNow(let message):
            node.outbox.append(to: link) { out in
                do { try Wire.encodeTimeoutNow(message, into: &out) } catch { logger.error("cannot encode \(message): \(error)") }
            }
        }
    }

    // MARK: - Benchmark

    /// What `cluster bench` measures of an arriving heartbeat (see `BenchHooks`): the delivery
    /// of a probe, the round trip of an answer; in mesh mode the next probe goes out at once.
    private func benchReceived(_ hb: HeartbeatFrame, from peer: Peer, _ hooks: BenchHooks) {
        let now = UVLoop.hrtimeNs()
        if hb.probe, hooks.meshInflight == 0 { hooks.probeDelivered(from: hb.senderTag, to: localTag, at: now) }
        guard hb.reply else { return }
        if hooks.meshInflight > 0 {
            // Answers come back in the order the probes went (one TCP stream, answered at once).
            guard !peer.meshSentNs.isEmpty else { return }
            let sent = peer.meshSentNs.removeFirst()
            hooks.roundTrip(now &- sent)
            sendHeartbeat(to: peer, reply: false, probe: true)
        } else if hb.ackSeq == peer.probeSeq, peer.probeSentNs != 0 {
            peer.roundTripNs = node.nowNs &- peer.probeSentNs
            node.stats.lastRoundTripNs = peer.roundTripNs
            hooks.roundTrip(peer.roundTripNs)
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
        let probe = rounds % Self.probeEveryRounds == 1
        if probe { node.stats.probeRounds &+= 1 }
        for peer in node.links.peers.values {
            sendHeartbeat(to: peer, reply: false, probe: probe, seq: heartbeatSeq)
        }
    }

    /// A heartbeat to one peer, built from the core's state; skipped while the link is over the
    /// outbox's soft limit.
    func sendHeartbeat(to peer: Peer, reply: Bool, probe: Bool = false, seq: UInt64? = nil) {
        guard let link = peer.link, !node.faults.blocks(peer.id) else { return }
        if node.outbox.isCongested(link) {
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
            ackSeq: peer.lastSeqReceived, senderTag: localTag, probe: probe, reply: reply)
        guard node.outbox.append(to: link, { Wire.encodeHeartbeat(frame, into: &$0) }) else { return }
        if probe {
            peer.probeSeq = seq
            peer.probeSentNs = node.nowNs
            if let hooks = node.benchHooks {
                let now = UVLoop.hrtimeNs()
                if hooks.meshInflight > 0 {
                    peer.meshSentNs.append(now)  // mesh mode measures round trips only
                } else {
                    hooks.probeSent(from: localTag, to: peer.tag, at: now)
                }
            }
        }
        node.stats.heartbeatsSent &+= 1
    }

    /// The heartbeat this node answers a JSON probe with.
    func heartbeatMessage(ackSeq: UInt64) -> HeartbeatMessage {
        node.core.heartbeat(seq: heartbeatSeq, ackSeq: ackSeq)
    }
}
