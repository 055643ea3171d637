import ClusterCore
import Logging
import UV

/// Heartbeats as UDP datagrams beside the peer links (PROTOCOL.md, "Datagram heartbeats"): the
/// socket, this node's tokens (one per link, offered in its hello), the datagrams of a pass sent
/// together, and the checks of what arrives. Which way each heartbeat goes is the peer
/// protocol's choice (`PeerProtocol.sendHeartbeat`). Loop thread only.
///
/// A datagram is not heard on its link: the link proves itself on its own stream (see
/// `keepaliveNs`), so that a TCP flow lost while UDP passes is found and replaced.
///
/// What arrives is taken only for a token of a live link, only in the link's mode (keyed or not),
/// on a keyed link only under the link's datagram key with a counter above the last one taken;
/// everything else is dropped and counted, with nothing kept of it: a stranger's datagrams
/// change no state and cost no memory.
final class DatagramChannel {
    /// The runtime that owns this (a `lazy var` of it): see `PeerProtocol.node`.
    unowned(unsafe) let node: NodeRuntime
    private var logger: Logger { node.logger }
    private var socket: UVUDPSocket?
    @exclusivity(unchecked) private var batch = UVDatagramBatch()
    /// This node's tokens, each the link whose hello offered it (from the link's attach to its close).
    @exclusivity(unchecked) private var tokens: [UInt64: Link] = [:]
    private var random = SystemRandomNumberGenerator()
    private let keyed: Bool
    /// A peer reports datagrams arriving when it had one within this time (two intervals); a
    /// peer's report counts for this time and a half.
    let arriveWindowNs: UInt64
    let confirmWindowNs: UInt64
    /// A link's stream must carry a frame each way at least once an election timeout, or the
    /// link is replaced (`LinkTable.sweep`), datagrams or not. While heartbeats go by datagram
    /// alone, one goes on the link too once its stream has carried none of this node's for
    /// `keepaliveNs` (half an election timeout); and a node whose stream from a peer has been
    /// quiet for `streamQuietNs` (two thirds of one: an older peer sends no keepalive) stops
    /// reporting datagrams arriving, which brings the peer's heartbeats back onto the link.
    let keepaliveNs: UInt64
    let streamQuietNs: UInt64

    init(node: NodeRuntime) {
        self.node = node
        keyed = node.options.keyring != nil
        let interval = node.config.heartbeatInterval.nanoseconds
        arriveWindowNs = 2 * interval
        confirmWindowNs = 5 * interval / 2
        let electionTimeout = node.config.electionTimeout.nanoseconds
        keepaliveNs = electionTimeout / 2
        streamQuietNs = 2 * electionTimeout / 3
    }

    /// The UDP port datagrams are taken on, while the channel is open.
    var port: UInt16? { socket.map { UInt16(truncatingIfNeeded: $0.port) } }
    /// The port heartbeat datagrams are taken on (offered in hellos): nil when they are off.
    var heartbeatPort: UInt16? { heartbeats ? port : nil }
    /// Heartbeats go by datagram (the socket is open and `NodeOptions.datagramHeartbeats` holds).
    private(set) var heartbeats = false

    /// Opens the socket at the listener's host, on its port if that is free for UDP, else on any
    /// (the gossip layer needs the listener's own port: see `GossipService.start`). Heartbeats
    /// by datagram are off when `NodeOptions.datagramHeartbeats` is, or the election timeout is
    /// under four heartbeat intervals; the socket is then opened only for the gossip layer. A
    /// failure to open is logged: heartbeats then stay on the links.
    func start(host: String, port: Int) {
        let wantsHeartbeats = node.options.datagramHeartbeats
            && node.config.electionTimeout.nanoseconds >= 4 * node.config.heartbeatInterval.nanoseconds
        guard wantsHeartbeats || node.options.gossip else { return }
        do {
            let socket: UVUDPSocket
            do {
                socket = try UVUDPSocket(loop: node.loop, host: host, port: port)
            } catch {
                socket = try UVUDPSocket(loop: node.loop, host: host, port: 0)
            }
            if node.options.gossip {
                try socket.reportRefusals { [anchor = node.anchor] address in
                    anchor.runtime?.gossip.refused(address)
                }
            }
            try socket.startReceivingWithSource { [anchor = node.anchor] bytes, source in
                anchor.runtime?.datagrams.received(bytes, from: source)
            }
            if let bytes = node.options.socketBufferBytes { try? socket.setReceiveBufferSize(bytes) }
            self.socket = socket
            heartbeats = wantsHeartbeats
        } catch {
            logger.warning("heartbeats stay on the links: cannot open a UDP socket at \(host): \(error)")
        }
    }

    func stop() {
        socket?.close()
        socket = nil
        heartbeats = false
        tokens.removeAll()
        batch.removeAll()
    }

    // MARK: - Tokens

    /// A fresh token for a link's hello (random, never 0, not in use); 0 while the channel is closed.
    func newToken() -> UInt64 {
        guard heartbeats else { return 0 }
        while true {
            let token = random.next()
            if token != 0, tokens[token] == nil { return token }
        }
    }

    /// `link` became its peer's link: its token (if its hello offered one) now admits datagrams,
    /// and the peer's offer (if its hello made one and this node takes datagrams) makes it a
    /// datagram target, at the address the link's connection has at the other end.
    func linked(_ link: Link, to peer: Peer, offer: HelloDatagrams?) {
        guard heartbeats else { return }
        if link.datagramToken != 0 { tokens[link.datagramToken] = link }
        guard let offer, offer.token != 0, let host = link.conn.peerAddress?.host else { return }
        do {
            peer.datagramTarget = try UVDatagramTarget(host: host, port: Int(offer.port))
            peer.datagramToken = offer.token
        } catch {
            logger.debug("no datagrams to \(peer.id): \(error)")
        }
    }

    /// `link` closed: its token admits nothing more.
    func closed(_ link: Link) {
        guard link.datagramToken != 0 else { return }
        if tokens[link.datagramToken] === link { tokens[link.datagramToken] = nil }
    }

    // MARK: - Sending

    /// Queues a heartbeat to `peer` (a datagram target), sent with the pass's others by `flush`.
    @inline(__always)
    func append(_ frame: HeartbeatFrame, to peer: Peer, on link: Link) {
        guard let target = peer.datagramTarget else { return }
        let token = peer.datagramToken
        if keyed {
            guard let sealer = link.datagramSealer else { return }
            batch.append(to: target) { out, _ in HeartbeatDatagram.encode(frame, token: token, sealer: sealer, into: &out) }
        } else {
            batch.append(to: target) { out, _ in HeartbeatDatagram.encode(frame, token: token, into: &out) }
        }
    }

    /// Queues a datagram to `target`, whose bytes `encode` appends (the gossip layer's), sent with
    /// the pass's others by `flush`. Dropped while the socket is closed.
    func append(to target: UVDatagramTarget, _ encode: (inout [UInt8]) -> Void) {
        guard socket != nil else { return }
        batch.append(to: target) { out, _ in encode(&out) }
    }

    /// Sends what the pass queued (called by the outbox's flush).
    @inline(__always)
    func flush() {
        guard !batch.isEmpty, let socket else { return }
        let queued = batch.count
        let sent = socket.send(&batch)
        node.stats.datagramsSent &+= UInt64(sent)
        node.stats.datagramSendFailures &+= UInt64(queued - sent)
    }

    // MARK: - Receiving

    private func received(_ bytes: RawSpan, from source: UVDatagramSource) {
        guard !node.faults.dropsDatagrams else {
            node.stats.datagramsRejected &+= 1
            return
        }
        if bytes.byteCount > 0, bytes.unsafeLoadUnaligned(fromByteOffset: 0, as: UInt8.self) == GossipWire.datagramKind {
            node.gossip.received(bytes, from: source)
            return
        }
        let header: HeartbeatDatagram.Header
        let frame: HeartbeatFrame
        do throws(WireError) {
            header = try HeartbeatDatagram.header(bytes)
            frame = try HeartbeatDatagram.frame(bytes)
        } catch {
            node.stats.datagramsRejected &+= 1
            return
        }
        guard header.keyed == keyed, let link = tokens[header.token], !link.isClosed, let peer = link.attachedPeer else {
            node.stats.datagramsRejected &+= 1
            return
        }
        if keyed {
            do throws(DatagramOpener.Refusal) {
                guard let opener = link.datagramOpener else { throw .notKeyed }
                try opener.open(bytes, header: header)
            } catch {
                node.stats.datagramsRejected &+= 1
                return
            }
        }
        var taken = false
        node.handlingRead { now in
            taken = node.peerProtocol.datagramArrived(frame, from: peer, on: link, at: now)
        }
        if taken {
            node.stats.datagramsReceived &+= 1
        } else {
            node.stats.datagramsRejected &+= 1
        }
        node.outbox.flush()
    }
}
