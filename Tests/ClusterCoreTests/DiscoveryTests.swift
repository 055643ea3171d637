@testable import ClusterCore
import Foundation
import Testing

@Suite struct DiscoveryTests {
    @Test("an announcement registers the node and is answered with every member (the seed's HandleAnnouncement)")
    func registersAndLists() throws {
        let m = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        let response = try Discovery.handleAnnouncement(
            AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002", role: .replica, epoch: 3, term: 4, priority: 5),
            membership: m)
        #expect(response.success)
        #expect(response.messageType == "node_list")
        #expect(response.nodes.map(\.id) == ["seed", "n2"])  // this node first
        let n2 = try m.node("n2")
        #expect(n2.addr == "127.0.0.1:7002")
        #expect(n2.priority == 5)
        #expect(n2.term == 4)
        #expect(n2.epoch == 3)
        // Announcing again refreshes, never duplicates.
        let again = try Discovery.handleAnnouncement(
            AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002", role: .replica), membership: m)
        #expect(again.nodes.count == 2)
        // A node announcing itself to itself changes nothing.
        let own = Discovery.answer(AnnouncementMessage(nodeID: "seed", nodeAddr: "127.0.0.1:7001"), membership: m)
        #expect(own.success)
        #expect(m.nodeCount == 2)
    }

    @Test("announcements without an id or an address are refused with the seed's messages")
    func refusals() {
        let m = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        #expect(Discovery.answer(AnnouncementMessage(nodeID: "", nodeAddr: "127.0.0.1:1"), membership: m)
            == DiscoveryResponse(success: false, error: "node ID cannot be empty"))
        #expect(Discovery.answer(AnnouncementMessage(nodeID: "x", nodeAddr: ""), membership: m)
            == DiscoveryResponse(success: false, error: "node address cannot be empty"))
        #expect(m.nodeCount == 1)
    }

    @Test("a full membership refuses new announcers and learns no more, but still answers known ones")
    func cap() throws {
        let m = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        #expect(Discovery.answer(AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002"), membership: m, maxMembers: 2).success)
        #expect(Discovery.answer(AnnouncementMessage(nodeID: "n3", nodeAddr: "127.0.0.1:7003"), membership: m, maxMembers: 2)
            == DiscoveryResponse(success: false, error: "the cluster is full (2 members)"))
        #expect(Discovery.answer(AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002"), membership: m, maxMembers: 2).success)
        let answer = DiscoveryResponse(nodes: (3...9).map { NodeInfo(id: "n\($0)", addr: "127.0.0.1:700\($0)") })
        #expect(Discovery.learn(from: answer, into: m, maxMembers: 4) == ["n3", "n4"])
        #expect(m.nodeCount == 4)
    }

    @Test("a node learns the unknown members of an answer, never itself, never from a refusal")
    func learns() {
        let m = ClusterMembership(localNodeID: "n2", localAddr: "127.0.0.1:7002")
        let answer = DiscoveryResponse(nodes: [
            NodeInfo(id: "seed", addr: "127.0.0.1:7001", role: .primary, epoch: 2, term: 3, lastLSN: 9),
            NodeInfo(id: "n2", addr: "127.0.0.1:7002"),
            NodeInfo(id: "n3", addr: "127.0.0.1:7003"),
            NodeInfo(id: "", addr: "127.0.0.1:7004"),
            NodeInfo(id: "n5", addr: ""),
        ])
        #expect(Discovery.learn(from: answer, into: m) == ["seed", "n3"])
        #expect(Discovery.learn(from: answer, into: m).isEmpty)
        #expect(m.allNodes.map(\.id) == ["n2", "n3", "seed"])
        let refused = DiscoveryResponse(nodes: [NodeInfo(id: "n9", addr: "127.0.0.1:7009")], success: false, error: "no")
        #expect(Discovery.learn(from: refused, into: m).isEmpty)
    }
}
