// Heartbeat datagrams: a HEARTBEAT frame sent over UDP beside a peer link (PROTOCOL.md,
// "Datagram heartbeats"). Pure: no I/O.

/// The layout of a heartbeat datagram:
///
/// ```
/// 0   u8   0xD1: a heartbeat datagram, this version
/// 1   u8   flags: bit 0 keyed (the tag follows; generation and counter count)
/// 2   u16  reserved, 0
/// 4   u32  key generation of the sending direction (keyed; 0 otherwise)
/// 8   u64  token: the receiver's, from its hello on the link
/// 16  u64  counter: the sending direction's datagram count (keyed; 0 otherwise)
/// 24  56   the HEARTBEAT frame, exactly as on a link
/// 80  16   tag (keyed): HMAC-SHA256 of the counter and bytes 0..<80 under the direction's
///          datagram key, cut to 16 bytes
/// ```
public enum HeartbeatDatagram {
    public static let kind: UInt8 = 0xD1
    public static let headerBytes = 24
    /// The size of an unkeyed datagram, and of a keyed one (with its tag).
    public static let plainBytes = headerBytes + Wire.heartbeatFrameBytes
    public static let keyedBytes = plainBytes + LinkAuth.tagBytes

    /// What the fixed header says.
    public struct Header: Sendable, Equatable {
        public var keyed: Bool
        public var generation: UInt32
        public var token: UInt64
        public var counter: UInt64

        public init(keyed: Bool, generation: UInt32, token: UInt64, counter: UInt64) {
            self.keyed = keyed
            self.generation = generation
            self.token = token
            self.counter = counter
        }
    }

    /// Appends an unkeyed datagram of `frame` for the receiver's `token`.
    public static func encode(_ frame: HeartbeatFrame, token: UInt64, into out: inout [UInt8]) {
        out.append(kind)
        out.append(0)
        out.appendBE(UInt16(0))
        out.appendBE(UInt32(0))
        out.appendBE(token)
        out.appendBE(UInt64(0))
        Wire.encodeHeartbeat(frame, into: &out)
    }

    /// Appends a keyed datagram of `frame` for `token`, sealed by `sealer` (its next counter).
    public static func encode(
        _ frame: HeartbeatFrame, token: UInt64, sealer: inout DatagramSealer, into out: inout [UInt8]
    ) {
        let start = out.count
        encode(frame, token: token, into: &out)
        sealer.seal(&out, from: start)
    }

    /// Checks the size and the fixed fields: an error names what is wrong. Does not check the tag.
    public static func header(_ datagram: RawSpan) throws(WireError) -> Header {
        let count = datagram.byteCount
        guard count >= plainBytes else { throw .truncated("a heartbeat datagram (\(count) bytes, \(plainBytes) needed)") }
        guard WireRead.u8(datagram, 0) == kind else {
            throw .malformed("not a heartbeat datagram (first byte \(WireRead.u8(datagram, 0)))")
        }
        let flags = WireRead.u8(datagram, 1)
        guard flags & ~1 == 0, WireRead.u8(datagram, 2) == 0, WireRead.u8(datagram, 3) == 0 else {
            throw .malformed("heartbeat datagram flags \(flags) set reserved bits")
        }
        let keyed = flags & 1 != 0
        let size = keyed ? keyedBytes : plainBytes
        guard count == size else { throw .trailingBytes(type: kind, count: count - size) }
        return Header(
            keyed: keyed, generation: WireRead.u32(datagram, 4), token: WireRead.u64(datagram, 8),
            counter: WireRead.u64(datagram, 16))
    }

    /// The heartbeat a datagram carries (its header checked by `header(_:)`).
    public static func frame(_ datagram: RawSpan) throws(WireError) -> HeartbeatFrame {
        let frame = datagram.extracting(headerBytes..<plainBytes)
        guard WireRead.u32(frame, 0) == UInt32(Wire.heartbeatFrameBytes - 4), WireRead.u8(frame, 4) == FrameType.heartbeat.rawValue else {
            throw .malformed("a heartbeat datagram that holds no HEARTBEAT frame")
        }
        return try Wire.decodeHeartbeat(frame)
    }
}

/// The sending half of a keyed link's datagrams: each gets the direction's next counter and a
/// tag under its datagram key (a key of its own, so that a datagram can never pass for a frame
/// of the link's stream, nor one direction's for the other's).
public struct DatagramSealer {
    private var direction: FrameDirection
    /// The datagrams sealed so far: the counter of the next one. It never restarts, not even
    /// after a key switch.
    public private(set) var counter: UInt64 = 0
    public var generation: UInt32 { direction.generation }

    public init(key: ClusterKey, transcriptHash: [UInt8], dialer: Bool) {
        direction = FrameDirection(key: key, transcriptHash: transcriptHash, fromDialer: dialer, datagrams: true)
    }

    /// Seals the unkeyed datagram that starts at `start` in `out` and runs to its end: marks it
    /// keyed, writes the generation and counter, appends the tag.
    public mutating func seal(_ out: inout [UInt8], from start: Int) {
        out[start + 1] = 1
        let generation = direction.generation, counter = self.counter
        for i in 0..<4 { out[start + 4 + i] = UInt8(truncatingIfNeeded: generation >> (24 - 8 * UInt32(i))) }
        for i in 0..<8 { out[start + 16 + i] = UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64(i))) }
        var tag: (UInt64, UInt64) = (0, 0)
        let mac = direction.mac
        withUnsafeMutableBytes(of: &tag) { tagBytes in
            out.withUnsafeBytes { raw in
                mac.tag(counter: counter, UnsafeRawBufferPointer(rebasing: raw[start...]), into: tagBytes)
            }
        }
        withUnsafeBytes(of: &tag) { out.append(contentsOf: $0) }
        self.counter &+= 1
    }

    /// Switches to `key`, one generation on (with the link's REKEY).
    public mutating func switchKey(to key: ClusterKey) {
        direction.switchKey(to: key)
    }
}

/// The receiving half of a keyed link's datagrams. A datagram is taken when its generation is
/// the direction's, its counter is above every counter taken before (a replayed, duplicated or
/// late datagram is not), and its tag checks. A datagram that fails is dropped, not fatal: the
/// network may duplicate or reorder datagrams, and anyone may send one.
public struct DatagramOpener {
    private var direction: FrameDirection
    /// The lowest counter the next datagram may carry.
    public private(set) var nextCounter: UInt64 = 0
    public var generation: UInt32 { direction.generation }

    public init(key: ClusterKey, transcriptHash: [UInt8], peerIsDialer: Bool) {
        direction = FrameDirection(key: key, transcriptHash: transcriptHash, fromDialer: peerIsDialer, datagrams: true)
    }

    /// Why a datagram was not taken.
    public enum Refusal: Error, Sendable, Equatable {
        case notKeyed, otherGeneration, replayed, badTag
    }

    /// Checks a whole datagram whose header `header(_:)` returned.
    public mutating func open(_ datagram: RawSpan, header: HeartbeatDatagram.Header) throws(Refusal) {
        guard header.keyed, datagram.byteCount == HeartbeatDatagram.keyedBytes else { throw .notKeyed }
        guard header.generation == direction.generation else { throw .otherGeneration }
        guard header.counter >= nextCounter, header.counter != .max else { throw .replayed }
        let mac = direction.mac
        let end = HeartbeatDatagram.plainBytes
        let valid = datagram.withUnsafeBytes { raw in
            mac.verify(
                counter: header.counter, UnsafeRawBufferPointer(rebasing: raw[..<end]),
                tag: UnsafeRawBufferPointer(rebasing: raw[end...]))
        }
        guard valid else { throw .badTag }
        nextCounter = header.counter + 1
    }

    /// Switches to `key`, one generation on (the peer's REKEY arrived on the link).
    public mutating func switchKey(to key: ClusterKey) {
        direction.switchKey(to: key)
    }
}
