import Foundation
import Testing

@testable import ClusterCore

// Leadership transfer on the wire (issue 7): the TIMEOUT_NOW frame (type 6) and the vote request's
// `transfer` flag (binary flag bit 1, JSON key `transfer`), laid out as PROTOCOL.md says.

extension WireTests {
    @Test func timeoutNowIsLaidOutAsDocumented() throws {
        var out: [UInt8] = []
        try Wire.encodeTimeoutNow(TimeoutNowMessage(from: "n1", term: 3), into: &out)
        // len 14, type 6, flags 0, term 3, idLen 2, "n1": the example in PROTOCOL.md.
        #expect(out == [0, 0, 0, 14, 6, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 2, 0x6E, 0x31])
        #expect(try Wire.decodeFrame(out) == .timeoutNow(TimeoutNowMessage(from: "n1", term: 3)))
        #expect(FrameType.timeoutNow.rawValue == 6 && FrameType.timeoutNow.description == "timeout now")
        let frame = WireFrame(.timeoutNow(TimeoutNowMessage(from: "n1", term: 3)))
        #expect(frame.type == .timeoutNow)
        #expect(frame.electionMessage(from: "n1") == .timeoutNow(TimeoutNowMessage(from: "n1", term: 3)))
    }

    @Test func voteRequestTransferFlagIsBitOne() throws {
        let request = VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1, transfer: true)
        let bytes = try Self.encoded([.voteRequest(request)])
        #expect(bytes[37] == 2)
        #expect(try Wire.decodeFrame(bytes) == .voteRequest(request))
        var both = request
        both.preVote = true  // a PreVote never skips the lease: the core ignores the flag there
        #expect(try Self.encoded([.voteRequest(both)])[37] == 3)
    }

    /// Frames of senders that predate transfers (flag bit 1 always 0) decode as before.
    @Test func olderVoteRequestFramesStillDecode() throws {
        // A VOTE_REQUEST as version 1 wrote it before transfers: term 3, lastLSN 120, epoch 2,
        // priority 1, flags 1 (PreVote), candidate "n2".
        let older: [UInt8] = [0, 0, 0, 38, 3] + [0, 0, 0, 0, 0, 0, 0, 3] + [0, 0, 0, 0, 0, 0, 0, 120]
            + [0, 0, 0, 0, 0, 0, 0, 2] + [0, 0, 0, 0, 0, 0, 0, 1] + [1] + [0, 2, 0x6E, 0x32]
        #expect(try Wire.decodeFrame(older)
            == .voteRequest(VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1, preVote: true)))
        var plain = older
        plain[37] = 0
        guard case .voteRequest(let r) = try Wire.decodeFrame(plain) else { Issue.record("not a vote request"); return }
        #expect(!r.transfer && !r.preVote)
        // And a request without the flag encodes exactly as before.
        #expect(try Self.encoded([.voteRequest(VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1, preVote: true))]) == older)
    }

    @Test func malformedTransferFramesAreErrors() throws {
        // Vote request: bits 3-7 of the flags are still reserved (bit 2: a configuration follows).
        let request = try Self.encoded([.voteRequest(VoteRequest(candidateID: "n2", term: 3, transfer: true))])
        for flags: UInt8 in [8, 10, 0x80, 0xFF] {
            var bad = request
            bad[37] = flags
            #expect(throws: WireError.malformed("vote request flags \(flags) set reserved bits")) { _ = try Wire.decodeFrame(bad) }
        }
        let good = try Self.encoded([.timeoutNow(TimeoutNowMessage(from: "ab", term: 9))])
        var bad = good
        bad[5] = 1
        #expect(throws: WireError.malformed("timeout now flags 1 set reserved bits")) { _ = try Wire.decodeFrame(bad) }
        bad = good
        bad[16] = 0xFF
        #expect(throws: WireError.badUTF8("the timeout now sender id")) { _ = try Wire.decodeFrame(bad) }
        // An empty id, an id of 256 bytes (its length is checked before its bytes).
        #expect(throws: WireError.malformed("the timeout now sender id is empty")) {
            _ = try Wire.decodeFrame([0, 0, 0, 12, 6, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0])
        }
        #expect(throws: WireError.malformed("the timeout now sender id is 256 bytes, more than 255")) {
            _ = try Wire.decodeFrame([0, 0, 0, 14, 6, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0x61, 0x62])
        }
        // Truncated inside each field, and a trailing byte.
        #expect(throws: WireError.truncated("the timeout now flags")) { _ = try Wire.decodeFrame([0, 0, 0, 1, 6]) }
        #expect(throws: WireError.truncated("the timeout now term")) { _ = try Wire.decodeFrame([0, 0, 0, 5, 6, 0, 0, 0, 0]) }
        #expect(throws: WireError.truncated("the timeout now sender id length")) {
            _ = try Wire.decodeFrame([0, 0, 0, 11, 6, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0])
        }
        #expect(throws: WireError.truncated("the timeout now sender id")) {
            _ = try Wire.decodeFrame([0, 0, 0, 13, 6, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 0x61])
        }
        var long = good
        long.append(0)
        long.replaceSubrange(0..<4, with: Self.be32(UInt32(long.count - 4)))
        #expect(throws: WireError.trailingBytes(type: 6, count: 1)) { _ = try Wire.decodeFrame(long) }
        // The encoder refuses a bad id and appends nothing.
        var out: [UInt8] = [7]
        #expect(throws: WireError.malformed("timeout now sender id is empty")) {
            try Wire.encodeTimeoutNow(TimeoutNowMessage(from: "", term: 1), into: &out)
        }
        #expect(throws: WireError.malformed("timeout now sender id is 256 bytes, more than 255")) {
            try Wire.encode(.timeoutNow(TimeoutNowMessage(from: String(repeating: "x", count: 256), term: 1)), into: &out)
        }
        #expect(out == [7])
    }

    @Test func jsonTransferKeyIsOptionalAndOmittedWhenFalse() throws {
        let plain = String(decoding: JSONMessage.voteRequest(VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1)).encodeLine(), as: UTF8.self)
        #expect(plain == #"{"candidate_id":"n2","epoch":2,"last_lsn":120,"message_type":"vote_request","priority":1,"term":3}"# + "\n")
        let marked = String(decoding: JSONMessage.voteRequest(VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1, transfer: true)).encodeLine(), as: UTF8.self)
        #expect(marked == #"{"candidate_id":"n2","epoch":2,"last_lsn":120,"message_type":"vote_request","priority":1,"term":3,"transfer":true}"# + "\n")
        #expect(try Self.json(#"{"message_type":"vote_request","candidate_id":"n2","term":3,"transfer":true}"#)
            == .voteRequest(VoteRequest(candidateID: "n2", term: 3, priority: 0, transfer: true)))
        #expect(try Self.json(#"{"message_type":"vote_request","candidate_id":"n2","term":3,"transfer":false}"#)
            == .voteRequest(VoteRequest(candidateID: "n2", term: 3, priority: 0)))
        // null reads as absent, as for `pre_vote`.
        #expect(try Self.json(#"{"message_type":"vote_request","candidate_id":"n2","term":3,"transfer":null}"#)
            == .voteRequest(VoteRequest(candidateID: "n2", term: 3, priority: 0)))
        for bad in [
            #"{"message_type":"vote_request","candidate_id":"n2","term":3,"transfer":"yes"}"#,
            #"{"message_type":"vote_request","candidate_id":"n2","term":3,"transfer":1}"#,
            #"{"message_type":"vote_request","candidate_id":"n2","term":3,"transfer":[true]}"#,
        ] {
            #expect(throws: WireError.self, "\(bad)") { try Self.json(bad) }
        }
    }
}
