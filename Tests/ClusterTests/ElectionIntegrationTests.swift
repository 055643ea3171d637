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
            // The membership of every node knows the primary from its heartbeats.
            let ok = await cluster.watch.wait(timeout: .seconds(5)) { _ in
                cluster.memberships.withLock { ms in ms.values.allSatisfy { $0.primary?.id == leader } }
            }
            #expect(ok)
        }
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
