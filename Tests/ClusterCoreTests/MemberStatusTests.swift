import Foundation
import Testing
@testable import ClusterCore

@Suite struct MemberStatusTests {
    @Test("judge: alive when linked and heard within the health timeout, suspect within twice it, else failed")
    func judgeBoundaries() {
        let t = Duration.seconds(1)
        #expect(MemberStatus.judge(linked: true, sinceHeard: .milliseconds(999), healthTimeout: t) == .alive)
        #expect(MemberStatus.judge(linked: false, sinceHeard: .milliseconds(10), healthTimeout: t) == .suspect)
        #expect(MemberStatus.judge(linked: true, sinceHeard: .seconds(1), healthTimeout: t) == .suspect)
        #expect(MemberStatus.judge(linked: true, sinceHeard: .milliseconds(1999), healthTimeout: t) == .suspect)
        #expect(MemberStatus.judge(linked: true, sinceHeard: .seconds(2), healthTimeout: t) == .failed)
        #expect(MemberStatus.judge(linked: true, sinceHeard: nil, healthTimeout: t) == .failed)
    }

    @Test("status_response: status, incarnation and voter beside each member's PascalCase NodeInfo keys, left and has_quorum; round trip")
    func statusResponseCarriesLiveness() throws {
        let node = NodeInfo(id: "n2", addr: "127.0.0.1:7002")
        let status = StatusResponse(
            nodeID: "n1", role: .primary, state: .leader, term: 3, epoch: 2, leaderID: "n1", lsn: 0, members: [node],
            liveness: ["n2": MemberLiveness(status: .suspect, incarnation: 4, voter: true)], left: ["n9"], hasQuorum: false)
        let line = String(decoding: JSONMessage.statusResponse(status).encodeLine(), as: UTF8.self)
        #expect(line.contains(#""ID":"n2""#) && line.contains(#""LastSeen":"#) && line.contains(#""Priority":"#), "\(line)")
        #expect(line.contains(#""incarnation":4,"status":"suspect","voter":true}"#), "\(line)")
        #expect(line.contains(#""left":["n9"]"#) && line.contains(#""has_quorum":false"#), "\(line)")
        guard case .statusResponse(let decoded) = try JSONMessage.decode(line: line) else {
            Issue.record("not a status_response: \(line)")
            return
        }
        #expect(decoded.liveness == status.liveness && decoded.left == ["n9"] && decoded.hasQuorum == false)
        #expect(decoded.members.map(\.id) == ["n2"])
    }

    @Test("a status_response without the optional keys (an older node) decodes with none")
    func olderStatusResponse() throws {
        let line = #"{"message_type":"status_response","node_id":"n1","role":2,"state":"leader","term":3,"epoch":2,"leader_id":"n1","lsn":120,"members":[{"ID":"n1","Addr":"127.0.0.1:7001","Role":2,"LastSeen":"2026-11-26T10:00:00Z","LastHeartbeatSeq":0,"Epoch":2,"Term":3,"LastLSN":120,"Priority":1}]}"#
        guard case .statusResponse(let decoded) = try JSONMessage.decode(line: line) else {
            Issue.record("not a status_response")
            return
        }
        #expect(decoded.liveness.isEmpty && decoded.left.isEmpty && decoded.hasQuorum == nil)
        #expect(decoded.members.count == 1)
    }
}
