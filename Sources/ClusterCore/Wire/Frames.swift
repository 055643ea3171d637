// The frames of the binary protocol, as values. See PROTOCOL.md for the byte layouts.

/// What a connection's first byte says it carries.
public enum WireKind: Sendable, Equatable, Hashable {
    /// Newline-framed JSON objects (the first byte is `{`).
    case json
    /// Binary frames (the first byte is 0: the high byte of the opening hello's length).
    case binary
    /// HTTP (the first byte is `G`, of `GET `): a metrics scraper.
    case http
    /// Anything else: not a node or client of this protocol; close the connection.
    case stranger

    /// The kind of a connection whose first byte is `firstByte`.
    @inlinable
    public static func classify(firstByte: UInt8) -> WireKind {
        switch firstByte {
        case 0x7B: return .json
        case 0x47: return .http
        case 0x00: return .binary
        default: return .stranger
        }
    }
}

/// The type byte of a binary frame.
public enum FrameType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case hello = 1
    case heartbeat = 2
    case voteRequest = 3
    case voteResponse = 4
    case goodbye = 5
    /// A leader tells the target of its leadership transfer to stand now.
    case timeoutNow = 6
    /// A node that has just added a member through an announcement tells its peers (types 7 and
    /// 8 are the keyed links' AUTH and REKEY).
    case member = 9
    /// A primary tells a node its voter configuration.
    case configuration = 10
    /// A node tells the primary which configuration it has stored.
    case configurationAck = 11
    /// Nodes that bootstrap a cluster together tell each other what they have seen.
    case bootstrap = 12
    /// A node tells its peers that the operator removed a member (`cluster force-leave`).
    case leave = 14

    public var description: String {
        switch self {
        case .hello: return "hello"
        case .heartbeat: return "heartbeat"
        case .voteRequest: return "vote request"
        case .voteResponse: return "vote response"
        case .goodbye: return "goodbye"
        case .timeoutNow: return "timeout now"
        case .member: return "member"
        case .configuration: return "configuration"
        case .configurationAck: return "configuration ack"
        case .bootstrap: return "bootstrap"
        case .leave: return "leave"
        }
    }
}

/// The opening message of a connection, sent by both ends before anything else.
public struct HelloMessage: Sendable, Equatable, Hashable {
    /// The protocol version the sender speaks (`Wire.version`).
    public var version: UInt8
    /// The sender's node id: 1...255 bytes of UTF-8.
    public var nodeID: String
    /// The address the sender listens at (`host:port`), 0...255 bytes of UTF-8.
    public var nodeAddr: String
    /// The sender's election priority.
    public var priority: Int
    /// The sender's cluster name (flag bit 0; empty: none). Nodes of different names never link.
    public var clusterName: String
    /// The id of the sender's primary cluster key and a fresh random nonce of
    /// `LinkAuth.nonceBytes` bytes (flag bit 1): the sender holds a key and will prove it.
    public var auth: HelloAuth?
    /// Where the sender takes heartbeat datagrams on this link (flag bit 2): its UDP port and the
    /// token every datagram to it must carry (PROTOCOL.md, "Datagram heartbeats").
    public var datagrams: HelloDatagrams?

    public init(
        nodeID: String, nodeAddr: String = "", priority: Int = 1, version: UInt8 = Wire.version,
        clusterName: String = "", auth: HelloAuth? = nil, datagrams: HelloDatagrams? = nil
    ) {
        self.version = version
        self.nodeID = nodeID
        self.nodeAddr = nodeAddr
        self.priority = priority
        self.clusterName = clusterName
        self.auth = auth
        self.datagrams = datagrams
    }

    /// Flag bit 3: the sender understands MEMBER frames (a peer may tell it of new members).
    public var takesMembers: Bool = false

    /// The flags byte: bit 0 a cluster name follows, bit 1 a key id and nonce follow, bit 2 a
    /// datagram port and token follow, bit 3 MEMBER frames are understood.
    public var flags: UInt8 {
        (clusterName.isEmpty ? 0 : 1) | (auth == nil ? 0 : 2) | (datagrams == nil ? 0 : 4) | (takesMembers ? 8 : 0)
    }
}

/// What a hello offers for heartbeat datagrams: the UDP port the sender receives them on (at the
/// address the link's connection comes from or goes to), and the token, random and fresh for
/// every link, that tells the sender which link a datagram is for and that only the peer on this
/// link knows.
public struct HelloDatagrams: Sendable, Equatable, Hashable {
    public var port: UInt16
    public var token: UInt64

    public init(port: UInt16, token: UInt64) {
        self.port = port
        self.token = token
    }
}

/// What a keyed node's hello carries: the id of the key it sends with, and its nonce.
public struct HelloAuth: Sendable, Equatable, Hashable {
    public var keyID: UInt64
    /// `LinkAuth.nonceBytes` random bytes, fresh for every link.
    public var nonce: [UInt8]

    public init(keyID: UInt64, nonce: [UInt8]) {
        self.keyID = keyID
        self.nonce = nonce
    }
}

/// A decoded HEARTBEAT frame: integers only, so decoding one never allocates. The sender is
/// known from the connection's hello; `senderTag` lets the receiver check it
/// (`senderTag == Wire.fnv1a64(helloNodeID)`).
public struct HeartbeatFrame: Sendable, Equatable, Hashable {
    /// Flag bit 0: please answer with a heartbeat at once.
    public var probe: Bool
    /// Flag bit 1: this heartbeat answers a probe.
    public var reply: Bool
    /// Flag bit 2: the sender has had a heartbeat datagram from the receiver within the last two
    /// heartbeat intervals (the receiver may send it heartbeats as datagrams alone).
    public var datagramsArrive: Bool
    public var role: NodeRole
    /// The sender's heartbeat sequence number.
    public var seq: UInt64
    public var epoch: UInt64
    public var term: UInt64
    /// The sender's last LSN.
    public var lsn: UInt64
    /// The highest heartbeat sequence the sender has received from the receiver (0: none).
    public var ackSeq: UInt64
    /// FNV-1a 64 of the sender's node id (`Wire.fnv1a64`).
    public var senderTag: UInt64

    @inlinable
    public init(
        seq: UInt64, epoch: UInt64, term: UInt64, lsn: UInt64, role: NodeRole, ackSeq: UInt64 = 0,
        senderTag: UInt64, probe: Bool = false, reply: Bool = false, datagramsArrive: Bool = false
    ) {
        self.probe = probe
        self.reply = reply
        self.datagramsArrive = datagramsArrive
        self.role = role
        self.seq = seq
        self.epoch = epoch
        self.term = term
        self.lsn = lsn
        self.ackSeq = ackSeq
        self.senderTag = senderTag
    }

    /// The frame of a heartbeat whose sender's tag is already known (hash the id once per peer).
    @inlinable
    public init(_ message: HeartbeatMessage, senderTag: UInt64, reply: Bool = false) {
        self.init(
            seq: message.seq, epoch: message.epoch, term: message.term, lsn: message.lsn, role: message.role,
            ackSeq: message.ackSeq, senderTag: senderTag, probe: message.probe, reply: reply)
    }

    /// The frame of a heartbeat, hashing `message.from` for the tag.
    public init(_ message: HeartbeatMessage, reply: Bool = false) {
        self.init(message, senderTag: Wire.fnv1a64(message.from), reply: reply)
    }

    /// The flags byte: bit 0 probe, bit 1 reply, bit 2 datagrams arrive.
    @inlinable
    public var flags: UInt8 { (probe ? 1 : 0) | (reply ? 2 : 0) | (datagramsArrive ? 4 : 0) }

    /// The heartbeat as the core sees it, from the sender the connection's hello named.
    /// (`reply` has no place in `HeartbeatMessage`; the tag is not checked here.)
    public func message(from sender: String) -> HeartbeatMessage {
        HeartbeatMessage(
            from: sender, seq: seq, epoch: epoch, term: term, lsn: lsn, role: role, ackSeq: ackSeq, probe: probe)
    }
}

/// A member a peer has just learned through an announcement (a MEMBER frame): its id, the
/// address it announced and its priority.
package struct MemberMessage: Sendable, Equatable, Hashable {
    package var nodeID: String
    package var nodeAddr: String
    package var priority: Int

    package init(nodeID: String, nodeAddr: String, priority: Int = 1) {
        self.nodeID = nodeID
        self.nodeAddr = nodeAddr
        self.priority = priority
    }
}

/// One decoded binary frame.
package enum WireFrame: Sendable, Equatable, Hashable {
    case hello(HelloMessage)
    case heartbeat(HeartbeatFrame)
    case voteRequest(VoteRequest)
    case voteResponse(VoteResponse)
    /// Why the sender is about to close the connection.
    case goodbye(String)
    case timeoutNow(TimeoutNowMessage)
    case member(MemberMessage)
    case configuration(ConfigurationMessage)
    case configurationAck(ConfigurationAck)
    case bootstrap(BootstrapMessage)
    /// The id of a member the operator removed (`cluster force-leave`).
    case leave(String)

    package var type: FrameType {
        switch self {
        case .hello: return .hello
        case .heartbeat: return .heartbeat
        case .voteRequest: return .voteRequest
        case .voteResponse: return .voteResponse
        case .goodbye: return .goodbye
        case .timeoutNow: return .timeoutNow
        case .member: return .member
        case .configuration: return .configuration
        case .configurationAck: return .configurationAck
        case .bootstrap: return .bootstrap
        case .leave: return .leave
        }
    }

    /// The frame that carries an election message (a heartbeat's tag is hashed from its `from`).
    package init(_ message: ElectionMessage) {
        switch message {
        case .voteRequest(let r): self = .voteRequest(r)
        case .voteResponse(let r): self = .voteResponse(r)
        case .heartbeat(let h): self = .heartbeat(HeartbeatFrame(h))
        case .timeoutNow(let t): self = .timeoutNow(t)
        case .configuration(let c): self = .configuration(c)
        case .configurationAck(let a): self = .configurationAck(a)
        }
    }

    /// The election message this frame carries, from the sender the connection's hello named
    /// (nil for hello and goodbye).
    package func electionMessage(from sender: String) -> ElectionMessage? {
        switch self {
        case .voteRequest(let r): return .voteRequest(r)
        case .voteResponse(let r): return .voteResponse(r)
        case .heartbeat(let h): return .heartbeat(h.message(from: sender))
        case .timeoutNow(let t): return .timeoutNow(t)
        case .configuration(let c): return .configuration(c)
        case .configurationAck(let a): return .configurationAck(a)
        case .hello, .goodbye, .member, .bootstrap, .leave: return nil
        }
    }
}

/// What a node that bootstraps a cluster (`--bootstrap-expect N`) tells the nodes it links to
/// (frame BOOTSTRAP): see `BootstrapAgreement`.
public struct BootstrapMessage: Sendable, Equatable, Hashable {
    /// The number of voters the sender expects to bootstrap with (0: it does not bootstrap).
    public var expect: Int
    /// The sender holds a configuration already: nobody bootstraps with it; they join.
    public var configured: Bool
    /// `nodes` is the set the sender has locked (final); otherwise it is what it has seen so far.
    public var locked: Bool
    /// Sorted node ids.
    public var nodes: [String]

    public init(expect: Int, configured: Bool, locked: Bool, nodes: [String]) {
        self.expect = expect
        self.configured = configured
        self.locked = locked
        self.nodes = nodes
    }
}
