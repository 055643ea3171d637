// The binary codec of the gossip membership layer: its datagrams (ping, ack, ping-req, nack,
// gossip, each with piggybacked updates) and its full-state frame (type 13, over TCP). Layouts
// in PROTOCOL.md, "Gossip membership". Pure: no I/O. Decoding checks every bound and throws a
// `WireError` naming what is wrong; it never traps on any input.

/// The gossip codec.
///
/// Datagram, big-endian (the first byte 0xD2, so that it is never taken for a heartbeat
/// datagram, whose first byte is 0xD1):
///
/// ```
/// 0   u8   0xD2: a gossip datagram, this version
/// 1   u8   flags: bit 0 keyed (a `GossipSeal` trailer follows the last update); bits 1-7 are 0
/// 2   u8   kind: 1 ping, 2 ack, 3 ping-req, 4 nack, 5 gossip
/// 3   str  sender id (u8 length 1...255, UTF-8)
///     u32  seq (not for gossip)
///     str  ping: target id; ping-req: target id (1...255), then target address (0...255)
///     u8   update count, then the updates
/// ```
///
/// An update: u8 kind (1 alive, 2 suspect, 3 failed, 4 left, 5 primary), then
/// alive: u64 incarnation, u8 flags (bit 0 voter), id, address; suspect and failed: u64
/// incarnation, id, from id; left: u64 incarnation, id; primary: u64 term, u64 epoch, leader id.
package enum GossipWire {
    /// The first byte of a gossip datagram.
    package static let datagramKind: UInt8 = 0xD2
    /// The TCP frame type of a full state.
    package static let fullStateFrameType: UInt8 = 13
    /// The most updates one datagram carries.
    package static let maxUpdates = 255
    /// The largest full-state frame's `len` (as every binary frame: `Wire.maxFrameBytes`).
    package static let maxFullStateBytes = 65_536

    enum Kinds {
        static let ping: UInt8 = 1, ack: UInt8 = 2, pingReq: UInt8 = 3, nack: UInt8 = 4, gossip: UInt8 = 5
    }

    enum UpdateKinds {
        static let alive: UInt8 = 1, suspect: UInt8 = 2, failed: UInt8 = 3, left: UInt8 = 4, primary: UInt8 = 5
    }

    // MARK: Sizes

    static func stringSize(_ s: String) -> Int { 1 + s.utf8.count }

    /// The encoded size of one update.
    package static func size(of update: GossipUpdate) -> Int {
        switch update {
        case .alive(let id, _, let address, _): 1 + 8 + 1 + stringSize(id) + stringSize(address)
        case .suspect(let id, _, let from), .failed(let id, _, let from): 1 + 8 + stringSize(id) + stringSize(from)
        case .left(let id, _): 1 + 8 + stringSize(id)
        case .primary(let p): 1 + 16 + stringSize(p.leaderID)
        }
    }

    /// The encoded size of a datagram without its updates (the count byte included).
    package static func headerSize(sender: String, kind: GossipMessage.Kind) -> Int {
        var size = 3 + stringSize(sender) + 1
        switch kind {
        case .ping(_, let target): size += 4 + stringSize(target)
        case .ack, .nack: size += 4
        case .pingReq(_, let target, let address): size += 4 + stringSize(target) + stringSize(address)
        case .gossip: break
        }
        return size
    }

    /// The encoded size of a datagram.
    package static func size(of message: GossipMessage) -> Int {
        message.updates.reduce(headerSize(sender: message.sender, kind: message.kind)) { $0 + size(of: $1) }
    }

    // MARK: Encoding

    /// Appends the datagram of `message`. Strings longer than 255 bytes and more than 255 updates
    /// are the caller's error (the core never makes them: ids and addresses are checked where
    /// they enter, and a datagram's updates are bounded by its byte budget). `keyed`: the flag
    /// says a seal follows, which the caller appends (`GossipSeal.seal`).
    package static func encode(_ message: GossipMessage, keyed: Bool = false, into out: inout [UInt8]) {
        precondition(message.updates.count <= maxUpdates, "GossipWire: more than 255 updates in a datagram")
        out.append(datagramKind)
        out.append(keyed ? 1 : 0)
        switch message.kind {
        case .ping(let seq, let target):
            out.append(Kinds.ping)
            putString(message.sender, &out)
            putU32(seq, &out)
            putString(target, &out)
        case .ack(let seq):
            out.append(Kinds.ack)
            putString(message.sender, &out)
            putU32(seq, &out)
        case .pingReq(let seq, let target, let address):
            out.append(Kinds.pingReq)
            putString(message.sender, &out)
            putU32(seq, &out)
            putString(target, &out)
            putString(address, &out)
        case .nack(let seq):
            out.append(Kinds.nack)
            putString(message.sender, &out)
            putU32(seq, &out)
        case .gossip:
            out.append(Kinds.gossip)
            putString(message.sender, &out)
        }
        out.append(UInt8(message.updates.count))
        for update in message.updates { encode(update, into: &out) }
    }

    package static func encode(_ message: GossipMessage) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(size(of: message))
        encode(message, into: &out)
        return out
    }

    static func encode(_ update: GossipUpdate, into out: inout [UInt8]) {
        switch update {
        case .alive(let id, let incarnation, let address, let voter):
            out.append(UpdateKinds.alive)
            putU64(incarnation, &out)
            out.append(voter ? 1 : 0)
            putString(id, &out)
            putString(address, &out)
        case .suspect(let id, let incarnation, let from):
            out.append(UpdateKinds.suspect)
            putU64(incarnation, &out)
            putString(id, &out)
            putString(from, &out)
        case .failed(let id, let incarnation, let from):
            out.append(UpdateKinds.failed)
            putU64(incarnation, &out)
            putString(id, &out)
            putString(from, &out)
        case .left(let id, let incarnation):
            out.append(UpdateKinds.left)
            putU64(incarnation, &out)
            putString(id, &out)
        case .primary(let p):
            out.append(UpdateKinds.primary)
            putU64(p.term, &out)
            putU64(p.epoch, &out)
            putString(p.leaderID, &out)
        }
    }

    /// The encoded size of one member record of a full state.
    package static func fullStateSize(of member: GossipMember) -> Int {
        2 + 8 + stringSize(member.id) + stringSize(member.address)
    }

    /// A full-state frame: `len`, type 13, its body. Members are taken in order while the frame
    /// stays within `maxFullStateBytes` (a view too large for one frame is sent in part: the
    /// exchange is anti-entropy, and the next one covers other members when the sender puts
    /// them first).
    ///
    /// ```
    /// 0   u32  len
    /// 4   u8   13
    /// 5   u8   flags: bit 0 reply, bit 1 a primary follows the members, bit 2 keyed; bits 3-7 are 0
    /// 6   str  sender id (u8 length 1...255)
    ///     u16  member count, then each: u8 state (0 alive, 1 suspect, 2 failed, 3 left),
    ///          u8 flags (bit 0 voter), u64 incarnation, id (1...255), address (0...255)
    ///     primary (bit 1): u64 term, u64 epoch, leader id (1...255)
    /// ```
    ///
    /// `keyed` (flags bit 2): `len` counts a `GossipSeal` trailer after the last byte, which the
    /// caller appends (`GossipSeal.seal`), and the members leave it room.
    package static func encodeFullState(_ state: GossipFullState, keyed: Bool = false) -> [UInt8] {
        var out: [UInt8] = [0, 0, 0, 0, fullStateFrameType]
        out.append((state.isReply ? 1 : 0) | (state.primary != nil ? 2 : 0) | (keyed ? 4 : 0))
        putString(state.sender, &out)
        let primaryBytes = state.primary.map { 16 + stringSize($0.leaderID) } ?? 0
        let trailer = keyed ? GossipSeal.trailerBytes : 0
        var budget = maxFullStateBytes - (out.count - 4) - 2 - primaryBytes - trailer
        var members: [GossipMember] = []
        for member in state.members {
            let size = fullStateSize(of: member)
            guard size <= budget, members.count < Int(UInt16.max) else { break }
            budget -= size
            members.append(member)
        }
        putU16(UInt16(members.count), &out)
        for member in members {
            out.append(member.state.rawValue)
            out.append(member.voter ? 1 : 0)
            putU64(member.incarnation, &out)
            putString(member.id, &out)
            putString(member.address, &out)
        }
        if let p = state.primary {
            putU64(p.term, &out)
            putU64(p.epoch, &out)
            putString(p.leaderID, &out)
        }
        let len = UInt32(out.count - 4 + trailer)
        out[0] = UInt8(truncatingIfNeeded: len >> 24)
        out[1] = UInt8(truncatingIfNeeded: len >> 16)
        out[2] = UInt8(truncatingIfNeeded: len >> 8)
        out[3] = UInt8(truncatingIfNeeded: len)
        return out
    }

    static func putU16(_ v: UInt16, _ out: inout [UInt8]) {
        out.append(UInt8(truncatingIfNeeded: v >> 8))
        out.append(UInt8(truncatingIfNeeded: v))
    }

    static func putU32(_ v: UInt32, _ out: inout [UInt8]) {
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    static func putU64(_ v: UInt64, _ out: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    static func putString(_ s: String, _ out: inout [UInt8]) {
        let bytes = Array(s.utf8)
        precondition(bytes.count <= 255, "GossipWire: a string of more than 255 bytes")
        out.append(UInt8(bytes.count))
        out.append(contentsOf: bytes)
    }

    // MARK: Decoding

    /// A bounds-checked reader over bytes.
    struct Reader {
        let bytes: [UInt8]
        var offset: Int
        let end: Int

        init(_ bytes: [UInt8], from offset: Int = 0, trailer: Int = 0) {
            self.bytes = bytes
            self.offset = offset
            self.end = max(offset, bytes.count - trailer)
        }

        var remaining: Int { end - offset }

        mutating func u8(_ field: String) throws(WireError) -> UInt8 {
            guard remaining >= 1 else { throw .truncated(field) }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func u16(_ field: String) throws(WireError) -> UInt16 {
            guard remaining >= 2 else { throw .truncated(field) }
            defer { offset += 2 }
            return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        }

        mutating func u32(_ field: String) throws(WireError) -> UInt32 {
            guard remaining >= 4 else { throw .truncated(field) }
            var v: UInt32 = 0
            for i in 0..<4 { v = v << 8 | UInt32(bytes[offset + i]) }
            offset += 4
            return v
        }

        mutating func u64(_ field: String) throws(WireError) -> UInt64 {
            guard remaining >= 8 else { throw .truncated(field) }
            var v: UInt64 = 0
            for i in 0..<8 { v = v << 8 | UInt64(bytes[offset + i]) }
            offset += 8
            return v
        }

        /// A u8-length string; `allowEmpty` false for ids.
        mutating func string(_ field: String, allowEmpty: Bool) throws(WireError) -> String {
            let count = Int(try u8("the length of \(field)"))
            guard allowEmpty || count > 0 else { throw .malformed("an empty \(field)") }
            guard remaining >= count else { throw .truncated(field) }
            let start = offset
            offset += count
            return try bytes.withUnsafeBufferPointer { (buffer) throws(WireError) -> String in
                let slice = UnsafeBufferPointer(rebasing: buffer[start..<(start + count)])
                // Ids and addresses are nearly always ASCII, which is valid UTF-8 as it stands.
                var ascii = true
                for byte in slice where byte >= 0x80 {
                    ascii = false
                    break
                }
                if ascii { return String(decoding: slice, as: UTF8.self) }
                guard let text = String(validating: slice, as: UTF8.self) else { throw .badUTF8(field) }
                return text
            }
        }
    }

    /// Decodes a whole datagram. `keyed`: the cluster has a key, so the datagram must say it is
    /// sealed, and its last `GossipSeal.trailerBytes` are the seal (checked by the caller, not
    /// read here).
    package static func decode(_ bytes: [UInt8], keyed: Bool = false) throws(WireError) -> GossipMessage {
        guard !keyed || bytes.count >= 2 + GossipSeal.trailerBytes else { throw .truncated("a keyed gossip datagram's seal") }
        var r = Reader(bytes, trailer: keyed ? GossipSeal.trailerBytes : 0)
        let first = try r.u8("a gossip datagram's kind")
        guard first == datagramKind else { throw .malformed("not a gossip datagram (first byte \(first))") }
        let flags = try r.u8("a gossip datagram's flags")
        guard flags & 1 == (keyed ? 1 : 0) else {
            throw .malformed(keyed ? "an unkeyed gossip datagram, and this cluster has a key" : "a keyed gossip datagram, and this cluster has no key")
        }
        guard flags & ~1 == 0 else { throw .malformed("gossip datagram flags \(flags) set reserved bits") }
        let kindByte = try r.u8("a gossip datagram's message kind")
        let sender = try r.string("the sender id", allowEmpty: false)
        let kind: GossipMessage.Kind
        switch kindByte {
        case Kinds.ping:
            let seq = try r.u32("a ping's seq")
            kind = .ping(seq: seq, target: try r.string("a ping's target id", allowEmpty: false))
        case Kinds.ack:
            kind = .ack(seq: try r.u32("an ack's seq"))
        case Kinds.pingReq:
            let seq = try r.u32("a ping-req's seq")
            let target = try r.string("a ping-req's target id", allowEmpty: false)
            kind = .pingReq(seq: seq, target: target, targetAddress: try r.string("a ping-req's target address", allowEmpty: true))
        case Kinds.nack:
            kind = .nack(seq: try r.u32("a nack's seq"))
        case Kinds.gossip:
            kind = .gossip
        default:
            throw .malformed("gossip message kind \(kindByte)")
        }
        let count = Int(try r.u8("the update count"))
        var updates: [GossipUpdate] = []
        updates.reserveCapacity(count)
        for _ in 0..<count { updates.append(try decodeUpdate(&r)) }
        guard r.remaining == 0 else { throw .trailingBytes(type: datagramKind, count: r.remaining) }
        return GossipMessage(sender: sender, kind: kind, updates: updates)
    }

    static func decodeUpdate(_ r: inout Reader) throws(WireError) -> GossipUpdate {
        let kind = try r.u8("an update's kind")
        switch kind {
        case UpdateKinds.alive:
            let incarnation = try r.u64("an alive update's incarnation")
            let flags = try r.u8("an alive update's flags")
            guard flags & ~1 == 0 else { throw .malformed("alive update flags \(flags) set reserved bits") }
            let id = try r.string("an alive update's id", allowEmpty: false)
            let address = try r.string("an alive update's address", allowEmpty: true)
            return .alive(id: id, incarnation: incarnation, address: address, voter: flags & 1 != 0)
        case UpdateKinds.suspect, UpdateKinds.failed:
            let incarnation = try r.u64("an update's incarnation")
            let id = try r.string("an update's id", allowEmpty: false)
            let from = try r.string("an update's from id", allowEmpty: false)
            return kind == UpdateKinds.suspect
                ? .suspect(id: id, incarnation: incarnation, from: from) : .failed(id: id, incarnation: incarnation, from: from)
        case UpdateKinds.left:
            let incarnation = try r.u64("a left update's incarnation")
            return .left(id: try r.string("a left update's id", allowEmpty: false), incarnation: incarnation)
        case UpdateKinds.primary:
            let term = try r.u64("a primary update's term")
            let epoch = try r.u64("a primary update's epoch")
            let leader = try r.string("a primary update's leader id", allowEmpty: false)
            return .primary(GossipPrimary(term: term, epoch: epoch, leaderID: leader))
        default:
            throw .malformed("gossip update kind \(kind)")
        }
    }

    /// Decodes a whole full-state frame (its `len` and type included). `keyed`: as for `decode`.
    package static func decodeFullState(_ bytes: [UInt8], keyed: Bool = false) throws(WireError) -> GossipFullState {
        var r = Reader(bytes)
        let len = try r.u32("a full state's length")
        guard len >= 1 else { throw .frameTooShort }
        guard len <= UInt32(maxFullStateBytes) else { throw .frameTooLarge(len) }
        guard Int(len) <= r.remaining else { throw .truncated("a full state of \(len) bytes") }
        guard Int(len) == r.remaining else { throw .trailingBytes(type: fullStateFrameType, count: r.remaining - Int(len)) }
        let type = try r.u8("a full state's type")
        guard type == fullStateFrameType else { throw .unknownType(type) }
        let flags = try r.u8("a full state's flags")
        guard flags & ~7 == 0 else { throw .malformed("full state flags \(flags) set reserved bits") }
        guard (flags & 4 != 0) == keyed else {
            throw .malformed(keyed ? "an unkeyed full state, and this cluster has a key" : "a keyed full state, and this cluster has no key")
        }
        if keyed {
            guard r.remaining >= GossipSeal.trailerBytes else { throw .truncated("a keyed full state's seal") }
            r = Reader(bytes, from: r.offset, trailer: GossipSeal.trailerBytes)
        }
        let sender = try r.string("the sender id", allowEmpty: false)
        let count = Int(try r.u16("the member count"))
        var members: [GossipMember] = []
        members.reserveCapacity(min(count, r.remaining / 12))
        for _ in 0..<count {
            let stateByte = try r.u8("a member's state")
            guard let state = GossipMemberState(rawValue: stateByte) else { throw .malformed("member state \(stateByte)") }
            let memberFlags = try r.u8("a member's flags")
            guard memberFlags & ~1 == 0 else { throw .malformed("member flags \(memberFlags) set reserved bits") }
            let incarnation = try r.u64("a member's incarnation")
            let id = try r.string("a member's id", allowEmpty: false)
            let address = try r.string("a member's address", allowEmpty: true)
            members.append(GossipMember(id: id, address: address, state: state, incarnation: incarnation, voter: memberFlags & 1 != 0))
        }
        var primary: GossipPrimary?
        if flags & 2 != 0 {
            let term = try r.u64("the primary's term")
            let epoch = try r.u64("the primary's epoch")
            primary = GossipPrimary(term: term, epoch: epoch, leaderID: try r.string("the primary's leader id", allowEmpty: false))
        }
        guard r.remaining == 0 else { throw .trailingBytes(type: fullStateFrameType, count: r.remaining) }
        return GossipFullState(sender: sender, isReply: flags & 1 != 0, members: members, primary: primary)
    }
}
