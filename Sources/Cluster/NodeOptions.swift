import CoreMetrics
import Logging
import UV

/// Settings of a node's runtime beyond the seed's `ClusterConfig`.
public struct NodeOptions: Sendable {
    /// Where the term, vote and epoch are kept durably. Without one they live in memory only (the
    /// seed's behaviour): a node restarted in the same term may then vote a second time.
    public var dataDirectory: String?
    /// Connections accepted at most at once; more are closed at once.
    public var maxConnections: Int
    /// Time an accepted connection has to say hello (or send its first JSON line).
    public var helloTimeout: Duration
    /// Time a dial may take.
    public var connectTimeout: Duration
    /// Reconnection back-off: the first delay, doubled per failure up to the cap, with jitter.
    public var reconnectBackoffBase: Duration
    public var reconnectBackoffMax: Duration
    /// How long a node waits before dialling a peer whose id is smaller than its own; nil: one
    /// heartbeat interval. Two nodes that learn of each other at once would otherwise both dial,
    /// and the link the smaller id dialled is the one both keep: the other connection is made
    /// only to be closed (at 64 nodes, half of all connections at start-up). The wait is
    /// cancelled by the peer's link arriving; zero: dial at once.
    public var dialDeferral: Duration?
    /// The soft limit on a connection's unsent bytes: beyond it heartbeats to that peer are
    /// skipped and reading from the connection pauses until its queue drains (back-pressure).
    public var maxQueuedBytes: Int
    /// The hard limit on a connection's unsent bytes: beyond it the connection is closed.
    public var maxQueuedBytesHard: Int
    /// JSON lines of one client handled per pass of the loop: the rest of what was read waits
    /// for the next pass (reading from the client paused meanwhile), so that a client's flood
    /// of requests never holds the loop from peers' heartbeats and votes.
    public var maxLinesPerRead = 32
    /// The time one client's lines may take per pass of the loop (checked after each line, so
    /// at least one is handled); the rest waits for the next pass, as over `maxLinesPerRead`.
    public var clientTimeSlice: Duration = .milliseconds(2)
    /// A JSON client's replies not yet taken by the kernel beyond which its requests wait, and
    /// reading from it pauses, until they drain (a client that sends and does not read costs at
    /// most this much memory). At most `maxQueuedBytes`.
    public var maxClientReplyBytes = 64 << 10
    /// Descriptors kept free below the process's limit (`RLIMIT_NOFILE`) for files, logs, the
    /// runtime's own and dials to peers: connections are capped at the limit less this, and at
    /// `maxConnections`. When the cap is reached, the connection that has waited longest without
    /// saying what it is (no byte, or no whole hello) is closed for the newcomer.
    public var descriptorReserve = 128
    /// A JSON client that sends nothing for this long is disconnected.
    public var clientIdleTimeout: Duration
    /// How long a closing connection may take to send what is queued on it before it is closed
    /// anyway.
    public var closeGracePeriod: Duration = .seconds(2)
    /// The kernel's send and receive buffer size for every connection (`SO_SNDBUF`,
    /// `SO_RCVBUF`); nil: the system's default. Small buffers make back-pressure show early.
    public var socketBufferBytes: Int32?
    /// How often `NodeDiscovery` announces this node to each seed; nil: 5 × the heartbeat
    /// interval, or 30 s with `gossip` on (the gossip layer then carries the members' news).
    public var announceInterval: Duration?
    /// Seed of the node's random choices (election timeouts, jitter); nil: a random one.
    public var randomSeed: UInt64?
    /// Where the node logs.
    public var logger: Logger
    /// A loop to run on, shared with other nodes or discoveries of this process; the caller
    /// keeps it and shuts it down after them. nil: the node starts a loop (a thread) of its own.
    public var loop: UVLoop?
    /// Where the node records its metrics (see the metrics table in docs/operations.md); nil: the factory
    /// the application bootstrapped with `MetricsSystem.bootstrap` (by default, none).
    public var metricsFactory: (any MetricsFactory)?
    /// What a `GET /metrics` on the node's own port answers (Prometheus text, for instance
    /// `PrometheusCollectorRegistry.emitToBuffer`); nil: such requests get 404.
    public var metricsExporter: (@Sendable () -> [UInt8])?
    /// Accept JSON `transfer` requests (a switchover) from other hosts. Off by default: only a
    /// client on the node's own host (a loopback address) may move the primary; anyone who can
    /// reach the port could otherwise do it.
    public var remoteTransfers = false
    /// `cluster bench`'s probes (see `BenchHooks`); nil everywhere else.
    package var benchHooks: BenchHooks?
    /// The cluster's name, carried in every hello and announcement: nodes whose names differ
    /// never link, announce to each other or merge, keyed or not (memberlist's label). Empty:
    /// no name (the seed's nodes have none). At most 255 bytes.
    public var clusterName = ""
    /// The cluster keys (docs/operations.md, "A keyed cluster"); nil: no key, links and announcements are
    /// not authenticated. With a keyring, only nodes that hold one of its keys link, announce,
    /// vote and heartbeat, every frame on a link is authenticated, and JSON is read-only unless
    /// `allowUnauthenticatedJSON` is set. Share one keyring with the node's `NodeDiscovery`.
    public var keyring: ClusterKeyring?
    /// UNSAFE, for a cluster that mixes keyed nodes with the seed's Go nodes (which cannot
    /// sign): with a keyring set, still accept unsigned JSON announcements, `vote_request`,
    /// `hello` and `heartbeat` lines as a node without a key does. Anyone who reaches the port
    /// can then join the membership, ask for votes and, as a member whose link is down, send
    /// heartbeats. Off by default: a keyed node answers only `status` (and its own host's
    /// `transfer` and `keyring`) on unsigned JSON.
    public var allowUnauthenticatedJSON = false
    /// Send heartbeats to peers as UDP datagrams beside the TCP links (PROTOCOL.md, "Datagram
    /// heartbeats"): a datagram costs the kernel about half of what a TCP segment and its ACK
    /// do. The node takes datagrams on a UDP socket at its listening address (the same port when
    /// free); each peer link's hello carries the port and a token of its own. A peer's heartbeats
    /// go by datagram alone only while the peer reports that they arrive; otherwise (no UDP
    /// between the two, a peer that does not offer datagrams, datagrams lost) they go on the link
    /// as before. Off when the election timeout is under four heartbeat intervals (a lost
    /// datagram path is noticed within about three).
    public var datagramHeartbeats = true
    /// The gossip membership layer (SWIM with Lifeguard; docs/membership.md): every member probes
    /// one other per ``gossipProbeInterval`` over UDP (on the listener's port), and news of
    /// joins, failures, leaves and the primary spreads on those probes, so that what a member
    /// costs does not grow with the cluster. Peer links, and the heartbeats on them, are then
    /// kept among the voters only (and with a member being made one): a member that does not
    /// vote holds no link, and learns who leads from the gossip. Off: every member links with
    /// every other and heartbeats it (the mesh), as before.
    public var gossip = false
    /// The gossip layer's protocol period: each member probes one other this often. A crashed
    /// member (its host up) is declared failed within about two of these; one that is only
    /// silent, within a suspicion timeout (4 to 24 periods, shorter as others confirm it).
    public var gossipProbeInterval: Duration = .milliseconds(200)
    /// Tell linked peers at once of a member this node adds through an announcement (a MEMBER
    /// frame, PROTOCOL.md), so that they list a joining node a round trip after its seed does.
    /// Off: they learn it at their next announcement to a seed, or when it says hello.
    public var pushesMembers = true
    /// How this node gets its first voter configuration when its data directory holds none (a
    /// node that stored one keeps it, whatever this says). See ``Bootstrap``.
    public var bootstrap: Bootstrap = .members
    /// The longest wait between dials of a member that has never linked (see
    /// ``reconnectBackoffMax`` for one that has).
    public var unlinkedMemberBackoffMax: Duration = .seconds(30)
    /// The most members learned from the network (announcements, seeds' answers, peers' MEMBER
    /// frames) that have not linked with this node yet that it holds: beyond, an announcement is
    /// refused ("try again later") and a second-hand report ignored. A stranger's made-up
    /// announcements take at most this many places, and are dialled at most this many at a time.
    public var maxUnlinkedMembers = 256
    /// A member learned from the network that has not linked with this node within this long is
    /// removed from its membership (voters excepted; members the application added never are), and
    /// only its own announcement (or its hello) brings it back for as long again.
    public var unlinkedMemberExpiry: Duration = .seconds(120)
    /// Autopilot (Consul's): as primary, keep this many voters by promoting members that have been
    /// linked and healthy for ``autopilotStabilization``, and replace a voter that has been down
    /// for ``autopilotDeadVoterGrace`` with such a member: one change at a time, a promotion
    /// before the removal it makes possible. nil: off (the voters change on request only).
    public var votersTarget: Int?
    /// How long a member must have been linked and heard before autopilot makes it a voter.
    public var autopilotStabilization: Duration = .seconds(10)
    /// How long a voter must have been unlinked and unheard before autopilot replaces it.
    public var autopilotDeadVoterGrace: Duration = .seconds(30)
    /// Test hook: runs on the thread-pool thread of each durable write, before its first fsync
    /// (a slow or stuck disk).
    package var persistBeforeSync: (@Sendable () -> Void)?

    public init(
        dataDirectory: String? = nil,
        maxConnections: Int = 1024,
        helloTimeout: Duration = .seconds(5),
        connectTimeout: Duration = .seconds(2),
        reconnectBackoffBase: Duration = .milliseconds(50),
        reconnectBackoffMax: Duration = .seconds(2),
        maxQueuedBytes: Int = 4 << 20,
        maxQueuedBytesHard: Int = 16 << 20,
        clientIdleTimeout: Duration = .seconds(60),
        randomSeed: UInt64? = nil,
        announceInterval: Duration? = nil,
        logger: Logger? = nil,
        loop: UVLoop? = nil
    ) {
        self.loop = loop
        self.announceInterval = announceInterval
        self.dataDirectory = dataDirectory
        self.maxConnections = maxConnections
        self.helloTimeout = helloTimeout
        self.connectTimeout = connectTimeout
        self.reconnectBackoffBase = reconnectBackoffBase
        self.reconnectBackoffMax = reconnectBackoffMax
        self.maxQueuedBytes = maxQueuedBytes
        self.maxQueuedBytesHard = maxQueuedBytesHard
        self.clientIdleTimeout = clientIdleTimeout
        self.randomSeed = randomSeed
        self.logger = logger ?? Logger(label: "cluster")
    }
}

/// Counters of one node, read with `ElectionManager.stats`.
public struct NodeStats: Sendable, Equatable {
    public var heartbeatsSent: UInt64 = 0
    /// Heartbeat rounds (one heartbeat to every linked peer each interval), and those of them
    /// that were probes (every tenth).
    public var heartbeatRounds: UInt64 = 0
    public var probeRounds: UInt64 = 0
    public var heartbeatsReceived: UInt64 = 0
    /// Of those, the ones recorded and stepped through the election core: of several heartbeats
    /// from one peer in one read, only the newest is (each is still counted, acknowledged and,
    /// if it is a probe, answered).
    public var heartbeatsApplied: UInt64 = 0
    /// Heartbeats not sent because a peer's write queue was over `maxQueuedBytes`.
    public var heartbeatsSkipped: UInt64 = 0
    public var voteRequestsReceived: UInt64 = 0
    public var connectionsAccepted: UInt64 = 0
    public var connectionsRefused: UInt64 = 0
    public var peerLinksEstablished: UInt64 = 0
    /// Links closed by the one-link-per-pair rule: replaced ones, and refused newcomers.
    public var duplicateLinksClosed: UInt64 = 0
    /// Of those, newcomers refused before they became the peer's link.
    public var duplicateLinksRefused: UInt64 = 0
    /// Hellos from nodes this one did not know (refused; each may have made the discoveries on
    /// the membership announce early, see `ClusterMembership`).
    public var unknownHellos: UInt64 = 0
    public var dialFailures: UInt64 = 0
    /// Connections closed for breaking the protocol (bad frame, stranger, oversized line, …).
    public var protocolErrors: UInt64 = 0
    /// Connections closed because their unsent bytes passed `maxQueuedBytesHard`.
    public var writeOverflows: UInt64 = 0
    /// Times reading from a connection paused because its unsent bytes passed `maxQueuedBytes`.
    public var readsPaused: UInt64 = 0
    /// Connections closed for a timeout: no hello in time, an idle client, a silent peer link.
    public var connectionsTimedOut: UInt64 = 0
    /// Times a timer found the event loop stalled (it ran more than a quarter of an election
    /// timeout late: the process was paused or starved of CPU); the judgment it was due for
    /// (an election timeout, a silent link) waited until what arrived meanwhile was read.
    public var loopStalls: UInt64 = 0
    /// Members learned from the network that never linked within `unlinkedMemberExpiry`, removed.
    public var unlinkedMembersExpired: UInt64 = 0
    /// Times two primaries were seen in one term (should stay 0).
    public var dualPrimaryDetected: UInt64 = 0
    /// The gossip layer (`NodeOptions.gossip`): its datagrams sent, taken and dropped (malformed),
    /// its full-state exchanges, and the other members it knows by state (0 when it is off).
    public var gossipDatagramsSent: UInt64 = 0
    public var gossipDatagramsReceived: UInt64 = 0
    public var gossipDatagramsRejected: UInt64 = 0
    public var gossipExchanges: UInt64 = 0
    public var gossipBytesSent: UInt64 = 0
    public var gossipMembersAlive = 0
    public var gossipMembersSuspect = 0
    public var gossipMembersFailed = 0
    public var gossipMembersLeft = 0
    /// Connections refused or closed for the cluster key or name: no key, an unknown key, a
    /// failed proof or frame tag, another cluster's name.
    public var authenticationFailures: UInt64 = 0
    /// Durable-state writes that failed (the vote was then not answered).
    public var persistFailures: UInt64 = 0
    /// The last heartbeat round trip measured, in nanoseconds (0: none yet).
    public var lastRoundTripNs: UInt64 = 0
    /// Heartbeat datagrams sent (the kernel took them), and those the kernel refused (its buffer
    /// was full): dropped, as a datagram may be.
    public var datagramsSent: UInt64 = 0
    public var datagramSendFailures: UInt64 = 0
    /// Heartbeat datagrams taken, and those dropped: malformed, an unknown token, a bad tag, a
    /// replay, or while `NetworkFaults.dropsDatagrams` (and, as a link starts, the peer's first
    /// datagram when it overtakes the hello that makes its token known here).
    public var datagramsReceived: UInt64 = 0
    public var datagramsRejected: UInt64 = 0
    /// Members this node told its peers of (added through an announcement), and members it added
    /// because a peer told it (MEMBER frames).
    public var membersPushed: UInt64 = 0
    public var membersLearnedFromPeers: UInt64 = 0
    /// Heartbeats dropped as already had: the copy on the link of one that came by datagram,
    /// or a datagram that came after a newer heartbeat.
    public var heartbeatDuplicates: UInt64 = 0
    /// Heartbeats sent on a link as its keepalive, though the peer took them by datagram: the
    /// link's stream had carried nothing of this node's for half an election timeout (a link
    /// proves itself on its own stream; PROTOCOL.md, "Datagram heartbeats").
    public var linkKeepalivesSent: UInt64 = 0
    /// Peers with an established link, when the stats were read.
    public var peersConnected = 0
    /// Open connections of any kind (peer links and JSON clients), when the stats were read.
    public var openConnections = 0

    public init() {}
}

/// Faults a test can inject into a node's transport (tests and `cluster bench` only: not public).
package struct NetworkFaults: Sendable, Equatable {
    /// Drop every peer message sent or received (the node is cut off; links stay up).
    package var isolated: Bool
    /// Drop peer messages to and from these nodes only.
    package var blockedPeers: Set<String>
    /// Drop every heartbeat datagram that arrives (UDP is blocked; the links still work).
    package var dropsDatagrams: Bool
    /// Black-hole the TCP flows of the links to these peers as they are when the faults are
    /// injected: nothing more is read from them nor written to them (not even a goodbye), while
    /// heartbeat datagrams pass. Links made later (a redial is a new flow) are not touched.
    package var blackholedLinks: Set<String>

    package init(isolated: Bool = false, blockedPeers: Set<String> = [], dropsDatagrams: Bool = false, blackholedLinks: Set<String> = []) {
        self.isolated = isolated
        self.blockedPeers = blockedPeers
        self.dropsDatagrams = dropsDatagrams
        self.blackholedLinks = blackholedLinks
    }

    /// Whether messages to or from `peer` are dropped. On every heartbeat: an empty set is not
    /// hashed into.
    @inline(__always)
    func blocks(_ peer: String) -> Bool { isolated || (!blockedPeers.isEmpty && blockedPeers.contains(peer)) }
}

extension NodeOptions {
    /// The loop to run on: the shared one, or a new one of the component's own (then `owned`).
    func resolveLoop(name: String) -> (loop: UVLoop, owned: Bool) {
        if let loop { return (loop, false) }
        do {
            return (try UVLoop(name: name), true)
        } catch {
            fatalError("cannot start an event loop: \(error)")
        }
    }
}

extension NodeOptions {
    /// Where a node's first voter configuration comes from (docs/voters.md).
    public enum Bootstrap: Sendable, Equatable {
        /// The members of the membership when the node starts are the first voters (this node
        /// included): the library's way, where the application lists the cluster's members.
        case members
        /// These nodes are the first voters (etcd's `--initial-cluster`; the agent's `--voters`).
        case voters([String])
        /// The first N nodes that link and agree form the first voter set (Consul's
        /// `-bootstrap-expect`; the agent's `--bootstrap-expect`): see `BootstrapAgreement`.
        case expect(Int)
        /// Never bootstrap: join a cluster that has voters, as a member that does not vote, and
        /// learn the configuration from its primary.
        case join
    }
}
