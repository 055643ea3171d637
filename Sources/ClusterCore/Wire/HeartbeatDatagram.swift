import CFrameMAC
import Crypto

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
/// 80  16   tag (keyed): AES-256-GCM's tag of bytes 0..<80 (the additional data; no plaintext)
///          under the direction's datagram key, the nonce the generation and the counter
/// ```
package enum HeartbeatDatagram {
    package static let kind: UInt8 = 0xD1
    package static let headerBytes = 24
    /// The size of an unkeyed datagram, and of a keyed one (with its tag).
    package static let plainBytes = headerBytes + Wire.heartbeatFrameBytes
    package static let keyedBytes = plainBytes + LinkAuth.tagBytes

    /// What the fixed header says.
    package struct Header: Sendable, Equatable {
        package var keyed: Bool
        package var generation: UInt32
        package var token: UInt64
        package var counter: UInt64

        package init(keyed: Bool, generation: UInt32, token: UInt64, counter: UInt64) {
            self.keyed = keyed
            self.generation = generation
            self.token = token
            self.counter = counter
        }
    }

    /// Appends an unkeyed datagram of `frame` for the receiver's `token`. Does not allocate
    /// when `out` has the capacity.
    package static func encode(_ frame: HeartbeatFrame, token: UInt64, into out: inout [UInt8]) {
        let base = out.count
        out.append(addingCapacity: headerBytes) { (span: inout OutputSpan<UInt8>) in
            for _ in 0..<headerBytes { span.append(0) }
        }
        var span = out.mutableSpan
        var raw = span.mutableBytes
        raw.storeBytes(of: kind, toByteOffset: base, as: UInt8.self)
        raw.storeBytes(of: token.bigEndian, toByteOffset: base + 8, as: UInt64.self)
        Wire.encodeHeartbeat(frame, into: &out)
    }

    /// Appends a keyed datagram of `frame` for `token`, sealed by `sealer` (its next counter).
    package static func encode(_ frame: HeartbeatFrame, token: UInt64, sealer: DatagramSealer, into out: inout [UInt8]) {
        let base = out.count
        encode(frame, token: token, into: &out)
        out.append(addingCapacity: LinkAuth.tagBytes) { (span: inout OutputSpan<UInt8>) in
            for _ in 0..<LinkAuth.tagBytes { span.append(0) }
        }
        sealer.seal(&out, at: base)
    }

    /// Checks the size and the fixed fields: an error names what is wrong. Does not check the tag.
    package static func header(_ datagram: RawSpan) throws(WireError) -> Header {
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
    package static func frame(_ datagram: RawSpan) throws(WireError) -> HeartbeatFrame {
        let frame = datagram.extracting(headerBytes..<plainBytes)
        guard WireRead.u32(frame, 0) == UInt32(Wire.heartbeatFrameBytes - 4), WireRead.u8(frame, 4) == FrameType.heartbeat.rawValue else {
            throw .malformed("a heartbeat datagram that holds no HEARTBEAT frame")
        }
        return try Wire.decodeHeartbeat(frame)
    }
}

/// AES-256-GCM under one datagram key (BoringSSL's AEAD, see `CFrameMAC`): the tag of a
/// datagram, made and checked in place.
///
/// Ownership: `ctx` comes from `cdatagrammac_new` in `init` and is freed, its key schedule
/// wiped, in `deinit`; nothing else holds it. Not thread-safe (a link's loop thread only).
final class DatagramMAC {
    let ctx: OpaquePointer

    init(key: SymmetricKey) {
        guard let ctx = key.withUnsafeBytes({ raw in
            raw.count == 32 ? cdatagrammac_new(raw.baseAddress!.assumingMemoryBound(to: UInt8.self)) : nil
        }) else {
            fatalError("DatagramMAC: BoringSSL could not make an AES-256-GCM context (out of memory)")
        }
        self.ctx = ctx
    }

    deinit { cdatagrammac_free(ctx) }
}

/// One direction's datagram keys: the key it is under and its generation (one more per REKEY
/// of the link). `ctx` is the key's context, held beside its owner so that every datagram reads
/// it without a hop through the owner.
struct DatagramDirection {
    private var mac: DatagramMAC {
        didSet { ctx = mac.ctx }
    }
    private(set) var ctx: OpaquePointer
    private(set) var generation: UInt32 = 0
    private let transcriptHash: [UInt8]
    private let fromDialer: Bool

    init(key: ClusterKey, transcriptHash: [UInt8], fromDialer: Bool) {
        self.transcriptHash = transcriptHash
        self.fromDialer = fromDialer
        mac = DatagramMAC(key: LinkAuth.frameKey(
            key: key, transcriptHash: transcriptHash, fromDialer: fromDialer, generation: 0, datagrams: true))
        ctx = mac.ctx
    }

    mutating func switchKey(to key: ClusterKey) {
        generation &+= 1
        mac = DatagramMAC(key: LinkAuth.frameKey(
            key: key, transcriptHash: transcriptHash, fromDialer: fromDialer, generation: generation, datagrams: true))
    }
}

/// The sending half of a keyed link's datagrams: each gets the direction's next counter and a
/// tag under its datagram key (a key of its own, so that a datagram can never pass for a frame
/// of the link's stream, nor one direction's for the other's). A class: the link's security
/// state holds it, and a datagram seals through it without copying it out and back.
package final class DatagramSealer {
    private var direction: DatagramDirection
    /// The datagrams sealed so far: the counter of the next one. It never restarts, not even
    /// after a key switch.
    package private(set) var counter: UInt64 = 0
    package var generation: UInt32 { direction.generation }

    package init(key: ClusterKey, transcriptHash: [UInt8], dialer: Bool) {
        direction = DatagramDirection(key: key, transcriptHash: transcriptHash, fromDialer: dialer)
    }

    /// Seals the keyed datagram (its tag's bytes already appended) that starts at `base` in `out`.
    @inline(__always)
    func seal(_ out: inout [UInt8], at base: Int) {
        let ctx = direction.ctx, generation = direction.generation, counter = self.counter
        let ok = out.withUnsafeMutableBufferPointer { buffer in
            cdatagrammac_seal(ctx, buffer.baseAddress! + base, generation, counter)
        }
        precondition(ok == 1, "DatagramSealer: BoringSSL's AES-GCM failed")
        self.counter &+= 1
    }

    /// Switches to `key`, one generation on (with the link's REKEY).
    package func switchKey(to key: ClusterKey) {
        direction.switchKey(to: key)
    }
}

/// The receiving half of a keyed link's datagrams. A datagram is taken when its generation is
/// the direction's, its counter is above every counter taken before (a replayed, duplicated or
/// late datagram is not), and its tag checks. A datagram that fails is dropped, not fatal: the
/// network may duplicate or reorder datagrams, and anyone may send one.
package final class DatagramOpener {
    private var direction: DatagramDirection
    /// The lowest counter the next datagram may carry.
    package private(set) var nextCounter: UInt64 = 0
    package var generation: UInt32 { direction.generation }

    package init(key: ClusterKey, transcriptHash: [UInt8], peerIsDialer: Bool) {
        direction = DatagramDirection(key: key, transcriptHash: transcriptHash, fromDialer: peerIsDialer)
    }

    /// Why a datagram was not taken.
    package enum Refusal: Error, Sendable, Equatable {
        case notKeyed, otherGeneration, replayed, badTag
    }

    /// Checks a whole datagram whose header `HeartbeatDatagram.header(_:)` returned.
    package func open(_ datagram: RawSpan, header: HeartbeatDatagram.Header) throws(Refusal) {
        guard header.keyed, datagram.byteCount == HeartbeatDatagram.keyedBytes else { throw .notKeyed }
        guard header.generation == direction.generation else { throw .otherGeneration }
        guard header.counter >= nextCounter, header.counter != .max else { throw .replayed }
        let ctx = direction.ctx
        let valid = datagram.withUnsafeBytes { raw in
            cdatagrammac_open(ctx, raw.baseAddress!.assumingMemoryBound(to: UInt8.self)) == 1
        }
        guard valid else { throw .badTag }
        nextCounter = header.counter + 1
    }

    /// Switches to `key`, one generation on (the peer's REKEY arrived on the link).
    package func switchKey(to key: ClusterKey) {
        direction.switchKey(to: key)
    }
}
