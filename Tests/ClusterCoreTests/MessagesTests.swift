import Foundation
import Testing
@testable import ClusterCore

@Suite struct MessagesTests {
    // MARK: - The exact examples of PROTOCOL-NOTES.md

    @Test func decodesAnnouncementExample() throws {
        let m = try decodeJSON(
            AnnouncementMessage.self,
            #"{"message_type":"node_announcement","node_id":"n2","node_addr":"127.0.0.1:7002","role":0,"epoch":0,"term":0,"priority":1,"timestamp":"2026-11-26T10:00:00.123456789Z"}"#)
        #expect(m.messageType == "node_announcement")
        #expect(m.nodeID == "n2")
        #expect(m.nodeAddr == "127.0.0.1:7002")
        #expect(m.role == .replica)
        #expect(m.epoch == 0 && m.term == 0)
        #expect(m.priority == 1)
        #expect(abs(m.timestamp.timeIntervalSince1970 - (exampleInstant + 0.123456789)) < 1e-6)
    }

    @Test func decodesNodeListExamples() throws {
        let ok = try decodeJSON(
            DiscoveryResponse.self,
            #"{"message_type":"node_list","nodes":[\#(NodeInfoCodingTests.goJSON)],"success":true}"#)
        #expect(ok.messageType == "node_list")
        #expect(ok.success)
        #expect(ok.error == "")
        #expect(ok.nodes.count == 1)
        #expect(ok.nodes.first?.id == "n1")
        #expect(ok.nodes.first?.role == .primary)

        let refused = try decodeJSON(
            DiscoveryResponse.self, #"{"message_type":"node_list","nodes":null,"success":false,"error":"node ID cannot be empty"}"#)
        #expect(!refused.success)
        #expect(refused.nodes == [])
        #expect(refused.error == "node ID cannot be empty")
    }

    @Test func decodesVoteRequestExample() throws {
        let r = try decodeJSON(
            VoteRequest.self, #"{"message_type":"vote_request","candidate_id":"n2","term":3,"last_lsn":120,"epoch":2,"priority":1}"#)
        #expect(r == VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1))
        #expect(!r.preVote)
    }

    @Test func decodesVoteResponseExample() throws {
        let r = try decodeJSON(VoteResponse.self, #"{"message_type":"vote_response","voter_id":"n1","term":3,"vote_granted":true}"#)
        #expect(r == VoteResponse(voterID: "n1", term: 3, voteGranted: true))
        #expect(r.reason == "")
    }

    // MARK: - Encoding: the seed's snake_case keys, omissions

    @Test func encodesAnnouncement() throws {
        let m = AnnouncementMessage(
            nodeID: "n2", nodeAddr: "127.0.0.1:7002", role: .candidate, epoch: 4, term: 5, priority: 7,
            timestamp: Date(timeIntervalSince1970: exampleInstant + 0.5))
        #expect(try encodeJSON(m) == #"{"epoch":4,"message_type":"node_announcement","node_addr":"127.0.0.1:7002","node_id":"n2","priority":7,"role":1,"term":5,"timestamp":"2026-11-26T10:00:00.5Z"}"#)
        #expect(try decodeJSON(AnnouncementMessage.self, encodeJSON(m)) == m)
    }

    @Test func encodesDiscoveryResponse() throws {
        let node = NodeInfo(id: "n1", addr: "127.0.0.1:7001", lastSeen: Date(timeIntervalSince1970: exampleInstant))
        let ok = DiscoveryResponse(nodes: [node])
        #expect(try encodeJSON(ok) == #"{"message_type":"node_list","nodes":[{"Addr":"127.0.0.1:7001","Epoch":0,"ID":"n1","LastHeartbeatSeq":0,"LastLSN":0,"LastSeen":"2026-11-26T10:00:00Z","Priority":1,"Role":0,"Term":0}],"success":true}"#)
        let refused = DiscoveryResponse(success: false, error: "no")
        #expect(try encodeJSON(refused) == #"{"error":"no","message_type":"node_list","nodes":[],"success":false}"#)
        #expect(try decodeJSON(DiscoveryResponse.self, encodeJSON(ok)) == ok)
        #expect(try decodeJSON(DiscoveryResponse.self, encodeJSON(refused)) == refused)
    }

    @Test func encodesVoteRequest() throws {
        let r = VoteRequest(candidateID: "n2", term: 3, lastLSN: 120, epoch: 2, priority: 1)
        #expect(try encodeJSON(r) == #"{"candidate_id":"n2","epoch":2,"last_lsn":120,"message_type":"vote_request","priority":1,"term":3}"#)
        var pre = r
        pre.preVote = true
        #expect(try encodeJSON(pre) == #"{"candidate_id":"n2","epoch":2,"last_lsn":120,"message_type":"vote_request","pre_vote":true,"priority":1,"term":3}"#)
        #expect(try decodeJSON(VoteRequest.self, encodeJSON(pre)) == pre)
    }

    @Test func encodesVoteResponse() throws {
        let granted = VoteResponse(voterID: "n1", term: 3, voteGranted: true)
        #expect(try encodeJSON(granted) == #"{"message_type":"vote_response","term":3,"vote_granted":true,"voter_id":"n1"}"#)
        let refused = VoteResponse(voterID: "n1", term: 3, voteGranted: false, reason: "stale term")
        #expect(try encodeJSON(refused) == #"{"message_type":"vote_response","reason":"stale term","term":3,"vote_granted":false,"voter_id":"n1"}"#)
        let extended = VoteResponse(voterID: "n1", term: 3, voteGranted: true, preVote: true, epoch: 9)
        #expect(try encodeJSON(extended) == #"{"epoch":9,"message_type":"vote_response","pre_vote":true,"term":3,"vote_granted":true,"voter_id":"n1"}"#)
        for r in [granted, refused, extended] {
            #expect(try decodeJSON(VoteResponse.self, encodeJSON(r)) == r)
        }
    }

    @Test func defaultMessageTypes() {
        #expect(AnnouncementMessage(nodeID: "n", nodeAddr: "a:1").messageType == "node_announcement")
        #expect(DiscoveryResponse().messageType == "node_list")
        #expect(VoteRequest(candidateID: "n", term: 1).messageType == "vote_request")
        #expect(VoteResponse(voterID: "n", term: 1, voteGranted: false).messageType == "vote_response")
        let a = AnnouncementMessage(nodeID: "n", nodeAddr: "a:1")
        #expect(a.role == .replica && a.epoch == 0 && a.term == 0 && a.priority == 1)
        let d = DiscoveryResponse()
        #expect(d.nodes == [] && d.success && d.error == "")
        let v = VoteRequest(candidateID: "n", term: 1)
        #expect(v.lastLSN == 0 && v.epoch == 0 && v.priority == 1 && !v.preVote)
        let w = VoteResponse(voterID: "n", term: 1, voteGranted: false)
        #expect(w.reason == "" && !w.preVote && w.epoch == 0)
    }

    // MARK: - Decoding edge cases

    @Test func missingKeysDecodeAsGoZeroValues() throws {
        let a = try decodeJSON(AnnouncementMessage.self, "{}")
        #expect(a.messageType == "" && a.nodeID == "" && a.nodeAddr == "" && a.role == .replica)
        #expect(a.epoch == 0 && a.term == 0 && a.priority == 0 && a.timestamp == GoTime.zero)
        let d = try decodeJSON(DiscoveryResponse.self, "{}")
        #expect(d.messageType == "" && d.nodes == [] && !d.success && d.error == "")
        let v = try decodeJSON(VoteRequest.self, "{}")
        #expect(v == VoteRequest(messageType: "", candidateID: "", term: 0, priority: 0))
        let w = try decodeJSON(VoteResponse.self, "{}")
        #expect(w == VoteResponse(messageType: "", voterID: "", term: 0, voteGranted: false))
    }

    @Test func uint64MaxRoundTrips() throws {
        let r = VoteRequest(candidateID: "n", term: .max, lastLSN: .max, epoch: .max)
        #expect(try decodeJSON(VoteRequest.self, encodeJSON(r)) == r)
        let a = AnnouncementMessage(nodeID: "n", nodeAddr: "a:1", epoch: .max, term: .max, timestamp: GoTime.zero)
        #expect(try decodeJSON(AnnouncementMessage.self, encodeJSON(a)) == a)
        let w = try decodeJSON(VoteResponse.self, #"{"term":18446744073709551615,"epoch":18446744073709551615}"#)
        #expect(w.term == .max && w.epoch == .max)
    }

    @Test func unknownRoleInAnnouncementIsAnError() {
        #expect(throws: DecodingError.self) {
            try decodeJSON(AnnouncementMessage.self, #"{"node_id":"n2","role":5}"#)
        }
    }

    @Test func badTimestampIsAnError() {
        #expect(throws: DecodingError.self) {
            try decodeJSON(AnnouncementMessage.self, #"{"timestamp":"2026-11-26T10:00:00"}"#)
        }
    }
}
