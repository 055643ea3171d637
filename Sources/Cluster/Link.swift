import ClusterCore
import UV

/// One TCP connection of a node, of any kind: a peer link (binary frames after a hello) or a
/// client speaking JSON lines. Loop thread only: the state every frame touches is
/// `@exclusivity(unchecked)` (no access to it overlaps another; the runtime's dynamic checks of
/// the runtime's, link's and peer's state were a tenth of the mesh benchmark's CPU).
final class Link {
    enum Kind { case undecided, json, binary, http }

    let conn: any LinkConnection
    /// True when this node dialled the connection.
    let outbound: Bool
    /// For an outbound link: the peer it was dialled for.
    let expectedPeer: String?
    @exclusivity(unchecked) var kind: Kind = .undecided
    /// A gossip full-state exchange (`LinkTable.exchange`, or a FULL_STATE frame as the first
    /// frame of an accepted connection): never a peer's link.
    var isExchange = false
    /// The peer's node id, once its hello arrived (binary), or the member a JSON client
    /// identified itself as with a `hello` line.
    @exclusivity(unchecked) var peerID: String?
    /// FNV-1a of the peer's id, which every heartbeat from it must carry.
    @exclusivity(unchecked) var peerTag: UInt64 = 0
    /// The peer whose link this is, while it is (set and cleared by `Peer.link`; the cycle it
    /// makes ends when the peer's link changes, which every close does).
    @exclusivity(unchecked) var attachedPeer: Peer?
    @exclusivity(unchecked) var decoder = FrameDecoder()
    var lines = LineSplitter()
    /// A keyed link's handshake and frame keys (nil without a cluster key).
    @exclusivity(unchecked) var security: LinkSecurity?
    /// The token this node's hello on the link offered for heartbeat datagrams (0: none).
    @exclusivity(unchecked) var datagramToken: UInt64 = 0
    /// A keyed link's datagram keys, made with its frame keys (`LinkSecurity`): the sealer when
    /// the peer's hello offered datagrams, the opener when this node's did.
    @exclusivity(unchecked) var datagramSealer: DatagramSealer?
    @exclusivity(unchecked) var datagramOpener: DatagramOpener?
    /// Bytes queued during this pass of the loop, written in one go by the outbox.
    @exclusivity(unchecked) var out: [UInt8] = []
    @exclusivity(unchecked) var isDirty = false
    @exclusivity(unchecked) var isClosed = false
    /// A test's fault (`NetworkFaults.blackholedLinks`): nothing is read from or written to the
    /// connection any more, as if its TCP flow were dropped on the way.
    @exclusivity(unchecked) var blackholed = false
    /// True while reading is paused because the write queue is over the soft limit.
    @exclusivity(unchecked) var readingPaused = false
    /// JSON input read but not handled yet (the per-pass bound, `NodeOptions.maxLinesPerRead`,
    /// or replies not drained, `maxClientReplyBytes`): reading is paused while it is not empty.
    var heldInput: [UInt8] = []
    /// True while the link waits in the link table's list for the next pass.
    var inputScheduled = false
    /// Protocol errors seen on a JSON link; more than `JSONService.maxClientErrors` close it.
    var jsonErrors = 0
    /// JSON replies held back behind one not known yet (nil: a vote waiting for its write), in
    /// request order; `heldRepliesBase` numbers the first. See `JSONService.reply`.
    var heldReplies: [[UInt8]?] = []
    var heldRepliesBase = 0
    var heldBytes = 0
    /// An HTTP request head as it arrives (see `MetricsHTTP`).
    var httpHead: [UInt8] = []
    let id: Int
    /// When the connection was made, when it became a peer's link, and when anything last arrived
    /// on its stream (loop time in nanoseconds, see `NodeRuntime.nowNs`): the link table's
    /// timeouts. A heartbeat datagram does not count as hearing the stream: the link must prove
    /// itself on its own (PROTOCOL.md, "Datagram heartbeats").
    let openedNs: UInt64
    @exclusivity(unchecked) var attachedNs: UInt64 = 0
    @exclusivity(unchecked) var lastHeardNs: UInt64
    /// When this node last put a heartbeat on the stream (its keepalive, see
    /// `PeerProtocol.sendHeartbeat`).
    @exclusivity(unchecked) var lastSentNs: UInt64

    init(conn: any LinkConnection, outbound: Bool, expectedPeer: String?, id: Int, nowNs: UInt64) {
        self.conn = conn
        self.outbound = outbound
        self.expectedPeer = expectedPeer
        self.id = id
        openedNs = nowNs
        lastHeardNs = nowNs
        lastSentNs = nowNs
        // No capacity reserved: the first frame sizes the buffer, which keeps it (a node of a
        // 64-node cluster has 63 links; 256 bytes reserved on each was a seventh of the heap).
    }

    /// An established peer link: binary, hello received.
    var isPeer: Bool { peerID != nil && kind == .binary }

    var description: String {
        let who = peerID ?? expectedPeer ?? (conn.peerAddress.map { "\($0)" } ?? "?")
        return "\(outbound ? "to" : "from") \(who) (#\(id))"
    }
}

@available(*, unavailable)
extension Link: Sendable {}

/// What the node knows of one peer's connection. Loop thread only.
final class Peer {
    let id: String
    let tag: UInt64
    var addr: HostPort?
    /// The established link (hello exchanged), if any. The link points back (`attachedPeer`)
    /// while it is this peer's, so that a frame finds its peer without a lookup by id.
    @exclusivity(unchecked) var link: Link? {
        didSet {
            guard oldValue !== link else { return }
            oldValue?.attachedPeer = nil
            link?.attachedPeer = self
            // A new link may be to a new process of the peer: its sequence numbers start over,
            // and its datagram offer is the new link's (`DatagramChannel.linked`).
            lastSeqReceived = 0
            datagramTarget = nil
            datagramToken = 0
            datagramsConfirmedNs = 0
            lastDatagramNs = 0
            takesMembers = false
        }
    }
    /// The peer's hello on the current link said it understands MEMBER frames.
    var takesMembers = false
    /// `addr` as the membership gave it (what `LinkTable.sync` compares before parsing again).
    var addrText = ""
    /// This node dials the peer (and redials it when the link is lost). A peer that is not
    /// dialled may still link by dialling this node (with the gossip layer, members that do
    /// not vote are dialled by no one but a primary that makes them voters).
    var dialled = true
    /// Where heartbeat datagrams to the peer go, and the token they carry (from the peer's hello
    /// on the current link; nil: none, heartbeats go on the link).
    @exclusivity(unchecked) var datagramTarget: UVDatagramTarget?
    @exclusivity(unchecked) var datagramToken: UInt64 = 0
    /// When the peer last reported that this node's datagrams arrive (0: not lately); while that
    /// is recent (`DatagramChannel.confirmWindowNs`), heartbeats to it go by datagram alone.
    @exclusivity(unchecked) var datagramsConfirmedNs: UInt64 = 0
    /// When a datagram from the peer was last taken (0: none on this link).
    @exclusivity(unchecked) var lastDatagramNs: UInt64 = 0
    /// A dial in progress, if any.
    var dialing: Link?
    var redialTimer: UVTimer?
    var failedDials = 0
    /// A link to this peer has been established once: its redials back off to
    /// `reconnectBackoffMax`; a member that never linked (announced at an address where nobody
    /// answers, perhaps by a stranger) backs off to `unlinkedMemberBackoffMax`.
    var everLinked = false
    /// No dial to check who answers at this peer's address before this time (see
    /// `LinkTable.attach`: a second claim of a live inbound link's id).
    var checkDialAfterNs: UInt64 = 0
    /// The node has waited its `NodeOptions.dialDeferral` before this dial (the peer's id is
    /// smaller: its own dial would win).
    var dialDeferred = false
    /// A link the peer dialled whose keyed handshake is under way (its HELLO came, its AUTH not
    /// yet), by id.
    var handshakingLinkID: Int?
    /// The node has waited a `NodeOptions.dialDeferral` for that handshake before this dial
    /// (an unproven handshake postpones a dial once, never again).
    var handshakeWaited = false
    /// The highest heartbeat sequence received from this peer.
    @exclusivity(unchecked) var lastSeqReceived: UInt64 = 0
    /// The last probe sent to it (a heartbeat asking for an immediate reply) and when (core
    /// time, 0: none outstanding), to measure round trips.
    @exclusivity(unchecked) var probeSeq: UInt64 = 0
    @exclusivity(unchecked) var probeSentNs: UInt64 = 0
    /// The last round trip measured to this peer, in nanoseconds.
    @exclusivity(unchecked) var roundTripNs: UInt64 = 0
    /// Bench mesh mode: when each probe in flight to this peer was sent (hrtime), oldest first.
    @exclusivity(unchecked) var meshSentNs: [UInt64] = []

    init(id: String, addr: HostPort?) {
        self.id = id
        self.tag = Wire.fnv1a64(id)
        self.addr = addr
    }
}

@available(*, unavailable)
extension Peer: Sendable {}
