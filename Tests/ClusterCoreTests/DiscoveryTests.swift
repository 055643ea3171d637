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

    // MARK: - Validation

    @Test("valid announcements: numeric IPv4 and IPv6 hosts (localhost too), ports 1...65535, visible ids", arguments: [
        ("n2", "127.0.0.1:1"), ("n2", "localhost:65535"), ("n2", "[::1]:7000"), ("n2", "[fe80::1%eth0]:7000"),
        ("n2", "[::ffff:10.0.0.1]:80"), ("n2", "[1:2:3:4:5:6:7:8]:80"), ("n2", "[1::]:80"), ("n2", "0.0.0.0:9"),
        ("nœud-é", "10.255.0.1:7000"), (String(repeating: "x", count: 255), "127.0.0.1:7002"), ("a/\\\"b", "127.0.0.1:7002"),
    ])
    func validAnnouncements(id: String, addr: String) throws {
        let m = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        let response = Discovery.answer(AnnouncementMessage(nodeID: id, nodeAddr: addr), membership: m)
        #expect(response.success, "\(response.error)")
        #expect(try m.node(id).addr == addr)
    }

    @Test("refusal reasons name the problem, and a huge address is not echoed whole")
    func refusalReasons() {
        let m = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        func why(_ id: String, _ addr: String, term: UInt64 = 0, epoch: UInt64 = 0) -> String {
            Discovery.answer(AnnouncementMessage(nodeID: id, nodeAddr: addr, epoch: epoch, term: term), membership: m).error
        }
        #expect(why("n2", "not an address") == "invalid address \"not an address\": expected host:port")
        #expect(why("n2", "127.0.0.1:0") == "invalid address \"127.0.0.1:0\": port 0 cannot be dialled")
        #expect(why("n2", "example.com:80") == "invalid address \"example.com:80\": the host must be a numeric IPv4 or IPv6 address")
        #expect(why(String(repeating: "x", count: 256), "127.0.0.1:7002") == "node ID is 256 bytes, more than 255")
        #expect(why("a b", "127.0.0.1:7002") == "node ID contains U+20: no whitespace, control or format characters")
        #expect(why("n2", "127.0.0.1:7002", term: ElectionCore.maxAcceptedTerm) == "term or epoch out of range")
        #expect(why("n2", "127.0.0.1:7002", epoch: .max) == "term or epoch out of range")
        #expect(why("seed", "127.0.0.1:7999") == "node ID \"seed\" is this node's own, at 127.0.0.1:7001")
        #expect(why("seed", "localhost:7001") == "")  // itself, written another way
        let huge = String(repeating: "9", count: 60_000)
        let refusal = Discovery.answer(AnnouncementMessage(nodeID: "n2", nodeAddr: huge), membership: m)
        #expect(!refusal.success)
        #expect(refusal.error == "node address is 60000 bytes, more than 255")
        let long = String(repeating: "9", count: 200) + ":1"
        #expect(why("n2", long).utf8.count < 160)
        #expect(m.nodeCount == 1)
    }

    @Test("a known primary's term is not moved by an announcement; other nodes' terms are")
    func refreshKeepsAPrimarysTerm() throws {
        let m = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        try m.addNode(NodeInfo(id: "n2", addr: "127.0.0.1:7002"))
        try m.addNode(NodeInfo(id: "n3", addr: "127.0.0.1:7003"))
        try m.recordHeartbeat(from: "n2", seq: 1, epoch: 1, term: 2, lsn: 0, role: .primary)
        #expect(Discovery.answer(AnnouncementMessage(nodeID: "n2", nodeAddr: "127.0.0.1:7002", epoch: 9, term: 1_000_000), membership: m).success)
        #expect(Discovery.answer(AnnouncementMessage(nodeID: "n3", nodeAddr: "127.0.0.1:7003", epoch: 9, term: 7), membership: m).success)
        #expect(try m.node("n2").term == 2)
        #expect(try m.node("n2").epoch == 9)
        #expect(try m.node("n3").term == 7)
        // The real primary's next heartbeat is not a stale claim.
        try m.recordHeartbeat(from: "n2", seq: 2, epoch: 1, term: 2, lsn: 0, role: .primary)
        #expect(m.primary?.id == "n2")
    }

    // MARK: - The node_list limit

    @Test("a node_list keeps this node, then the seeds, then the nodes heard from, and always fits in a line")
    func nodeListOrderAndLimit() throws {
        // Ids at their longest, made of the characters JSON escapes: the worst case per node.
        func id(_ i: Int) -> String { String(repeating: "\"\\/", count: 83) + String(format: "%06d", i) }
        let clock = FakeClock()
        let m = ClusterMembership(localNodeID: id(0), localAddr: "127.0.0.1:7000", now: { clock.now() })
        for i in 1..<1024 {
            clock.advance(.seconds(1))  // whole seconds: the dates read back exactly
            try m.addNode(NodeInfo(
                id: id(i), addr: "[1111:2222:3333:4444:5555:6666:7777:\(String(i, radix: 16))]:65535", epoch: .max, term: .max,
                lastLSN: .max, priority: .min))
        }
        try m.recordHeartbeat(from: id(500), seq: .max, epoch: 1, term: 1, lsn: .max, role: .replica)
        clock.advance(.seconds(1))
        try m.recordHeartbeat(from: id(700), seq: 1, epoch: 1, term: 1, lsn: .max, role: .replica)
        let seeds = ["[1111:2222:3333:4444:5555:6666:7777:3e8]:65535", "[1111:2222:3333:4444:5555:6666:7777:3]:65535", "127.0.0.1:7000"]
        let response = Discovery.answer(
            AnnouncementMessage(nodeID: id(1), nodeAddr: "[1111:2222:3333:4444:5555:6666:7777:1]:65535"), membership: m, seeds: seeds)
        #expect(response.success)
        let ids = response.nodes.map(\.id)
        // This node, the seeds by recency, the nodes heard from by recency, then the rest by recency:
        // the announcer (just refreshed) and the latest added.
        #expect(Array(ids.prefix(7)) == [id(0), id(1000), id(3), id(700), id(500), id(1), id(1023)])
        #expect(ids.count > 80)
        let line = JSONMessage.nodeList(response).encodeLine()
        #expect(line.count - 1 <= Wire.maxLineBytes)
        var splitter = LineSplitter()
        let lines = try splitter.lines(line)
        #expect(try lines.map { l throws(WireError) in try JSONMessage.decode(line: l) } == [.nodeList(response)])
        // One more node would not have fitted, by the bound.
        let next = try m.node(id(1023 - (ids.count - 6)))
        let bounds = response.nodes.reduce(Discovery.emptyNodeListBytes + response.nodes.count - 1) { $0 + $1.jsonSizeBound }
        #expect(bounds <= Wire.maxLineBytes)
        #expect(bounds + 1 + next.jsonSizeBound > Wire.maxLineBytes)
        // A smaller limit cuts the list sooner but keeps the order.
        let short = Discovery.nodeList(of: m, seeds: seeds, maxLineBytes: 4096).map(\.id)
        #expect(short == Array(ids.prefix(short.count)))
        #expect(JSONMessage.nodeList(DiscoveryResponse(nodes: try short.map { try m.node($0) })).encodeLine().count - 1 <= 4096)
    }

    @Test("the size bound of a node is never below its encoded size", arguments: 0..<8)
    func sizeBound(seed: Int) throws {
        var rng = SystemRandomNumberGenerator()
        _ = seed
        let alphabet: [Character] = ["a", "Z", "0", "\"", "\\", "/", "\n", "\u{1}", "\u{7F}", "é", "€", "😀", " ", "\u{2028}"]
        let plain = JSONEncoder()
        plain.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let slashes = JSONEncoder()
        slashes.outputFormatting = [.sortedKeys]
        let dates = [Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 1_800_000_000.123456789), GoTime.zero,
                     Date(timeIntervalSince1970: -62_135_596_800), Date(timeIntervalSince1970: 253_402_300_799.999),
                     Date(timeIntervalSince1970: 1e12), Date(timeIntervalSince1970: -1e11)]
        for _ in 0..<200 {
            let id = String((0..<Int.random(in: 1...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            let addr = String((0..<Int.random(in: 0...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
            let n = NodeInfo(
                id: id, addr: addr, role: NodeRole.allCases.randomElement(using: &rng)!, lastSeen: dates.randomElement(using: &rng)!,
                lastHeartbeatSeq: UInt64.random(in: 0...UInt64.max, using: &rng) >> UInt64.random(in: 0...63, using: &rng),
                epoch: [0, 9, 10, .max].randomElement(using: &rng)!, term: UInt64.random(in: 0...UInt64.max, using: &rng),
                lastLSN: .max, priority: [Int.min, -1, 0, 1, 10, Int.max].randomElement(using: &rng)!)
            let encoded = try plain.encode(n).count
            #expect(n.jsonSizeBound >= encoded, "\(n)")
            #expect(n.jsonSizeBound >= (try slashes.encode(n).count), "\(n)")
        }
        // Exact for a plain node with a date of this era written to the nanosecond.
        let exact = NodeInfo(id: "n1", addr: "127.0.0.1:7001", lastSeen: Date(timeIntervalSince1970: 1_800_000_000.5))
        #expect(exact.jsonSizeBound - (try plain.encode(exact).count) == 30 - "2027-01-15T08:00:00.5Z".count)
    }

    // MARK: - Churn

    @Test("a seed that goes away and comes back empty: nodes keep what they learned and it learns them again")
    func seedComesBack() throws {
        var seed = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        let a = ClusterMembership(localNodeID: "a", localAddr: "127.0.0.1:7002")
        let b = ClusterMembership(localNodeID: "b", localAddr: "127.0.0.1:7003")
        func announce(_ n: ClusterMembership, to seed: ClusterMembership) -> [String] {
            let local = n.localNode
            let answer = Discovery.answer(AnnouncementMessage(nodeID: local.id, nodeAddr: local.addr), membership: seed, seeds: ["127.0.0.1:7001"])
            return Discovery.learn(from: answer, into: n)
        }
        #expect(announce(a, to: seed) == ["seed"])
        #expect(announce(b, to: seed) == ["seed", "a"])
        #expect(announce(a, to: seed) == ["b"])
        // The seed restarts with an empty membership.
        seed = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        #expect(announce(a, to: seed) == [])  // a answer naming seed and a: nothing new, nothing lost
        #expect(a.allNodes.map(\.id) == ["a", "b", "seed"])
        #expect(announce(b, to: seed) == [])
        #expect(seed.allNodes.map(\.id) == ["a", "b", "seed"])  // learned again from the announcements
        // The seed is unreachable for a while: no answer, nothing changes; a refusal changes nothing either.
        #expect(Discovery.learn(from: DiscoveryResponse(success: false, error: "the cluster is full (1 members)"), into: a) == [])
        #expect(a.nodeCount == 3)
    }

    @Test("a late joiner learns everyone from its first answer, and the others learn it from theirs")
    func lateJoiner() throws {
        let seed = ClusterMembership(localNodeID: "seed", localAddr: "127.0.0.1:7001")
        let members = (2...5).map { ClusterMembership(localNodeID: "n\($0)", localAddr: "127.0.0.1:700\($0)") }
        func announce(_ n: ClusterMembership) -> [String] {
            let local = n.localNode
            return Discovery.learn(from: Discovery.answer(AnnouncementMessage(nodeID: local.id, nodeAddr: local.addr), membership: seed), into: n)
        }
        for n in members { _ = announce(n) }
        for n in members { _ = announce(n) }
        #expect(members.allSatisfy { $0.nodeCount == 5 })
        let late = ClusterMembership(localNodeID: "n9", localAddr: "127.0.0.1:7009")
        #expect(Set(announce(late)) == ["seed", "n2", "n3", "n4", "n5"])
        for n in members { #expect(announce(n) == ["n9"]) }
        #expect(members.allSatisfy { $0.nodeCount == 6 })
    }

    @Test("learning skips what an older seed would pass on: bad ids, bad addresses, terms out of range")
    func learnSkipsInvalidNodes() {
        let m = ClusterMembership(localNodeID: "n2", localAddr: "127.0.0.1:7002")
        let answer = DiscoveryResponse(nodes: [
            NodeInfo(id: "good", addr: "127.0.0.1:7003"),
            NodeInfo(id: "bad addr", addr: "127.0.0.1:7004"),
            NodeInfo(id: "n5", addr: "not an address"),
            NodeInfo(id: "n6", addr: "127.0.0.1:7006", term: ElectionCore.maxAcceptedTerm),
            NodeInfo(id: "n7", addr: "127.0.0.1:7007", epoch: .max),
            NodeInfo(id: "p", addr: "127.0.0.1:7008", role: .primary, term: 4),
        ])
        #expect(Discovery.learn(from: answer, into: m) == ["good", "p"])
        #expect(m.primary?.id == "p")  // a seed's report of a primary is taken
    }
}
