import Cluster
import Foundation
import Testing
import UV

@Suite("Loopback elections", .serialized, .timeLimit(.minutes(1)))
struct ElectionIntegrationTests {
    @Test("3 nodes elect exactly one primary, and every node agrees on it")
    func threeNodesElectOne() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let leader = await cluster.waitForAgreedLeader(among: cluster.ids)
        #expect(leader != nil)
        #expect(cluster.watch.doubleLeaderTerms.isEmpty)
        if let leader, let m = cluster.manager(leader) {
            #expect(m.isLeader)
            #expect(m.epoch >= 1)
            // The membership of every node knows the primary and its epoch (the fencing token) from
            // its heartbeats; so does every manager.
            let epoch = m.epoch
            let ok = await cluster.watch.wait(timeout: .seconds(5)) { latest in
                cluster.memberships.withLock { ms in ms.values.allSatisfy { $0.primary?.id == leader && $0.epoch == epoch } }
                    && cluster.ids.allSatisfy { latest[$0]?.epoch == epoch }
            }
            #expect(ok)
        }
    }

    @Test("nodes that dial each other at once keep one link per pair, and probes measure round trips")
    func oneLinkPerPair() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        _ = await cluster.waitForAgreedLeader(among: cluster.ids)
        // No event marks the end of the duplicate-link race or the first probe: poll, bounded.
        let ok = await eventually(timeout: .seconds(5)) {
            cluster.ids.allSatisfy { id in
                guard let s = cluster.manager(id)?.stats else { return false }
                return s.peersConnected == 2 && s.openConnections == 2 && s.lastRoundTripNs > 0
            }
        }
        #expect(ok)
        // Each of the 3 pairs ends with one link (checked above: two peers, two connections each);
        // how many were replaced on the way depends on how the dials crossed.
        // Every tenth round is a probe (which of the ten depends on the node's id), however many
        // probe replies a node sends in between.
        for id in cluster.ids {
            let s = try #require(cluster.manager(id)?.stats)
            #expect(s.probeRounds == s.heartbeatRounds / 10 || s.probeRounds == (s.heartbeatRounds + 9) / 10,
                    "\(id): \(s.probeRounds) probes in \(s.heartbeatRounds) rounds")
        }
        // Closing the duplicates is no protocol error on either side.
        for id in cluster.ids { #expect(cluster.manager(id)?.stats.protocolErrors == 0, "\(id)") }
    }

    @Test("nodes sharing one loop (NodeOptions.loop) elect one primary; the loop stays its owner's to shut down")
    func sharedLoop() async throws {
        let loop = try UVLoop(name: "shared")
        let ids = ["n1", "n2", "n3"]
        let watch = ClusterWatch()
        var managers: [ElectionManager] = []
        // Each listens on port 0 (it owns its port from the start); then each learns the others'.
        for id in ids {
            let membership = ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:0")
            var options = NodeOptions(logger: quietLogger, loop: loop)
            options.bootstrap = .voters(ids)
            let m = ElectionManager(
                config: TestCluster.config(id: id, addr: "127.0.0.1:0", seeds: ["127.0.0.1:0"]),
                membership: membership, options: options)
            m.addObserver { watch.record(id, $0) }
            try m.start()
            managers.append(m)
        }
        for (m, id) in zip(managers, ids) {
            for (other, otherID) in zip(managers, ids) where otherID != id {
                try m.membership.addNode(NodeInfo(id: otherID, addr: other.listenAddress!.description))
            }
        }
        let elected = await watch.wait(timeout: .seconds(10)) { TestCluster.agreedLeader($0, among: ids) != nil }
        #expect(elected)
        for m in managers { try m.stop() }
        managers.removeAll()  // the managers are gone; the loop is not theirs to stop
        #expect(loop.execute {})
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("5 nodes elect exactly one primary")
    func fiveNodesElectOne() async throws {
        let cluster = try TestCluster(size: 5)
        defer { cluster.shutdown() }
        let leader = await cluster.waitForAgreedLeader(among: cluster.ids)
        #expect(leader != nil)
        #expect(cluster.watch.doubleLeaderTerms.isEmpty)
    }

    @Test("stopping the primary yields a new primary in a higher term")
    func primaryStopsNewOneElected() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let first = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let firstTerm = cluster.watch.latest[first]!.term
        let firstEpoch = cluster.watch.latest[first]!.epoch
        cluster.stopNode(first)
        let rest = cluster.ids.filter { $0 != first }
        let ok = await cluster.watch.wait(timeout: .seconds(10)) { latest in
            guard let l = TestCluster.agreedLeader(latest, among: rest) else { return false }
            return latest[l]!.term > firstTerm
        }
        #expect(ok)
        let second = TestCluster.agreedLeader(cluster.watch.latest, among: rest)
        #expect(second != nil && second != first)
        if let second { #expect(cluster.watch.latest[second]!.epoch > firstEpoch) }
        #expect(cluster.watch.doubleLeaderTerms.isEmpty)
    }

    @Test("an isolated primary steps down (CheckQuorum) while the majority elects another; healed, it follows")
    func isolatedPrimaryStepsDown() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let first = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let firstTerm = cluster.watch.latest[first]!.term
        cluster.manager(first)!.injectFaults(NetworkFaults(isolated: true))
        let rest = cluster.ids.filter { $0 != first }
        let ok = await cluster.watch.wait(timeout: .seconds(10)) { latest in
            guard let l = TestCluster.agreedLeader(latest, among: rest) else { return false }
            return latest[l]!.term > firstTerm && latest[first]?.state != .leader
        }
        #expect(ok)
        let second = try #require(TestCluster.agreedLeader(cluster.watch.latest, among: rest))
        // Heal: the old primary rejoins as a follower of the new one, without deposing it.
        let secondTerm = cluster.watch.latest[second]!.term
        cluster.manager(first)!.injectFaults(NetworkFaults())
        let healed = await cluster.watch.wait(timeout: .seconds(10)) { latest in
            TestCluster.agreedLeader(latest, among: cluster.ids) == second
        }
        #expect(healed)
        #expect(cluster.watch.latest[second]!.term == secondTerm)
        #expect(cluster.watch.doubleLeaderTerms.isEmpty)
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; for conditions no event marks.
func eventually(timeout: Duration, _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}
