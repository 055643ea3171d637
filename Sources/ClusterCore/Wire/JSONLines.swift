import FoundationEssentials

// The JSON form of the protocol: one object per line, `message_type` first in meaning (not in
// order: keys are written sorted). The seed's four messages keep the seed's exact forms; the
// rest are this project's. See PROTOCOL.md.

/// Splits a JSON-lines byte stream into lines, whatever the sizes of the chunks TCP delivers.
///
/// A line is handed over without its `\n` and without a `\r` before it; empty lines are skipped.
/// Lines that lie wholly inside a chunk are handed over straight from it; only a line the chunk
/// ends inside is copied, into a buffer that keeps its capacity. A line longer than
/// `maxLineBytes` is an error as soon as that many bytes without a newline are seen. After an
/// error every later `feed` throws the same error (answer with an `error` line and close), until
/// `reset()`.
public struct LineSplitter: Sendable {
    public let maxLineBytes: Int
    private var partial: [UInt8] = []
    /// The first error seen, thrown again by every later feed.
    public private(set) var failure: WireError?

    public init(maxLineBytes: Int = Wire.maxLineBytes) {
        self.maxLineBytes = maxLineBytes
    }

    /// The bytes held of an incomplete line.
    public var bufferedByteCount: Int { partial.count }

    /// Forgets the incomplete line and any error (keeps the buffer's capacity).
    public mutating func reset() {
        partial.removeAll(keepingCapacity: true)
        failure = nil
    }

    /// Feeds the next chunk; calls `onLine` with each complete non-empty line, in order.
    /// An error from `onLine` stops the feed and is thrown.
    public mutating func feed(_ chunk: RawSpan, _ onLine: (RawSpan) throws(WireError) -> Void) throws(WireError) {
        if let failure { throw failure }
        do {
            _ = try split(chunk, stop: { false }, onLine)
        } catch {
            failure = error
            throw error
        }
    }

    /// Feeds the next chunk as `feed` does, but before each line that starts in the chunk asks
    /// `stop`; when it says true, stops there and returns the offset of that line (the bytes from
    /// there on are not taken: the caller holds them and feeds them again later). Returns the
    /// chunk's size when it took all of it. A line completing bytes held from an earlier chunk is
    /// always handled.
    public mutating func feed(
        _ chunk: RawSpan, stoppingWhen stop: () -> Bool, _ onLine: (RawSpan) throws(WireError) -> Void
    ) throws(WireError) -> Int {
        if let failure { throw failure }
        do {
            return try split(chunk, stop: stop, onLine)
        } catch {
            failure = error
            throw error
        }
    }

    /// Feeds the next chunk, held in an array.
    public mutating func feed(_ chunk: [UInt8], _ onLine: (RawSpan) throws(WireError) -> Void) throws(WireError) {
        try feed(chunk.span.bytes, onLine)
    }

    /// Feeds the next chunk and returns copies of the lines it completes.
    public mutating func lines(_ chunk: [UInt8]) throws(WireError) -> [[UInt8]] {
        var out: [[UInt8]] = []
        try feed(chunk) { line throws(WireError) in out.append(Wire.copyBytes(line)) }
        return out
    }

    private static let newline: UInt8 = 0x0A
    private static let carriageReturn: UInt8 = 0x0D

    private mutating func split(
        _ chunk: RawSpan, stop: () -> Bool, _ onLine: (RawSpan) throws(WireError) -> Void
    ) throws(WireError) -> Int {
        let count = chunk.byteCount
        var offset = 0
        while offset < count {
            if partial.isEmpty && stop() { return offset }
            var end = offset
            while end < count && WireRead.u8(chunk, end) != Self.newline { end += 1 }
            if end == count {
                // No newline: keep the bytes, unless they already make the line too long (one
                // byte more is allowed if it is a `\r`, which may turn out to precede the `\n`).
                let held = partial.count + (count - offset)
                let last = WireRead.u8(chunk, count - 1)
                if held > maxLineBytes + 1 || (held == maxLineBytes + 1 && last != Self.carriageReturn) {
                    throw .lineTooLong
                }
                for i in offset..<count { partial.append(WireRead.u8(chunk, i)) }
                return count
            }
            if partial.isEmpty {
                var stop = end
                if stop > offset && WireRead.u8(chunk, stop - 1) == Self.carriageReturn { stop -= 1 }
                guard stop - offset <= maxLineBytes else { throw .lineTooLong }
                if stop > offset { try onLine(chunk.extracting(offset..<stop)) }
            } else {
                guard partial.count + (end - offset) <= maxLineBytes + 1 else { throw .lineTooLong }
                for i in offset..<end { partial.append(WireRead.u8(chunk, i)) }
                var stop = partial.count
                if partial[stop - 1] == Self.carriageReturn { stop -= 1 }
                guard stop <= maxLineBytes else { throw .lineTooLong }
                if stop > 0 {
                    let line = partial.span.bytes.extracting(0..<stop)
                    try onLine(line)
                }
                partial.removeAll(keepingCapacity: true)
            }
            offset = end + 1
        }
        return count
    }
}

/// What a node answers to a `status` query.
public struct StatusResponse: Sendable, Equatable, Codable {
    public var nodeID: String
    /// The role the node announces (an integer in JSON, as everywhere).
    public var role: NodeRole
    /// The node's election state (`"follower"`, `"candidate"` or `"leader"` in JSON).
    public var state: ElectionState
    public var term: UInt64
    public var epoch: UInt64
    /// The leader the node knows of (omitted from JSON when none).
    public var leaderID: String?
    /// The node's last LSN.
    public var lsn: UInt64
    /// The members the node knows of, itself included, in the seed's Go form.
    public var members: [NodeInfo]
    /// The node's clock when it answered (`time`, optional): members' `LastSeen` is on this clock.
    public var time: Date?
    /// A member heard from within this many milliseconds counts as healthy
    /// (`health_timeout_ms`, optional; the node's election timeout).
    public var healthTimeoutMs: UInt64?
    /// The voter configuration the node holds (`voters`, `config_version`, `config_term`,
    /// `config_committed`; omitted when it holds none).
    public var configuration: VoterConfiguration?
    /// The node knows that `configuration` is committed.
    public var configurationCommitted: Bool
    /// Each member's status, incarnation and vote, by id (in JSON: `status`, `incarnation` and
    /// `voter` beside the `NodeInfo` keys of each member; optional, empty when absent).
    public var liveness: [String: MemberLiveness]
    /// Members removed and remembered as tombstones (`left`, sorted ids; optional).
    public var left: [String]
    /// Whether the node counts a quorum (`has_quorum`, optional): a majority of the voters alive
    /// (itself included), and at least `--min-quorum` members heard within the health timeout.
    public var hasQuorum: Bool?

    public init(
        nodeID: String, role: NodeRole, state: ElectionState, term: UInt64, epoch: UInt64, leaderID: String? = nil,
        lsn: UInt64, members: [NodeInfo] = [], time: Date? = nil, healthTimeoutMs: UInt64? = nil,
        configuration: VoterConfiguration? = nil, configurationCommitted: Bool = false,
        liveness: [String: MemberLiveness] = [:], left: [String] = [], hasQuorum: Bool? = nil
    ) {
        self.liveness = liveness
        self.left = left
        self.hasQuorum = hasQuorum
        self.configuration = configuration
        self.configurationCommitted = configurationCommitted
        self.time = time
        self.healthTimeoutMs = healthTimeoutMs
        self.nodeID = nodeID
        self.role = role
        self.state = state
        self.term = term
        self.epoch = epoch
        self.leaderID = leaderID
        self.lsn = lsn
        self.members = members
    }

    enum CodingKeys: String, CodingKey {
        case messageType = "message_type", nodeID = "node_id", role, state, term, epoch, leaderID = "leader_id", lsn
        case members, time, healthTimeoutMs = "health_timeout_ms"
        case voters, configVersion = "config_version", configTerm = "config_term", configCommitted = "config_committed"
        case left, hasQuorum = "has_quorum"
    }

    /// A member as the status answer writes it: its `NodeInfo` keys, then `status`,
    /// `incarnation` and `voter` when known.
    struct MemberEntry: Codable {
        var node: NodeInfo
        var liveness: MemberLiveness?

        init(node: NodeInfo, liveness: MemberLiveness?) {
            self.node = node
            self.liveness = liveness
        }

        init(from decoder: any Decoder) throws {
            node = try NodeInfo(from: decoder)
            let c = try decoder.container(keyedBy: AnyKey.self)
            if let status = try c.decodeIfPresent(MemberStatus.self, forKey: AnyKey("status")) {
                liveness = MemberLiveness(
                    status: status, incarnation: try c.decodeIfPresent(UInt64.self, forKey: AnyKey("incarnation")) ?? 0,
                    voter: try c.decodeIfPresent(Bool.self, forKey: AnyKey("voter")) ?? false)
            }
        }

        func encode(to encoder: any Encoder) throws {
            try node.encode(to: encoder)
            guard let liveness else { return }
            var c = encoder.container(keyedBy: AnyKey.self)
            try c.encode(liveness.status, forKey: AnyKey("status"))
            try c.encode(liveness.incarnation, forKey: AnyKey("incarnation"))
            try c.encode(liveness.voter, forKey: AnyKey("voter"))
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        nodeID = try c.decode(String.self, forKey: .nodeID)
        role = try c.decode(NodeRole.self, forKey: .role)
        let name = try c.decode(String.self, forKey: .state)
        guard let state = ElectionState.allCases.first(where: { $0.description == name }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .state, in: c, debugDescription: "unknown state \"\(name)\" (follower, candidate or leader)")
        }
        self.state = state
        term = try c.decode(UInt64.self, forKey: .term)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        leaderID = try c.decodeIfPresent(String.self, forKey: .leaderID)
        lsn = try c.decode(UInt64.self, forKey: .lsn)
        let entries = try c.decodeIfPresent([MemberEntry].self, forKey: .members) ?? []
        members = entries.map(\.node)
        liveness = [:]
        for entry in entries { if let l = entry.liveness { liveness[entry.node.id] = l } }
        left = try c.decodeIfPresent([String].self, forKey: .left) ?? []
        hasQuorum = try c.decodeIfPresent(Bool.self, forKey: .hasQuorum)
        time = try c.decodeIfPresent(String.self, forKey: .time).flatMap(GoTime.parse)
        healthTimeoutMs = try c.decodeIfPresent(UInt64.self, forKey: .healthTimeoutMs)
        if let voters = try c.decodeIfPresent([String].self, forKey: .voters) {
            configuration = VoterConfiguration(
                voters: voters, version: try c.decodeIfPresent(UInt64.self, forKey: .configVersion) ?? 0,
                term: try c.decodeIfPresent(UInt64.self, forKey: .configTerm) ?? 0)
        }
        configurationCommitted = try c.decodeIfPresent(Bool.self, forKey: .configCommitted) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(JSONMessage.statusResponseType, forKey: .messageType)
        try c.encode(nodeID, forKey: .nodeID)
        try c.encode(role, forKey: .role)
        try c.encode(state.description, forKey: .state)
        try c.encode(term, forKey: .term)
        try c.encode(epoch, forKey: .epoch)
        try c.encodeIfPresent(leaderID, forKey: .leaderID)
        try c.encode(lsn, forKey: .lsn)
        try c.encode(members.map { MemberEntry(node: $0, liveness: liveness[$0.id]) }, forKey: .members)
        if !left.isEmpty { try c.encode(left, forKey: .left) }
        try c.encodeIfPresent(hasQuorum, forKey: .hasQuorum)
        try c.encodeIfPresent(time.map(GoTime.format), forKey: .time)
        try c.encodeIfPresent(healthTimeoutMs, forKey: .healthTimeoutMs)
        if let configuration, !configuration.isNone {
            try c.encode(configuration.voters, forKey: .voters)
            try c.encode(configuration.version, forKey: .configVersion)
            try c.encode(configuration.term, forKey: .configTerm)
            try c.encode(configurationCommitted, forKey: .configCommitted)
        }
    }
}

/// One message of the JSON-lines form of the protocol.
public enum JSONMessage: Sendable, Equatable {
    case voteRequest(VoteRequest)
    case voteResponse(VoteResponse)
    case announcement(AnnouncementMessage)
    case nodeList(DiscoveryResponse)
    case heartbeat(HeartbeatMessage)
    case hello(HelloMessage)
    /// Why the sender is about to close the connection.
    case goodbye(String)
    /// A query: the node answers with `.statusResponse`.
    case status
    case statusResponse(StatusResponse)
    /// The answer to a line that could not be understood.
    case error(String)
    /// A request for a planned switchover (`to`: the target, or nil for the node's choice);
    /// answered with `.transferResponse` once it is done or has failed.
    case transfer(to: String?)
    case transferResponse(TransferResponse)
    /// A change to, or a look at, the node's cluster keys; answered with `.keyringResponse`.
    case keyring(KeyringRequest)
    case keyringResponse(KeyringResponse)
    /// A look at, or a change of, the voter set; answered with `.votersResponse` (a change once
    /// it is committed, or with the reason it was not).
    case voters(VotersRequest)
    case votersResponse(VotersResponse)
    /// The operator removes a member that is gone, and its vote (`cluster force-leave`); answered
    /// with `.forceLeaveResponse`.
    case forceLeave(nodeID: String)
    case forceLeaveResponse(ForceLeaveResponse)

    static let statusResponseType = "status_response"

    /// The `message_type` of this message.
    public var messageType: String {
        switch self {
        case .voteRequest: return "vote_request"
        case .voteResponse: return "vote_response"
        case .announcement: return "node_announcement"
        case .nodeList: return "node_list"
        case .heartbeat: return "heartbeat"
        case .hello: return "hello"
        case .goodbye: return "goodbye"
        case .status: return "status"
        case .statusResponse: return Self.statusResponseType
        case .error: return "error"
        case .transfer: return "transfer"
        case .transferResponse: return "transfer_response"
        case .keyring: return "keyring"
        case .keyringResponse: return "keyring_response"
        case .voters: return "voters"
        case .votersResponse: return "voters_response"
        case .forceLeave: return "force_leave"
        case .forceLeaveResponse: return "force_leave_response"
        }
    }

    /// Decodes one line (without its newline).
    public static func decode(line: RawSpan) throws(WireError) -> JSONMessage {
        try decode(data: Data(Wire.copyBytes(line)))
    }

    /// Decodes one line (without its newline).
    public static func decode(line: [UInt8]) throws(WireError) -> JSONMessage {
        try decode(data: Data(line))
    }

    /// Decodes one line (without its newline).
    public static func decode(line: String) throws(WireError) -> JSONMessage {
        try decode(data: Data(line.utf8))
    }

    private static func decode(data: Data) throws(WireError) -> JSONMessage {
        let type = try json(Envelope.self, data, context: nil).messageType
        switch type {
        case "vote_request": return .voteRequest(try json(VoteRequest.self, data, context: type))
        case "vote_response": return .voteResponse(try json(VoteResponse.self, data, context: type))
        case "node_announcement": return .announcement(try json(AnnouncementMessage.self, data, context: type))
        case "node_list": return .nodeList(try json(DiscoveryResponse.self, data, context: type))
        case "heartbeat":
            let h = try json(HeartbeatJSON.self, data, context: type)
            _ = try Wire.checkedID(h.nodeID, "heartbeat node_id")
            return .heartbeat(
                HeartbeatMessage(
                    from: h.nodeID, seq: h.seq, epoch: h.epoch, term: h.term, lsn: h.lsn, role: h.role,
                    ackSeq: h.ackSeq ?? 0, probe: h.probe ?? false))
        case "hello":
            let h = try json(HelloJSON.self, data, context: type)
            guard h.version == Int(Wire.version) else { throw .badVersion(h.version) }
            _ = try Wire.checkedID(h.nodeID, "hello node_id")
            let addr = h.nodeAddr ?? ""
            guard addr.utf8.count <= Wire.maxAddrBytes else {
                throw .malformed("hello node_addr is \(addr.utf8.count) bytes, more than \(Wire.maxAddrBytes)")
            }
            return .hello(HelloMessage(nodeID: h.nodeID, nodeAddr: addr, priority: h.priority ?? 0, version: Wire.version))
        case "goodbye": return .goodbye(try json(GoodbyeJSON.self, data, context: type).reason ?? "")
        case "status": return .status
        case statusResponseType: return .statusResponse(try json(StatusResponse.self, data, context: type))
        case "error": return .error(try json(ErrorJSON.self, data, context: type).error ?? "")
        case "transfer":
            let to = try json(TransferJSON.self, data, context: type).to
            if let to { _ = try Wire.checkedID(to, "transfer to") }
            return .transfer(to: to)
        case "transfer_response": return .transferResponse(try json(TransferResponse.self, data, context: type))
        case "keyring": return .keyring(try json(KeyringRequest.self, data, context: type))
        case "keyring_response": return .keyringResponse(try json(KeyringResponse.self, data, context: type))
        case "voters":
            let request = try json(VotersRequest.self, data, context: type)
            if let node = request.nodeID { _ = try Wire.checkedID(node, "voters node_id") }
            return .voters(request)
        case "voters_response": return .votersResponse(try json(VotersResponse.self, data, context: type))
        case "force_leave":
            let id = try json(ForceLeaveJSON.self, data, context: type).nodeID
            _ = try Wire.checkedID(id, "force_leave node_id")
            return .forceLeave(nodeID: id)
        case "force_leave_response": return .forceLeaveResponse(try json(ForceLeaveResponse.self, data, context: type))
        default: throw .unknownMessageType(type)
        }
    }

    /// The JSON object and its `\n`. Keys are written sorted.
    public func encodeLine() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            var bytes = [UInt8](try encode(with: encoder))
            bytes.append(0x0A)
            return bytes
        } catch {
            // Unreachable: these types hold no value JSON cannot express.
            return Array("{\"error\":\"could not encode a message\",\"message_type\":\"error\"}\n".utf8)
        }
    }

    private func encode(with encoder: JSONEncoder) throws -> Data {
        switch self {
        case .voteRequest(var m):
            m.messageType = messageType
            return try encoder.encode(m)
        case .voteResponse(var m):
            m.messageType = messageType
            return try encoder.encode(m)
        case .announcement(var m):
            m.messageType = messageType
            return try encoder.encode(m)
        case .nodeList(var m):
            m.messageType = messageType
            return try encoder.encode(m)
        case .heartbeat(let h):
            return try encoder.encode(
                HeartbeatJSON(
                    nodeID: h.from, seq: h.seq, epoch: h.epoch, term: h.term, lsn: h.lsn, role: h.role,
                    ackSeq: h.ackSeq, probe: h.probe))
        case .hello(let h):
            return try encoder.encode(
                HelloJSON(version: Int(h.version), nodeID: h.nodeID, nodeAddr: h.nodeAddr, priority: h.priority))
        case .goodbye(let reason): return try encoder.encode(GoodbyeJSON(reason: reason))
        case .status: return try encoder.encode(Envelope(messageType: messageType))
        case .statusResponse(let s): return try encoder.encode(s)
        case .error(let why): return try encoder.encode(ErrorJSON(error: why))
        case .transfer(let to): return try encoder.encode(TransferJSON(to: to))
        case .transferResponse(let r): return try encoder.encode(r)
        case .keyring(let r): return try encoder.encode(Typed(messageType: messageType, body: r))
        case .keyringResponse(let r): return try encoder.encode(Typed(messageType: messageType, body: r))
        case .voters(let r): return try encoder.encode(Typed(messageType: messageType, body: r))
        case .votersResponse(let r): return try encoder.encode(Typed(messageType: messageType, body: r))
        case .forceLeave(let id): return try encoder.encode(Typed(messageType: messageType, body: ForceLeaveJSON(nodeID: id)))
        case .forceLeaveResponse(let r): return try encoder.encode(Typed(messageType: messageType, body: r))
        }
    }

    /// Decodes `T`, turning any failure into `.badJSON` with a short reason.
    private static func json<T: Decodable>(_: T.Type, _ data: Data, context: String?) throws(WireError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            let why = reason(error)
            throw .badJSON(context.map { "\($0): \(why)" } ?? why)
        }
    }

    private static func reason(_ error: any Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func path(_ c: DecodingError.Context) -> String {
            c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case .keyNotFound(let key, let c):
            let at = path(c)
            return "missing key \"\(key.stringValue)\"" + (at.isEmpty ? "" : " in \(at)")
        case .typeMismatch(let type, let c):
            let at = path(c)
            return at.isEmpty ? "not a JSON object" : "\(at) is not a \(type)"
        case .valueNotFound(let type, let c):
            return "\(path(c)) is null, expected a \(type)"
        case .dataCorrupted(let c):
            let at = path(c)
            if at.isEmpty {
                if let underlying = c.underlyingError { return "not valid JSON (\(underlying))" }
                return "not valid JSON"
            }
            return "\(at): \(c.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

// The JSON shapes of this project's messages.

private struct Envelope: Codable {
    var messageType: String
    enum CodingKeys: String, CodingKey { case messageType = "message_type" }
}

private struct HeartbeatJSON: Codable {
    var messageType = "heartbeat"
    var nodeID: String
    var seq: UInt64
    var epoch: UInt64
    var term: UInt64
    var lsn: UInt64
    var role: NodeRole
    var ackSeq: UInt64?
    var probe: Bool?

    init(nodeID: String, seq: UInt64, epoch: UInt64, term: UInt64, lsn: UInt64, role: NodeRole, ackSeq: UInt64, probe: Bool) {
        self.nodeID = nodeID
        self.seq = seq
        self.epoch = epoch
        self.term = term
        self.lsn = lsn
        self.role = role
        self.ackSeq = ackSeq
        self.probe = probe
    }

    enum CodingKeys: String, CodingKey {
        case messageType = "message_type", nodeID = "node_id", seq, epoch, term, lsn, role, ackSeq = "ack_seq", probe
    }
}

private struct HelloJSON: Codable {
    var messageType = "hello"
    var version: Int
    var nodeID: String
    var nodeAddr: String?
    var priority: Int?

    init(version: Int, nodeID: String, nodeAddr: String, priority: Int) {
        self.version = version
        self.nodeID = nodeID
        self.nodeAddr = nodeAddr
        self.priority = priority
    }

    enum CodingKeys: String, CodingKey {
        case messageType = "message_type", version, nodeID = "node_id", nodeAddr = "node_addr", priority
    }
}

private struct GoodbyeJSON: Codable {
    var messageType = "goodbye"
    var reason: String?
    init(reason: String) { self.reason = reason }
    enum CodingKeys: String, CodingKey { case messageType = "message_type", reason }
}

private struct TransferJSON: Codable {
    var messageType = "transfer"
    var to: String?
    init(to: String?) { self.to = to }
    enum CodingKeys: String, CodingKey { case messageType = "message_type", to }
}

/// The answer to a `transfer` request: `success` with the new primary's id in `leader_id`, or
/// the reason in `error` (and in `leader_id` the primary the node knows, if any).
public struct TransferResponse: Sendable, Equatable, Codable {
    public var success: Bool
    public var leaderID: String?
    public var error: String?
    /// Milliseconds from the request to the answer.
    public var tookMs: Double?

    public init(success: Bool, leaderID: String?, error: String? = nil, tookMs: Double? = nil) {
        self.success = success
        self.leaderID = leaderID
        self.error = error
        self.tookMs = tookMs
    }

    enum CodingKeys: String, CodingKey {
        case messageType = "message_type", success, leaderID = "leader_id", error, tookMs = "took_ms"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        success = try c.decode(Bool.self, forKey: .success)
        leaderID = try c.decodeIfPresent(String.self, forKey: .leaderID)
        error = try c.decodeIfPresent(String.self, forKey: .error)
        tookMs = try c.decodeIfPresent(Double.self, forKey: .tookMs)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("transfer_response", forKey: .messageType)
        try c.encode(success, forKey: .success)
        try c.encodeIfPresent(leaderID, forKey: .leaderID)
        try c.encodeIfPresent(error, forKey: .error)
        try c.encodeIfPresent(tookMs, forKey: .tookMs)
    }
}

private struct ErrorJSON: Codable {
    var messageType = "error"
    var error: String?
    init(error: String) { self.error = error }
    enum CodingKeys: String, CodingKey { case messageType = "message_type", error }
}

/// A body with `message_type` added beside its own keys.
private struct Typed<Body: Encodable>: Encodable {
    let messageType: String
    let body: Body

    enum CodingKeys: String, CodingKey { case messageType = "message_type" }

    func encode(to encoder: any Encoder) throws {
        try body.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(messageType, forKey: .messageType)
    }
}

/// The body of a `force_leave` request.
struct ForceLeaveJSON: Codable {
    var nodeID: String
    enum CodingKeys: String, CodingKey { case nodeID = "node_id" }
}

/// The answer to a `force_leave` request: `success` once the member is removed here (and its
/// peers told); `error`: why not.
public struct ForceLeaveResponse: Sendable, Equatable, Codable {
    public var success: Bool
    public var error: String?
    /// The peers told (LEAVE frames).
    public var peersTold: Int

    public init(success: Bool, error: String? = nil, peersTold: Int = 0) {
        self.success = success
        self.error = error
        self.peersTold = peersTold
    }

    enum CodingKeys: String, CodingKey { case success, error, peersTold = "peers_told" }
}

/// A `voters` request: `op` is `list`, `add` or `remove` (`node_id` names the node for the last two).
public struct VotersRequest: Sendable, Equatable, Codable {
    public var op: String
    public var nodeID: String?

    public init(op: String, nodeID: String? = nil) {
        self.op = op
        self.nodeID = nodeID
    }

    enum CodingKeys: String, CodingKey { case op, nodeID = "node_id" }
}

/// The answer to a `voters` request: the configuration the node holds after it, and for a change
/// whether it was committed (`error`: why not).
public struct VotersResponse: Sendable, Equatable, Codable {
    public var success: Bool
    public var voters: [String]
    public var configVersion: UInt64
    public var configTerm: UInt64
    public var committed: Bool
    public var leaderID: String?
    public var error: String?
    /// Milliseconds from the request to the answer.
    public var tookMs: Double?

    public init(
        success: Bool, configuration: VoterConfiguration, committed: Bool, leaderID: String?, error: String? = nil,
        tookMs: Double? = nil
    ) {
        self.success = success
        self.voters = configuration.voters
        self.configVersion = configuration.version
        self.configTerm = configuration.term
        self.committed = committed
        self.leaderID = leaderID
        self.error = error
        self.tookMs = tookMs
    }

    enum CodingKeys: String, CodingKey {
        case success, voters, configVersion = "config_version", configTerm = "config_term", committed
        case leaderID = "leader_id", error, tookMs = "took_ms"
    }
}
