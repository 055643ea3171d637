import Foundation
import Testing

@testable import ClusterCore

@Suite("Wire")
struct WireTests {
    // MARK: Fixtures

    static let heartbeat = HeartbeatFrame(
        seq: 0x0102_0304_0506_0708, epoch: 0x1112_1314_1516_1718, term: 0x2122_2324_2526_2728,
        lsn: 0x3132_3334_3536_3738, role: .primary, ackSeq: 0x4142_4344_4546_4748,
        senderTag: 0x5152_5354_5556_5758, probe: true, reply: false)

    static let samples: [WireFrame] = [
        .hello(HelloMessage(nodeID: "n1", nodeAddr: "127.0.0.1:7001", priority: 1)),
        .hello(HelloMessage(nodeID: "nœud-é", nodeAddr: "", priority: -5)),
        .hello(HelloMessage(nodeID: String(repeating: "x", count: 255), nodeAddr: String(repeating: "a", count: 255), priority: .min)),
        .heartbeat(heartbeat),
        .heartbeat(HeartbeatFrame(seq: 1, epoch: 0, term: 0, lsn: 0, role: .replica, senderTag: Wire.fnv1a64("n2"), reply: true)),
        .heartbeat(HeartbeatFrame(seq: .max, epoch: .max, term: .max, lsn: .max, role: .candidate, ackSeq: .max, senderTag: .max, probe: true, reply: true)),
        .voteRequest(VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1)),
        .voteRequest(VoteRequest(candidateID: "c", term: .max, lastLSN: .max, epoch: .max, priority: .max, preVote: true)),
        .voteResponse(VoteResponse(voterID: "n1", term: 3, voteGranted: true)),
        .voteResponse(VoteResponse(voterID: "n3", term: 9, voteGranted: false, reason: "stale term ✗", preVote: true, epoch: 4)),
        .goodbye("duplicate connection"),
        .goodbye(""),
        .voteRequest(VoteRequest(candidateID: "n4", term: 8, lastLSN: 7, epoch: 6, priority: -2, transfer: true)),
        .voteRequest(VoteRequest(candidateID: "t", term: 1, preVote: true, transfer: true)),
        .timeoutNow(TimeoutNowMessage(from: "n1", term: 3)),
        .timeoutNow(TimeoutNowMessage(from: String(repeating: "é", count: 127), term: .max)),
        // Datagram heartbeats: the heartbeat's flag bit 2, the hello's offer.
        .heartbeat(HeartbeatFrame(seq: 2, epoch: 1, term: 1, lsn: 0, role: .primary, senderTag: 9, datagramsArrive: true)),
        .hello(HelloMessage(nodeID: "n5", nodeAddr: "127.0.0.1:7005", datagrams: HelloDatagrams(port: 7005, token: .max))),
        .hello(HelloMessage(
            nodeID: "n6", clusterName: "c", auth: HelloAuth(keyID: 3, nonce: Array(repeating: 7, count: LinkAuth.nonceBytes)),
            datagrams: HelloDatagrams(port: 1, token: 0))),
        // MEMBER frames, and the hello's flag bit 3 that says they are understood.
        .member(MemberMessage(nodeID: "x1", nodeAddr: "127.0.0.1:9", priority: -3)),
        .member(MemberMessage(nodeID: String(repeating: "m", count: 255), nodeAddr: "", priority: .max)),
        .hello({ var h = HelloMessage(nodeID: "n7", nodeAddr: "127.0.0.1:7007"); h.takesMembers = true; return h }()),
    ]

    static func encoded(_ frames: [WireFrame]) throws -> [UInt8] {
        var out: [UInt8] = []
        for f in frames { try Wire.encode(f, into: &out) }
        return out
    }

    /// Feeds `bytes` to a fresh decoder in chunks of the given sizes (the last chunk takes the rest).
    static func decode(_ bytes: [UInt8], chunkSizes: [Int]) throws(WireError) -> [WireFrame] {
        var decoder = FrameDecoder()
        var frames: [WireFrame] = []
        let all = bytes.span.bytes
        var offset = 0
        for size in chunkSizes where offset < bytes.count {
            let end = min(bytes.count, offset + size)
            try decoder.feed(all.extracting(offset..<end)) { f throws(WireError) in frames.append(f) }
            offset = end
        }
        if offset < bytes.count {
            try decoder.feed(all.extracting(offset..<bytes.count)) { f throws(WireError) in frames.append(f) }
        }
        #expect(decoder.bufferedByteCount == 0)
        return frames
    }

    static func decodeOne(_ bytes: [UInt8]) throws(WireError) -> [WireFrame] {
        var decoder = FrameDecoder()
        var frames: [WireFrame] = []
        try decoder.feed(bytes) { f throws(WireError) in frames.append(f) }
        return frames
    }

    static func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32($0))) } }

    // MARK: Connection kinds and hashing

    @Test func classifyFirstByte() {
        for b in 0...255 {
            let kind = WireKind.classify(firstByte: UInt8(b))
            #expect(kind == (b == 0x7B ? .json : b == 0 ? .binary : b == 0x47 ? .http : .stranger))
            #expect(Wire.classify(firstByte: UInt8(b)) == kind)
        }
        // A hello's first byte is always 0: its length is far below 2^24.
        var out: [UInt8] = []
        try? Wire.encodeHello(HelloMessage(nodeID: String(repeating: "x", count: 255), nodeAddr: String(repeating: "y", count: 255)), into: &out)
        #expect(WireKind.classify(firstByte: out[0]) == .binary)
        #expect(WireKind.classify(firstByte: JSONMessage.status.encodeLine()[0]) == .json)
    }

    @Test func fnv1a64KnownVectors() {
        #expect(Wire.fnv1a64("") == 0xcbf2_9ce4_8422_2325)
        #expect(Wire.fnv1a64("a") == 0xaf63_dc4c_8601_ec8c)
        #expect(Wire.fnv1a64("foobar") == 0x8594_4171_f739_67e8)
    }

    // MARK: Heartbeat layout

    @Test func heartbeatIs56BytesAtDocumentedOffsets() throws {
        var out: [UInt8] = [0xEE]  // appends after what is there
        Wire.encodeHeartbeat(Self.heartbeat, into: &out)
        #expect(out.count == 1 + 56)
        let b = Array(out.dropFirst())
        #expect(Array(b[0..<4]) == [0, 0, 0, 52])
        #expect(b[4] == 2)  // type
        #expect(b[5] == 1)  // flags: probe
        #expect(b[6] == 2)  // role primary
        #expect(b[7] == 0)  // reserved
        #expect(Array(b[8..<16]) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(Array(b[16..<24]) == [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18])
        #expect(Array(b[24..<32]) == [0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28])
        #expect(Array(b[32..<40]) == [0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38])
        #expect(Array(b[40..<48]) == [0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48])
        #expect(Array(b[48..<56]) == [0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58])
        #expect(try Wire.decodeFrame(b) == .heartbeat(Self.heartbeat))

        var reply = Self.heartbeat
        reply.probe = false
        reply.reply = true
        var r: [UInt8] = []
        Wire.encodeHeartbeat(reply, into: &r)
        #expect(r[5] == 2)
        reply.probe = true
        #expect(reply.flags == 3)
    }

    /// The byte dumps PROTOCOL.md shows.
    @Test func protocolDocumentExamples() throws {
        func hex(_ text: String) -> [UInt8] { text.split(separator: " ").map { UInt8($0, radix: 16)! } }
        #expect(Wire.fnv1a64("n1") == 0x08b3_7b07_b558_d4c0)
        var out: [UInt8] = []
        let m = HeartbeatMessage(from: "n1", seq: 7, epoch: 2, term: 3, lsn: 120, role: .primary, ackSeq: 6, probe: true)
        Wire.encodeHeartbeat(HeartbeatFrame(m), into: &out)
        #expect(out == hex("00 00 00 34 02 01 02 00 00 00 00 00 00 00 00 07 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 03 00 00 00 00 00 00 00 78 00 00 00 00 00 00 00 06 08 b3 7b 07 b5 58 d4 c0"))
        out.removeAll()
        try Wire.encodeHello(HelloMessage(nodeID: "n1", nodeAddr: "127.0.0.1:7001", priority: 1), into: &out)
        #expect(out == hex("00 00 00 1f 01 01 00 00 02 6e 31 00 0e 31 32 37 2e 30 2e 30 2e 31 3a 37 30 30 31 00 00 00 00 00 00 00 01"))
        // MEMBER (type 9), the example PROTOCOL.md shows (issue 16, hole 7: it had no layout).
        out.removeAll()
        try Wire.encodeMember(MemberMessage(nodeID: "n4", nodeAddr: "127.0.0.1:7004", priority: 1), into: &out)
        let member = hex("00 00 00 1d 09 00 02 6e 34 00 0e 31 32 37 2e 30 2e 30 2e 31 3a 37 30 30 34 00 00 00 00 00 00 00 01")
        #expect(out == member)
        #expect(try Wire.decodeFrame(member) == .member(MemberMessage(nodeID: "n4", nodeAddr: "127.0.0.1:7004", priority: 1)))
        #expect(WireError.frameTooLarge(70000).description == "frame length 70000 exceeds the limit of 65536 bytes")
        #expect(WireError.trailingBytes(type: 3, count: 1).description == "1 unexpected trailing byte in a frame of type 3")
        #expect(WireError.unknownMessageType("gossip").description == "unknown message_type \"gossip\"")
    }

    @Test func heartbeatEncodingReusesTheBuffer() throws {
        var out: [UInt8] = []
        out.reserveCapacity(Wire.heartbeatFrameBytes * 64)
        let capacity = out.capacity
        for round in 0..<10 {
            out.removeAll(keepingCapacity: true)
            for i in 0..<64 {
                var f = Self.heartbeat
                f.seq = UInt64(round * 64 + i)
                Wire.encodeHeartbeat(f, into: &out)
            }
            #expect(out.count == 56 * 64)
            #expect(out.capacity == capacity)
        }
        var seen: [UInt64] = []
        var decoder = FrameDecoder()
        try decoder.feed(out) { f throws(WireError) in
            if case .heartbeat(let h) = f { seen.append(h.seq) }
        }
        #expect(seen == Array(576..<640))
    }

    @Test func heartbeatMessageConversion() {
        let m = HeartbeatMessage(from: "n1", seq: 7, epoch: 2, term: 3, lsn: 120, role: .primary, ackSeq: 6, probe: true)
        let f = HeartbeatFrame(m)
        #expect(f.senderTag == Wire.fnv1a64("n1"))
        #expect(f.probe && !f.reply)
        #expect(f.message(from: "n1") == m)
        #expect(HeartbeatFrame(m, senderTag: 42, reply: true).senderTag == 42)
        #expect(HeartbeatFrame(m, senderTag: 42, reply: true).reply)

        let messages: [ElectionMessage] = [
            .heartbeat(m), .voteRequest(VoteRequest(candidateID: "n2", term: 3)),
            .voteResponse(VoteResponse(voterID: "n1", term: 3, voteGranted: false, reason: "no")),
        ]
        for message in messages {
            #expect(WireFrame(message).electionMessage(from: "n1") == message)
        }
        #expect(WireFrame.goodbye("x").electionMessage(from: "n1") == nil)
    }

    // MARK: Round trips

    @Test func everyFrameRoundTrips() throws {
        for frame in Self.samples {
            var out: [UInt8] = []
            try Wire.encode(frame, into: &out)
            #expect(out[0] == 0)
            #expect(out[4] == frame.type.rawValue)
            #expect(Int(UInt32(out[0]) << 24 | UInt32(out[1]) << 16 | UInt32(out[2]) << 8 | UInt32(out[3])) == out.count - 4)
            #expect(try Wire.decodeFrame(out) == frame)
            #expect(try Self.decodeOne(out) == [frame])
        }
        let voteRequest: [UInt8] = try Self.encoded([Self.samples[6]])
        #expect(voteRequest.count == 4 + 1 + 32 + 1 + 2 + 2)
    }

    @Test func encodersRejectBadIDsAndAppendNothing() {
        var out: [UInt8] = [9]
        #expect(throws: WireError.malformed("hello node id is empty")) {
            try Wire.encodeHello(HelloMessage(nodeID: ""), into: &out)
        }
        #expect(throws: WireError.malformed("vote request candidate id is 256 bytes, more than 255")) {
            try Wire.encodeVoteRequest(VoteRequest(candidateID: String(repeating: "c", count: 256), term: 1), into: &out)
        }
        #expect(throws: WireError.self) {
            try Wire.encodeVoteResponse(VoteResponse(voterID: "", term: 1, voteGranted: true), into: &out)
        }
        #expect(throws: WireError.self) {
            try Wire.encodeHello(HelloMessage(nodeID: "n1", nodeAddr: String(repeating: "a", count: 256)), into: &out)
        }
        #expect(out == [9])
    }

    @Test func longReasonsAreCutAtACharacterBoundary() throws {
        let reason = String(repeating: "a", count: Wire.maxReasonBytes - 1) + "é" + "tail"
        var out: [UInt8] = []
        Wire.encodeGoodbye(reason, into: &out)
        #expect(try Wire.decodeFrame(out) == .goodbye(String(repeating: "a", count: Wire.maxReasonBytes - 1)))
        out.removeAll()
        try Wire.encodeVoteResponse(VoteResponse(voterID: "v", term: 1, voteGranted: false, reason: reason + reason), into: &out)
        guard case .voteResponse(let r) = try Wire.decodeFrame(out) else { Issue.record("not a vote response"); return }
        #expect(r.reason == String(repeating: "a", count: Wire.maxReasonBytes - 1))
    }

    // MARK: Splitting

    @Test func streamDecodesTheSameWhateverTheChunks() throws {
        var frames: [WireFrame] = []
        for i in 0..<40 { frames.append(Self.samples[i % Self.samples.count]) }
        let bytes = try Self.encoded(frames)

        #expect(try Self.decode(bytes, chunkSizes: [bytes.count]) == frames)
        #expect(try Self.decode(bytes, chunkSizes: Array(repeating: 1, count: bytes.count)) == frames)
        // Every split into two chunks, over the first few frames.
        let head = try Self.encoded(Array(frames.prefix(6)))
        for cut in 0...head.count {
            #expect(try Self.decode(head, chunkSizes: [cut]) == Array(frames.prefix(6)))
        }
        // Every split into three chunks of a hello + heartbeat + vote request.
        let small = try Self.encoded([Self.samples[0], Self.samples[3], Self.samples[6]])
        for a in 0...small.count {
            for b in 0...(small.count - a) {
                #expect(try Self.decode(small, chunkSizes: [a, b]) == [Self.samples[0], Self.samples[3], Self.samples[6]])
            }
        }
        // Random chunkings.
        var rng = SplitMix64(seed: 0x5EED)
        for _ in 0..<500 {
            var sizes: [Int] = []
            var total = 0
            while total < bytes.count {
                let size = Int.random(in: 0...(rng.next() % 4 == 0 ? 300 : 20), using: &rng)
                sizes.append(size)
                total += size
            }
            #expect(try Self.decode(bytes, chunkSizes: sizes) == frames)
        }
    }

    @Test func partialFrameIsBuffered() throws {
        let bytes = try Self.encoded([Self.samples[3], Self.samples[0]])
        var decoder = FrameDecoder()
        var got: [WireFrame] = []
        try decoder.feed(Array(bytes[0..<60])) { f throws(WireError) in got.append(f) }
        #expect(got == [Self.samples[3]])
        #expect(decoder.bufferedByteCount == 4)
        try decoder.feed(Array(bytes[60...])) { f throws(WireError) in got.append(f) }
        #expect(got == [Self.samples[3], Self.samples[0]])
        #expect(decoder.bufferedByteCount == 0)
    }

    // MARK: Violations

    @Test func oversizedLengthIsRejectedFromTheHeaderAlone() {
        for header: [UInt8] in [Self.be32(UInt32(Wire.maxFrameBytes) + 1), [0xFF, 0xFF, 0xFF, 0xFF], [0x7F, 0, 0, 0]] {
            let len = UInt32(header[0]) << 24 | UInt32(header[1]) << 16 | UInt32(header[2]) << 8 | UInt32(header[3])
            #expect(throws: WireError.frameTooLarge(len)) { _ = try Self.decodeOne(header) }
            // Also when the header arrives a byte at a time after a whole frame.
            var decoder = FrameDecoder()
            var heartbeat: [UInt8] = []
            Wire.encodeHeartbeat(Self.heartbeat, into: &heartbeat)
            #expect(throws: Never.self) { try decoder.feed(heartbeat + header.prefix(3)) { _ throws(WireError) in } }
            #expect(throws: WireError.frameTooLarge(len)) { try decoder.feed([header[3]]) { _ throws(WireError) in } }
            // The decoder stays failed.
            #expect(throws: WireError.frameTooLarge(len)) { try decoder.feed(heartbeat) { _ throws(WireError) in } }
            #expect(decoder.failure == .frameTooLarge(len))
            decoder.reset()
            #expect(throws: Never.self) { try decoder.feed(heartbeat) { _ throws(WireError) in } }
        }
        // The largest allowed length is buffered, not rejected.
        var decoder = FrameDecoder()
        #expect(throws: Never.self) { try decoder.feed(Self.be32(UInt32(Wire.maxFrameBytes))) { _ throws(WireError) in } }
        #expect(decoder.bufferedByteCount == 4)
        #expect(throws: WireError.frameTooShort) { _ = try Self.decodeOne([0, 0, 0, 0]) }
    }

    @Test func unknownTypeIsAnError() {
        for type: UInt8 in [0, 7, 8, 13, 0x7B, 255] {
            #expect(throws: WireError.unknownType(type)) { _ = try Self.decodeOne([0, 0, 0, 1, type]) }
            #expect(throws: WireError.unknownType(type)) { _ = try Self.decodeOne([0, 0, 0, 3, type, 1, 2]) }
        }
    }

    @Test func badVersionIsRejected() throws {
        var out: [UInt8] = []
        try Wire.encodeHello(HelloMessage(nodeID: "n1", nodeAddr: "a", priority: 1, version: 2), into: &out)
        #expect(throws: WireError.badVersion(2)) { _ = try Wire.decodeFrame(out) }
        #expect(throws: WireError.badVersion(0)) { _ = try Wire.decodeFrame([0, 0, 0, 2, 1, 0]) }
        #expect(WireError.badVersion(2).description.contains("version 2"))
    }

    @Test func truncatedBodiesAreErrors() throws {
        for frame in Self.samples {
            let whole = try Self.encoded([frame])
            // Shorten the body and say so in the length field: the body ends inside a field.
            for cut in 1..<(whole.count - 5) {
                var short = Array(whole.prefix(whole.count - cut))
                short.replaceSubrange(0..<4, with: Self.be32(UInt32(short.count - 4)))
                #expect(throws: WireError.self) { _ = try Wire.decodeFrame(short) }
            }
        }
        #expect(throws: WireError.truncated("the hello node id")) {
            _ = try Wire.decodeFrame([0, 0, 0, 7, 1, 1, 0, 0, 5, 0x61, 0x62])
        }
        // A whole-frame decode of fewer bytes than the length field says.
        let hb = try Self.encoded([.heartbeat(Self.heartbeat)])
        #expect(throws: WireError.self) { _ = try Wire.decodeFrame(Array(hb.prefix(30))) }
    }

    @Test func trailingBytesAreErrors() throws {
        for frame in Self.samples {
            var long = try Self.encoded([frame])
            long.append(0)
            long.replaceSubrange(0..<4, with: Self.be32(UInt32(long.count - 4)))
            #expect(throws: WireError.trailingBytes(type: frame.type.rawValue, count: 1)) { _ = try Self.decodeOne(long) }
        }
    }

    @Test func fieldViolationsAreErrors() throws {
        let good = try Self.encoded([.heartbeat(Self.heartbeat)])
        var bad = good
        bad[5] = 8  // flag bit 3 (bits 0-2: probe, reply, datagrams arrive)
        #expect(throws: WireError.malformed("heartbeat flags 8 set reserved bits")) { _ = try Wire.decodeFrame(bad) }
        bad = good
        bad[6] = 3  // role
        #expect(throws: WireError.malformed("heartbeat role 3")) { _ = try Wire.decodeFrame(bad) }
        bad = good
        bad[7] = 1  // reserved
        #expect(throws: WireError.self) { _ = try Wire.decodeFrame(bad) }

        // Hello: bad UTF-8 in the id, then in the address; flags; empty id; id too long.
        let hello = try Self.encoded([.hello(HelloMessage(nodeID: "ab", nodeAddr: "cd", priority: 1))])
        bad = hello
        bad[9] = 0xFF
        #expect(throws: WireError.badUTF8("the hello node id")) { _ = try Wire.decodeFrame(bad) }
        bad = hello
        bad[13] = 0xC3  // a lead byte with no continuation
        #expect(throws: WireError.badUTF8("the hello node address")) { _ = try Wire.decodeFrame(bad) }
        bad = hello
        bad[6] = 16  // bits 0 (cluster name), 1 (key), 2 (datagrams) and 3 (members) are defined; 4-7 are reserved
        #expect(throws: WireError.malformed("hello flags 16 set reserved bits")) { _ = try Wire.decodeFrame(bad) }
        bad[6] = 8  // members: no field
        #expect(try Wire.decodeFrame(bad) == .hello({ var h = HelloMessage(nodeID: "ab", nodeAddr: "cd"); h.takesMembers = true; return h }()))
        bad[6] = 4  // datagrams announced but absent
        #expect(throws: WireError.truncated("the hello datagram port")) { _ = try Wire.decodeFrame(bad) }
        bad[6] = 1  // a name announced but absent
        #expect(throws: WireError.truncated("the hello cluster name length")) { _ = try Wire.decodeFrame(bad) }
        #expect(throws: WireError.malformed("the hello node id is empty")) {
            _ = try Wire.decodeFrame([0, 0, 0, 15, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        }
        var longID: [UInt8] = [1, 1, 0, 1, 0, 0]
        longID += Self.be32(0)  // padding; the id length (256) is checked before its bytes
        #expect(throws: WireError.malformed("the hello node id is 256 bytes, more than 255")) {
            _ = try Wire.decodeFrame(Self.be32(UInt32(longID.count)) + longID)
        }
        // Vote request and response with reserved flag bits, and a bad UTF-8 reason.
        let request = try Self.encoded([Self.samples[6]])
        bad = request
        bad[37] = 8  // bit 1 is the transfer flag (TransferWireTests), bit 2 the configuration
        #expect(throws: WireError.malformed("vote request flags 8 set reserved bits")) { _ = try Wire.decodeFrame(bad) }
        let response = try Self.encoded([.voteResponse(VoteResponse(voterID: "v", term: 1, voteGranted: false, reason: "r"))])
        bad = response
        bad[21] = 8  // bit 2: a configuration follows the reason
        #expect(throws: WireError.malformed("vote response flags 8 set reserved bits")) { _ = try Wire.decodeFrame(bad) }
        bad = response
        bad[bad.count - 1] = 0x80
        #expect(throws: WireError.badUTF8("the vote response reason")) { _ = try Wire.decodeFrame(bad) }
        // Every error has a readable description.
        let errors: [WireError] = [
            .frameTooLarge(70000), .frameTooShort, .unknownType(9), .badVersion(2), .truncated("x"),
            .trailingBytes(type: 2, count: 1), .badUTF8("x"), .malformed("x"), .lineTooLong, .badJSON("x"),
            .unknownMessageType("x"),
        ]
        for e in errors { #expect(!e.description.isEmpty) }
    }

    @Test func errorFromTheHandlerStopsTheFeed() throws {
        let bytes = try Self.encoded(Array(Self.samples.prefix(4)))
        var decoder = FrameDecoder()
        var count = 0
        #expect(throws: WireError.malformed("stop")) {
            try decoder.feed(bytes) { _ throws(WireError) in
                count += 1
                if count == 2 { throw .malformed("stop") }
            }
        }
        #expect(count == 2)
    }

    @Test func randomGarbageNeverCrashes() throws {
        var rng = SplitMix64(seed: 20_000)
        let valid = try Self.encoded(Self.samples)
        var decodedFrames = 0
        var errors = 0
        for i in 0..<20_000 {
            var input: [UInt8]
            switch i % 4 {
            case 0:  // pure noise
                input = (0..<Int.random(in: 0...120, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:  // noise behind a plausible header
                let len = Int.random(in: 0...80, using: &rng)
                input = Self.be32(UInt32(len)) + [UInt8.random(in: 0...6, using: &rng)]
                input += (0..<Int.random(in: 0...90, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            default:  // valid frames with a few bytes changed, and maybe cut short
                input = valid
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    input[Int.random(in: 0..<input.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                if rng.next() % 3 == 0 { input.removeLast(Int.random(in: 0..<input.count, using: &rng)) }
            }
            var sizes: [Int] = []
            var total = 0
            while total < input.count {
                let s = Int.random(in: 1...64, using: &rng)
                sizes.append(s)
                total += s
            }
            var decoder = FrameDecoder()
            let all = input.span.bytes
            var offset = 0
            do {
                for s in sizes {
                    let end = min(input.count, offset + s)
                    try decoder.feed(all.extracting(offset..<end)) { _ throws(WireError) in decodedFrames += 1 }
                    offset = end
                }
            } catch {
                errors += 1
                #expect(!error.description.isEmpty)
            }
            _ = try? Wire.decodeFrame(input)
            _ = try? JSONMessage.decode(line: input)
        }
        #expect(decodedFrames > 0)
        #expect(errors > 0)
    }

    // MARK: JSON lines

    static func json(_ text: String) throws(WireError) -> JSONMessage { try JSONMessage.decode(line: Array(text.utf8)) }

    @Test func seedExamplesDecode() throws {
        let announcement = try Self.json(
            #"{"message_type":"node_announcement","node_id":"n2","node_addr":"127.0.0.1:7002","role":0,"epoch":0,"term":0,"priority":1,"timestamp":"2026-11-26T10:00:00.123456789Z"}"#)
        #expect(
            announcement == .announcement(
                AnnouncementMessage(
                    nodeID: "n2", nodeAddr: "127.0.0.1:7002", role: .replica, epoch: 0, term: 0, priority: 1,
                    timestamp: GoTime.parse("2026-11-26T10:00:00.123456789Z")!)))

        let node = #"{"ID":"n1","Addr":"127.0.0.1:7001","Role":2,"LastSeen":"2026-11-26T10:00:00.123456789+01:00","LastHeartbeatSeq":17,"Epoch":2,"Term":3,"LastLSN":120,"Priority":1}"#
        let list = try Self.json(#"{"message_type":"node_list","nodes":["# + node + #"],"success":true}"#)
        guard case .nodeList(let response) = list else { Issue.record("not a node list: \(list)"); return }
        #expect(response.success && response.error.isEmpty && response.nodes.count == 1)
        #expect(response.nodes.first?.id == "n1")
        #expect(response.nodes.first?.role == .primary)
        #expect(response.nodes.first?.lastHeartbeatSeq == 17)
        #expect(response.nodes.first?.lastLSN == 120)
        #expect(try Self.json(#"{"message_type":"node_list","nodes":[],"success":false,"error":"nope"}"#)
            == .nodeList(DiscoveryResponse(nodes: [], success: false, error: "nope")))

        #expect(try Self.json(#"{"message_type":"vote_request","candidate_id":"n2","term":3,"last_lsn":120,"epoch":2,"priority":1}"#)
            == .voteRequest(VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1)))
        #expect(try Self.json(#"{"message_type":"vote_response","voter_id":"n1","term":3,"vote_granted":true}"#)
            == .voteResponse(VoteResponse(voterID: "n1", term: 3, voteGranted: true)))
    }

    @Test func projectFormsDecode() throws {
        #expect(try Self.json(#"{"message_type":"heartbeat","node_id":"n1","seq":7,"epoch":2,"term":3,"lsn":120,"role":2,"ack_seq":6,"probe":false}"#)
            == .heartbeat(HeartbeatMessage(from: "n1", seq: 7, epoch: 2, term: 3, lsn: 120, role: .primary, ackSeq: 6)))
        #expect(try Self.json(#"{"message_type":"heartbeat","node_id":"n1","seq":7,"epoch":2,"term":3,"lsn":120,"role":1}"#)
            == .heartbeat(HeartbeatMessage(from: "n1", seq: 7, epoch: 2, term: 3, lsn: 120, role: .candidate)))
        #expect(try Self.json(#"{"message_type":"hello","version":1,"node_id":"n1","node_addr":"127.0.0.1:7001","priority":1}"#)
            == .hello(HelloMessage(nodeID: "n1", nodeAddr: "127.0.0.1:7001", priority: 1)))
        #expect(try Self.json(#"{"message_type":"goodbye","reason":"shutting down"}"#) == .goodbye("shutting down"))
        #expect(try Self.json(#"{"message_type":"status"}"#) == .status)
        #expect(try Self.json(#" { "message_type" : "status" } "#) == .status)
        #expect(try Self.json(#"{"message_type":"error","error":"bad line"}"#) == .error("bad line"))
        let status = try Self.json(
            #"{"message_type":"status_response","node_id":"n1","role":2,"state":"leader","term":3,"epoch":2,"leader_id":"n1","lsn":120,"members":[]}"#)
        #expect(status == .statusResponse(StatusResponse(nodeID: "n1", role: .primary, state: .leader, term: 3, epoch: 2, leaderID: "n1", lsn: 120)))
    }

    /// Every JSON example line in PROTOCOL.md decodes (the `error` example is itself a message).
    @Test func protocolDocumentJSONExamplesDecode() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("PROTOCOL.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        var count = 0
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("{\"message_type\"") else { continue }
            #expect(throws: Never.self, "\(trimmed)") { _ = try JSONMessage.decode(line: trimmed) }
            count += 1
        }
        #expect(count >= 10)
    }

    static let jsonSamples: [JSONMessage] = {
        let seen = Date(timeIntervalSince1970: 1_795_687_200.5)
        let members = [
            NodeInfo(id: "n1", addr: "127.0.0.1:7001", role: .primary, lastSeen: seen, lastHeartbeatSeq: .max, epoch: 2, term: 3, lastLSN: .max, priority: 1),
            NodeInfo(id: "n2", addr: "127.0.0.1:7002", role: .replica, lastSeen: GoTime.zero, priority: 0),
        ]
        return [
            .voteRequest(VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1)),
            .voteRequest(VoteRequest(candidateID: "n2", term: .max, lastLSN: .max, epoch: .max, priority: .min, preVote: true)),
            .voteRequest(VoteRequest(candidateID: "n3", term: 4, lastLSN: 120, epoch: 2, priority: 1, transfer: true)),
            .voteResponse(VoteResponse(voterID: "n1", term: 3, voteGranted: true)),
            .voteResponse(VoteResponse(voterID: "n1", term: .max, voteGranted: false, reason: "stale \"term\"\n", preVote: true, epoch: .max)),
            .announcement(AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002", role: .candidate, epoch: .max, term: 4, priority: 3, timestamp: seen)),
            .nodeList(DiscoveryResponse(nodes: members, success: true)),
            .nodeList(DiscoveryResponse(nodes: [], success: false, error: "cluster full")),
            .heartbeat(HeartbeatMessage(from: "n1", seq: .max, epoch: .max, term: .max, lsn: .max, role: .primary, ackSeq: .max, probe: true)),
            .heartbeat(HeartbeatMessage(from: "n3", seq: 0, epoch: 0, term: 0, lsn: 0, role: .replica)),
            .hello(HelloMessage(nodeID: "n1", nodeAddr: "127.0.0.1:7001", priority: -3)),
            .goodbye("duplicate connection"),
            .goodbye(""),
            .status,
            .statusResponse(StatusResponse(nodeID: "n1", role: .primary, state: .leader, term: .max, epoch: 2, leaderID: "n1", lsn: .max, members: members)),
            .statusResponse(StatusResponse(nodeID: "n2", role: .replica, state: .follower, term: 0, epoch: 0, lsn: 0)),
            .error("bad JSON: not valid JSON"),
        ]
    }()

    @Test func everyJSONFormRoundTrips() throws {
        for message in Self.jsonSamples {
            let line = message.encodeLine()
            #expect(line.last == 0x0A)
            #expect(line.dropLast().contains(0x0A) == false)
            #expect(line.first == 0x7B)
            let text = String(decoding: line, as: UTF8.self)
            #expect(text.contains(#""message_type":"\#(message.messageType)""#))
            #expect(try JSONMessage.decode(line: Array(line.dropLast())) == message)
        }
    }

    @Test func jsonOptionalKeysAreOmitted() {
        let response = String(decoding: JSONMessage.voteResponse(VoteResponse(voterID: "n1", term: 3, voteGranted: true)).encodeLine(), as: UTF8.self)
        #expect(!response.contains("reason") && !response.contains("pre_vote") && !response.contains("epoch"))
        let status = String(decoding: JSONMessage.statusResponse(StatusResponse(nodeID: "n1", role: .replica, state: .candidate, term: 1, epoch: 0, lsn: 0)).encodeLine(), as: UTF8.self)
        #expect(!status.contains("leader_id"))
        #expect(status.contains(#""state":"candidate""#))
        #expect(String(decoding: JSONMessage.status.encodeLine(), as: UTF8.self) == "{\"message_type\":\"status\"}\n")
        let heartbeat = String(decoding: JSONMessage.heartbeat(HeartbeatMessage(from: "n1", seq: 7, epoch: 2, term: 3, lsn: 120, role: .primary, ackSeq: 6)).encodeLine(), as: UTF8.self)
        #expect(heartbeat == #"{"ack_seq":6,"epoch":2,"lsn":120,"message_type":"heartbeat","node_id":"n1","probe":false,"role":2,"seq":7,"term":3}"# + "\n")
    }

    @Test func uint64MaxSurvivesExactly() throws {
        let line = Array(#"{"message_type":"vote_request","candidate_id":"n2","term":18446744073709551615,"last_lsn":18446744073709551615,"epoch":18446744073709551614}"#.utf8)
        guard case .voteRequest(let r) = try JSONMessage.decode(line: line) else { Issue.record("not a vote request"); return }
        #expect(r.term == .max && r.lastLSN == .max && r.epoch == .max - 1)
        let out = String(decoding: JSONMessage.voteRequest(r).encodeLine(), as: UTF8.self)
        #expect(out.contains(#""term":18446744073709551615"#))
        #expect(out.contains(#""epoch":18446744073709551614"#))
        #expect(throws: WireError.self) {
            try Self.json(#"{"message_type":"vote_request","candidate_id":"n2","term":18446744073709551616}"#)
        }
    }

    @Test func jsonErrors() {
        #expect(throws: WireError.unknownMessageType("gossip")) { try Self.json(#"{"message_type":"gossip"}"#) }
        #expect(throws: WireError.badJSON("missing key \"message_type\"")) { try Self.json(#"{"node_id":"n1"}"#) }
        #expect(throws: WireError.badJSON("not a JSON object")) { try Self.json("[1,2]") }
        #expect(throws: WireError.badJSON("heartbeat: missing key \"seq\"")) {
            try Self.json(#"{"message_type":"heartbeat","node_id":"n1","epoch":2,"term":3,"lsn":120,"role":2}"#)
        }
        #expect(throws: WireError.badVersion(2)) { try Self.json(#"{"message_type":"hello","version":2,"node_id":"n1"}"#) }
        #expect(throws: WireError.malformed("hello node_id is empty")) { try Self.json(#"{"message_type":"hello","version":1,"node_id":""}"#) }
        for bad in [
            "", "{", "{}", "nope", #"{"message_type":3}"#, #"{"message_type":"vote_request","term":"three"}"#,
            #"{"message_type":"heartbeat","node_id":"n1","seq":1,"epoch":2,"term":3,"lsn":1,"role":7}"#,
            #"{"message_type":"status_response","node_id":"n1","role":0,"state":"boss","term":0,"epoch":0,"lsn":0}"#,
            #"{"message_type":"vote_request","candidate_id":"n2","term":-1}"#,
        ] {
            #expect(throws: WireError.self) { try Self.json(bad) }
            do {
                _ = try Self.json(bad)
            } catch {
                switch error {
                case .badJSON(let why): #expect(!why.isEmpty)
                default: Issue.record("\(bad): \(error)")
                }
            }
        }
    }

    // MARK: Line splitting

    @Test func linesSplitWhateverTheChunks() throws {
        let text = "{\"message_type\":\"status\"}\r\n\n\r\n" + "{\"a\":1}\n" + "x\r\n" + "{\"message_type\":\"goodbye\"}\n" + "tail"
        let bytes = Array(text.utf8)
        let expected = ["{\"message_type\":\"status\"}", "{\"a\":1}", "x", "{\"message_type\":\"goodbye\"}"].map { Array($0.utf8) }
        func split(_ sizes: [Int]) throws -> ([[UInt8]], Int) {
            var s = LineSplitter()
            var lines: [[UInt8]] = []
            var offset = 0
            for size in sizes + [bytes.count] where offset < bytes.count {
                let end = min(bytes.count, offset + size)
                lines += try s.lines(Array(bytes[offset..<end]))
                offset = end
            }
            return (lines, s.bufferedByteCount)
        }
        #expect(try split([bytes.count]) == (expected, 4))
        #expect(try split(Array(repeating: 1, count: bytes.count)) == (expected, 4))
        for a in 0...bytes.count {
            for b in stride(from: 0, through: bytes.count - a, by: 3) {
                #expect(try split([a, b]) == (expected, 4))
            }
        }
        var s = LineSplitter()
        #expect(try s.lines(Array("\n\r\n\n".utf8)).isEmpty)
        #expect(s.bufferedByteCount == 0)
    }

    @Test func lineLimitIsEnforcedAsSoonAsSeen() throws {
        let max = Wire.maxLineBytes
        // Exactly the limit passes, with \n or \r\n, whole or in pieces.
        for ending in ["\n", "\r\n"] {
            let line = [UInt8](repeating: 0x61, count: max) + Array(ending.utf8)
            var s = LineSplitter()
            #expect(try s.lines(line).map(\.count) == [max])
            for cut in [max - 1, max, max + 1] where cut < line.count - 1 {
                var t = LineSplitter()
                #expect(try t.lines(Array(line.prefix(cut))).isEmpty)
                #expect(try t.lines(Array(line.dropFirst(cut))).map(\.count) == [max])
            }
        }
        // One byte more fails at once, without waiting for the newline.
        var s = LineSplitter()
        #expect(throws: WireError.lineTooLong) { _ = try s.lines([UInt8](repeating: 0x61, count: max + 1)) }
        #expect(throws: WireError.lineTooLong) { _ = try s.lines(Array("{}\n".utf8)) }  // stays failed
        s.reset()
        #expect(try s.lines(Array("{}\n".utf8)).count == 1)
        var t = LineSplitter()
        _ = try t.lines([UInt8](repeating: 0x61, count: max))
        #expect(t.bufferedByteCount == max)
        #expect(throws: WireError.lineTooLong) { _ = try t.lines([0x62]) }
        var u = LineSplitter()
        #expect(throws: WireError.lineTooLong) { _ = try u.lines([UInt8](repeating: 0x61, count: max + 1) + [0x0A]) }
        // A small limit, byte by byte.
        var v = LineSplitter(maxLineBytes: 3)
        #expect(try v.lines(Array("abc\r\nab".utf8)) == [Array("abc".utf8)])
        _ = try v.lines([0x63])
        #expect(throws: WireError.lineTooLong) { _ = try v.lines([0x0D, 0x0D]) }
    }

    @Test func linesDecodeStraightFromTheSpan() throws {
        var s = LineSplitter()
        var messages: [JSONMessage] = []
        let input = JSONMessage.status.encodeLine() + JSONMessage.goodbye("bye").encodeLine()
        try s.feed(input) { line throws(WireError) in messages.append(try JSONMessage.decode(line: line)) }
        #expect(messages == [.status, .goodbye("bye")])
    }
}
