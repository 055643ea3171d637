import ClusterCore
import ClusterSimulation
import Testing

// Issue 9: a follower whose link to its leader ends (the leader's kernel closed it: the process
// died) takes it as evidence. It ends its lease on that leader and stands soon, instead of an
// election timeout after the last heartbeat. A link that broke only between two live nodes frees
// only the follower at its end: the others' leases still protect the primary.

/// The width of one rank of the evidence delay in the test settings (T/4).
private let slot = T / 4

/// A follower of `l` in term 1 that heard it at `heardAt` ms, with LSN `lsn`.
private func followerOfL(
    _ id: String = "f", voters: [String] = ["f", "l", "b"], priority: Int = 1, lsn: UInt64 = 0, heardAt: UInt64 = 10,
    autoFailover: Bool = true, seed: UInt64 = 7
) -> SyncCore {
    var core = makeCore(
        id, voters: voters, lsn: lsn, settings: testSettings(priority: priority, autoFailover: autoFailover), seed: seed)
    _ = core.step(heartbeat(from: "l", term: 1), now: at(milliseconds: heardAt))
    return core
}

@Suite("Crash evidence (issue 9)")
struct CrashEvidenceRules {
    @Test("the end of the link to the leader starts a PreVote round within T/4, not an election timeout after the last heartbeat")
    func evidenceStartsEarlyPreVote() {
        var f = followerOfL()
        let now = at(milliseconds: 30)
        #expect(f.nextDeadline! >= at(milliseconds: 10) + T)  // the election timer: T or more after the heartbeat
        _ = f.step(.peerUnreachable("l"), now: now)
        let deadline = try! #require(f.nextDeadline)
        #expect(deadline >= now && deadline < now + slot, "\(deadline)")
        #expect(f.step(.tick, now: CoreInstant(nanoseconds: deadline.nanoseconds - 1)).isEmpty)
        let directives = f.step(.tick, now: deadline)
        #expect(f.leaderID == nil && f.term == 1 && f.state == .follower)
        #expect(directives.persists.isEmpty)
        #expect(directives.voteRequests.map(\.to) == ["b", "l"])
        #expect(directives.voteRequests.allSatisfy { $0.request.preVote && $0.request.term == 2 })
    }

    @Test("the end of the link to the leader ends the lease there: PreVotes and votes from others are granted at once")
    func evidenceEndsLease() {
        var f = followerOfL()
        let refused = f.step(voteRequest(from: "b", term: 2, preVote: true), now: at(milliseconds: 20))
        #expect(refused.voteResponses.first?.reason == ElectionCore.liveLeaderReason)
        _ = f.step(.peerUnreachable("l"), now: at(milliseconds: 21))
        let preVote = f.step(voteRequest(from: "b", term: 2, preVote: true), now: at(milliseconds: 22))
        #expect(preVote.voteResponses.first?.voteGranted == true)
        #expect(f.term == 1, "a PreVote changes nothing")
        let vote = f.step(voteRequest(from: "b", term: 2), now: at(milliseconds: 23))
        #expect(vote.voteResponses.first?.voteGranted == true)
        #expect(f.term == 2 && f.votedFor == "b")
    }

    @Test("the end of another peer's link changes nothing: no early PreVote, the lease holds")
    func otherLinkChangesNothing() {
        var f = followerOfL()
        let before = f.nextDeadline
        #expect(f.step(.peerUnreachable("b"), now: at(milliseconds: 20)).isEmpty)
        #expect(f.nextDeadline == before)
        let refused = f.step(voteRequest(from: "b", term: 2, preVote: true), now: at(milliseconds: 21))
        #expect(refused.voteResponses.first?.reason == ElectionCore.liveLeaderReason)
    }

    @Test("a heartbeat from the leader (a new link) restores the lease and cancels the early PreVote")
    func leaderHeardAgain() {
        var f = followerOfL()
        _ = f.step(.peerUnreachable("l"), now: at(milliseconds: 20))
        _ = f.step(heartbeat(from: "l", term: 1), now: at(milliseconds: 21))
        #expect(f.nextDeadline! >= at(milliseconds: 21) + T)
        let refused = f.step(voteRequest(from: "b", term: 2, preVote: true), now: at(milliseconds: 22))
        #expect(refused.voteResponses.first?.reason == ElectionCore.liveLeaderReason)
    }

    @Test("without autoFailover the lease ends but no PreVote starts early")
    func noEarlyPreVoteWithoutAutoFailover() {
        var f = followerOfL(autoFailover: false)
        let before = f.nextDeadline
        _ = f.step(.peerUnreachable("l"), now: at(milliseconds: 20))
        #expect(f.nextDeadline == before)
        #expect(f.step(voteRequest(from: "b", term: 2, preVote: true), now: at(milliseconds: 21)).voteResponses.first?.voteGranted == true)
    }

    @Test("a leader and a candidate ignore link ends")
    func leaderAndCandidateIgnore() {
        var leader = makeLeader("l", voters: ["l", "f", "b"], grantedBy: ["f"])
        let leaderDeadline = leader.nextDeadline
        #expect(leader.step(.peerUnreachable("f"), now: at(milliseconds: 1)).isEmpty)
        #expect(leader.step(.peerUnreachable("b"), now: at(milliseconds: 1)).isEmpty)
        #expect(leader.state == .leader && leader.nextDeadline == leaderDeadline)
        var candidate = makeCore("c", voters: ["c", "l", "b"])
        _ = candidate.step(.startElection, now: .zero)
        let deadline = candidate.nextDeadline
        #expect(candidate.step(.peerUnreachable("l"), now: at(milliseconds: 1)).isEmpty)
        #expect(candidate.nextDeadline == deadline)
    }

    @Test("priorities order the early PreVotes: priority p stands within T/4/p; 3 stands before 1 on average")
    func prioritiesOrderEarlyPreVotes() {
        func delays(priority: Int) -> [UInt64] {
            (UInt64(1)...500).map { seed in
                var f = followerOfL(priority: priority, seed: seed)
                let now = at(milliseconds: 30)
                _ = f.step(.peerUnreachable("l"), now: now)
                return f.nextDeadline!.nanoseconds - now.nanoseconds
            }
        }
        let normal = delays(priority: 1)
        let eager = delays(priority: 3)
        #expect(normal.allSatisfy { $0 < slot })
        #expect(eager.allSatisfy { $0 < slot / 3 + 1 })
        #expect(eager.reduce(0, +) * 2 < normal.reduce(0, +))
    }

    @Test("the most up-to-date follower stands first: one behind a live peer's reported LSN waits at least T/4")
    func upToDateFollowerFirst() {
        for seed in UInt64(1)...200 {
            var behind = followerOfL(voters: ["f", "l", "b", "c"], lsn: 5, seed: seed)
            var ahead = followerOfL("b", voters: ["f", "l", "b", "c"], lsn: 9, seed: seed)
            // Every node heartbeats every voter: each knows the other's LSN.
            let now = at(milliseconds: 30)
            _ = behind.step(heartbeat(from: "b", term: 1, role: .replica, lsn: 9), now: at(milliseconds: 25))
            _ = ahead.step(heartbeat(from: "f", term: 1, role: .replica, lsn: 5), now: at(milliseconds: 25))
            _ = behind.step(.peerUnreachable("l"), now: now)
            _ = ahead.step(.peerUnreachable("l"), now: now)
            #expect(behind.nextDeadline! >= now + slot, "seed \(seed)")
            #expect(ahead.nextDeadline! < now + slot, "seed \(seed)")
        }
    }

    @Test("a follower that grants a PreVote while its evidence timer runs gives that candidate a campaign's time first")
    func grantDefersEvidenceTimer() {
        var f = followerOfL()
        _ = f.step(.peerUnreachable("l"), now: at(milliseconds: 20))
        #expect(f.nextDeadline! < at(milliseconds: 20) + slot)
        let granted = f.step(voteRequest(from: "b", term: 2, preVote: true), now: at(milliseconds: 21))
        #expect(granted.voteResponses.first?.voteGranted == true)
        #expect(f.nextDeadline! >= at(milliseconds: 21) + voteTimeout)
    }

    @Test("a crashed primary (every follower's link to it ends) is replaced within T/2, at its term + 1")
    func crashedPrimaryReplacedFast() {
        // Priorities 1 to 5 (the test network acts in 5 ms steps: equal priorities could all stand in one step).
        let ids = ["a", "b", "c", "d", "e"]
        var cluster = TestCluster(
            ids: ids, voters: { _ in ids },
            settings: { id in testSettings(minQuorumSize: 3, priority: 1 + ids.firstIndex(of: id)!) })
        cluster.run(milliseconds: 1000)
        guard let leader = cluster.leaders.first else {
            Issue.record("no leader")
            return
        }
        let term = cluster.cores[leader]!.term
        cluster.crash(leader)
        cluster.run(milliseconds: T / 2 / ms)
        let survivors = ids.filter { $0 != leader }
        guard let next = cluster.leaders.first(where: { $0 != leader }) else {
            Issue.record("no new leader within T/2")
            return
        }
        #expect(cluster.cores[next]!.term == term + 1)
        #expect(survivors.allSatisfy { cluster.cores[$0]!.leaderID == next })
    }

    @Test("a broken link alone does not depose: the lease holds at the other followers, the primary and its term stay")
    func brokenLinkDoesNotDepose() {
        for size in [3, 5] {
            let ids = ["a", "b", "c", "d", "e"].prefix(size).map { $0 }
            var cluster = TestCluster(
                ids: ids, voters: { _ in ids }, settings: { _ in testSettings(minQuorumSize: size / 2 + 1) })
            cluster.run(milliseconds: 1000)
            guard let leader = cluster.leaders.first else {
                Issue.record("no leader")
                return
            }
            let term = cluster.cores[leader]!.term
            let cut = ids.first { $0 != leader }!
            let others = ids.filter { $0 != leader && $0 != cut }
            cluster.breakLink(leader, cut)
            // The follower at the broken end stands at once; every other follower refuses it by its lease.
            var refusals = 0
            for _ in 0..<20 {
                cluster.run(milliseconds: 5)
                refusals += cluster.log.filter { entry in
                    guard others.contains(entry.node), case .send(cut, .voteResponse(let r)) = entry.directive else { return false }
                    return r.preVote && r.reason == ElectionCore.liveLeaderReason
                }.count
                cluster.log.removeAll()
            }
            #expect(refusals >= others.count, "size \(size)")
            cluster.run(milliseconds: 3000)  // the link stays broken: the follower keeps trying
            #expect(cluster.leaders == [leader], "size \(size)")
            #expect(ids.allSatisfy { cluster.cores[$0]!.term == term }, "size \(size)")
            #expect(others.allSatisfy { cluster.cores[$0]!.leaderID == leader }, "size \(size)")
        }
    }
}

@Suite("Crash evidence in the simulator (issue 9)", .serialized)
struct CrashEvidenceSimulationTests {
    @Test("spurious link drops and the link sweep alone (honest peers, no other fault) never change the primary")
    func linkDropsDoNotDepose() async {
        let runs = await offPool {
            (0..<15).map { i -> (SimulationConfig, SimulationResult) in
                var config = SimulationConfig(seed: 40_000 + UInt64(i), nodes: [3, 5, 7][i % 3])
                config.partitions = false
                config.crashes = false
                config.forcedElections = false
                config.lossMaxPercent = 0
                config.membershipChanges = false
                config.oneWayPartitions = false
                config.hostilePeers = false
                config.transfers = false
                config.writeFailurePercent = 0
                config.slowWritePercent = 0
                config.delayMinNanoseconds = 500_000  // a LAN
                config.delayMaxNanoseconds = 5_000_000
                // One broken link at a time: an outage of at most T/10, and the next drop at least
                // T/2 later (two links to the primary broken at once may depose it, rightly).
                config.linkDrops = true
                config.linkDropOutageMaxNanoseconds = config.electionTimeoutNanoseconds / 10
                config.linkDropGapMaxNanoseconds = 4 * config.electionTimeoutNanoseconds
                var simulation = Simulation(config: config)
                return (config, simulation.run())
            }
        }
        var linkEnds = 0
        for (config, result) in runs {
            if !result.passed { Issue.record(Comment(rawValue: SimulationTests.failure(result))) }
            linkEnds += result.linkEnds
            #expect(result.leaders.count == 1, "seed \(config.seed): \(result.leaders)")
        }
        #expect(linkEnds > 15 * 6, "the schedules must break links")
    }

    @Test("the checker catches a core that takes any link's end as evidence against its leader")
    func checkerCatchesEvidenceFromAnyLink() async {
        let caught = await offPool { () -> Bool in
            for i in 0..<60 {
                var config = SimulationConfig(seed: 7_000 + UInt64(i), nodes: [3, 5, 7][i % 3])
                config.linkDrops = true
                config.disabledCoreRules = .evidenceFromLeaderLinkOnly
                var simulation = Simulation(config: config)
                if simulation.run().violations.contains(where: { $0.contains("while holding a lease") || $0.contains("while hearing primary") }) {
                    return true
                }
            }
            return false
        }
        #expect(caught)
    }
}
