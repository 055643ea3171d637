import Foundation
import Testing
@testable import ClusterCore

/// The membership and discovery defects of issue 6 (#13 to #16), each named for the defect and
/// written against the API that the code before the fix already had, so that each fails there.
@Suite struct MembershipDefectTests {
    let clock = FakeClock()
    let m: ClusterMembership

    init() throws {
        let clock = self.clock
        m = ClusterMembership(localNodeID: "n1", localAddr: "127.0.0.1:7001", now: { clock.now() })
        try m.addNode(NodeInfo(id: "n2", addr: "127.0.0.1:7002"))
        try m.addNode(NodeInfo(id: "n3", addr: "127.0.0.1:7003"))
    }

    // MARK: - #13 Range checks come too late

    @Test("#13: heartbeat fields out of range are written into the membership before they are checked")
    func heartbeatFieldsOutOfRangeAreWrittenBeforeTheyAreChecked() throws {
        let before = try m.node("n2")
        clock.advance(.seconds(1))
        let big = ElectionCore.maxAcceptedTerm
        #expect(throws: ClusterError.protocolViolation("term or epoch out of range")) {
            try m.recordHeartbeat(from: "n2", seq: 9, epoch: 1, term: big, lsn: 9, role: .primary)
        }
        #expect(throws: ClusterError.protocolViolation("term or epoch out of range")) {
            try m.recordHeartbeat(from: "n2", seq: 9, epoch: .max, term: 1, lsn: 9, role: .primary)
        }
        #expect(throws: ClusterError.protocolViolation("term or epoch out of range")) {
            try m.updateNodeHeartbeat("n2", seq: 9, epoch: big, term: 1)
        }
        #expect(try m.node("n2") == before)  // nothing written: not the role, term, epoch, lastSeen
        #expect(m.primary == nil)
        // Just below the bound is in range.
        try m.recordHeartbeat(from: "n2", seq: 9, epoch: big - 1, term: big - 1, lsn: 9, role: .primary)
        #expect(try m.node("n2").term == big - 1)
    }

    @Test("#13: the fencing epoch goes backwards at the next change")
    func fencingEpochGoesBackwardsAtTheNextChange() {
        m.observeEpoch(7)  // a primary's heartbeat
        m.setEpoch(4)  // a late or stale update of this node's own
        #expect(m.epoch == 7)
        #expect(m.localNode.epoch == 7)
        m.observeEpoch(ElectionCore.maxAcceptedTerm)  // out of range: ignored
        #expect(m.epoch == 7)
        #expect(m.incrementEpoch() == 8)
        m.setEpoch(0)
        #expect(m.epoch == 8)
    }

    // MARK: - #14 Stale primaries

    @Test("#14: after a failover the old primary stays primary in the survivors' membership")
    func stalePrimaryStaysPrimaryAfterFailover() throws {
        try m.recordHeartbeat(from: "n2", seq: 1, epoch: 1, term: 1, lsn: 0, role: .primary)
        #expect(m.primary?.id == "n2")
        // n2 stops; n3 wins term 2.
        try m.recordHeartbeat(from: "n3", seq: 1, epoch: 2, term: 2, lsn: 0, role: .primary)
        #expect(m.nodes(withRole: .primary).map(\.id) == ["n3"])
        #expect(try m.node("n2").role == .replica)
        #expect(m.primary?.id == "n3")
        // A late heartbeat of the deposed primary does not make it primary again.
        try m.recordHeartbeat(from: "n2", seq: 2, epoch: 1, term: 1, lsn: 0, role: .primary)
        #expect(m.nodes(withRole: .primary).map(\.id) == ["n3"])
        #expect(try m.node("n2").lastHeartbeatSeq == 2)  // the rest of it is recorded
        // This node wins term 3: n3 is deposed in its view.
        m.setLocalTerm(3)
        m.setLocalRole(.primary)
        #expect(m.nodes(withRole: .primary).map(\.id) == ["n1"])
        #expect(m.primary?.id == "n1")
    }

    // MARK: - #15 Discovery makes voters of strangers

    static let badAnnouncements: [(id: String, addr: String)] = [
        ("n9", "not an address"),
        ("n9", "127.0.0.1"),
        ("n9", "127.0.0.1:0"),
        ("n9", "127.0.0.1:65536"),
        ("n9", "127.0.0.1:-1"),
        ("n9", "example.com:7000"),
        ("n9", "256.0.0.1:7000"),
        ("n9", "1.2.3:7000"),
        ("n9", "01.2.3.4:7000"),
        ("n9", "[::1]:0"),
        ("n9", "[1:2:3:4:5:6:7:8:9]:7000"),
        ("n9", "[::1::2]:7000"),
        ("n9", "[fe80::1%]:7000"),
        ("n9", ":7000"),
        ("n9", String(repeating: "1", count: 300) + ":7000"),
        (String(repeating: "x", count: 256), "127.0.0.1:7009"),
        ("a b", "127.0.0.1:7009"),
        ("a\nb", "127.0.0.1:7009"),
        ("a\u{0}b", "127.0.0.1:7009"),
        ("\u{202E}evil", "127.0.0.1:7009"),
        ("tab\there", "127.0.0.1:7009"),
    ]

    @Test("#15: discovery accepts an announcement with any id and address", arguments: badAnnouncements)
    func discoveryAcceptsAnyIDAndAddress(id: String, addr: String) {
        let response = try? Discovery.handleAnnouncement(AnnouncementMessage(nodeID: id, nodeAddr: addr), membership: m)
        #expect(response?.success == false)
        #expect(response?.error.isEmpty == false)
        #expect(response?.nodes == [])
        #expect(m.nodeCount == 3)
    }

    @Test("#15: re-announcing rewrites a member's role, and an announcement makes a primary")
    func reannouncingRewritesAMembersRole() throws {
        try m.recordHeartbeat(from: "n2", seq: 1, epoch: 1, term: 1, lsn: 0, role: .primary)
        _ = try? Discovery.handleAnnouncement(
            AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002", role: .replica, epoch: 1, term: 1), membership: m)
        #expect(try m.node("n2").role == .primary)
        _ = try? Discovery.handleAnnouncement(
            AnnouncementMessage(nodeID: "n3", nodeAddr: "127.0.0.1:7003", role: .primary, epoch: 9, term: 9), membership: m)
        #expect(try m.node("n3").role == .replica)
        // A stranger announcing itself as the primary of a later term is a replica.
        _ = try? Discovery.handleAnnouncement(
            AnnouncementMessage(nodeID: "n9", nodeAddr: "127.0.0.1:7009", role: .primary, epoch: 99, term: 99), membership: m)
        #expect(try m.node("n9").role == .replica)
        #expect(m.primary?.id == "n2")
    }

    @Test("#15: a node_list of about 420 members is a line too long for every node")
    func nodeListLineTooLongWithManyMembers() throws {
        let seed = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7000")
        for i in 0..<1023 {
            try seed.addNode(NodeInfo(
                id: "node-\(i)", addr: "10.0.\(i / 250).\(i % 250 + 1):7000", epoch: 1_000_000, term: 1_000_000,
                priority: 100))
        }
        #expect(seed.nodeCount == 1024)
        let response = try #require(try? Discovery.handleAnnouncement(
            AnnouncementMessage(nodeID: "node-0", nodeAddr: "10.0.0.1:7000"), membership: seed))
        let line = JSONMessage.nodeList(response).encodeLine()
        var splitter = LineSplitter()
        let lines = try splitter.lines(line)  // what NodeDiscovery reads the answer with
        #expect(lines.count == 1)
        guard case .nodeList(let decoded)? = try lines.first.map({ l throws(WireError) in try JSONMessage.decode(line: l) }) else {
            Issue.record("not a node_list")
            return
        }
        #expect(decoded.success)
        #expect(decoded.nodes.first?.id == "seed")
        #expect(decoded.nodes.count > 300)  // as many as fit, not a handful
    }

    // MARK: - #16 Seed parity

    @Test("#16: an invalid announcement throws instead of being answered with success false and a reason")
    func invalidAnnouncementThrowsInsteadOfAnsweringSuccessFalse() {
        let noID = try? Discovery.handleAnnouncement(AnnouncementMessage(nodeID: "", nodeAddr: "127.0.0.1:7009"), membership: m)
        #expect(noID == DiscoveryResponse(success: false, error: "node ID cannot be empty"))
        let noAddr = try? Discovery.handleAnnouncement(AnnouncementMessage(nodeID: "n9", nodeAddr: ""), membership: m)
        #expect(noAddr == DiscoveryResponse(success: false, error: "node address cannot be empty"))
        let full = try? Discovery.handleAnnouncement(
            AnnouncementMessage(nodeID: "n9", nodeAddr: "127.0.0.1:7009"), membership: m, maxMembers: 3)
        #expect(full == DiscoveryResponse(success: false, error: "the cluster is full (3 members)"))
        #expect(m.nodeCount == 3)
    }

    @Test("#16: an announcement from a known node does not refresh its epoch, term and last-seen")
    func announcementFromKnownNodeDoesNotRefreshIt() throws {
        try m.recordHeartbeat(from: "n2", seq: 5, epoch: 1, term: 1, lsn: 40, role: .replica)
        clock.advance(.seconds(30))
        #expect(m.healthyNodeCount(timeout: .seconds(10)) == 1)
        let response = try? Discovery.handleAnnouncement(
            AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002", role: .candidate, epoch: 3, term: 4, priority: 7),
            membership: m)
        #expect(response?.success == true)
        let n2 = try m.node("n2")
        #expect(n2.lastSeen == clock.now())
        #expect(n2.epoch == 3)
        #expect(n2.term == 4)
        #expect(n2.role == .replica && n2.lastHeartbeatSeq == 5 && n2.lastLSN == 40 && n2.priority == 1)  // untouched
        #expect(n2.addr == "127.0.0.1:7002")
        #expect(m.healthyNodeCount(timeout: .seconds(10)) == 2)
        #expect(m.epoch == 0)  // the cluster epoch is not an announcement's to move
    }
}
