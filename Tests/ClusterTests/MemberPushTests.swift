import Cluster
import Foundation
import Testing
import UV

/// A node that adds a member through an announcement tells its linked peers at once (a MEMBER
/// frame, PROTOCOL.md), instead of leaving them to their next announcement.
@Suite("Members pushed to peers", .timeLimit(.minutes(1)))
struct MemberPushTests {
    @Test("an announcement to one node reaches its linked peers in a MEMBER frame; a known member's is not pushed again")
    func announcedMemberIsPushed() async throws {
        // Each node's only seed is itself: without the push, n2 and n3 would never learn of x1.
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        _ = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let n1 = cluster.manager("n1")!
        let port = try #require(n1.listenAddress?.port)
        let client = try await WireClient.connect(port: port, json: true)
        defer { client.close() }
        let announce = #"{"message_type":"node_announcement","node_id":"x1","node_addr":"127.0.0.1:9","role":0,"epoch":0,"term":0,"priority":4}"#
        client.send(line: announce)
        #expect(await client.wait(timeout: .seconds(5)) { $0.lines.count == 1 })
        #expect(await eventually(timeout: .seconds(5)) {
            ["n2", "n3"].allSatisfy { cluster.manager($0)!.membership.contains("x1") }
        })
        for id in ["n2", "n3"] {
            let node = cluster.manager(id)!
            let x1 = try node.membership.node("x1")
            #expect(x1.addr == "127.0.0.1:9" && x1.priority == 4 && x1.role == .replica)
            #expect(node.stats.membersLearnedFromPeers == 1)
            #expect(node.stats.membersPushed == 0)
        }
        #expect(n1.stats.membersPushed == 1)
        // Announced again: known, nothing pushed.
        client.send(line: announce)
        #expect(await client.wait(timeout: .seconds(5)) { $0.lines.count == 2 })
        #expect(n1.stats.membersPushed == 1)
        // An invalid announcement is refused and pushes nothing.
        client.send(line: #"{"message_type":"node_announcement","node_id":"bad id","node_addr":"127.0.0.1:9"}"#)
        #expect(await client.wait(timeout: .seconds(5)) { $0.lines.count == 3 })
        #expect(n1.stats.membersPushed == 1)
    }

    @Test("MEMBER frames on a member's link: an invalid member, this node's own id and a known member change nothing; a new one is added as a replica")
    func pushedMembersAreChecked() async throws {
        // A long election timeout: the hand-made link sends no heartbeats, and a link silent for
        // an election timeout is closed (on a busy machine the test can take longer than 1 s).
        let (node, port) = try soloNode("a", members: ["m1": nowhere], electionTimeout: .seconds(60))
        defer { try? node.stop() }
        let peer = try await WireClient.connect(port: port)
        defer { peer.close() }
        peer.hello(as: "m1")
        #expect(await eventually(timeout: .seconds(5)) { node.stats.peersConnected == 1 })
        for member in [
            MemberMessage(nodeID: "bad id", nodeAddr: "127.0.0.1:7"),  // whitespace in the id
            MemberMessage(nodeID: "z0", nodeAddr: "nowhere:7"),  // not a numeric host
            MemberMessage(nodeID: "a", nodeAddr: "127.0.0.1:8"),  // this node
            MemberMessage(nodeID: "m1", nodeAddr: "127.0.0.1:9"),  // known: its address stays
            MemberMessage(nodeID: "z1", nodeAddr: "127.0.0.1:7", priority: 3),
        ] {
            peer.sendFrame { try Wire.encodeMember(member, into: &$0) }
        }
        #expect(await eventually(timeout: .seconds(5)) { node.membership.contains("z1") })
        #expect(node.membership.nodeCount == 3)
        #expect(try node.membership.node("z1").priority == 3)
        #expect(try node.membership.node("m1").addr == nowhere)
        #expect(node.membership.localNode.addr != "127.0.0.1:8")
        let stats = node.stats
        #expect(stats.membersLearnedFromPeers == 1)
        #expect(stats.protocolErrors == 0)
        #expect(stats.peersConnected == 1)
    }
}
