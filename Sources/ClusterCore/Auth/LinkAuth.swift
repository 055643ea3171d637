import CFrameMAC
import Crypto
import FoundationEssentials

/// The cluster key on the wire (PROTOCOL.md, "Keyed links"): the link handshake's proofs, the
/// per-direction frame keys, and the MACs of announcements. HMAC-SHA256 and HKDF-SHA256 from
/// swift-crypto; nothing here is cryptography of its own.
///
/// A keyed link: both hellos carry a key id and a fresh nonce. The transcript is the protocol
/// label and version, the cluster name, and the dialer's and the acceptor's hello frames byte
/// for byte (ids, addresses, key ids, nonces). Each end sends an AUTH frame: HMAC-SHA256 under
/// its primary key of its role and the transcript. Then each direction has its own frame key,
/// HKDF-SHA256 of the sender's key with the transcript's hash as salt and the direction and a
/// generation as info, and every frame carries a 16-byte tag: HMAC-SHA256 under that frame key
/// of an implicit per-direction counter and the frame's bytes. A replayed, reordered, reflected
/// or altered frame fails its tag.
package enum LinkAuth {
    /// The bytes of a hello's nonce.
    package static let nonceBytes = 32
    /// The bytes of an AUTH frame's proof.
    package static let proofBytes = 32
    /// The bytes of the tag at the end of every sealed frame.
    package static let tagBytes = 16
    /// Frame type of AUTH (the handshake proof), sent unsealed right after the hellos.
    package static let authType: UInt8 = 7
    /// Frame type of REKEY (the sender switches to another key of the keyring), sealed.
    package static let rekeyType: UInt8 = 8

    /// A fresh nonce for a hello.
    package static func nonce() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
    }

    /// The transcript a link's proofs and keys are bound to.
    package static func transcript(clusterName: String, dialerHello: [UInt8], acceptorHello: [UInt8]) -> [UInt8] {
        var t = Array("cluster-link-auth".utf8)
        t.append(Wire.version)
        t.appendBE(UInt16(clusterName.utf8.count))
        t.append(contentsOf: clusterName.utf8)
        t.appendBE(UInt32(dialerHello.count))
        t.append(contentsOf: dialerHello)
        t.appendBE(UInt32(acceptorHello.count))
        t.append(contentsOf: acceptorHello)
        return t
    }

    /// SHA-256 of a transcript: the salt of the frame keys.
    package static func transcriptHash(_ transcript: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: transcript))
    }

    /// The proof that the end in `role` (dialer or not) holds `key`, for this transcript.
    package static func proof(key: ClusterKey, transcript: [UInt8], dialer: Bool) -> [UInt8] {
        var mac = HMAC<SHA256>(key: key.symmetricKey)
        mac.update(data: Array((dialer ? "proof dialer" : "proof acceptor").utf8))
        mac.update(data: transcript)
        return Array(mac.finalize())
    }

    /// True when `proof` is the proof of `proof(key:transcript:dialer:)` (compared in constant time).
    package static func checkProof(_ proof: [UInt8], key: ClusterKey, transcript: [UInt8], dialer: Bool) -> Bool {
        var mac = HMAC<SHA256>(key: key.symmetricKey)
        mac.update(data: Array((dialer ? "proof dialer" : "proof acceptor").utf8))
        mac.update(data: transcript)
        return mac.finalize() == proof
    }

    /// The frame key of one direction (from the dialer, or to it), generation `generation`
    /// (0 at link start, one more per REKEY).
    /// Heartbeat datagrams (`datagrams`) have keys of their own, derived alike under their own label.
    static func frameKey(
        key: ClusterKey, transcriptHash: [UInt8], fromDialer: Bool, generation: UInt32, datagrams: Bool = false
    ) -> SymmetricKey {
        var info = Array(((datagrams ? "datagrams" : "frames") + (fromDialer ? " dialer to acceptor" : " acceptor to dialer")).utf8)
        info.appendBE(generation)
        return HKDF<SHA256>.deriveKey(
            inputKeyMaterial: key.symmetricKey, salt: transcriptHash, info: info, outputByteCount: 32)
    }

    // MARK: Control frames

    /// Appends an AUTH frame (unsealed) carrying `proof`.
    package static func encodeAuth(_ proof: [UInt8], into out: inout [UInt8]) {
        out.appendBE(UInt32(1 + proof.count))
        out.append(authType)
        out.append(contentsOf: proof)
    }

    /// The proof of an AUTH frame (`frame` whole, type 7).
    package static func decodeAuth(_ frame: RawSpan) throws(WireError) -> [UInt8] {
        guard frame.byteCount == 5 + proofBytes else {
            throw .malformed("auth frame of \(frame.byteCount) bytes, not \(5 + proofBytes)")
        }
        var proof: [UInt8] = []
        proof.reserveCapacity(proofBytes)
        for i in 5..<frame.byteCount { proof.append(WireRead.u8(frame, i)) }
        return proof
    }

    /// Appends a REKEY frame (to be sealed) naming the key the sender switches to.
    package static func encodeRekey(keyID: UInt64, into out: inout [UInt8]) {
        out.appendBE(UInt32(1 + 8))
        out.append(rekeyType)
        out.appendBE(keyID)
    }

    /// The type byte of a whole frame.
    package static func type(of frame: RawSpan) -> UInt8 { WireRead.u8(frame, 4) }

    // MARK: Announcements

    /// The MAC of a JSON announcement (hex), over its content and `nonce`.
    package static func announcementMAC(_ a: AnnouncementMessage, key: ClusterKey) -> String {
        var t = Array("cluster-announcement\n".utf8)
        for field in [a.cluster, a.nodeID, a.nodeAddr, "\(a.role.rawValue)", "\(a.epoch)", "\(a.term)", "\(a.priority)", a.nonce] {
            t.append(contentsOf: field.utf8)
            t.append(0x0A)
        }
        return hex(HMAC<SHA256>.authenticationCode(for: t, using: key.symmetricKey))
    }

    /// The MAC of a `node_list` (hex), over its content and the MAC of the announcement it
    /// answers (a node list answers exactly one announcement). `LastSeen` is not covered.
    package static func nodeListMAC(_ r: DiscoveryResponse, requestMAC: String, key: ClusterKey) -> String {
        var t = Array("cluster-node-list\n".utf8)
        var fields = [r.cluster, requestMAC, r.success ? "1" : "0", r.error]
        for n in r.nodes {
            fields += [n.id, n.addr, "\(n.role.rawValue)", "\(n.epoch)", "\(n.term)", "\(n.lastLSN)", "\(n.priority)", "\(n.lastHeartbeatSeq)"]
        }
        for field in fields {
            t.appendBE(UInt32(field.utf8.count))
            t.append(contentsOf: field.utf8)
        }
        return hex(HMAC<SHA256>.authenticationCode(for: t, using: key.symmetricKey))
    }

    /// Compares two MACs in hex in constant time (for equal lengths).
    package static func macsEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    static func hex<M: Sequence>(_ bytes: M) -> String where M.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hex(_ mac: HashedAuthenticationCode<SHA256>) -> String {
        hex(Array(mac))
    }
}

/// HMAC-SHA256 under one frame key, restarted in place for every frame: BoringSSL's HMAC
/// context (see `CFrameMAC`), so that a tag costs no allocation.
///
/// Ownership: `ctx` comes from `cframemac_new` in `init` and is freed, with its key material
/// wiped, in `deinit`; nothing else holds it. Not thread-safe (a link's loop thread only).
final class FrameMAC {
    private let ctx: OpaquePointer

    init(key: SymmetricKey) {
        guard let ctx = key.withUnsafeBytes({ cframemac_new($0.baseAddress, $0.count) }) else {
            fatalError("FrameMAC: BoringSSL could not allocate an HMAC context (out of memory)")
        }
        self.ctx = ctx
    }

    deinit { cframemac_free(ctx) }

    /// Writes the tag of `counter` and `data` (its first `tagBytes` bytes) to `tag`.
    func tag(counter: UInt64, _ data: UnsafeRawBufferPointer, into tag: UnsafeMutableRawBufferPointer) {
        let ok = cframemac_tag(ctx, counter, data.baseAddress, data.count, tag.baseAddress!.assumingMemoryBound(to: UInt8.self), tag.count)
        precondition(ok == 1, "FrameMAC: BoringSSL's HMAC failed")
    }

    /// True when `tag` is the tag of `counter` and `data` (compared in constant time).
    func verify(counter: UInt64, _ data: UnsafeRawBufferPointer, tag: UnsafeRawBufferPointer) -> Bool {
        cframemac_verify(ctx, counter, data.baseAddress, data.count, tag.baseAddress!.assumingMemoryBound(to: UInt8.self), tag.count) == 1
    }
}

/// One direction of a keyed link, its sealer's and its opener's alike: the key it is under, its
/// generation (one more per REKEY) and the frame MAC they make.
struct FrameDirection {
    private(set) var mac: FrameMAC
    private(set) var keyID: UInt64
    private(set) var generation: UInt32 = 0
    private let transcriptHash: [UInt8]
    private let fromDialer: Bool
    private let datagrams: Bool

    init(key: ClusterKey, transcriptHash: [UInt8], fromDialer: Bool, datagrams: Bool = false) {
        self.transcriptHash = transcriptHash
        self.fromDialer = fromDialer
        self.datagrams = datagrams
        keyID = key.id
        mac = FrameMAC(key: LinkAuth.frameKey(
            key: key, transcriptHash: transcriptHash, fromDialer: fromDialer, generation: 0, datagrams: datagrams))
    }

    /// The next generation, under `key`.
    mutating func switchKey(to key: ClusterKey) {
        generation &+= 1
        keyID = key.id
        mac = FrameMAC(key: LinkAuth.frameKey(
            key: key, transcriptHash: transcriptHash, fromDialer: fromDialer, generation: generation, datagrams: datagrams))
    }
}

/// The sending half of a keyed link: seals each frame with a tag under the direction's frame
/// key and the next counter value.
package struct FrameSealer {
    private var direction: FrameDirection
    private var mac: FrameMAC { direction.mac }
    /// The frames sealed so far: the counter of the next one.
    package private(set) var counter: UInt64 = 0
    /// The key this direction is under, and its generation.
    package var keyID: UInt64 { direction.keyID }
    package var generation: UInt32 { direction.generation }

    package init(key: ClusterKey, transcriptHash: [UInt8], dialer: Bool) {
        direction = FrameDirection(key: key, transcriptHash: transcriptHash, fromDialer: dialer)
    }

    /// Seals the frame that starts at `start` in `out` and runs to its end: adds the tag's
    /// bytes to its length field and appends the tag.
    package mutating func seal(_ out: inout [UInt8], from start: Int) {
        let length = out.count - start - 4 + LinkAuth.tagBytes
        out[start] = UInt8(truncatingIfNeeded: length >> 24)
        out[start + 1] = UInt8(truncatingIfNeeded: length >> 16)
        out[start + 2] = UInt8(truncatingIfNeeded: length >> 8)
        out[start + 3] = UInt8(truncatingIfNeeded: length)
        // The tag is made on the stack over the frame in place, then appended (one copy of 16
        // bytes; `out` has the capacity after the first frames).
        var tag: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &tag) { tagBytes in
            out.withUnsafeBytes { raw in
                mac.tag(counter: counter, UnsafeRawBufferPointer(rebasing: raw[start...]), into: tagBytes)
            }
        }
        withUnsafeBytes(of: &tag) { out.append(contentsOf: $0) }
        self.counter &+= 1
    }

    /// Appends a sealed REKEY frame, then switches to `key` (a new generation): the frames after
    /// it are under the new key.
    package mutating func rekey(to key: ClusterKey, into out: inout [UInt8]) {
        let start = out.count
        LinkAuth.encodeRekey(keyID: key.id, into: &out)
        seal(&out, from: start)
        direction.switchKey(to: key)
    }
}

/// The receiving half of a keyed link: checks each frame's tag against the next counter value,
/// then decodes it. A failed check is final (the link closes).
package struct FrameOpener {
    /// What a sealed frame carried.
    package enum Opened: Sendable, Equatable {
        case frame(WireFrame)
        /// The sender switched to the key with this id; call `rekey(to:)` with it.
        case rekey(UInt64)
    }

    private var direction: FrameDirection
    private var mac: FrameMAC { direction.mac }
    /// The frames opened so far: the counter the next one must carry.
    package private(set) var counter: UInt64 = 0
    package var keyID: UInt64 { direction.keyID }
    package var generation: UInt32 { direction.generation }

    /// The opener of frames from the dialer (`peerIsDialer`) or from the acceptor, under the key
    /// the peer's hello named.
    package init(key: ClusterKey, transcriptHash: [UInt8], peerIsDialer: Bool) {
        direction = FrameDirection(key: key, transcriptHash: transcriptHash, fromDialer: peerIsDialer)
    }

    /// Checks the tag of a whole sealed frame and decodes it.
    package mutating func open(_ frame: RawSpan) throws(WireError) -> Opened {
        let count = frame.byteCount
        guard count >= 5 + LinkAuth.tagBytes else {
            throw .unauthenticated("frame \(counter) of \(count) bytes is too short to carry a tag")
        }
        let end = count - LinkAuth.tagBytes
        let mac = self.mac, counter = self.counter
        let valid = frame.withUnsafeBytes { raw in
            mac.verify(counter: counter, UnsafeRawBufferPointer(rebasing: raw[..<end]), tag: UnsafeRawBufferPointer(rebasing: raw[end...]))
        }
        guard valid else {
            throw .unauthenticated("frame \(counter) on this link does not carry its tag (replayed, reordered, altered, or not sealed with the cluster key)")
        }
        self.counter &+= 1
        let body = frame.extracting(0..<end)
        if LinkAuth.type(of: body) == LinkAuth.rekeyType {
            guard body.byteCount == 13 else { throw .malformed("rekey frame of \(body.byteCount) bytes, not 13") }
            return .rekey(WireRead.u64(body, 5))
        }
        return .frame(try Wire.decodeBody(body))
    }

    /// Switches to `key` after a REKEY that named it.
    package mutating func rekey(to key: ClusterKey) {
        direction.switchKey(to: key)
    }
}
