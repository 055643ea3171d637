import ClusterCore
import Crypto
import Foundation
import Testing

/// The cluster key's codec: keyed hellos, the handshake's proofs, sealed frames (replays,
/// reordering, reflection and alteration fail), rekeying, the keyring and announcement MACs.
@Suite("Cluster key: codec")
struct LinkAuthTests {
    static let key = try! ClusterKey(bytes: Array(repeating: 7, count: 32))
    static let otherKey = try! ClusterKey(bytes: Array(repeating: 9, count: 32))

    /// Both ends of one link after the handshake: the dialer's sealer and the acceptor's opener
    /// of that direction, and the other direction.
    struct Ends {
        var dialerOut: FrameSealer
        var acceptorIn: FrameOpener
        var acceptorOut: FrameSealer
        var dialerIn: FrameOpener
    }

    static func handshake(dialerKey: ClusterKey = key, acceptorKey: ClusterKey = key) throws -> Ends {
        var d: [UInt8] = [], a: [UInt8] = []
        try Wire.encodeHello(HelloMessage(nodeID: "n1", nodeAddr: "127.0.0.1:1", clusterName: "blue",
                                          auth: HelloAuth(keyID: dialerKey.id, nonce: LinkAuth.nonce())), into: &d)
        try Wire.encodeHello(HelloMessage(nodeID: "n2", nodeAddr: "127.0.0.1:2", clusterName: "blue",
                                          auth: HelloAuth(keyID: acceptorKey.id, nonce: LinkAuth.nonce())), into: &a)
        let t = LinkAuth.transcript(clusterName: "blue", dialerHello: d, acceptorHello: a)
        let h = LinkAuth.transcriptHash(t)
        return Ends(
            dialerOut: FrameSealer(key: dialerKey, transcriptHash: h, dialer: true),
            acceptorIn: FrameOpener(key: dialerKey, transcriptHash: h, peerIsDialer: true),
            acceptorOut: FrameSealer(key: acceptorKey, transcriptHash: h, dialer: false),
            dialerIn: FrameOpener(key: acceptorKey, transcriptHash: h, peerIsDialer: false))
    }

    static func heartbeat(_ seq: UInt64, term: UInt64 = 1) -> HeartbeatFrame {
        HeartbeatFrame(seq: seq, epoch: 1, term: term, lsn: 5, role: .primary, ackSeq: 0, senderTag: Wire.fnv1a64("n1"))
    }

    static func sealed(_ sealer: inout FrameSealer, _ frame: HeartbeatFrame) -> [UInt8] {
        var out: [UInt8] = []
        Wire.encodeHeartbeat(frame, into: &out)
        sealer.seal(&out, from: 0)
        return out
    }

    @Test func keyedHelloRoundTripsAndOldHellosAreUnchanged() throws {
        let hello = HelloMessage(nodeID: "n1", nodeAddr: "127.0.0.1:7001", priority: 3, clusterName: "blue",
                                 auth: HelloAuth(keyID: Self.key.id, nonce: Array(0..<32)))
        var out: [UInt8] = []
        try Wire.encodeHello(hello, into: &out)
        #expect(out[6] == 3)
        #expect(try Wire.decodeFrame(out) == .hello(hello))
        var plain: [UInt8] = []
        try Wire.encodeHello(HelloMessage(nodeID: "n1", nodeAddr: "127.0.0.1:7001", priority: 1), into: &plain)
        #expect(plain[6] == 0)  // no name, no key: the version-1 hello of before, byte for byte
        #expect(plain.count == 35)
    }

    @Test func sealedFramesOpenInOrder() throws {
        var ends = try Self.handshake()
        for seq: UInt64 in 1...5 {
            let bytes = Self.sealed(&ends.dialerOut, Self.heartbeat(seq))
            #expect(bytes.count == Wire.heartbeatFrameBytes + LinkAuth.tagBytes)
            #expect(try ends.acceptorIn.open(bytes.span.bytes) == .frame(.heartbeat(Self.heartbeat(seq))))
        }
    }

    /// The tag as PROTOCOL.md defines it, computed here with swift-crypto's HKDF and HMAC: the
    /// sealer (BoringSSL's HMAC context, reset in place) must produce exactly these bytes, frame
    /// after frame and after a rekey.
    @Test func tagsAreTheHMACThatTheProtocolDefines() throws {
        let hash = LinkAuth.transcriptHash(Array("a transcript".utf8))
        var sealer = FrameSealer(key: Self.key, transcriptHash: hash, dialer: true)
        func expectedTag(key: ClusterKey, generation: UInt32, counter: UInt64, frame: [UInt8]) -> [UInt8] {
            var info = Array("frames dialer to acceptor".utf8)
            info += withUnsafeBytes(of: generation.bigEndian, Array.init)
            let frameKey = HKDF<SHA256>.deriveKey(
                inputKeyMaterial: SymmetricKey(data: Array(repeating: key == Self.key ? 7 : 9, count: 32) as [UInt8]),
                salt: hash, info: info, outputByteCount: 32)
            var mac = HMAC<SHA256>(key: frameKey)
            mac.update(data: withUnsafeBytes(of: counter.bigEndian, Array.init))
            mac.update(data: frame)
            return Array(Array(mac.finalize()).prefix(LinkAuth.tagBytes))
        }
        for counter: UInt64 in 0..<3 {
            let sealed = Self.sealed(&sealer, Self.heartbeat(counter + 1))
            let body = Array(sealed.dropLast(LinkAuth.tagBytes))
            #expect(Array(sealed.suffix(LinkAuth.tagBytes)) == expectedTag(key: Self.key, generation: 0, counter: counter, frame: body))
        }
        var rekey: [UInt8] = []
        sealer.rekey(to: Self.otherKey, into: &rekey)  // counter 3, still under the first key
        #expect(Array(rekey.suffix(LinkAuth.tagBytes)) == expectedTag(key: Self.key, generation: 0, counter: 3, frame: Array(rekey.dropLast(LinkAuth.tagBytes))))
        let after = Self.sealed(&sealer, Self.heartbeat(9))
        #expect(Array(after.suffix(LinkAuth.tagBytes)) == expectedTag(key: Self.otherKey, generation: 1, counter: 4, frame: Array(after.dropLast(LinkAuth.tagBytes))))
    }

    @Test func aReplayedFrameIsRejected() throws {
        var ends = try Self.handshake()
        let first = Self.sealed(&ends.dialerOut, Self.heartbeat(1))
        _ = try ends.acceptorIn.open(first.span.bytes)
        #expect(throws: WireError.self) { _ = try ends.acceptorIn.open(first.span.bytes) }
    }

    @Test func reorderedFramesAreRejected() throws {
        var ends = try Self.handshake()
        _ = Self.sealed(&ends.dialerOut, Self.heartbeat(1))
        let second = Self.sealed(&ends.dialerOut, Self.heartbeat(2))
        #expect { _ = try ends.acceptorIn.open(second.span.bytes) } throws: { error in
            guard case WireError.unauthenticated = error else { return false }
            return "\(error)".hasPrefix("authentication failed: frame 0")
        }
    }

    @Test func anAlteredFrameIsRejected() throws {
        for index in [3, 4, 20, 55, 60] {  // length, type, term, sender tag, tag
            var ends = try Self.handshake()
            var bytes = Self.sealed(&ends.dialerOut, Self.heartbeat(1))
            bytes[index] ^= 1
            #expect(throws: WireError.self) { _ = try ends.acceptorIn.open(bytes.span.bytes) }
        }
    }

    @Test func aReflectedFrameIsRejected() throws {
        var ends = try Self.handshake()
        let fromDialer = Self.sealed(&ends.dialerOut, Self.heartbeat(1))
        // Sent back to the dialer as if from the acceptor: the directions have different keys.
        #expect(throws: WireError.self) { _ = try ends.dialerIn.open(fromDialer.span.bytes) }
    }

    @Test func anUnsealedFrameIsRejectedOnAKeyedLink() throws {
        var ends = try Self.handshake()
        var plain: [UInt8] = []
        Wire.encodeHeartbeat(Self.heartbeat(1, term: 1 << 40), into: &plain)
        plain += Array(repeating: 0, count: LinkAuth.tagBytes)
        #expect(throws: WireError.self) { _ = try ends.acceptorIn.open(plain.span.bytes) }
    }

    @Test func framesOfAnotherLinkAreRejected() throws {
        var one = try Self.handshake()
        var two = try Self.handshake()  // same key and ids, other nonces
        let bytes = Self.sealed(&one.dialerOut, Self.heartbeat(1))
        #expect(throws: WireError.self) { _ = try two.acceptorIn.open(bytes.span.bytes) }
    }

    @Test func rekeyKeepsTheLinkAndSwitchesKeys() throws {
        var ends = try Self.handshake()
        var out: [UInt8] = []
        ends.dialerOut.rekey(to: Self.otherKey, into: &out)
        let opened = try ends.acceptorIn.open(out.span.bytes)
        #expect(opened == .rekey(Self.otherKey.id))
        ends.acceptorIn.rekey(to: Self.otherKey)
        let next = Self.sealed(&ends.dialerOut, Self.heartbeat(2))
        #expect(try ends.acceptorIn.open(next.span.bytes) == .frame(.heartbeat(Self.heartbeat(2))))
        #expect(ends.acceptorIn.keyID == Self.otherKey.id)
    }

    @Test func proofsNeedTheKeyAndTheRole() {
        let t = LinkAuth.transcript(clusterName: "blue", dialerHello: [1, 2, 3], acceptorHello: [4, 5, 6])
        let proof = LinkAuth.proof(key: Self.key, transcript: t, dialer: true)
        #expect(LinkAuth.checkProof(proof, key: Self.key, transcript: t, dialer: true))
        #expect(!LinkAuth.checkProof(proof, key: Self.key, transcript: t, dialer: false))  // reflected
        #expect(!LinkAuth.checkProof(proof, key: Self.otherKey, transcript: t, dialer: true))
        let other = LinkAuth.transcript(clusterName: "green", dialerHello: [1, 2, 3], acceptorHello: [4, 5, 6])
        #expect(!LinkAuth.checkProof(proof, key: Self.key, transcript: other, dialer: true))
    }

    @Test func keyringInstallUseRemove() throws {
        let ring = ClusterKeyring(primary: Self.key)
        #expect(throws: ClusterError.self) { try ring.remove(id: Self.key.id) }  // never the primary
        ring.install(Self.otherKey)
        #expect(ring.keys.map(\.id) == [Self.key.id, Self.otherKey.id])
        try ring.use(id: Self.otherKey.id)
        #expect(ring.primary == Self.otherKey)
        try ring.remove(id: Self.key.id)
        #expect(ring.keys == [Self.otherKey])
        #expect(ring.key(id: Self.key.id) == nil)
        #expect(!"\(ring)".contains(Self.otherKey.base64))
    }

    @Test func keyTextForms() throws {
        let key = ClusterKey.generate()
        #expect(try ClusterKey(text: key.base64 + "\n") == key)
        #expect(try ClusterKey(text: key.bytes.map { String(format: "%02x", $0) }.joined()) == key)
        #expect(throws: ClusterError.self) { try ClusterKey(text: "c2hvcnQ=") }
        #expect(!key.description.contains(key.base64))
    }

    @Test func announcementMACsCoverTheContent() throws {
        var a = AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002")
        a.cluster = "blue"
        a.nonce = "00112233"
        a.keyID = Self.key.idString
        a.mac = LinkAuth.announcementMAC(a, key: Self.key)
        guard case .announcement(let decoded) = try JSONMessage.decode(line: Array(JSONMessage.announcement(a).encodeLine().dropLast())) else {
            Issue.record("not an announcement")
            return
        }
        #expect(LinkAuth.macsEqual(LinkAuth.announcementMAC(decoded, key: Self.key), decoded.mac))
        var forged = decoded
        forged.nodeAddr = "127.0.0.1:9999"
        #expect(!LinkAuth.macsEqual(LinkAuth.announcementMAC(forged, key: Self.key), forged.mac))
        #expect(!LinkAuth.macsEqual(LinkAuth.announcementMAC(decoded, key: Self.otherKey), decoded.mac))
        var list = DiscoveryResponse(nodes: [NodeInfo(id: "n1", addr: "127.0.0.1:7001")])
        list.cluster = "blue"
        let mac = LinkAuth.nodeListMAC(list, requestMAC: a.mac, key: Self.key)
        #expect(LinkAuth.macsEqual(LinkAuth.nodeListMAC(list, requestMAC: a.mac, key: Self.key), mac))
        #expect(!LinkAuth.macsEqual(LinkAuth.nodeListMAC(list, requestMAC: "other", key: Self.key), mac))  // a replayed answer
    }
}
