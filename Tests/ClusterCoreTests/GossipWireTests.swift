import ClusterCore
import Testing

/// The gossip codec: every message kind and update kind round-trips; every truncation, a wrong
/// first byte, set reserved bits and random corruption throw a `WireError` (never trap).
@Suite("Gossip wire: datagrams and full states")
struct GossipWireTests {
    static let updates: [GossipUpdate] = [
        .alive(id: "node-1", incarnation: 7, address: "10.0.0.1:7946", voter: true),
        .alive(id: "nœud-2", incarnation: 0, address: "", voter: false),
        .suspect(id: "node-3", incarnation: 1 << 40, from: "node-1"),
        .failed(id: "node-4", incarnation: .max, from: "node-2"),
        .left(id: "node-5", incarnation: 3),
        .primary(GossipPrimary(term: 9, epoch: 4, leaderID: "node-1")),
    ]

    static let messages: [GossipMessage] = [
        GossipMessage(sender: "a", kind: .ping(seq: 1, target: "b"), updates: updates),
        GossipMessage(sender: "a", kind: .ack(seq: .max)),
        GossipMessage(sender: "a", kind: .pingReq(seq: 77, target: "c", targetAddress: "[::1]:7946"), updates: [updates[0]]),
        GossipMessage(sender: "a", kind: .nack(seq: 0)),
        GossipMessage(sender: "a", kind: .gossip, updates: updates),
    ]

    static let fullState = GossipFullState(
        sender: "a", isReply: true,
        members: [
            GossipMember(id: "a", address: "10.0.0.1:7946", state: .alive, incarnation: 2, voter: true),
            GossipMember(id: "b", address: "10.0.0.2:7946", state: .suspect, incarnation: 0, voter: false),
            GossipMember(id: "c", address: "10.0.0.3:7946", state: .failed, incarnation: 5, voter: true),
            GossipMember(id: "d", address: "", state: .left, incarnation: 9, voter: false),
        ],
        primary: GossipPrimary(term: 3, epoch: 2, leaderID: "a"))

    @Test func everyMessageAndUpdateRoundTripsAndItsSizeIsExact() throws {
        for message in Self.messages {
            let bytes = GossipWire.encode(message)
            #expect(bytes.count == GossipWire.size(of: message))
            #expect(try GossipWire.decode(bytes) == message)
        }
    }

    @Test func firstByteIsD2NotTheHeartbeatDatagramsD1() throws {
        let bytes = GossipWire.encode(Self.messages[1])
        #expect(bytes[0] == 0xD2)
        #expect(HeartbeatDatagram.kind == 0xD1)
        var heartbeatLike = bytes
        heartbeatLike[0] = 0xD1
        #expect(throws: WireError.self) { try GossipWire.decode(heartbeatLike) }
    }

    @Test func keyedFlagAndReservedBitsAreRefused() {
        var bytes = GossipWire.encode(Self.messages[1])
        for flags: UInt8 in [1, 2, 0x80] {
            bytes[1] = flags
            #expect(throws: WireError.self) { try GossipWire.decode(bytes) }
        }
    }

    @Test("sealed datagrams and full states round-trip; any byte changed, another key, another cluster name or no seal are refused; a key of the keyring that is not primary still opens (rotation)")
    func sealedMessagesRoundTripAndRefuseTampering() throws {
        let key = ClusterKey.generate(), next = ClusterKey.generate()
        let seal = GossipSeal(keys: [key], clusterName: "blue")
        for message in Self.messages {
            var bytes: [UInt8] = []
            GossipWire.encode(message, keyed: true, into: &bytes)
            seal.seal(&bytes)
            #expect(bytes.count == GossipWire.size(of: message) + GossipSeal.trailerBytes)
            try seal.open(bytes)
            #expect(try GossipWire.decode(bytes, keyed: true) == message)
            // A keyed datagram is not taken where no key is expected, nor the other way round.
            #expect(throws: WireError.self) { try GossipWire.decode(bytes) }
            #expect(throws: WireError.self) { try GossipWire.decode(GossipWire.encode(message), keyed: true) }
            for i in bytes.indices {
                var altered = bytes
                altered[i] ^= 0x01
                #expect(throws: GossipSeal.Refusal.self) { try seal.open(altered) }
            }
            #expect(throws: GossipSeal.Refusal.badTag) { try GossipSeal(keys: [key], clusterName: "green").open(bytes) }
            #expect(throws: GossipSeal.Refusal.unknownKey(key.id)) { try GossipSeal(keys: [next], clusterName: "blue").open(bytes) }
            #expect(throws: GossipSeal.Refusal.truncated) { try seal.open(Array(bytes.prefix(GossipSeal.trailerBytes - 1))) }
        }
        // Rotation: a node that seals under `next` still opens what is sealed under `key`.
        let rotated = GossipSeal(keys: [key], clusterName: "blue")
        rotated.use([next, key])
        var bytes: [UInt8] = []
        GossipWire.encode(Self.messages[0], keyed: true, into: &bytes)
        seal.seal(&bytes)
        try rotated.open(bytes)
        var theirs: [UInt8] = []
        GossipWire.encode(Self.messages[0], keyed: true, into: &theirs)
        rotated.seal(&theirs)
        #expect(throws: GossipSeal.Refusal.unknownKey(next.id)) { try seal.open(theirs) }

        let state = GossipFullState(
            sender: "a", isReply: true,
            members: [GossipMember(id: "a", address: "10.0.0.1:7946", state: .alive, incarnation: 3, voter: true)],
            primary: GossipPrimary(term: 2, epoch: 1, leaderID: "a"))
        var frame = GossipWire.encodeFullState(state, keyed: true)
        seal.seal(&frame)
        try seal.open(frame)
        #expect(try GossipWire.decodeFullState(frame, keyed: true) == state)
        #expect(throws: WireError.self) { try GossipWire.decodeFullState(frame) }
        #expect(throws: WireError.self) { try GossipWire.decodeFullState(GossipWire.encodeFullState(state), keyed: true) }
        frame[frame.count - 20] ^= 1
        #expect(throws: GossipSeal.Refusal.self) { try seal.open(frame) }
    }

    @Test func everyTruncationOfEveryMessageThrows() {
        for message in Self.messages {
            let bytes = GossipWire.encode(message)
            for length in 0..<bytes.count {
                #expect(throws: WireError.self) { try GossipWire.decode(Array(bytes.prefix(length))) }
            }
            #expect(throws: WireError.self) { try GossipWire.decode(bytes + [0]) }
        }
    }

    @Test func randomCorruptionEitherDecodesOrThrowsNeverTraps() {
        var rng = SplitMix64(seed: 2026)
        var threw = 0
        for round in 0..<20_000 {
            var bytes = GossipWire.encode(Self.messages[round % Self.messages.count])
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            do { _ = try GossipWire.decode(bytes) } catch { threw += 1 }
        }
        // Random bytes too: no input traps.
        for _ in 0..<5_000 {
            let bytes = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? GossipWire.decode([0xD2, 0] + bytes)
            _ = try? GossipWire.decodeFullState(bytes)
        }
        #expect(threw > 1_000)
    }

    @Test func invalidUTF8InAnIdIsRefused() {
        var bytes = GossipWire.encode(GossipMessage(sender: "ab", kind: .ack(seq: 1)))
        bytes[4] = 0xFF
        #expect(throws: WireError.badUTF8("the sender id")) { try GossipWire.decode(bytes) }
    }

    @Test func fullStateRoundTripsAsFrameType13() throws {
        let bytes = GossipWire.encodeFullState(Self.fullState)
        #expect(bytes[4] == 13)
        #expect(Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count - 4)
        #expect(try GossipWire.decodeFullState(bytes) == Self.fullState)
        var noPrimary = Self.fullState
        noPrimary.primary = nil
        noPrimary.isReply = false
        #expect(try GossipWire.decodeFullState(GossipWire.encodeFullState(noPrimary)) == noPrimary)
    }

    @Test func everyTruncationOfAFullStateThrows() {
        let bytes = GossipWire.encodeFullState(Self.fullState)
        for length in 0..<bytes.count {
            #expect(throws: WireError.self) { try GossipWire.decodeFullState(Array(bytes.prefix(length))) }
        }
        // A length field that disagrees with the bytes.
        var longer = bytes + [0]
        #expect(throws: WireError.self) { try GossipWire.decodeFullState(longer) }
        longer[3] &+= 1
        #expect(throws: WireError.self) { try GossipWire.decodeFullState(longer) }
        var badState = bytes
        badState[5 + 1 + 2 + 2] = 9  // the first member's state byte
        #expect(throws: WireError.self) { try GossipWire.decodeFullState(badState) }
    }

    @Test func aFullStateTooLargeForOneFrameIsCutToFit() throws {
        let members = (0..<3_000).map {
            GossipMember(id: "member-\($0)-" + String(repeating: "x", count: 20), address: "10.0.\($0 / 256).\($0 % 256):7946",
                state: .alive, incarnation: 1, voter: false)
        }
        let bytes = GossipWire.encodeFullState(GossipFullState(sender: "a", isReply: false, members: members, primary: nil))
        #expect(bytes.count - 4 <= GossipWire.maxFullStateBytes)
        let decoded = try GossipWire.decodeFullState(bytes)
        #expect(decoded.members.count > 1_000 && decoded.members.count < 3_000)
        #expect(Array(members.prefix(decoded.members.count)) == decoded.members)
    }
}
