import ClusterCore
import ClusterSimulation
import Testing

/// Issue 15: the voters are a configuration that only the primary changes, one voter at a time,
/// with the consent of the voters (Raft thesis §4.1, single-server changes, and the 2015
/// correction: a leader first commits an entry of its own term).
@Suite("Voter configuration (Raft thesis §4.1)")
struct VoterConfigurationRules {
    static let led = VoterConfiguration(voters: ["a", "b", "c"], version: 2, term: 1)

    static func ack(from node: String, term: UInt64 = 1, _ configuration: VoterConfiguration) -> ElectionEvent {
        .receive(from: node, .configurationAck(ConfigurationAck(from: node, term: term, configuration: configuration.id)))
    }

    static func configuration(from leader: String, term: UInt64, _ configuration: VoterConfiguration, committed: Bool = false) -> ElectionEvent {
        .receive(from: leader, .configuration(ConfigurationMessage(from: leader, term: term, configuration: configuration, committed: committed)))
    }

    static func changeEnds(_ directives: [ElectionDirective]) -> [String] {
        directives.compactMap {
            if case .voterChangeEnded(let change, let succeeded, let reason) = $0 {
                return "\(change): \(succeeded ? "committed" : reason ?? "?")"
            }
            return nil
        }
    }

    @Test("a new primary writes its own term's configuration with its epoch, and changes no voter before a majority stored it")
    func ownTermFirst() {
        var a = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        #expect(a.state == .leader && a.configuration == Self.led && !a.configurationCommitted)
        let early = a.step(.changeVoters(.add("d")), now: at(milliseconds: 1))
        #expect(Self.changeEnds(early) == ["add voter d: \(ElectionCore.changeUncommittedReason)"])
        #expect(a.configuration == Self.led)
        let committed = a.step(Self.ack(from: "b", Self.led), now: at(milliseconds: 2))
        #expect(a.configurationCommitted)
        #expect(committed.contains(.configurationChanged(Self.led, committed: true)))
        // Everyone it goes to hears that it committed.
        #expect(committed.configurationSends.map(\.to) == ["b", "c"] && committed.configurationSends.allSatisfy(\.message.committed))
    }

    @Test("a change goes out once written, commits when a majority of the new voters stored it, and is answered then; one at a time")
    func oneChangeCommits() {
        var a = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        _ = a.step(Self.ack(from: "b", Self.led), now: at(milliseconds: 1))
        // d, a member, has not said it holds the primary's configuration: it cannot be added yet.
        let unknown = a.step(.changeVoters(.add("d")), now: at(milliseconds: 1))
        #expect(Self.changeEnds(unknown).first?.contains("d has not acknowledged the primary's configuration") == true)
        _ = a.step(Self.ack(from: "d", Self.led), now: at(milliseconds: 1))
        let started = a.step(.changeVoters(.add("d")), now: at(milliseconds: 2))
        let next = VoterConfiguration(voters: ["a", "b", "c", "d"], version: 3, term: 1)
        #expect(started.persistedConfigurations == [next])
        #expect(started.configurationSends.map(\.to) == ["b", "c", "d"])  // the old voters and the new one
        #expect(Self.changeEnds(started).isEmpty && a.voterChange == .add("d"))
        let second = a.step(.changeVoters(.remove("c")), now: at(milliseconds: 3))
        #expect(Self.changeEnds(second) == ["remove voter c: \(ElectionCore.changeUncommittedReason)"])
        // 2 of 4 (a, b) is no majority; d's acknowledgement makes 3.
        #expect(Self.changeEnds(a.step(Self.ack(from: "b", next), now: at(milliseconds: 4))).isEmpty)
        #expect(!a.configurationCommitted)
        let done = a.step(Self.ack(from: "d", next), now: at(milliseconds: 5))
        #expect(Self.changeEnds(done) == ["add voter d: committed"])
        #expect(a.configurationCommitted && a.voters == ["a", "b", "c", "d"] && a.quorumSize == 3)
        // A node that has not acknowledged is told again every heartbeat interval.
        let again = a.step(.tick, now: at(milliseconds: 30))
        #expect(again.configurationSends.map(\.to) == ["c"])
    }

    @Test("changes are refused with the reason: not the primary, a voter already, not a voter, the primary itself, below the quorum floor, during a transfer")
    func refusals() {
        var follower = makeCore("b", voters: ["a", "b", "c"])
        #expect(Self.changeEnds(follower.step(.changeVoters(.add("d")), now: .zero)) == ["add voter d: \(ElectionCore.changeNotLeaderReason)"])
        var a = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b", "c"], settings: testSettings(minQuorumSize: 3))
        #expect(a.state == .leader)
        _ = a.step(Self.ack(from: "b", Self.led), now: at(milliseconds: 1))
        _ = a.step(Self.ack(from: "c", Self.led), now: at(milliseconds: 1))
        #expect(Self.changeEnds(a.step(.changeVoters(.add("b")), now: at(milliseconds: 2))) == ["add voter b: b is already a voter"])
        _ = a.step(Self.ack(from: "d", Self.led), now: at(milliseconds: 2))
        #expect(Self.changeEnds(a.step(.changeVoters(.remove("x")), now: at(milliseconds: 2))) == ["remove voter x: x is not a voter"])
        #expect(Self.changeEnds(a.step(.changeVoters(.remove("a")), now: at(milliseconds: 2)))
            == ["remove voter a: the primary cannot remove itself: hand leadership over first (cluster transfer)"])
        #expect(Self.changeEnds(a.step(.changeVoters(.remove("c")), now: at(milliseconds: 2)))
            == ["remove voter c: removing c would leave 2 voters, fewer than the quorum floor of 3 (--min-quorum)"])
        _ = a.step(heartbeat(from: "b", term: 1, role: .replica), now: at(milliseconds: 3))
        _ = a.step(.transferLeadership(to: "b"), now: at(milliseconds: 3))
        #expect(Self.changeEnds(a.step(.changeVoters(.add("d")), now: at(milliseconds: 4))) == ["add voter d: \(ElectionCore.changeDuringTransferReason)"])
        #expect(a.configuration == Self.led)
    }

    @Test("a voter refuses a candidate whose configuration is behind its own, whatever its LSN and term (the 2015 single-server-change case)")
    func staleConfigurationRefused() {
        // d stored the configuration b committed in term 2 (v3/t2); a still holds the one it made
        // in term 1 and never committed (v3/t1, with e). Were d to vote for a, a and e and d would
        // be a majority of a's five voters while b's committed configuration lived on b and c.
        let mine = VoterConfiguration(voters: ["a", "b", "c", "d"], version: 3, term: 2)
        var d = makeCore("d", voters: [], durable: DurableElectionState(term: 2, epoch: 2, configuration: mine))
        let behind = ConfigurationID(term: 1, version: 3)
        for preVote in [true, false] {
            let refused = d.step(voteRequest(from: "a", term: 3, lsn: 1000, epoch: 2, preVote: preVote, configuration: behind), now: at(milliseconds: 500))
            #expect(refused.voteResponses.first?.reason == ElectionCore.staleConfigurationReason)
        }
        #expect(d.votedFor == nil)
        let granted = d.step(voteRequest(from: "a", term: 3, epoch: 2, configuration: mine.id), now: at(milliseconds: 500))
        #expect(granted.voteResponses.first?.voteGranted == true)
    }

    @Test("a member that does not vote never stands, refuses votes without adopting their term, ignores TimeoutNow, and follows the primary it hears")
    func nonVoter() {
        let voters = VoterConfiguration(voters: ["a", "b", "c"], version: 4, term: 2)
        var m = makeCore("m", voters: [], durable: DurableElectionState(configuration: voters))
        #expect(!m.isVoter)
        #expect(m.step(.tick, now: at(milliseconds: 1_000)).voteRequests.isEmpty)
        #expect(m.step(.startElection, now: at(milliseconds: 1_001)).isEmpty && m.term == 0)
        let asked = m.step(voteRequest(from: "a", term: 7, configuration: voters.id), now: at(milliseconds: 1_002))
        #expect(asked.voteResponses.first?.reason == ElectionCore.notVoterReason && m.term == 0)
        _ = m.step(heartbeat(from: "a", term: 5, epoch: 3), now: at(milliseconds: 1_003))
        #expect(m.leaderID == "a" && m.term == 5 && m.fencingEpoch == 3)
        #expect(m.step(timeoutNow(from: "a", term: 5), now: at(milliseconds: 1_004)).isEmpty && m.state == .follower)
    }

    @Test("a voter drops what a non-voter sends as if it counted: a primary's heartbeat at a higher term, a vote, a configuration")
    func nonVoterDropped() {
        var v = makeCore("v", voters: ["v", "a", "b"])
        #expect(v.step(heartbeat(from: "m", term: 1000, epoch: 9), now: .zero).isEmpty)
        #expect(v.step(voteResponse(from: "m", term: 0), now: .zero).isEmpty)
        let forged = VoterConfiguration(voters: ["m", "v"], version: 9, term: 0)
        // The newer configuration is not taken from a non-voter: v asks its own voters for theirs.
        let pulled = v.step(Self.configuration(from: "m", term: 0, forged, committed: true), now: .zero)
        #expect(pulled.withoutConfigurationTraffic.isEmpty && pulled.persists.isEmpty)
        #expect(pulled.compactMap { if case .send(let to, .configurationAck) = $0 { to } else { nil } } == ["a", "b"])
        #expect(v.term == 0 && v.leaderID == nil && v.voters == ["a", "b", "v"])
    }

    @Test("a follower takes a newer configuration from its primary and acknowledges it only once it is durable; an older one is not taken")
    func followerStoresThenAcks() {
        var f = ElectionCore(id: "f", settings: testSettings(), durable: DurableElectionState(), voters: ["a", "b", "f"], seed: 1, now: .zero)
        let next = VoterConfiguration(voters: ["a", "b", "f", "g"], version: 2, term: 1)
        let taken = f.step(Self.configuration(from: "a", term: 1, next), now: at(milliseconds: 1))
        #expect(taken.persistedConfigurations == [next] && f.voters == ["a", "b", "f", "g"])
        #expect(!taken.contains { if case .send(_, .configurationAck) = $0 { true } else { false } })
        let written = f.step(.persisted(f.durable), now: at(milliseconds: 2))
        #expect(written == [.send(to: "a", .configurationAck(ConfigurationAck(from: "f", term: 1, configuration: next.id)))])
        let older = VoterConfiguration(voters: ["a", "f"], version: 1, term: 0)
        let ignored = f.step(Self.configuration(from: "a", term: 1, older), now: at(milliseconds: 3))
        #expect(f.configuration == next && ignored.persists.isEmpty)
    }

    @Test("a restarted core keeps the configuration it stored, whatever voters its driver names")
    func restartKeepsConfiguration() {
        let stored = VoterConfiguration(voters: ["a", "b", "c", "d"], version: 7, term: 3)
        let core = makeCore("a", voters: ["a", "x"], durable: DurableElectionState(term: 3, configuration: stored))
        #expect(core.configuration == stored && core.voters == ["a", "b", "c", "d"])
    }

    @Test("a member promoted by consent votes: with it, the voters elect a primary when the old one is cut off")
    func promotedMemberVotes() throws {
        var cluster = TestCluster(
            ids: ["a", "b", "c", "m"], voters: { $0 == "m" ? [] : ["a", "b", "c"] }, settings: { _ in testSettings() })
        cluster.heartbeatsEveryone = true
        cluster.run(milliseconds: 600)
        let leader = try #require(cluster.leaders.first)
        // The primary tells a member that does not vote its configuration when they link (the
        // node runtime does so on every new link); from then on the member follows it.
        let told = try #require(cluster.cores[leader]?.configurationMessage)
        cluster.apply("m", .receive(from: leader, .configuration(told)))
        cluster.run(milliseconds: 50)
        #expect(cluster.cores["m"]?.leaderID == leader && cluster.cores["m"]?.isVoter == false)
        cluster.apply(leader, .changeVoters(.add("m")))
        cluster.run(milliseconds: 50)
        #expect(cluster.log.contains { $0.node == leader && $0.directive == .voterChangeEnded(.add("m"), succeeded: true, reason: nil) })
        #expect(cluster.cores["m"]?.isVoter == true && cluster.cores["m"]?.voters == ["a", "b", "c", "m"])
        cluster.isolate(leader)
        cluster.run(milliseconds: 1_000)
        let others = ["a", "b", "c", "m"].filter { $0 != leader }
        let next = cluster.leaders.filter { $0 != leader }
        #expect(next.count == 1 && others.allSatisfy { cluster.cores[$0]?.leaderID == next.first })
    }
}

/// Voters by consent in the simulator: the primary is asked to add and remove voters under
/// crashes, partitions, loss, slow and failed writes and hostile peers; the checker follows each
/// configuration's lineage and what the disks hold.
@Suite("Voter changes in the simulator (issue 15)")
struct VoterChangeSimulationTests {
    static func schedules(count: Int, firstSeed: UInt64, disabled: ElectionCore.DisabledRules = []) -> [SimulationResult] {
        (0..<count).map { i in
            var config = SimulationConfig(seed: firstSeed + UInt64(i), nodes: [3, 5, 7][i % 3])
            config.voterChanges = true
            config.membershipChanges = false
            config.initialVoters = config.nodes / 2 + 1 + i % (config.nodes - config.nodes / 2)
            config.disabledCoreRules = disabled
            var simulation = Simulation(config: config)
            return simulation.run()
        }
    }

    @Test("voters added and removed by consent, under every fault: no invariant violated, a committed configuration never lost, a leader after the heal")
    func consentChangesHold() async {
        let results = await offPool { Self.schedules(count: 150, firstSeed: 15_000) }
        for result in results where !result.passed { Issue.record(Comment(rawValue: SimulationTests.failure(result))) }
        #expect(results.allSatisfy { $0.leaderElectedAfterHealNanoseconds != nil })
    }

    @Test("planted: a voter that grants a candidate whose configuration is behind its own lets a committed configuration be lost, and the checker says so")
    func checkerCatchesLostConfiguration() async {
        let results = await offPool { Self.schedules(count: 300, firstSeed: 15_000, disabled: .configurationRule) }
        let caught = results.flatMap(\.violations).filter { $0.contains("committed configuration") || $0.contains("does not hold it") }
        for violation in caught.prefix(3) { print("caught: \(violation)") }
        #expect(!caught.isEmpty, "no lost configuration caught in 300 schedules")
    }
}
