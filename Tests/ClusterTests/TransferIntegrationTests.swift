import Cluster
import Foundation
import Testing
import UV

@Suite("Leadership transfer on loopback", .serialized, .timeLimit(.minutes(2)))
struct TransferIntegrationTests {
    @Test("transferLeadership(to:) makes the named node primary, in the next term, and the old primary follows it")
    func transferToNamed() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let leader = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let target = cluster.ids.first { $0 != leader }!
        let old = try #require(cluster.manager(leader))
        let term = old.currentTerm
        let started = ContinuousClock.now
        let newLeader = try await old.transferLeadership(to: target)
        let took = ContinuousClock.now - started
        #expect(newLeader == target)
        // The old primary heard the target lead; the target's own status is published on its loop.
        let targetManager = try #require(cluster.manager(target))
        #expect(await eventually(timeout: .seconds(5)) { targetManager.isLeader })
        #expect(try #require(cluster.manager(target)).currentTerm == term + 1)
        #expect(!old.isLeader)
        #expect(await cluster.waitForAgreedLeader(among: cluster.ids) == target)
        #expect(cluster.watch.doubleLeaderTerms.isEmpty)
        print("transfer to \(target) took \(took) (heartbeat 30 ms, election timeout 300 ms)")
    }

    @Test("transferLeadership() with no target picks the most up-to-date voter; a follower cannot transfer")
    func transferToBest() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let leader = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let others = cluster.ids.filter { $0 != leader }
        // The leader and one follower are at LSN 50; the other is behind.
        try #require(cluster.manager(leader)).setLocalLSN(50)
        try #require(cluster.manager(others[1])).setLocalLSN(50)
        try #require(cluster.manager(others[0])).setLocalLSN(10)
        // Wait until the leader has heard both LSNs in heartbeats.
        #expect(await eventually(timeout: .seconds(5)) {
            let members = try! #require(cluster.manager(leader)).membership.allNodes
            return members.first { $0.id == others[1] }?.lastLSN == 50 && members.first { $0.id == others[0] }?.lastLSN == 10
        })
        let follower = try #require(cluster.manager(others[0]))
        await #expect(throws: ClusterError.transferFailed(ElectionCore.transferNotLeaderReason)) {
            _ = try await follower.transferLeadership()
        }
        let chosen = try await #require(cluster.manager(leader)).transferLeadership()
        #expect(chosen == others[1])
        #expect(await cluster.waitForAgreedLeader(among: cluster.ids) == others[1])
    }

    @Test("a JSON transfer from this host is answered when done; a JSON vote request's transfer flag does not pass the lease")
    func jsonTransfer() async throws {
        let cluster = try TestCluster(size: 3)
        defer { cluster.shutdown() }
        let leader = try #require(await cluster.waitForAgreedLeader(among: cluster.ids))
        let follower = cluster.ids.first { $0 != leader }!
        let followerAddr = try #require(cluster.manager(follower)?.listenAddress)
        // An anonymous client claims the follower's id with the transfer flag: the voters hear a
        // live primary, so the request is refused and no term changes.
        let forged = try ClusterClient.request(
            .voteRequest(VoteRequest(candidateID: follower, term: 99, lastLSN: 0, epoch: 99, transfer: true)),
            to: try #require(cluster.manager(leader == cluster.ids[2] ? cluster.ids[1] : cluster.ids[2])?.listenAddress),
            timeout: .seconds(5))
        guard case .voteResponse(let refusal) = forged else { Issue.record("\(forged)"); return }
        #expect(!refusal.voteGranted)
        #expect(cluster.ids.allSatisfy { (cluster.manager($0)?.currentTerm ?? 0) < 99 })
        // Asked of a follower, a transfer is refused with the primary's id.
        let redirected = try ClusterClient.request(.transfer(to: nil), to: followerAddr, timeout: .seconds(5))
        guard case .transferResponse(let notLeader) = redirected else { Issue.record("\(redirected)"); return }
        #expect(!notLeader.success && notLeader.error == ElectionCore.transferNotLeaderReason && notLeader.leaderID == leader)
        // Asked of the primary, it is answered once the target leads.
        let leaderAddr = try #require(cluster.manager(leader)?.listenAddress)
        let answer = try ClusterClient.request(.transfer(to: follower), to: leaderAddr, timeout: .seconds(10))
        guard case .transferResponse(let done) = answer else { Issue.record("\(answer)"); return }
        #expect(done.success && done.leaderID == follower, "\(done)")
        let followerManager = try #require(cluster.manager(follower))
        #expect(await eventually(timeout: .seconds(5)) { followerManager.isLeader })
    }
}
