import Cluster
import Foundation
import Testing

@Suite("Discovery through seeds", .serialized, .timeLimit(.minutes(1)))
struct DiscoveryIntegrationTests {
    @Test("nodes that know only the seed's address find each other, link up and elect one primary")
    func bootstrapFromOneSeed() async throws {
        let ids = ["n1", "n2", "n3"]
        // Each listens on port 0; the seed's bound address is what the others are told.
        var seed = "127.0.0.1:0"
        let watch = ClusterWatch()
        var managers: [ElectionManager] = []
        var discoveries: [String: NodeDiscovery] = [:]
        var memberships: [String: ClusterMembership] = [:]
        defer {
            for d in discoveries.values { try? d.stop() }
            for m in managers { try? m.stop() }
        }
        for id in ids {
            // Each node knows only itself and the seed's address; minQuorumSize is a majority of
            // the intended cluster, so partial knowledge cannot elect anyone early.
            let config = TestCluster.config(id: id, addr: "127.0.0.1:0", seeds: [seed])
            let membership = ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:0")
            var options = NodeOptions(announceInterval: .milliseconds(50), logger: quietLogger)
            // The three agree on the first voters once they have found each other (bootstrap-expect).
            options.bootstrap = .expect(3)
            let manager = ElectionManager(config: config, membership: membership, options: options)
            manager.addObserver { watch.record(id, $0) }
            try manager.start()
            let bound = manager.listenAddress!.description
            if id == "n1" { seed = bound }
            let discovery = NodeDiscovery(config: config.announcing(bound, seed: seed), membership: membership, options: options)
            try discovery.start()
            managers.append(manager)
            discoveries[id] = discovery
            memberships[id] = membership
        }
        let allKnown = await eventually(timeout: .seconds(10)) {
            memberships.values.allSatisfy { $0.nodeCount == 3 }
        }
        #expect(allKnown)
        let elected = await watch.wait(timeout: .seconds(10)) { TestCluster.agreedLeader($0, among: ids) != nil }
        #expect(elected)
        #expect(watch.doubleLeaderTerms.isEmpty)
        // n2 and n3 heard from their seed; n1's only seed is itself, which does not count.
        #expect(discoveries["n2"]!.isHealthy())
        #expect(discoveries["n3"]!.isHealthy())
        #expect(!discoveries["n1"]!.isHealthy())
        #expect(discoveries["n2"]!.seeds == [seed])
    }

    @Test("a member learns of a join when the new node says hello, not at its next announcement (an early round)")
    func joinLearnedOnHello() async throws {
        // j joins last; "j" < "n2": it dials n2 at once. Each listens on port 0.
        var seed = "127.0.0.1:0"
        var managers: [String: ElectionManager] = [:]
        var discoveries: [String: NodeDiscovery] = [:]
        defer {
            for d in discoveries.values { try? d.stop() }
            for m in managers.values { try? m.stop() }
        }
        func start(_ id: String) throws {
            let config = TestCluster.config(id: id, addr: "127.0.0.1:0", seeds: [seed])
            let membership = ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:0")
            // An interval far beyond the test: after its first round at start, a member announces
            // again only out of turn. The seed does not tell n2 of j (MEMBER frames, tested in
            // `Members pushed to peers`): n2 is to learn of j from j's hello.
            var options = NodeOptions(announceInterval: .seconds(60), logger: quietLogger)
            options.pushesMembers = false
            let manager = ElectionManager(config: config, membership: membership, options: options)
            try manager.start()
            let bound = manager.listenAddress!.description
            if id == "n1" { seed = bound }
            let discovery = NodeDiscovery(config: config.announcing(bound, seed: seed), membership: membership, options: options)
            try discovery.start()
            managers[id] = manager
            discoveries[id] = discovery
        }
        try start("n1")
        try start("n2")
        #expect(await eventually(timeout: .seconds(10)) { ["n1", "n2"].allSatisfy { managers[$0]!.membership.nodeCount == 2 } })
        try start("j")
        // j learns n2 from the seed and dials it; n2, which does not know j, refuses it and
        // announces to the seed at once, whose answer lists j.
        let learned = await eventually(timeout: .seconds(10)) { (try? managers["n2"]!.membership.node("j")) != nil }
        #expect(learned, "n2 did not learn of j: early rounds \(discoveries["n2"]!.earlyRounds), unknown hellos \(managers["n2"]!.stats.unknownHellos)")
        #expect(discoveries["n2"]!.earlyRounds >= 1)
        #expect(managers["n2"]!.stats.unknownHellos >= 1)
        // And the link forms once n2 knows j (j redials with back-off).
        #expect(await eventually(timeout: .seconds(10)) { managers["n2"]!.stats.peersConnected == 2 })
    }

    @Test("a seed that is down makes discovery unhealthy, without harm")
    func seedDown() async throws {
        // Nothing listens on port 1 of the loopback: the seed is down (and this node does not listen).
        let config = ClusterConfig(nodeID: "lonely", nodeAddr: "127.0.0.1:2", seedNodes: ["127.0.0.1:1"],
                                   heartbeatInterval: .milliseconds(20), voteRequestTimeout: .milliseconds(100))
        let discovery = NodeDiscovery(config: config, membership: ClusterMembership(localNodeID: "lonely", localAddr: config.nodeAddr),
                                      options: NodeOptions(announceInterval: .milliseconds(20), logger: quietLogger))
        try discovery.start()
        defer { try? discovery.stop() }
        let tried = await eventually(timeout: .seconds(5)) { discovery.counts.failed >= 3 }
        #expect(tried)
        #expect(!discovery.isHealthy())
        #expect(discovery.counts.answered == 0)
        #expect(throws: ClusterError.self) { try discovery.start() }
    }

    @Test("with the gossip layer on, discovery announces at 30 s, not at 5 heartbeats: at 64 agents every member decoding the seed's node_list twice a second was half of the idle cluster's CPU")
    func gossipMembersAnnounceRarely() async throws {
        // Nothing listens on port 1: each round is one attempt that fails at once. Two nodes
        // alike but for the gossip flag, started together; the mesh one's rounds (every 5 × 20 ms)
        // are the clock of the window.
        func discovery(_ id: String, gossip: Bool) -> NodeDiscovery {
            let config = ClusterConfig(nodeID: id, nodeAddr: "127.0.0.1:2", seedNodes: ["127.0.0.1:1"],
                                       heartbeatInterval: .milliseconds(20), voteRequestTimeout: .milliseconds(100))
            var options = NodeOptions(logger: quietLogger)
            options.gossip = gossip
            return NodeDiscovery(config: config, membership: ClusterMembership(localNodeID: id, localAddr: config.nodeAddr), options: options)
        }
        let gossiping = discovery("g", gossip: true)
        let meshed = discovery("m", gossip: false)
        try gossiping.start()
        defer { try? gossiping.stop() }
        try meshed.start()
        defer { try? meshed.stop() }
        // Its first round at start, like any node's.
        #expect(await eventually(timeout: .seconds(5)) { gossiping.counts.failed >= 1 })
        #expect(await eventually(timeout: .seconds(5)) { meshed.counts.sent >= 6 })
        #expect(gossiping.counts.sent == 1, "the gossiping node announced \(gossiping.counts.sent) times while the meshed one announced \(meshed.counts.sent)")
    }
}

extension ClusterConfig {
    /// What discovery announces for a node listening on port 0: its bound address, and the seed's.
    fileprivate func announcing(_ bound: String, seed: String) -> ClusterConfig {
        var copy = self
        copy.nodeAddr = bound
        copy.seedNodes = [seed]
        return copy
    }
}
