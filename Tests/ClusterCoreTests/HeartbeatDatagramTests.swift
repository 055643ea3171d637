import ClusterCore
import Testing

/// Heartbeat datagrams: the layout, and on keyed links the datagram keys (replays, reordering,
/// alteration, the other direction's or the stream's key, a stale generation: all refused).
@Suite("Heartbeat datagrams: codec and keys")
struct HeartbeatDatagramTests {
    static let frame = HeartbeatFrame(
        seq: 42, epoch: 3, term: 7, lsn: 900, role: .primary, ackSeq: 41, senderTag: Wire.fnv1a64("n1"), probe: true,
        datagramsArrive: true)

    static func header(_ bytes: [UInt8]) throws -> HeartbeatDatagram.Header {
        try bytes.withUnsafeBytes { raw in try HeartbeatDatagram.header(RawSpan(_unsafeBytes: raw)) }
    }

    static func frame(_ bytes: [UInt8]) throws -> HeartbeatFrame {
        try bytes.withUnsafeBytes { raw in try HeartbeatDatagram.frame(RawSpan(_unsafeBytes: raw)) }
    }

    static func open(_ opener: DatagramOpener, _ bytes: [UInt8]) throws -> Bool {
        let header = try header(bytes)
        do {
            try bytes.withUnsafeBytes { raw in try opener.open(RawSpan(_unsafeBytes: raw), header: header) }
            return true
        } catch {
            return false
        }
    }

    @Test func plainDatagramRoundTrips() throws {
        var out: [UInt8] = [9]  // appended after what the buffer holds
        HeartbeatDatagram.encode(Self.frame, token: 0x0102_0304_0506_0708, into: &out)
        let datagram = Array(out.dropFirst())
        #expect(datagram.count == HeartbeatDatagram.plainBytes)
        #expect(Array(datagram[0..<16]) == [0xD1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
        #expect(try Self.header(datagram) == .init(keyed: false, generation: 0, token: 0x0102_0304_0506_0708, counter: 0))
        #expect(try Self.frame(datagram) == Self.frame)
        // The frame inside is the link's HEARTBEAT frame, byte for byte.
        var onLink: [UInt8] = []
        Wire.encodeHeartbeat(Self.frame, into: &onLink)
        #expect(Array(datagram[24...]) == onLink)
    }

    @Test func malformedDatagramsAreErrors() throws {
        var good: [UInt8] = []
        HeartbeatDatagram.encode(Self.frame, token: 5, into: &good)
        #expect(throws: WireError.truncated("a heartbeat datagram (79 bytes, 80 needed)")) { try Self.header(Array(good.dropLast())) }
        #expect(throws: WireError.trailingBytes(type: 0xD1, count: 1)) { try Self.header(good + [0]) }
        var bad = good
        bad[0] = 0x00
        #expect(throws: WireError.malformed("not a heartbeat datagram (first byte 0)")) { try Self.header(bad) }
        bad = good
        bad[1] = 2
        #expect(throws: WireError.malformed("heartbeat datagram flags 2 set reserved bits")) { try Self.header(bad) }
        bad = good
        bad[1] = 1  // keyed, but no tag
        #expect(throws: WireError.trailingBytes(type: 0xD1, count: -16)) { try Self.header(bad) }
        bad = good
        bad[24 + 4] = 3  // the frame inside is not a heartbeat
        #expect(throws: WireError.malformed("a heartbeat datagram that holds no HEARTBEAT frame")) { try Self.frame(bad) }
        bad = good
        bad[24 + 3] = 53  // its length field
        #expect(throws: WireError.malformed("a heartbeat datagram that holds no HEARTBEAT frame")) { try Self.frame(bad) }
        bad = good
        bad[24 + 5] = 8  // a reserved heartbeat flag
        #expect(throws: WireError.malformed("heartbeat flags 8 set reserved bits")) { try Self.frame(bad) }
    }

    @Test func randomAndMutatedDatagramsNeverCrashAndNeverOpen() throws {
        // 20,000 seeded inputs: random bytes of every size around the two valid ones, and valid
        // datagrams (plain and keyed) with one to four bytes changed. Every one is an error or a
        // refusal; none opens under the link's key except the untouched originals.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 11
        }
        let sealer = DatagramSealer(key: Self.key, transcriptHash: Self.hash, dialer: true)
        let opener = DatagramOpener(key: Self.key, transcriptHash: Self.hash, peerIsDialer: true)
        var plain: [UInt8] = []
        HeartbeatDatagram.encode(Self.frame, token: 11, into: &plain)
        var opened = 0
        for i in 0..<20_000 {
            var bytes: [UInt8]
            if i % 2 == 0 {
                bytes = (0..<Int(next() % 112)).map { _ in UInt8(truncatingIfNeeded: next()) }
                if i % 10 == 0, !bytes.isEmpty { bytes[0] = HeartbeatDatagram.kind }
            } else {
                bytes = i % 4 == 1 ? plain : Self.sealed(sealer)
                for _ in 0..<(1 + Int(next() % 4)) {
                    let at = Int(next() % UInt64(bytes.count))
                    bytes[at] ^= UInt8(truncatingIfNeeded: next() | 1)
                }
            }
            guard let header = try? Self.header(bytes) else { continue }
            _ = try? Self.frame(bytes)
            if header.keyed, (try? Self.open(opener, bytes)) == true { opened += 1 }
        }
        #expect(opened == 0)
    }

    static let key = try! ClusterKey(bytes: Array(repeating: 7, count: 32))
    static let newKey = try! ClusterKey(bytes: Array(repeating: 8, count: 32))
    static let hash = LinkAuth.transcriptHash(Array("a transcript".utf8))

    static func sealed(_ sealer: DatagramSealer, token: UInt64 = 5, frame: HeartbeatFrame = frame) -> [UInt8] {
        var out: [UInt8] = []
        HeartbeatDatagram.encode(frame, token: token, sealer: sealer, into: &out)
        return out
    }

    @Test func sealedDatagramsOpenWhenNewerAndIntact() throws {
        let sealer = DatagramSealer(key: Self.key, transcriptHash: Self.hash, dialer: true)
        let opener = DatagramOpener(key: Self.key, transcriptHash: Self.hash, peerIsDialer: true)
        let first = Self.sealed(sealer), second = Self.sealed(sealer), third = Self.sealed(sealer)
        #expect(first.count == HeartbeatDatagram.keyedBytes)
        #expect(try Self.header(second) == .init(keyed: true, generation: 0, token: 5, counter: 1))
        #expect(try Self.frame(third) == Self.frame)
        #expect(try Self.open(opener, second))
        #expect(try !Self.open(opener, second), "a replay")
        #expect(try !Self.open(opener, first), "an older one, late")
        #expect(try Self.open(opener, third))
        #expect(opener.nextCounter == 3)
    }

    @Test func alteredOrForeignDatagramsAreRefused() throws {
        let sealer = DatagramSealer(key: Self.key, transcriptHash: Self.hash, dialer: true)
        let good = Self.sealed(sealer)
        func fresh() -> DatagramOpener { DatagramOpener(key: Self.key, transcriptHash: Self.hash, peerIsDialer: true) }
        for index in [1 + 0, 8, 16 + 7, 24 + 31, 80 + 3] where index != 1 {
            var bad = good
            bad[index] ^= 0x40
            #expect(try !Self.open(fresh(), bad), "byte \(index) altered")
        }
        // The other direction's key, another link's transcript, another cluster key.
        let reflected = DatagramOpener(key: Self.key, transcriptHash: Self.hash, peerIsDialer: false)
        #expect(try !Self.open(reflected, good))
        let otherLink = DatagramOpener(key: Self.key, transcriptHash: LinkAuth.transcriptHash([1]), peerIsDialer: true)
        #expect(try !Self.open(otherLink, good))
        let otherKey = DatagramOpener(key: Self.newKey, transcriptHash: Self.hash, peerIsDialer: true)
        #expect(try !Self.open(otherKey, good))
        // An unkeyed datagram on a keyed link.
        var plain: [UInt8] = []
        HeartbeatDatagram.encode(Self.frame, token: 5, into: &plain)
        let opener = fresh()
        #expect(try !Self.open(opener, plain))
        #expect(try Self.open(opener, good))
    }

    @Test func theLinksStreamKeyCannotSealADatagram() throws {
        // A frame sealer of the same link and direction: its tags are not datagram tags.
        var frames = FrameSealer(key: Self.key, transcriptHash: Self.hash, dialer: true)
        var datagram: [UInt8] = []
        HeartbeatDatagram.encode(Self.frame, token: 5, into: &datagram)
        datagram[1] = 1
        var sealedAsFrame = datagram
        frames.seal(&sealedAsFrame, from: 0)  // rewrites the first 4 bytes as a length; put them back
        sealedAsFrame.replaceSubrange(0..<4, with: datagram[0..<4])
        let opener = DatagramOpener(key: Self.key, transcriptHash: Self.hash, peerIsDialer: true)
        #expect(try !Self.open(opener, sealedAsFrame))
    }

    @Test func aKeySwitchMovesBothEndsToTheNextGeneration() throws {
        let sealer = DatagramSealer(key: Self.key, transcriptHash: Self.hash, dialer: false)
        let opener = DatagramOpener(key: Self.key, transcriptHash: Self.hash, peerIsDialer: false)
        #expect(try Self.open(opener, Self.sealed(sealer)))
        sealer.switchKey(to: Self.newKey)
        let afterSwitch = Self.sealed(sealer)
        #expect(try Self.header(afterSwitch).generation == 1)
        // Before the REKEY reached the receiver: refused (dropped), not fatal.
        #expect(try !Self.open(opener, afterSwitch))
        opener.switchKey(to: Self.newKey)
        #expect(try Self.open(opener, Self.sealed(sealer)))
        #expect(sealer.counter == 3)
    }
}
