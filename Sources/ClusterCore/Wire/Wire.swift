// The binary codec: limits, encoders that append to a caller's reusable buffer, and a decoder of
// one whole frame from a `RawSpan`. Pure: no I/O. See PROTOCOL.md for the byte layouts.

/// The node-to-node binary protocol: constants, encoders and the decoder of one frame.
public enum Wire {
    /// The protocol version this node speaks (the hello's `version`).
    public static let version: UInt8 = 1
    /// The largest value of a frame's length field (the bytes after the field itself).
    public static let maxFrameBytes = 64 * 1024
    /// The longest JSON line, without its `\n` (or `\r\n`).
    public static let maxLineBytes = 64 * 1024
    /// The size of a HEARTBEAT frame on the wire, length field included.
    public static let heartbeatFrameBytes = 56
    /// The longest node id, in UTF-8 bytes (ids are 1...255 bytes).
    public static let maxIDBytes = 255
    /// The longest node address, in UTF-8 bytes.
    public static let maxAddrBytes = 255
    /// Encoders cut a reason (vote refusal, goodbye) to this many UTF-8 bytes, at a character
    /// boundary. Decoders take any reason that fits in the frame.
    public static let maxReasonBytes = 1024
    /// The longest cluster name, in UTF-8 bytes (names are 0...255 bytes; empty: none).
    public static let maxClusterNameBytes = 255

    /// The kind of a connection whose first byte is `firstByte` (the same as `WireKind.classify`).
    @inlinable
    package static func classify(firstByte: UInt8) -> WireKind { WireKind.classify(firstByte: firstByte) }

    /// FNV-1a 64 of the UTF-8 bytes of `s` (a heartbeat's `senderTag`). Does not allocate.
    @inlinable
    package static func fnv1a64(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01b3
        }
        return h
    }

    /// The whole size of a frame (4 + `length`) whose length field is `length`, or the error
    /// that closes the connection. Needs only the 4-byte header.
    @inlinable
    package static func frameSize(length: UInt32) throws(WireError) -> Int {
        if length > UInt32(maxFrameBytes) { throw .frameTooLarge(length) }
        if length == 0 { throw .frameTooShort }
        return Int(length) + 4
    }

    /// A copy of the bytes of a span.
    package static func copyBytes(_ span: RawSpan) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(span.byteCount)
        for i in 0..<span.byteCount { out.append(span.unsafeLoad(fromByteOffset: i, as: UInt8.self)) }
        return out
    }

    // MARK: Encoding

    /// Appends the 56-byte HEARTBEAT frame of `f` to `out`. Does not allocate when `out` has
    /// the capacity (reserve it once, then `removeAll(keepingCapacity: true)` between uses).
    @inlinable
    package static func encodeHeartbeat(_ f: HeartbeatFrame, into out: inout [UInt8]) {
        let base = out.count
        out.append(addingCapacity: heartbeatFrameBytes) { (span: inout OutputSpan<UInt8>) in
            for _ in 0..<heartbeatFrameBytes { span.append(0) }
        }
        var span = out.mutableSpan
        var raw = span.mutableBytes
        // Bytes 0...7: len = 52 (u32), type 2, flags, role, reserved 0.
        let head = UInt64(heartbeatFrameBytes - 4) << 32 | UInt64(FrameType.heartbeat.rawValue) << 24
            | UInt64(f.flags) << 16 | UInt64(UInt8(truncatingIfNeeded: f.role.rawValue)) << 8
        raw.storeBytes(of: head.bigEndian, toByteOffset: base, as: UInt64.self)
        raw.storeBytes(of: f.seq.bigEndian, toByteOffset: base + 8, as: UInt64.self)
        raw.storeBytes(of: f.epoch.bigEndian, toByteOffset: base + 16, as: UInt64.self)
        raw.storeBytes(of: f.term.bigEndian, toByteOffset: base + 24, as: UInt64.self)
        raw.storeBytes(of: f.lsn.bigEndian, toByteOffset: base + 32, as: UInt64.self)
        raw.storeBytes(of: f.ackSeq.bigEndian, toByteOffset: base + 40, as: UInt64.self)
        raw.storeBytes(of: f.senderTag.bigEndian, toByteOffset: base + 48, as: UInt64.self)
    }

    /// Appends a HELLO frame. Throws (appending nothing) when the id is not 1...255 bytes or the
    /// address is longer than 255 bytes.
    package static func encodeHello(_ h: HelloMessage, into out: inout [UInt8]) throws(WireError) {
        let id = try checkedID(h.nodeID, "hello node id")
        let addr = h.nodeAddr.utf8.count
        guard addr <= maxAddrBytes else { throw .malformed("hello node address is \(addr) bytes, more than \(maxAddrBytes)") }
        let name = h.clusterName.utf8.count
        guard name <= maxClusterNameBytes else {
            throw .malformed("hello cluster name is \(name) bytes, more than \(maxClusterNameBytes)")
        }
        if let auth = h.auth, auth.nonce.count != LinkAuth.nonceBytes {
            throw .malformed("hello nonce is \(auth.nonce.count) bytes, not \(LinkAuth.nonceBytes)")
        }
        let extra = (name == 0 ? 0 : 2 + name) + (h.auth == nil ? 0 : 8 + LinkAuth.nonceBytes) + (h.datagrams == nil ? 0 : 10)
        out.appendHeader(length: 1 + 1 + 1 + 2 + id + 2 + addr + 8 + extra, type: .hello)
        out.append(h.version)
        out.append(h.flags)
        out.appendBE(UInt16(id))
        out.append(contentsOf: h.nodeID.utf8)
        out.appendBE(UInt16(addr))
        out.append(contentsOf: h.nodeAddr.utf8)
        out.appendBE(UInt64(bitPattern: Int64(h.priority)))
        if name > 0 {
            out.appendBE(UInt16(name))
            out.append(contentsOf: h.clusterName.utf8)
        }
        if let auth = h.auth {
            out.appendBE(auth.keyID)
            out.append(contentsOf: auth.nonce)
        }
        if let datagrams = h.datagrams {
            out.appendBE(datagrams.port)
            out.appendBE(datagrams.token)
        }
    }

    /// Appends a VOTE_REQUEST frame. Throws (appending nothing) when the candidate id is not
    /// 1...255 bytes.
    package static func encodeVoteRequest(_ r: VoteRequest, into out: inout [UInt8]) throws(WireError) {
        let id = try checkedID(r.candidateID, "vote request candidate id")
        let hasConfiguration = r.configuration != .none
        out.appendHeader(length: 1 + 8 * 4 + 1 + 2 + id + (hasConfiguration ? 16 : 0), type: .voteRequest)
        out.appendBE(r.term)
        out.appendBE(r.lastLSN)
        out.appendBE(r.epoch)
        out.appendBE(UInt64(bitPattern: Int64(r.priority)))
        out.append((r.preVote ? 1 : 0) | (r.transfer ? 2 : 0) | (hasConfiguration ? 4 : 0))
        out.appendBE(UInt16(id))
        out.append(contentsOf: r.candidateID.utf8)
        if hasConfiguration {
            out.appendBE(r.configuration.term)
            out.appendBE(r.configuration.version)
        }
    }

    /// Appends a TIMEOUT_NOW frame. Throws (appending nothing) when the sender id is not 1...255
    /// bytes.
    package static func encodeTimeoutNow(_ t: TimeoutNowMessage, into out: inout [UInt8]) throws(WireError) {
        let id = try checkedID(t.from, "timeout now sender id")
        out.appendHeader(length: 1 + 1 + 8 + 2 + id, type: .timeoutNow)
        out.append(0)  // flags
        out.appendBE(t.term)
        out.appendBE(UInt16(id))
        out.append(contentsOf: t.from.utf8)
    }

    /// Appends a VOTE_RESPONSE frame (the reason cut to `maxReasonBytes`). Throws (appending
    /// nothing) when the voter id is not 1...255 bytes.
    package static func encodeVoteResponse(_ r: VoteResponse, into out: inout [UInt8]) throws(WireError) {
        let id = try checkedID(r.voterID, "vote response voter id")
        let reason = clipped(r.reason)
        let hasConfiguration = r.configuration != .none
        out.appendHeader(length: 1 + 8 * 2 + 1 + 2 + id + 2 + reason.count + (hasConfiguration ? 16 : 0), type: .voteResponse)
        out.appendBE(r.term)
        out.appendBE(r.epoch)
        out.append((r.voteGranted ? 1 : 0) | (r.preVote ? 2 : 0) | (hasConfiguration ? 4 : 0))
        out.appendBE(UInt16(id))
        out.append(contentsOf: r.voterID.utf8)
        out.appendBE(UInt16(reason.count))
        out.append(contentsOf: reason)
        if hasConfiguration {
            out.appendBE(r.configuration.term)
            out.appendBE(r.configuration.version)
        }
    }

    /// Appends a MEMBER frame. Throws (appending nothing) when the id is not 1...255 bytes or the
    /// address is longer than 255 bytes.
    package static func encodeMember(_ m: MemberMessage, into out: inout [UInt8]) throws(WireError) {
        let id = try checkedID(m.nodeID, "member node id")
        let addr = m.nodeAddr.utf8.count
        guard addr <= maxAddrBytes else { throw .malformed("member node address is \(addr) bytes, more than \(maxAddrBytes)") }
        out.appendHeader(length: 1 + 2 + id + 2 + addr + 8, type: .member)
        out.appendBE(UInt16(id))
        out.append(contentsOf: m.nodeID.utf8)
        out.appendBE(UInt16(addr))
        out.append(contentsOf: m.nodeAddr.utf8)
        out.appendBE(UInt64(bitPattern: Int64(m.priority)))
    }

    /// Appends a GOODBYE frame (the reason cut to `maxReasonBytes`).
    package static func encodeGoodbye(_ reason: String, into out: inout [UInt8]) {
        let bytes = clipped(reason)
        out.appendHeader(length: 1 + 2 + bytes.count, type: .goodbye)
        out.appendBE(UInt16(bytes.count))
        out.append(contentsOf: bytes)
    }

    /// Appends the frame of any message.
    package static func encode(_ frame: WireFrame, into out: inout [UInt8]) throws(WireError) {
        switch frame {
        case .hello(let h): try encodeHello(h, into: &out)
        case .heartbeat(let f): encodeHeartbeat(f, into: &out)
        case .voteRequest(let r): try encodeVoteRequest(r, into: &out)
        case .voteResponse(let r): try encodeVoteResponse(r, into: &out)
        case .goodbye(let reason): encodeGoodbye(reason, into: &out)
        case .timeoutNow(let t): try encodeTimeoutNow(t, into: &out)
        case .member(let m): try encodeMember(m, into: &out)
        case .configuration(let c): try encodeConfiguration(c, into: &out)
        case .configurationAck(let a): try encodeConfigurationAck(a, into: &out)
        case .bootstrap(let b): try encodeBootstrap(b, into: &out)
        case .leave(let id): try encodeLeave(id, into: &out)
        }
    }

    /// Appends a LEAVE frame: the id of a member the operator removed. Throws (appending nothing)
    /// when the id is not 1...255 bytes.
    package static func encodeLeave(_ nodeID: String, into out: inout [UInt8]) throws(WireError) {
        let id = try checkedID(nodeID, "leave node id")
        out.appendHeader(length: 1 + 2 + id, type: .leave)
        out.appendBE(UInt16(id))
        out.append(contentsOf: nodeID.utf8)
    }

    /// The byte count of a node id, or the error if it is not 1...255 bytes.
    static func checkedID(_ id: String, _ field: String) throws(WireError) -> Int {
        let n = id.utf8.count
        guard n >= 1 else { throw .malformed("\(field) is empty") }
        guard n <= maxIDBytes else { throw .malformed("\(field) is \(n) bytes, more than \(maxIDBytes)") }
        return n
    }

    /// The UTF-8 of `s`, cut to at most `maxReasonBytes` without splitting a character's bytes.
    static func clipped(_ s: String) -> Substring.UTF8View {
        let u = s.utf8
        guard u.count > maxReasonBytes else { return s[...].utf8 }
        var end = u.index(u.startIndex, offsetBy: maxReasonBytes)
        while end > u.startIndex, u[end] & 0xC0 == 0x80 { end = u.index(before: end) }
        return s[..<end].utf8
    }

    // MARK: Decoding

    /// Decodes one whole frame: `frame` holds exactly the length field and the bytes it counts.
    package static func decodeFrame(_ frame: RawSpan) throws(WireError) -> WireFrame {
        let count = frame.byteCount
        guard count >= 4 else { throw .truncated("the length field") }
        let size = try frameSize(length: WireRead.u32(frame, 0))
        guard size <= count else { throw .truncated("the frame (its length field counts \(size - 4) bytes)") }
        let type = WireRead.u8(frame, 4)
        guard size == count else { throw .trailingBytes(type: type, count: count - size) }
        return try decodeBody(frame)
    }

    /// Decodes a frame whose length field the caller has checked: `frame` starts at the length
    /// field and ends at the frame's last field (a sealed frame without its tag, see `LinkAuth`).
    static func decodeBody(_ frame: RawSpan) throws(WireError) -> WireFrame {
        guard frame.byteCount >= 5 else { throw .frameTooShort }
        let type = WireRead.u8(frame, 4)
        switch type {
        case FrameType.heartbeat.rawValue: return .heartbeat(try decodeHeartbeat(frame))
        case FrameType.hello.rawValue: return .hello(try decodeHello(frame))
        case FrameType.voteRequest.rawValue: return .voteRequest(try decodeVoteRequest(frame))
        case FrameType.voteResponse.rawValue: return .voteResponse(try decodeVoteResponse(frame))
        case FrameType.goodbye.rawValue: return .goodbye(try decodeGoodbye(frame))
        case FrameType.timeoutNow.rawValue: return .timeoutNow(try decodeTimeoutNow(frame))
        case FrameType.member.rawValue: return .member(try decodeMember(frame))
        case FrameType.configuration.rawValue: return .configuration(try decodeConfiguration(frame))
        case FrameType.configurationAck.rawValue: return .configurationAck(try decodeConfigurationAck(frame))
        case FrameType.bootstrap.rawValue: return .bootstrap(try decodeBootstrap(frame))
        case FrameType.leave.rawValue: return .leave(try decodeLeave(frame))
        default: throw .unknownType(type)
        }
    }

    /// Decodes one whole frame held in an array (see `decodeFrame(_: RawSpan)`).
    package static func decodeFrame(_ frame: [UInt8]) throws(WireError) -> WireFrame {
        try decodeFrame(frame.span.bytes)
    }

    /// The body of a HEARTBEAT frame (`frame` is whole, type 2). Does not allocate.
    static func decodeHeartbeat(_ frame: RawSpan) throws(WireError) -> HeartbeatFrame {
        let count = frame.byteCount
        guard count >= heartbeatFrameBytes else { throw .truncated("a heartbeat (\(count) bytes, 56 needed)") }
        guard count == heartbeatFrameBytes else {
            throw .trailingBytes(type: FrameType.heartbeat.rawValue, count: count - heartbeatFrameBytes)
        }
        let flags = WireRead.u8(frame, 5)
        guard flags & ~7 == 0 else { throw .malformed("heartbeat flags \(flags) set reserved bits") }
        let rawRole = WireRead.u8(frame, 6)
        guard let role = NodeRole(rawValue: Int(rawRole)) else { throw .malformed("heartbeat role \(rawRole)") }
        guard WireRead.u8(frame, 7) == 0 else { throw .malformed("heartbeat reserved byte is not 0") }
        return HeartbeatFrame(
            seq: WireRead.u64(frame, 8), epoch: WireRead.u64(frame, 16), term: WireRead.u64(frame, 24),
            lsn: WireRead.u64(frame, 32), role: role, ackSeq: WireRead.u64(frame, 40),
            senderTag: WireRead.u64(frame, 48), probe: flags & 1 != 0, reply: flags & 2 != 0,
            datagramsArrive: flags & 4 != 0)
    }

    static func decodeHello(_ frame: RawSpan) throws(WireError) -> HelloMessage {
        var o = 5
        let version = try WireRead.u8(frame, &o, "the hello version")
        guard version == Wire.version else { throw .badVersion(Int(version)) }
        let flags = try WireRead.u8(frame, &o, "the hello flags")
        guard flags & ~15 == 0 else { throw .malformed("hello flags \(flags) set reserved bits") }
        let id = try WireRead.id(frame, &o, "the hello node id")
        let addrLen = Int(try WireRead.u16(frame, &o, "the hello address length"))
        guard addrLen <= maxAddrBytes else { throw .malformed("hello node address is \(addrLen) bytes, more than \(maxAddrBytes)") }
        let addr = try WireRead.string(frame, &o, addrLen, "the hello node address")
        let priority = try WireRead.u64(frame, &o, "the hello priority")
        var name = ""
        if flags & 1 != 0 {
            let n = Int(try WireRead.u16(frame, &o, "the hello cluster name length"))
            guard (1...maxClusterNameBytes).contains(n) else { throw .malformed("hello cluster name is \(n) bytes, not 1...\(maxClusterNameBytes)") }
            name = try WireRead.string(frame, &o, n, "the hello cluster name")
        }
        var auth: HelloAuth?
        if flags & 2 != 0 {
            let keyID = try WireRead.u64(frame, &o, "the hello key id")
            try WireRead.need(frame, o, LinkAuth.nonceBytes, "the hello nonce")
            var nonce: [UInt8] = []
            nonce.reserveCapacity(LinkAuth.nonceBytes)
            for i in o..<(o + LinkAuth.nonceBytes) { nonce.append(WireRead.u8(frame, i)) }
            o += LinkAuth.nonceBytes
            auth = HelloAuth(keyID: keyID, nonce: nonce)
        }
        var datagrams: HelloDatagrams?
        if flags & 4 != 0 {
            let port = try WireRead.u16(frame, &o, "the hello datagram port")
            guard port != 0 else { throw .malformed("hello datagram port is 0") }
            datagrams = HelloDatagrams(port: port, token: try WireRead.u64(frame, &o, "the hello datagram token"))
        }
        try WireRead.end(frame, o, .hello)
        var hello = HelloMessage(
            nodeID: id, nodeAddr: addr, priority: Int(truncatingIfNeeded: Int64(bitPattern: priority)), version: version,
            clusterName: name, auth: auth, datagrams: datagrams)
        hello.takesMembers = flags & 8 != 0
        return hello
    }

    static func decodeVoteRequest(_ frame: RawSpan) throws(WireError) -> VoteRequest {
        var o = 5
        let term = try WireRead.u64(frame, &o, "the vote request term")
        let lastLSN = try WireRead.u64(frame, &o, "the vote request last LSN")
        let epoch = try WireRead.u64(frame, &o, "the vote request epoch")
        let priority = try WireRead.u64(frame, &o, "the vote request priority")
        let flags = try WireRead.u8(frame, &o, "the vote request flags")
        // Bit 1 (transfer) was reserved before leadership transfer: an older sender leaves it 0.
        // Bit 2 (a configuration follows the id) likewise.
        guard flags & ~7 == 0 else { throw .malformed("vote request flags \(flags) set reserved bits") }
        let id = try WireRead.id(frame, &o, "the vote request candidate id")
        var configuration = ConfigurationID.none
        if flags & 4 != 0 {
            configuration.term = try WireRead.u64(frame, &o, "the vote request configuration term")
            configuration.version = try WireRead.u64(frame, &o, "the vote request configuration version")
        }
        try WireRead.end(frame, o, .voteRequest)
        return VoteRequest(
            candidateID: id, term: term, lastLSN: lastLSN, epoch: epoch,
            priority: Int(truncatingIfNeeded: Int64(bitPattern: priority)), preVote: flags & 1 != 0,
            transfer: flags & 2 != 0, configuration: configuration)
    }

    static func decodeTimeoutNow(_ frame: RawSpan) throws(WireError) -> TimeoutNowMessage {
        var o = 5
        let flags = try WireRead.u8(frame, &o, "the timeout now flags")
        guard flags == 0 else { throw .malformed("timeout now flags \(flags) set reserved bits") }
        let term = try WireRead.u64(frame, &o, "the timeout now term")
        let id = try WireRead.id(frame, &o, "the timeout now sender id")
        try WireRead.end(frame, o, .timeoutNow)
        return TimeoutNowMessage(from: id, term: term)
    }

    static func decodeVoteResponse(_ frame: RawSpan) throws(WireError) -> VoteResponse {
        var o = 5
        let term = try WireRead.u64(frame, &o, "the vote response term")
        let epoch = try WireRead.u64(frame, &o, "the vote response epoch")
        let flags = try WireRead.u8(frame, &o, "the vote response flags")
        guard flags & ~7 == 0 else { throw .malformed("vote response flags \(flags) set reserved bits") }
        let id = try WireRead.id(frame, &o, "the vote response voter id")
        let reasonLen = Int(try WireRead.u16(frame, &o, "the vote response reason length"))
        let reason = try WireRead.string(frame, &o, reasonLen, "the vote response reason")
        var configuration = ConfigurationID.none
        if flags & 4 != 0 {
            configuration.term = try WireRead.u64(frame, &o, "the vote response configuration term")
            configuration.version = try WireRead.u64(frame, &o, "the vote response configuration version")
        }
        try WireRead.end(frame, o, .voteResponse)
        return VoteResponse(
            voterID: id, term: term, voteGranted: flags & 1 != 0, reason: reason, preVote: flags & 2 != 0, epoch: epoch,
            configuration: configuration)
    }

    static func decodeMember(_ frame: RawSpan) throws(WireError) -> MemberMessage {
        var o = 5
        let id = try WireRead.id(frame, &o, "the member node id")
        let addrLen = Int(try WireRead.u16(frame, &o, "the member address length"))
        guard addrLen <= maxAddrBytes else { throw .malformed("member node address is \(addrLen) bytes, more than \(maxAddrBytes)") }
        let addr = try WireRead.string(frame, &o, addrLen, "the member node address")
        let priority = try WireRead.u64(frame, &o, "the member priority")
        try WireRead.end(frame, o, .member)
        return MemberMessage(nodeID: id, nodeAddr: addr, priority: Int(truncatingIfNeeded: Int64(bitPattern: priority)))
    }

    static func decodeLeave(_ frame: RawSpan) throws(WireError) -> String {
        var o = 5
        let id = try WireRead.id(frame, &o, "the leave node id")
        try WireRead.end(frame, o, .leave)
        return id
    }

    static func decodeGoodbye(_ frame: RawSpan) throws(WireError) -> String {
        var o = 5
        let n = Int(try WireRead.u16(frame, &o, "the goodbye reason length"))
        let reason = try WireRead.string(frame, &o, n, "the goodbye reason")
        try WireRead.end(frame, o, .goodbye)
        return reason
    }
}

/// Big-endian reads from a span. The unchecked forms are for offsets already known to be in
/// bounds (the span's loads check them again and trap, never read out of bounds); the forms with
/// an offset to advance check first and throw `.truncated(field)`.
enum WireRead {
    static func u8(_ s: RawSpan, _ o: Int) -> UInt8 { s.unsafeLoad(fromByteOffset: o, as: UInt8.self) }

    static func u32(_ s: RawSpan, _ o: Int) -> UInt32 {
        UInt32(bigEndian: s.unsafeLoadUnaligned(fromByteOffset: o, as: UInt32.self))
    }

    static func u64(_ s: RawSpan, _ o: Int) -> UInt64 {
        UInt64(bigEndian: s.unsafeLoadUnaligned(fromByteOffset: o, as: UInt64.self))
    }

    static func need(_ s: RawSpan, _ o: Int, _ n: Int, _ field: String) throws(WireError) {
        guard n <= s.byteCount - o else { throw .truncated(field) }
    }

    static func u8(_ s: RawSpan, _ o: inout Int, _ field: String) throws(WireError) -> UInt8 {
        try need(s, o, 1, field)
        defer { o += 1 }
        return u8(s, o)
    }

    static func u16(_ s: RawSpan, _ o: inout Int, _ field: String) throws(WireError) -> UInt16 {
        try need(s, o, 2, field)
        defer { o += 2 }
        return UInt16(bigEndian: s.unsafeLoadUnaligned(fromByteOffset: o, as: UInt16.self))
    }

    static func u64(_ s: RawSpan, _ o: inout Int, _ field: String) throws(WireError) -> UInt64 {
        try need(s, o, 8, field)
        defer { o += 8 }
        return u64(s, o)
    }

    /// `n` bytes of valid UTF-8.
    static func string(_ s: RawSpan, _ o: inout Int, _ n: Int, _ field: String) throws(WireError) -> String {
        try need(s, o, n, field)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(n)
        for i in o..<(o + n) { bytes.append(u8(s, i)) }
        o += n
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .badUTF8(field) }
        return text
    }

    /// A node id: a u16 length of 1...255, then that many bytes of UTF-8.
    static func id(_ s: RawSpan, _ o: inout Int, _ field: String) throws(WireError) -> String {
        let n = Int(try u16(s, &o, field + " length"))
        guard n >= 1 else { throw .malformed("\(field) is empty") }
        guard n <= Wire.maxIDBytes else { throw .malformed("\(field) is \(n) bytes, more than \(Wire.maxIDBytes)") }
        return try string(s, &o, n, field)
    }

    /// Checks that the body ended exactly at `o`.
    static func end(_ s: RawSpan, _ o: Int, _ type: FrameType) throws(WireError) {
        guard o == s.byteCount else { throw .trailingBytes(type: type.rawValue, count: s.byteCount - o) }
    }
}

extension Array where Element == UInt8 {
    mutating func appendBE(_ v: UInt16) {
        append(UInt8(truncatingIfNeeded: v >> 8))
        append(UInt8(truncatingIfNeeded: v))
    }

    mutating func appendBE(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    mutating func appendBE(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    mutating func appendHeader(length: Int, type: FrameType) {
        appendBE(UInt32(length))
        append(type.rawValue)
    }
}

// MARK: - Voter configuration frames

extension Wire {
    /// The most voters a configuration (and a BOOTSTRAP frame) holds: a CONFIG frame of that many
    /// ids of the longest length fits in a frame.
    public static let maxVoters = VoterConfiguration.maxVoters

    /// Appends a list of ids: a u16 count, then each id as a u16 length and its bytes.
    static func appendIDs(_ ids: [String], _ field: String, into out: inout [UInt8]) throws(WireError) {
        for i in ids.indices.dropFirst() where !(ids[i - 1] < ids[i]) {
            throw .malformed("\(field) are not in ascending order without repeats")
        }
        guard ids.count <= maxVoters else { throw .malformed("\(field) has \(ids.count) ids, more than \(maxVoters)") }
        for id in ids { _ = try checkedID(id, field) }
        out.appendBE(UInt16(ids.count))
        for id in ids {
            out.appendBE(UInt16(id.utf8.count))
            out.append(contentsOf: id.utf8)
        }
    }

    static func idsLength(_ ids: [String]) -> Int { 2 + ids.reduce(0) { $0 + 2 + $1.utf8.count } }

    static func readIDs(_ frame: RawSpan, _ o: inout Int, _ field: String) throws(WireError) -> [String] {
        let count = Int(try WireRead.u16(frame, &o, field + " count"))
        guard count <= maxVoters else { throw .malformed("\(field) has \(count) ids, more than \(maxVoters)") }
        var ids: [String] = []
        ids.reserveCapacity(count)
        for _ in 0..<count { ids.append(try WireRead.id(frame, &o, field)) }
        // One canonical form: ascending, no repeats (a frame decodes to what encodes to it).
        for i in ids.indices.dropFirst() where !(ids[i - 1] < ids[i]) {
            throw .malformed("\(field) are not in ascending order without repeats")
        }
        return ids
    }

    /// Appends a CONFIGURATION frame (type 10): flags (bit 0: committed), the primary's term, the
    /// configuration's term and version, the primary's id, the voters.
    package static func encodeConfiguration(_ c: ConfigurationMessage, into out: inout [UInt8]) throws(WireError) {
        let from = try checkedID(c.from, "configuration sender id")
        var body: [UInt8] = []
        try appendIDs(c.configuration.voters, "configuration voters", into: &body)
        out.appendHeader(length: 1 + 1 + 8 * 3 + 2 + from + body.count, type: .configuration)
        out.append(c.committed ? 1 : 0)
        out.appendBE(c.term)
        out.appendBE(c.configuration.term)
        out.appendBE(c.configuration.version)
        out.appendBE(UInt16(from))
        out.append(contentsOf: c.from.utf8)
        out.append(contentsOf: body)
    }

    static func decodeConfiguration(_ frame: RawSpan) throws(WireError) -> ConfigurationMessage {
        var o = 5
        let flags = try WireRead.u8(frame, &o, "the configuration flags")
        guard flags & ~1 == 0 else { throw .malformed("configuration flags \(flags) set reserved bits") }
        let term = try WireRead.u64(frame, &o, "the configuration primary term")
        let configTerm = try WireRead.u64(frame, &o, "the configuration term")
        let version = try WireRead.u64(frame, &o, "the configuration version")
        let from = try WireRead.id(frame, &o, "the configuration sender id")
        let voters = try readIDs(frame, &o, "the configuration voters")
        try WireRead.end(frame, o, .configuration)
        guard version > 0, !voters.isEmpty else { throw .malformed("configuration with no voters or version 0") }
        return ConfigurationMessage(
            from: from, term: term, configuration: VoterConfiguration(voters: voters, version: version, term: configTerm),
            committed: flags & 1 != 0)
    }

    /// Appends a CONFIGURATION_ACK frame (type 11): flags 0, the sender's term, the stored
    /// configuration's term and version, the sender's id.
    package static func encodeConfigurationAck(_ a: ConfigurationAck, into out: inout [UInt8]) throws(WireError) {
        let from = try checkedID(a.from, "configuration ack sender id")
        out.appendHeader(length: 1 + 1 + 8 * 3 + 2 + from, type: .configurationAck)
        out.append(0)
        out.appendBE(a.term)
        out.appendBE(a.configuration.term)
        out.appendBE(a.configuration.version)
        out.appendBE(UInt16(from))
        out.append(contentsOf: a.from.utf8)
    }

    static func decodeConfigurationAck(_ frame: RawSpan) throws(WireError) -> ConfigurationAck {
        var o = 5
        let flags = try WireRead.u8(frame, &o, "the configuration ack flags")
        guard flags == 0 else { throw .malformed("configuration ack flags \(flags) set reserved bits") }
        let term = try WireRead.u64(frame, &o, "the configuration ack term")
        let configTerm = try WireRead.u64(frame, &o, "the configuration ack configuration term")
        let version = try WireRead.u64(frame, &o, "the configuration ack configuration version")
        let from = try WireRead.id(frame, &o, "the configuration ack sender id")
        try WireRead.end(frame, o, .configurationAck)
        return ConfigurationAck(from: from, term: term, configuration: ConfigurationID(term: configTerm, version: version))
    }

    /// Appends a BOOTSTRAP frame (type 12): the expected voter count (u16), flags (bit 0: holds a
    /// configuration, bit 1: `nodes` is locked), the node ids.
    package static func encodeBootstrap(_ b: BootstrapMessage, into out: inout [UInt8]) throws(WireError) {
        guard (0...maxVoters).contains(b.expect) else { throw .malformed("bootstrap expects \(b.expect) voters, not 0...\(maxVoters)") }
        var body: [UInt8] = []
        try appendIDs(b.nodes, "bootstrap nodes", into: &body)
        out.appendHeader(length: 1 + 2 + 1 + body.count, type: .bootstrap)
        out.appendBE(UInt16(b.expect))
        out.append((b.configured ? 1 : 0) | (b.locked ? 2 : 0))
        out.append(contentsOf: body)
    }

    static func decodeBootstrap(_ frame: RawSpan) throws(WireError) -> BootstrapMessage {
        var o = 5
        let expect = Int(try WireRead.u16(frame, &o, "the bootstrap expected count"))
        guard expect <= maxVoters else { throw .malformed("bootstrap expects \(expect) voters, more than \(maxVoters)") }
        let flags = try WireRead.u8(frame, &o, "the bootstrap flags")
        guard flags & ~3 == 0 else { throw .malformed("bootstrap flags \(flags) set reserved bits") }
        let nodes = try readIDs(frame, &o, "the bootstrap nodes")
        try WireRead.end(frame, o, .bootstrap)
        return BootstrapMessage(expect: expect, configured: flags & 1 != 0, locked: flags & 2 != 0, nodes: nodes)
    }
}
