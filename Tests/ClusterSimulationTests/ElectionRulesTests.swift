import ClusterCore
import Testing

// One test per rule of the election core, each naming the rule and the Raft section it comes
// from: Raft paper §5.1 (terms), §5.2 (election), §5.4.1 (election restriction); Ongaro's thesis
// §9.6 (PreVote), §6.2 (CheckQuorum / leader lease). Cores are driven directly, with explicit times.

@Suite("Terms (Raft §5.1)")
struct TermRules {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var event: ElectionEvent
        var testDescription: String { name }
    }

    @Test(
        "§5.1: a node adopts any higher term it sees and becomes follower",
        arguments: [
            Case(name: "heartbeat from a replica", event: heartbeat(from: "b", term: 5, role: .replica)),
            Case(name: "heartbeat from a primary", event: heartbeat(from: "b", term: 5, role: .primary)),
            Case(name: "refused vote response", event: voteResponse(from: "b", term: 5, granted: false)),
            Case(name: "step down with a higher term", event: .stepDown(term: 5)),
        ])
    func adoptsHigherTerm(_ c: Case) {
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        #expect(leader.state == .leader && leader.term == 1)
        let directives = leader.step(c.event, now: at(milliseconds: 1))
        #expect(leader.term == 5)
        #expect(leader.state == .follower)
        #expect(directives.stateChanges == [.follower])
        #expect(directives.persists.first?.term == 5)
    }

    @Test("§5.1: a stale vote request is refused and changes nothing")
    func staleRequestRefused() {
        var voter = makeCore("v", voters: ["v", "b"], durable: DurableElectionState(term: 5))
        let directives = voter.step(voteRequest(from: "b", term: 4), now: .zero)
        #expect(voter.term == 5 && voter.votedFor == nil)
        #expect(directives.persists.isEmpty)
        #expect(directives.voteResponses.first?.voteGranted == false)
        #expect(directives.voteResponses.first?.reason == ClusterError.staleTerm.description)
        #expect(directives.voteResponses.first?.term == 5)
    }

    @Test(
        "thesis §9.6: PreVote requests and responses change no state, whatever their term",
        arguments: [
            Case(name: "pre-vote request", event: voteRequest(from: "b", term: 9, preVote: true)),
            Case(name: "granted pre-vote response", event: voteResponse(from: "b", term: 9, preVote: true)),
            Case(name: "refused pre-vote response", event: voteResponse(from: "b", term: 9, granted: false, preVote: true)),
        ])
    func preVoteChangesNoState(_ c: Case) {
        var core = makeCore("v", voters: ["v", "b", "c"], durable: DurableElectionState(term: 3, votedFor: "c", epoch: 2))
        let before = core.durable
        let directives = core.step(c.event, now: .zero)
        #expect(core.durable == before)
        #expect(core.state == .follower)
        #expect(directives.persists.isEmpty)
    }
}

@Suite("Voting (Raft §5.2, §5.4.1)")
struct VotingRules {
    struct SecondRequest: Sendable, CustomTestStringConvertible {
        var first: String
        var second: String
        var granted: Bool
        var reason: String
        var testDescription: String { "\(first) then \(second)" }
    }

    @Test(
        "§5.2: one vote per term; the same candidate may ask again",
        arguments: [
            SecondRequest(first: "a", second: "b", granted: false, reason: ClusterError.alreadyVoted.description),
            SecondRequest(first: "a", second: "a", granted: true, reason: ""),
        ])
    func oneVotePerTerm(_ c: SecondRequest) {
        var voter = makeCore("v", voters: ["v", "a", "b"])
        let first = voter.step(voteRequest(from: c.first, term: 1), now: .zero)
        #expect(first.voteResponses.first?.voteGranted == true)
        let second = voter.step(voteRequest(from: c.second, term: 1), now: at(milliseconds: 1))
        #expect(second.voteResponses.first?.voteGranted == c.granted)
        #expect(second.voteResponses.first?.reason == c.reason)
        #expect(voter.votedFor == c.first)
    }

    struct LSNCase: Sendable, CustomTestStringConvertible {
        var candidateLSN: UInt64
        var voterLSN: UInt64
        var granted: Bool
        var testDescription: String { "candidate \(candidateLSN) vs voter \(voterLSN)" }
    }

    @Test(
        "§5.4.1 (the seed's restriction): a vote only for a candidate whose lastLSN >= the voter's LSN",
        arguments: [
            LSNCase(candidateLSN: 5, voterLSN: 5, granted: true),
            LSNCase(candidateLSN: 6, voterLSN: 5, granted: true),
            LSNCase(candidateLSN: 4, voterLSN: 5, granted: false),
            LSNCase(candidateLSN: 0, voterLSN: 1, granted: false),
        ], [false, true])
    func lsnRule(_ c: LSNCase, preVote: Bool) {
        var voter = makeCore("v", voters: ["v", "a"], lsn: c.voterLSN)
        let directives = voter.step(voteRequest(from: "a", term: 1, lsn: c.candidateLSN, preVote: preVote), now: .zero)
        let response = directives.voteResponses.first
        #expect(response?.voteGranted == c.granted)
        #expect(response?.preVote == preVote)
        if !c.granted {
            #expect(response?.reason == ClusterError.staleLSN.description)
            #expect(voter.votedFor == nil)
        }
    }

    struct EpochCase: Sendable, CustomTestStringConvertible {
        var candidateEpoch: UInt64
        var voterEpoch: UInt64
        var granted: Bool
        var testDescription: String { "candidate epoch \(candidateEpoch) vs voter epoch \(voterEpoch)" }
    }

    @Test(
        "epoch rule: a vote only for a candidate whose epoch >= the voter's; the response carries the voter's epoch",
        arguments: [
            EpochCase(candidateEpoch: 3, voterEpoch: 3, granted: true),
            EpochCase(candidateEpoch: 4, voterEpoch: 3, granted: true),
            EpochCase(candidateEpoch: 2, voterEpoch: 3, granted: false),
        ], [false, true])
    func epochRule(_ c: EpochCase, preVote: Bool) {
        var voter = makeCore("v", voters: ["v", "a"], durable: DurableElectionState(epoch: c.voterEpoch))
        let directives = voter.step(voteRequest(from: "a", term: 1, epoch: c.candidateEpoch, preVote: preVote), now: .zero)
        let response = directives.voteResponses.first
        #expect(response?.voteGranted == c.granted)
        #expect(response?.epoch == c.voterEpoch)  // the voter's epoch before any grant
        if !c.granted { #expect(response?.reason == ElectionCore.staleEpochReason) }
        if c.granted && !preVote {
            // The grant promises the epoch the candidate makes if it wins: a later candidate must know it.
            #expect(voter.epoch == c.candidateEpoch + 1)
            #expect(directives.persistedElectionStates.last == DurableElectionState(term: 1, votedFor: "a", epoch: c.candidateEpoch + 1))
        } else {
            #expect(voter.epoch == c.voterEpoch)
        }
    }

    @Test("epoch rule: a voter that granted refuses a later candidate that does not know the promised epoch")
    func grantPromisesEpoch() {
        var voter = makeCore("v", voters: ["v", "a", "b"], durable: DurableElectionState(epoch: 2))
        _ = voter.step(voteRequest(from: "a", term: 1, epoch: 2), now: .zero)
        let later = voter.step(voteRequest(from: "b", term: 2, epoch: 2), now: at(milliseconds: 1))
        #expect(later.voteResponses.first?.voteGranted == false)
        #expect(later.voteResponses.first?.reason == ElectionCore.staleEpochReason)
        let informed = voter.step(voteRequest(from: "b", term: 3, epoch: 3), now: at(milliseconds: 2))
        #expect(informed.voteResponses.first?.voteGranted == true)
    }
}

@Suite("Quorum (Raft §5.2)")
struct QuorumRules {
    struct SizeCase: Sendable, CustomTestStringConvertible {
        var voters: Int
        var minQuorumSize: Int
        var quorum: Int
        var testDescription: String { "\(voters) voters, floor \(minQuorumSize)" }
    }

    @Test(
        "§5.2: quorum is max(minQuorumSize, n/2 + 1), a real majority",
        arguments: [
            SizeCase(voters: 1, minQuorumSize: 1, quorum: 1), SizeCase(voters: 2, minQuorumSize: 1, quorum: 2),
            SizeCase(voters: 3, minQuorumSize: 1, quorum: 2), SizeCase(voters: 3, minQuorumSize: 2, quorum: 2),
            SizeCase(voters: 4, minQuorumSize: 1, quorum: 3), SizeCase(voters: 5, minQuorumSize: 2, quorum: 3),
            SizeCase(voters: 5, minQuorumSize: 4, quorum: 4), SizeCase(voters: 7, minQuorumSize: 3, quorum: 4),
            SizeCase(voters: 3, minQuorumSize: 5, quorum: 5),
        ])
    func quorumSize(_ c: SizeCase) {
        let voters = (0..<c.voters).map { "n\($0)" }
        let core = makeCore("n0", voters: voters, settings: testSettings(minQuorumSize: c.minQuorumSize))
        #expect(core.quorumSize == c.quorum)
    }

    @Test("§5.2: with 5 voters and minQuorumSize 2 (the seed's bare floor), two candidates with 2 votes each do not win")
    func bareMinQuorumCannotElectTwo() {
        let voters = ["a", "b", "c", "d", "e"]
        var a = makeCore("a", voters: voters, settings: testSettings(minQuorumSize: 2))
        var d = makeCore("d", voters: voters, settings: testSettings(minQuorumSize: 2))
        _ = a.step(.startElection, now: .zero)
        _ = d.step(.startElection, now: .zero)
        _ = a.step(voteResponse(from: "b", term: 1), now: .zero)
        _ = d.step(voteResponse(from: "e", term: 1), now: .zero)
        #expect(a.state == .candidate && d.state == .candidate)
        _ = a.step(voteResponse(from: "c", term: 1), now: .zero)
        #expect(a.state == .leader)
    }

    @Test("a granted vote from a non-voter is not counted, and the non-voter is not added")
    func nonVoterVoteIgnored() {
        var a = makeCore("a", voters: ["a", "b", "c"])
        _ = a.step(.startElection, now: .zero)
        _ = a.step(voteResponse(from: "x", term: 1), now: .zero)
        _ = a.step(voteResponse(from: "y", term: 1), now: .zero)
        #expect(a.state == .candidate)
        #expect(a.voters == ["a", "b", "c"])
        _ = a.step(voteResponse(from: "b", term: 1), now: .zero)
        #expect(a.state == .leader)
    }

    @Test("partial knowledge: a node that knows 2 peers of a 5-node cluster, minQuorumSize 3, cannot win with 2 votes")
    func partialKnowledgeNeedsTheFloor() {
        var a = makeCore("a", voters: ["a", "b", "c"], settings: testSettings(minQuorumSize: 3))
        #expect(a.quorumSize == 3)
        _ = a.step(.startElection, now: .zero)
        _ = a.step(voteResponse(from: "b", term: 1), now: .zero)
        #expect(a.state == .candidate)
        _ = a.step(voteResponse(from: "c", term: 1), now: .zero)
        #expect(a.state == .leader)
    }

    @Test("partial knowledge: with minQuorumSize 3, two candidates each knowing 3 of 5 cannot both win a term")
    func partialKnowledgeCannotElectTwo() {
        let knows: [String: [String]] = [
            "a": ["a", "b", "c"], "e": ["c", "d", "e"],
            "b": ["a", "b", "c", "d", "e"], "c": ["a", "b", "c", "d", "e"], "d": ["a", "b", "c", "d", "e"],
        ]
        for first in ["a", "e"] {
            var cluster = TestCluster(
                ids: ["a", "b", "c", "d", "e"], voters: { knows[$0]! },
                settings: { _ in testSettings(minQuorumSize: 3, autoFailover: false) })
            cluster.apply(first, .startElection)
            cluster.apply(first == "a" ? "e" : "a", .startElection)
            cluster.deliverAll()
            #expect(cluster.leaders == [first], "c votes once in term 1, for whoever asked first")
            #expect(cluster.cores["a"]!.term == 1 && cluster.cores["e"]!.term == 1)
        }
    }
}

@Suite("Durable votes (Raft §5.2)")
struct DurabilityRules {
    struct Trigger: Sendable, CustomTestStringConvertible {
        var name: String
        var setup: @Sendable () -> (SyncCore, ElectionEvent)
        var testDescription: String { name }
    }

    @Test(
        "§5.2: term, vote and epoch are persisted before the send that depends on them",
        arguments: [
            Trigger(name: "granting a vote") { (makeCore("v", voters: ["v", "a"]), voteRequest(from: "a", term: 3)) },
            Trigger(name: "a forced election") { (makeCore("a", voters: ["a", "b"]), .startElection) },
            Trigger(name: "a PreVote quorum") {
                var a = makeCore("a", voters: ["a", "b", "c"])
                _ = a.step(.tick, now: a.nextDeadline!)
                return (a, voteResponse(from: "b", term: 1, preVote: true))
            },
        ])
    func persistBeforeSend(_ trigger: Trigger) throws {
        var (core, event) = trigger.setup()
        let directives = core.step(event, now: at(milliseconds: 500))
        let persist = try #require(directives.firstPersistIndex)
        let send = try #require(directives.firstSendIndex)
        #expect(persist < send)
        #expect(directives.persists.last == core.durable)
        #expect(core.durable.votedFor != nil)
    }

    @Test("§5.2: a core restarted from its durable state never votes twice in that term")
    func restartKeepsVote() {
        var voter = makeCore("v", voters: ["v", "a", "b"])
        let directives = voter.step(voteRequest(from: "a", term: 3), now: .zero)
        let saved = try! #require(directives.persists.last)
        var restarted = makeCore("v", voters: ["v", "a", "b"], durable: saved, seed: 99)
        #expect(restarted.term == 3 && restarted.votedFor == "a")
        let other = restarted.step(voteRequest(from: "b", term: 3), now: at(milliseconds: 1))
        #expect(other.voteResponses.first?.voteGranted == false)
        #expect(other.voteResponses.first?.reason == ClusterError.alreadyVoted.description)
        let same = restarted.step(voteRequest(from: "a", term: 3, epoch: 0), now: at(milliseconds: 2))
        #expect(same.voteResponses.first?.voteGranted == true)
    }
}

@Suite("Election timer (Raft §5.2)")
struct TimerRules {
    @Test("§5.2: randomised timeouts lie in [T, 2T); priority 3 waits less on average than priority 1")
    func randomisedTimeouts() {
        func meanTimeout(priority: Int) -> Double {
            var total = 0.0
            for seed in UInt64(1)...2000 {
                let core = makeCore("a", voters: ["a", "b", "c"], settings: testSettings(priority: priority), seed: seed)
                let timeout = core.nextDeadline!.nanoseconds
                #expect(timeout >= T && timeout < 2 * T, "seed \(seed)")
                if priority > 1 { #expect(timeout < T + T / UInt64(priority) + 1, "seed \(seed)") }
                total += Double(timeout)
            }
            return total / 2000
        }
        let normal = meanTimeout(priority: 1)
        let eager = meanTimeout(priority: 3)
        #expect(eager < normal)
        #expect(normal > 1.4 * Double(T) && normal < 1.6 * Double(T))
    }

    struct ResetCase: Sendable, CustomTestStringConvertible {
        var name: String
        var event: ElectionEvent
        var resets: Bool
        var testDescription: String { name }
    }

    @Test(
        "§5.2: the election timer resets on the current leader's heartbeat and on granting a vote, not otherwise",
        arguments: [
            ResetCase(name: "leader heartbeat", event: heartbeat(from: "l", term: 1), resets: true),
            ResetCase(name: "replica heartbeat", event: heartbeat(from: "b", term: 1, role: .replica), resets: false),
            ResetCase(name: "stale primary heartbeat", event: heartbeat(from: "b", term: 0), resets: false),
            ResetCase(name: "granted vote", event: voteRequest(from: "b", term: 2), resets: true),
            ResetCase(name: "refused vote", event: voteRequest(from: "b", term: 2, lsn: 0, epoch: 0, preVote: false), resets: false),
            ResetCase(name: "granted pre-vote", event: voteRequest(from: "b", term: 2, preVote: true), resets: false),
        ])
    func timerReset(_ c: ResetCase) {
        var follower = makeCore("f", voters: ["f", "l", "b"])
        _ = follower.step(heartbeat(from: "l", term: 1), now: .zero)
        if c.name == "refused vote" { _ = follower.step(.setLocalLSN(9), now: .zero) }
        if ["granted vote", "refused vote", "granted pre-vote"].contains(c.name) {
            // The leader is no longer live (no lease: see DisruptionRulesTests), but the election
            // timer has not fired yet.
            _ = follower.step(heartbeat(from: "l", term: 1, role: .replica), now: .zero)
        }
        let before = follower.nextDeadline!
        _ = follower.step(c.event, now: at(milliseconds: 30))
        let after = follower.nextDeadline!
        #expect((after > before) == c.resets)
    }
}

@Suite("PreVote (thesis §9.6)")
struct PreVoteRules {
    @Test("§9.6: on timeout a follower asks for pre-votes at term+1 without changing term or vote")
    func preVoteOnTimeout() {
        var f = makeCore("f", voters: ["f", "a", "b"], durable: DurableElectionState(term: 4, votedFor: "a", epoch: 2), lsn: 7)
        let deadline = f.nextDeadline!
        let early = f.step(.tick, now: CoreInstant(nanoseconds: deadline.nanoseconds - 1))
        #expect(early.isEmpty)
        let directives = f.step(.tick, now: deadline)
        #expect(f.term == 4 && f.votedFor == "a" && f.state == .follower && f.role == .replica)
        #expect(directives.persists.isEmpty)
        let requests = directives.voteRequests
        #expect(requests.map(\.to) == ["a", "b"])
        #expect(requests.allSatisfy { $0.request.preVote && $0.request.term == 5 && $0.request.lastLSN == 7 && $0.request.epoch == 2 })
    }

    struct GrantCase: Sendable, CustomTestStringConvertible {
        var name: String
        var requestTerm: UInt64
        var voterVotedFor: String?
        var leaderHeardMillisecondsAgo: UInt64?
        var candidateLSN: UInt64 = 5
        var candidateEpoch: UInt64 = 2
        var granted: Bool
        var testDescription: String { name }
    }

    @Test(
        "§9.6: a pre-vote is granted iff the term is higher (or equal, unvoted), no live primary is heard, and the LSN and epoch rules hold",
        arguments: [
            GrantCase(name: "higher term, no leader", requestTerm: 4, leaderHeardMillisecondsAgo: nil, granted: true),
            GrantCase(name: "higher term, leader heard 10 ms ago", requestTerm: 4, leaderHeardMillisecondsAgo: 10, granted: false),
            GrantCase(name: "higher term, leader heard 1.5 T ago", requestTerm: 4, leaderHeardMillisecondsAgo: 150, granted: true),
            GrantCase(name: "equal term, no vote", requestTerm: 3, leaderHeardMillisecondsAgo: nil, granted: true),
            GrantCase(name: "equal term, voted for another", requestTerm: 3, voterVotedFor: "x", granted: false),
            GrantCase(name: "lower term", requestTerm: 2, granted: false),
            GrantCase(name: "LSN behind", requestTerm: 4, candidateLSN: 4, granted: false),
            GrantCase(name: "epoch behind", requestTerm: 4, candidateEpoch: 1, granted: false),
        ])
    func preVoteGrant(_ c: GrantCase) {
        var voter = makeCore(
            "v", voters: ["v", "l", "c"], durable: DurableElectionState(term: 3, votedFor: c.voterVotedFor, epoch: 2), lsn: 5)
        let now: UInt64 = 1000
        if let ago = c.leaderHeardMillisecondsAgo, c.voterVotedFor == nil {
            _ = voter.step(heartbeat(from: "l", term: 3, epoch: 2), now: at(milliseconds: now - ago))
        }
        let before = voter.durable
        let directives = voter.step(
            voteRequest(from: "c", term: c.requestTerm, lsn: c.candidateLSN, epoch: c.candidateEpoch, preVote: true),
            now: at(milliseconds: now))
        #expect(directives.voteResponses.first?.voteGranted == c.granted)
        #expect(directives.voteResponses.first?.preVote == true)
        #expect(voter.durable == before)
    }

    @Test("§9.6: a quorum of pre-votes makes a real candidate: term+1, self vote, persist, real requests")
    func preVoteQuorumStartsCandidacy() {
        var a = makeCore("a", voters: ["a", "b", "c"])
        _ = a.step(.tick, now: a.nextDeadline!)
        let directives = a.step(voteResponse(from: "b", term: 1, preVote: true), now: at(milliseconds: 300))
        #expect(a.state == .candidate && a.term == 1 && a.votedFor == "a")
        #expect(directives.stateChanges == [.candidate])
        #expect(directives.voteRequests.count == 2)
        #expect(directives.voteRequests.allSatisfy { !$0.request.preVote && $0.request.term == 1 })
    }

    @Test("§9.6: with autoFailover off, no election ever starts by timer")
    func noTimerElectionWithoutAutoFailover() {
        var f = makeCore("f", voters: ["f", "a", "b"], settings: testSettings(autoFailover: false))
        #expect(f.nextDeadline == nil)
        for step in UInt64(1)...100 {
            #expect(f.step(.tick, now: at(milliseconds: step * 100)).isEmpty)
        }
        _ = f.step(heartbeat(from: "a", term: 1), now: at(milliseconds: 10_000))
        _ = f.step(.tick, now: at(milliseconds: 20_000))  // the leader is lost: forgotten, no election
        #expect(f.leaderID == nil && f.term == 1 && f.state == .follower && f.nextDeadline == nil)
    }

    @Test("§9.6: a node cut off and rejoining does not depose a healthy primary")
    func rejoiningNodeDoesNotDepose() {
        var cluster = TestCluster(ids: ["a", "b", "c"], voters: { _ in ["a", "b", "c"] }, settings: { _ in testSettings() })
        cluster.run(milliseconds: 1000)
        let leader = try! #require(cluster.leaders.first)
        let term = cluster.cores[leader]!.term
        let outsider = cluster.ids.first { $0 != leader }!
        cluster.isolate(outsider)
        cluster.run(milliseconds: 2000)  // the outsider times out again and again, asking for pre-votes
        #expect(cluster.cores[outsider]!.term == term, "PreVote keeps the outsider's term")
        cluster.recover()
        cluster.run(milliseconds: 2000)
        #expect(cluster.leaders == [leader])
        #expect(cluster.ids.allSatisfy { cluster.cores[$0]!.term == term && cluster.cores[$0]!.leaderID == leader })
    }
}

@Suite("Candidates (Raft §5.2)")
struct CandidateRules {
    @Test("§5.2: startElection is a forced election: term+1 at once, candidate, self vote, persist, real requests")
    func forcedElection() {
        var a = makeCore("a", voters: ["a", "b", "c"], durable: DurableElectionState(term: 2, epoch: 1), lsn: 3)
        let directives = a.step(.startElection, now: .zero)
        #expect(a.state == .candidate && a.term == 3 && a.votedFor == "a")
        #expect(directives.persistedElectionStates == [DurableElectionState(term: 3, votedFor: "a", epoch: 1)])
        #expect(directives.voteRequests.map(\.to) == ["b", "c"])
        #expect(directives.voteRequests.allSatisfy { !$0.request.preVote && $0.request.lastLSN == 3 && $0.request.epoch == 1 })
    }

    @Test("§5.2: a candidate without a quorum within voteRequestTimeout becomes follower and retries after a fresh timeout, with PreVote")
    func retryAfterVoteTimeout() {
        var a = makeCore("a", voters: ["a", "b", "c"])
        _ = a.step(.startElection, now: .zero)
        #expect(a.nextDeadline == CoreInstant(nanoseconds: voteTimeout))
        let failed = a.step(.tick, now: CoreInstant(nanoseconds: voteTimeout))
        #expect(failed.stateChanges == [.follower])
        let retryAt = a.nextDeadline!
        #expect(retryAt.nanoseconds >= voteTimeout + T && retryAt.nanoseconds < voteTimeout + 2 * T)
        let retry = a.step(.tick, now: retryAt)
        #expect(retry.voteRequests.count == 2 && retry.voteRequests.allSatisfy { $0.request.preVote && $0.request.term == 2 })
    }

    @Test("§5.2: after maxElectionRetries consecutive failures a node backs off: each wait gets an extra randomised timeout")
    func backoffAfterRetries() {
        var a = makeCore("a", voters: ["a", "b", "c"], settings: testSettings(maxElectionRetries: 2))
        var now = CoreInstant.zero
        var waits: [UInt64] = []
        for _ in 0..<4 {
            let start = a.nextDeadline!  // the election timer fires: a PreVote round starts
            _ = a.step(.tick, now: start)
            now = a.nextDeadline!  // nobody answers: the round fails
            _ = a.step(.tick, now: now)
            waits.append(a.nextDeadline!.nanoseconds - now.nanoseconds)
        }
        #expect(waits[0] >= T && waits[0] < 2 * T)  // 1 failure
        #expect(waits[1] >= 2 * T && waits[1] < 4 * T)  // 2 failures: backing off
        #expect(waits[3] >= 2 * T && waits[3] < 4 * T)
        _ = a.step(heartbeat(from: "b", term: 0), now: now)  // hearing a leader ends the streak
        _ = a.step(.startElection, now: now)
        _ = a.step(.tick, now: now + voteTimeout)
        #expect(a.nextDeadline!.nanoseconds - (now + voteTimeout).nanoseconds < 2 * T)
    }

    @Test(
        "§5.2: a single-voter cluster wins at once",
        arguments: [ElectionEvent.startElection, ElectionEvent.tick])
    func singleVoterWins(_ event: ElectionEvent) {
        var a = makeCore("a", voters: ["a"])
        let directives = a.step(event, now: a.nextDeadline!)
        #expect(a.state == .leader && a.term == 1 && a.leaderID == "a")
        #expect(directives.contains(.broadcastHeartbeat))
    }

    struct EpochCase: Sendable, CustomTestStringConvertible {
        var own: UInt64
        var granted: [UInt64]
        var expected: UInt64
        var testDescription: String { "own \(own), voters \(granted)" }
    }

    @Test(
        "a new leader makes epoch max(own, every granting voter's epoch) + 1 and announces it in order",
        arguments: [
            EpochCase(own: 0, granted: [0, 0], expected: 1), EpochCase(own: 4, granted: [2, 3], expected: 5),
            EpochCase(own: 2, granted: [7, 1], expected: 8),
        ])
    func leaderEpoch(_ c: EpochCase) {
        var a = makeCore("a", voters: ["a", "b", "c", "d", "e"], durable: DurableElectionState(epoch: c.own))
        _ = a.step(.startElection, now: .zero)
        _ = a.step(voteResponse(from: "b", term: 1, epoch: c.granted[0]), now: .zero)
        let directives = a.step(voteResponse(from: "c", term: 1, epoch: c.granted[1]), now: .zero)
        #expect(a.epoch == c.expected)
        // The epoch and the configuration of its own term go in one write (the voters' consent:
        // it changes no voter before this one is committed).
        let own = VoterConfiguration(voters: ["a", "b", "c", "d", "e"], version: 2, term: 1)
        #expect(
            directives.withoutConfigurationTraffic == [
                .persist(DurableElectionState(term: 1, votedFor: "a", epoch: c.expected, configuration: own)),
                .epochChanged(c.expected), .stateChanged(.leader, term: 1, leader: "a"), .leaderChanged("a"),
                .broadcastHeartbeat,
            ])
        #expect(directives.configurationSends.map(\.to) == ["b", "c", "d", "e"])
    }
}

@Suite("CheckQuorum (thesis §6.2)")
struct CheckQuorumRules {
    struct Case: Sendable, CustomTestStringConvertible {
        var heard: [String]
        var staysLeader: Bool
        var testDescription: String { "heard from \(heard)" }
    }

    @Test(
        "§6.2: a leader that has not heard from a quorum within electionTimeout steps down",
        arguments: [
            Case(heard: ["b", "c"], staysLeader: true), Case(heard: ["b", "c", "d", "e"], staysLeader: true),
            Case(heard: ["b"], staysLeader: false), Case(heard: [], staysLeader: false),
        ])
    func checkQuorum(_ c: Case) {
        var leader = makeLeader("a", voters: ["a", "b", "c", "d", "e"], grantedBy: ["b", "c"])
        #expect(leader.state == .leader)
        for peer in c.heard {
            _ = leader.step(heartbeat(from: peer, term: 1, role: .replica), now: at(milliseconds: 90))
        }
        var directives: [ElectionDirective] = []
        var now: UInt64 = 0
        while leader.state == .leader {  // the leader ticks whenever asked to, up to 180 ms
            let next = max(now + 1, leader.nextDeadline!.nanoseconds / ms)
            guard next < 180 else { break }
            now = next
            directives += leader.step(.tick, now: at(milliseconds: now))
        }
        #expect((leader.state == .leader) == c.staysLeader)
        if !c.staysLeader {
            #expect(directives.withoutConfigurationTraffic == [.stateChanged(.follower, term: 1, leader: nil), .leaderChanged(nil)])
            #expect(now >= 100 && now < 180)  // within electionTimeout of the last vote heard
        }
    }
}

@Suite("Heartbeats")
struct HeartbeatRules {
    @Test("a primary heartbeat of the current term names the leader once; steady heartbeats produce nothing (hot path)")
    func steadyHeartbeats() {
        var f = makeCore("f", voters: ["f", "l", "b"])
        let first = f.step(heartbeat(from: "l", term: 1, epoch: 1), now: .zero)
        #expect(first.contains(.leaderChanged("l")))
        for step in UInt64(1)...50 {
            let directives = f.step(heartbeat(from: "l", term: 1, epoch: 1), now: at(milliseconds: step * 20))
            #expect(directives.isEmpty && directives.capacity == 0)  // no allocation
            let peer = f.step(heartbeat(from: "b", term: 1, role: .replica, epoch: 1), now: at(milliseconds: step * 20))
            #expect(peer.isEmpty && peer.capacity == 0)
        }
        #expect(f.leaderID == "l" && f.state == .follower)
    }

    @Test("a follower learns a higher epoch from heartbeats and persists it")
    func followerLearnsEpoch() {
        var f = makeCore("f", voters: ["f", "l"])
        let directives = f.step(heartbeat(from: "l", term: 1, epoch: 4), now: .zero)
        #expect(f.epoch == 4 && directives.persists.last?.epoch == 4)
    }

    @Test("a leader that steps down is forgotten by its followers, who may then grant pre-votes")
    func leaderSteppingDownIsForgotten() {
        var f = makeCore("f", voters: ["f", "l", "c"])
        _ = f.step(heartbeat(from: "l", term: 1), now: .zero)
        let directives = f.step(heartbeat(from: "l", term: 1, role: .replica), now: at(milliseconds: 1))
        #expect(directives == [.leaderChanged(nil)])
        let preVote = f.step(voteRequest(from: "c", term: 2, preVote: true), now: at(milliseconds: 2))
        #expect(preVote.voteResponses.first?.voteGranted == true)
    }

    struct DualCase: Sendable, CustomTestStringConvertible {
        var observerIsLeader: Bool
        var testDescription: String { observerIsLeader ? "seen by a leader" : "seen by a follower" }
    }

    @Test(
        "two primaries in one term are reported once per (term, pair); only a misconfiguration makes it possible",
        arguments: [DualCase(observerIsLeader: true), DualCase(observerIsLeader: false)])
    func dualPrimary(_ c: DualCase) {
        // Misconfiguration: single-voter clusters (minQuorumSize 1) that still hear each other.
        var a = makeCore("a", voters: ["a"])
        var b = makeCore("b", voters: ["b"])
        _ = a.step(.startElection, now: .zero)
        _ = b.step(.startElection, now: .zero)
        #expect(a.state == .leader && b.state == .leader && a.term == b.term)
        _ = a.step(.addVoter("b"), now: .zero)  // a non-voter's heartbeat would be dropped
        var observer = c.observerIsLeader ? a : makeCore("o", voters: ["o", "a", "b"])
        if !c.observerIsLeader { _ = observer.step(heartbeat(from: "a", term: 1), now: .zero) }
        let first = observer.step(heartbeat(from: "b", term: 1), now: at(milliseconds: 1))
        #expect(first.dualPrimaryReports == [["a", "b"]])
        let again = observer.step(heartbeat(from: "b", term: 1), now: at(milliseconds: 2))
        #expect(again.dualPrimaryReports.isEmpty)
        #expect(observer.leaderID == "a")
    }
}

@Suite("Operator events")
struct OperatorRules {
    struct StepDownCase: Sendable, CustomTestStringConvertible {
        var name: String
        var leader: Bool
        var term: UInt64
        var expectedState: ElectionState
        var expectedTerm: UInt64
        var testDescription: String { name }
    }

    @Test(
        "stepDown(term:): a leader steps down; a higher term is adopted; otherwise nothing changes",
        arguments: [
            StepDownCase(name: "leader, same term", leader: true, term: 1, expectedState: .follower, expectedTerm: 1),
            StepDownCase(name: "leader, older term", leader: true, term: 0, expectedState: .follower, expectedTerm: 1),
            StepDownCase(name: "leader, higher term", leader: true, term: 4, expectedState: .follower, expectedTerm: 4),
            StepDownCase(name: "follower, higher term", leader: false, term: 4, expectedState: .follower, expectedTerm: 4),
            StepDownCase(name: "follower, same term", leader: false, term: 1, expectedState: .follower, expectedTerm: 1),
        ])
    func stepDown(_ c: StepDownCase) {
        var core = c.leader
            ? makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
            : makeCore("a", voters: ["a", "b", "c"], durable: DurableElectionState(term: 1))
        let directives = core.step(.stepDown(term: c.term), now: at(milliseconds: 1))
        #expect(core.state == c.expectedState && core.term == c.expectedTerm)
        #expect(directives.stateChanges == (c.leader ? [.follower] : []))
        #expect(directives.persists.isEmpty == (c.expectedTerm == 1))
    }

    @Test("setLocalLSN moves the LSN the vote rule uses")
    func setLocalLSN() {
        var v = makeCore("v", voters: ["v", "a"])
        _ = v.step(.setLocalLSN(10), now: .zero)
        #expect(v.localLSN == 10)
        let refused = v.step(voteRequest(from: "a", term: 1, lsn: 9), now: .zero)
        #expect(refused.voteResponses.first?.voteGranted == false)
    }

    @Test("addVoter is idempotent; removeVoter never removes self, and a smaller quorum is recounted")
    func voterChanges() {
        var a = makeCore("a", voters: ["a", "b", "c", "d"])
        _ = a.step(.addVoter("e"), now: .zero)
        _ = a.step(.addVoter("e"), now: .zero)
        #expect(a.voters == ["a", "b", "c", "d", "e"] && a.quorumSize == 3)
        _ = a.step(.removeVoter("a"), now: .zero)
        #expect(a.voters.contains("a"))
        _ = a.step(.startElection, now: .zero)
        _ = a.step(voteResponse(from: "b", term: 1), now: .zero)
        #expect(a.state == .candidate)
        _ = a.step(.removeVoter("e"), now: .zero)
        _ = a.step(.removeVoter("d"), now: .zero)  // 3 voters: a and b are a majority
        #expect(a.state == .leader)
    }
}

@Suite("Settings")
struct SettingsRules {
    @Test("Settings(config:) converts the configuration's durations to nanoseconds")
    func settingsFromConfig() {
        let config = ClusterConfig(
            electionTimeout: .milliseconds(1500), heartbeatInterval: .seconds(1), minQuorumSize: 3, priority: 2,
            enableAutoFailover: true, voteRequestTimeout: .microseconds(2), maxElectionRetries: 5)
        let settings = ElectionCore.Settings(config: config)
        #expect(
            settings
                == ElectionCore.Settings(
                    electionTimeout: 1_500_000_000, heartbeatInterval: 1_000_000_000, voteRequestTimeout: 2_000,
                    minQuorumSize: 3, priority: 2, autoFailover: true, maxElectionRetries: 5))
        #expect(ElectionCore.Settings(config: .default).electionTimeout == 5_000_000_000)
        #expect(ElectionCore.Settings(config: ClusterConfig(electionTimeout: .seconds(-1))).electionTimeout == 0)
    }

    @Test("heartbeat(seq:) carries the node's id, term, epoch, LSN and role")
    func heartbeatBuilder() {
        let leader = makeLeader("a", voters: ["a", "b"], grantedBy: ["b"])
        let message = leader.heartbeat(seq: 9, ackSeq: 3)
        #expect(message == HeartbeatMessage(from: "a", seq: 9, epoch: 1, term: 1, lsn: 0, role: .primary, ackSeq: 3))
    }
}

@Suite("State notifications")
struct NotificationRules {
    @Test("stateChanged is emitted once per change of state, and again for a new candidacy at a higher term")
    func stateChangedOncePerTransition() {
        var a = makeCore("a", voters: ["a", "b", "c"])
        var states: [ElectionState] = []
        states += a.step(heartbeat(from: "b", term: 3, role: .replica), now: .zero).stateChanges  // follower stays follower
        states += a.step(.startElection, now: .zero).stateChanges
        states += a.step(.startElection, now: .zero).stateChanges  // a new candidacy, term 5
        states += a.step(voteResponse(from: "b", term: 5), now: .zero).stateChanges
        states += a.step(voteResponse(from: "c", term: 5), now: .zero).stateChanges  // already leader
        states += a.step(heartbeat(from: "c", term: 6, role: .replica), now: .zero).stateChanges
        states += a.step(heartbeat(from: "c", term: 7, role: .replica), now: .zero).stateChanges
        #expect(states == [.candidate, .candidate, .leader, .follower])
    }
}

@Suite("Out-of-range input")
struct OutOfRangeTests {
    static let settings = ElectionCore.Settings(
        electionTimeout: 100_000_000, heartbeatInterval: 25_000_000, voteRequestTimeout: 50_000_000,
        minQuorumSize: 2, priority: 1, autoFailover: true, maxElectionRetries: 3)

    @Test("terms and epochs at or above 2^63 are dropped, so no + 1 can overflow, and the node goes on electing")
    func hugeTermsAreDropped() {
        var core = ElectionCore(id: "a", settings: Self.settings, durable: DurableElectionState(), voters: ["a", "b", "c"], seed: 1, now: .zero)
        let huge: [ElectionMessage] = [
            .voteRequest(VoteRequest(candidateID: "b", term: .max, lastLSN: 0, epoch: 0)),
            .voteRequest(VoteRequest(candidateID: "b", term: 3, lastLSN: 0, epoch: .max)),
            .voteRequest(VoteRequest(candidateID: "b", term: .max, preVote: true)),
            .voteResponse(VoteResponse(voterID: "b", term: .max, voteGranted: true)),
            .heartbeat(HeartbeatMessage(from: "b", seq: 1, epoch: .max, term: 1, lsn: 0, role: .primary)),
            .heartbeat(HeartbeatMessage(from: "c", seq: 1, epoch: 0, term: 1 << 63, lsn: 0, role: .primary)),
        ]
        for message in huge {
            #expect(core.step(.receive(from: "b", message), now: .zero).isEmpty)
        }
        #expect(core.term == 0)
        #expect(core.epoch == 0)
        #expect(core.votedFor == nil)
        // A forced step down with a huge term is clamped, and a forced election still works.
        _ = core.step(.stepDown(term: .max), now: .zero)
        #expect(core.term < ElectionCore.maxAcceptedTerm)
        _ = core.step(.startElection, now: .zero)
        #expect(core.state == .candidate)
        #expect(core.term == ElectionCore.maxTermJump + 1)  // stepDown adopts at most maxTermJump ahead
    }
}

/// The grants, real vote requests and leadership signs in a batch: what must wait for a write.
private func dependents(_ directives: [ElectionDirective]) -> [ElectionDirective] {
    directives.filter { directive in
        switch directive {
        case .send(_, .voteResponse(let r)): return r.voteGranted && !r.preVote
        case .send(_, .voteRequest(let r)): return !r.preVote
        case .stateChanged(.leader, _, _), .epochChanged, .broadcastHeartbeat: return true
        default: return false
        }
    }
}

@Suite("Durable writes (issue 6, item 2)")
struct DurableWriteRules {
    /// A core stepped directly: its writes complete only when the test says so.
    static func rawCore(
        _ id: String, voters: [String], durable: DurableElectionState = DurableElectionState(),
        settings: ElectionCore.Settings = testSettings()
    ) -> ElectionCore {
        ElectionCore(id: id, settings: settings, durable: durable, voters: voters, seed: 7, now: .zero)
    }

    struct RetryCase: Sendable, CustomTestStringConvertible {
        var name: String
        /// When the candidate asks again, after the failed write at 10 ms.
        var retryAtMilliseconds: UInt64
        var testDescription: String { name }
    }

    @Test(
        "a vote whose write failed is refused, forgotten, and a retried request is not granted without a new durable write",
        arguments: [
            RetryCase(name: "retry at once", retryAtMilliseconds: 11),
            RetryCase(name: "retry after the write-retry delay", retryAtMilliseconds: 10 + T / 4 / ms),
        ])
    func failedVoteWriteIsNotGrantedFromMemory(_ c: RetryCase) throws {
        var voter = Self.rawCore("v", voters: ["v", "a", "b"])
        let asked = voter.step(voteRequest(from: "a", term: 1), now: at(milliseconds: 10))
        let write = try #require(asked.persists.first)
        #expect(write.electionOnly == DurableElectionState(term: 1, votedFor: "a", epoch: 1))
        #expect(asked.voteResponses.isEmpty, "no answer before the vote is durable")
        let failed = voter.step(.persistFailed(write), now: at(milliseconds: 10))
        #expect(failed.voteResponses.map(\.voteGranted) == [false])
        #expect(failed.voteResponses.first?.reason == ElectionCore.notDurableReason)
        #expect(voter.lastWriteFailed && voter.votedFor == nil && voter.persisted.electionOnly == DurableElectionState())

        let retried = voter.step(voteRequest(from: "a", term: 1), now: at(milliseconds: c.retryAtMilliseconds))
        #expect(!retried.voteResponses.contains { $0.voteGranted }, "never granted from memory")
        if let rewrite = retried.persists.first {
            // Past the retry delay the write is retried; only its success lets a vote through.
            #expect(retried.voteResponses.map(\.reason) == [ElectionCore.notDurableReason])
            let done = voter.step(.persisted(rewrite), now: at(milliseconds: c.retryAtMilliseconds))
            #expect(done.voteResponses.isEmpty && !voter.lastWriteFailed)
        } else {
            #expect(retried.voteResponses.map(\.reason) == [ElectionCore.notDurableReason])
        }
    }

    @Test("a node whose vote write failed and that restarts from its disk votes at most once in that term")
    func noVoteTwiceInOneTermAcrossRestartAfterFailedWrite() throws {
        let disk = DurableElectionState(term: 2, votedFor: nil, epoch: 1)
        var voter = Self.rawCore("v", voters: ["v", "a", "b"], durable: disk)
        var granted: [String] = []
        var directives = voter.step(voteRequest(from: "a", term: 3, epoch: 1), now: at(milliseconds: 1))
        let write = try #require(directives.persists.first)
        directives += voter.step(.persistFailed(write), now: at(milliseconds: 1))
        directives += voter.step(voteRequest(from: "a", term: 3, epoch: 1), now: at(milliseconds: 2))  // a retries
        granted += directives.voteResponses.filter(\.voteGranted).map { _ in "a" }
        // The process restarts: the disk still holds what was there before the failed write.
        var restarted = Self.rawCore("v", voters: ["v", "a", "b"], durable: disk)
        let asked = restarted.step(voteRequest(from: "b", term: 3, epoch: 1), now: at(milliseconds: 3))
        let rewrite = try #require(asked.persists.first)
        let done = restarted.step(.persisted(rewrite), now: at(milliseconds: 4))
        granted += (asked + done).voteResponses.filter(\.voteGranted).map { _ in "b" }
        #expect(granted == ["b"], "one vote in term 3, across the restart")
    }

    struct EpochCase: Sendable, CustomTestStringConvertible {
        /// The fencing epoch the candidate knows from the last primary's heartbeat (nil: none heard).
        var knownPrimaryEpoch: UInt64?
        var testDescription: String { "previous primary's epoch \(knownPrimaryEpoch.map(String.init) ?? "unknown")" }
    }

    @Test(
        "a new primary whose epoch write fails does not lead, and never exposes the new epoch",
        arguments: [EpochCase(knownPrimaryEpoch: nil), EpochCase(knownPrimaryEpoch: 4)])
    func newPrimaryWhoseEpochWriteFailsDoesNotLead(_ c: EpochCase) throws {
        var a = Self.rawCore("a", voters: ["a", "b", "c"], durable: DurableElectionState(epoch: c.knownPrimaryEpoch ?? 0))
        if let known = c.knownPrimaryEpoch {
            _ = a.step(heartbeat(from: "b", term: 0, epoch: known), now: .zero)
        }
        let fencing = a.fencingEpoch
        #expect(fencing == (c.knownPrimaryEpoch ?? 0))
        var all = a.step(.startElection, now: at(milliseconds: 1))
        all += a.step(.persisted(try #require(all.persists.last)), now: at(milliseconds: 2))
        let won = a.step(voteResponse(from: "b", term: 1, epoch: fencing), now: at(milliseconds: 3))
        let epochWrite = try #require(won.persists.first)
        #expect(epochWrite.epoch == fencing + 1)
        #expect(dependents(won).isEmpty && a.state == .candidate && a.leaderID == nil)
        #expect(a.heartbeat(seq: 1).role != .primary)
        let failed = a.step(.persistFailed(epochWrite), now: at(milliseconds: 4))
        all += won + failed
        #expect(a.state == .follower && failed.stateChanges == [.follower])
        #expect(a.fencingEpoch == fencing)
        #expect(!all.contains(.epochChanged(fencing + 1)) && !all.contains(.broadcastHeartbeat))
        #expect(!all.stateChanges.contains(.leader))
        // It does not stand again until a write succeeds.
        #expect(a.step(.startElection, now: at(milliseconds: 5)).isEmpty && a.state == .follower)
    }

    struct Trigger: Sendable, CustomTestStringConvertible {
        var name: String
        var setup: @Sendable () -> (ElectionCore, ElectionEvent)
        var testDescription: String { name }
    }

    @Test(
        "nothing that depends on a pending write is sent before the write is reported durable",
        arguments: [
            Trigger(name: "a granted vote") { (rawCore("v", voters: ["v", "a"]), voteRequest(from: "a", term: 3)) },
            Trigger(name: "a forced election") { (rawCore("a", voters: ["a", "b"]), .startElection) },
            Trigger(name: "a single-voter election") { (rawCore("a", voters: ["a"]), .startElection) },
            Trigger(name: "a PreVote quorum") {
                var a = rawCore("a", voters: ["a", "b", "c"])
                _ = a.step(.tick, now: a.nextDeadline!)
                return (a, voteResponse(from: "b", term: 1, preVote: true))
            },
            Trigger(name: "a won election") {
                var a = rawCore("a", voters: ["a", "b", "c"])
                let started = a.step(.startElection, now: .zero)
                // No write: no vote requests, and the test fails on what it checks, not on an index.
                if let selfVote = started.persists.first { _ = a.step(.persisted(selfVote), now: .zero) }
                return (a, voteResponse(from: "b", term: 1))
            },
        ])
    func nothingDependingOnAPendingWriteIsSent(_ trigger: Trigger) throws {
        var (core, event) = trigger.setup()
        var now = at(milliseconds: 500)
        var batch = core.step(event, now: now)
        var released: [ElectionDirective] = []
        var writes = 0
        // Complete each write in turn, 1 s later: what depended on it may only come out then.
        while let write = batch.persists.first, writes < 5 {
            #expect(dependents(batch).isEmpty, "\(dependents(batch)) sent before \(write) was durable")
            #expect(batch.persists.count == 1, "at most one write in flight")
            writes += 1
            now = now + 1000 * ms
            batch = core.step(.persisted(write), now: now)
            released += dependents(batch)
        }
        #expect(!released.isEmpty, "the write's report releases what waited for it")
        #expect(core.persisted == core.durable)
    }

    @Test("the fencing epoch is the newest primary's epoch: it only rises, from primaries' heartbeats and own durable leadership")
    func fencingEpochIsMonotonic() throws {
        var f = makeCore("f", voters: ["f", "l", "m", "x"])
        var exposed: [UInt64] = []
        func record(_ directives: [ElectionDirective]) {
            exposed += directives.compactMap { if case .epochChanged(let e) = $0 { return e } else { return nil } }
        }
        record(f.step(heartbeat(from: "l", term: 1, epoch: 3), now: at(milliseconds: 1)))
        record(f.step(heartbeat(from: "m", term: 2, epoch: 5), now: at(milliseconds: 2)))
        record(f.step(heartbeat(from: "l", term: 1, epoch: 3), now: at(milliseconds: 3)))  // a stale primary
        record(f.step(heartbeat(from: "x", term: 2, role: .replica, epoch: 9), now: at(milliseconds: 4)))  // no primary's
        #expect(f.epoch == 9 && f.fencingEpoch == 5)
        // A promise (epoch 10), once the lease of the primary heard at 2 ms has run out (T = 100 ms).
        record(f.step(voteRequest(from: "x", term: 3, epoch: 9), now: at(milliseconds: 150)))
        #expect(f.epoch == 10 && f.fencingEpoch == 5)
        record(f.step(.startElection, now: at(milliseconds: 300)))
        record(f.step(voteResponse(from: "l", term: 4, epoch: 10), now: at(milliseconds: 301)))
        record(f.step(voteResponse(from: "m", term: 4, epoch: 10), now: at(milliseconds: 301)))
        #expect(f.state == .leader && f.fencingEpoch == 11)
        #expect(exposed == [3, 5, 11])
    }

    @Test("a slow write delays the grant and the leadership, but one vote stays one vote and the election completes")
    func slowWriteDelaysButStaysCorrect() throws {
        var a = Self.rawCore("a", voters: ["a", "b", "c"])
        var b = Self.rawCore("b", voters: ["a", "b", "c"])
        // a stands; its self-vote takes 3 T to write. No request goes out, and no timer gives up on it.
        let started = a.step(.startElection, now: .zero)
        let selfVote = try #require(started.persists.first)
        #expect(started.voteRequests.isEmpty && a.nextDeadline == nil)
        #expect(a.step(.tick, now: at(milliseconds: 3 * T / ms)).isEmpty && a.state == .candidate)
        let asking = a.step(.persisted(selfVote), now: at(milliseconds: 3 * T / ms))
        #expect(asking.voteRequests.map(\.to) == ["b", "c"])
        #expect(a.nextDeadline == at(milliseconds: 3 * T / ms) + voteTimeout, "the campaign's time starts with its requests")
        // b's vote takes long to write; a asks again meanwhile: no grant, no second write.
        let request = try #require(asking.voteRequests.first { $0.to == "b" }?.request)
        let first = b.step(.receive(from: "a", .voteRequest(request)), now: at(milliseconds: 301))
        let voteWrite = try #require(first.persists.first)
        let again = b.step(.receive(from: "a", .voteRequest(request)), now: at(milliseconds: 340))
        #expect(first.voteResponses.isEmpty && again.voteResponses.isEmpty && again.persists.isEmpty)
        let grant = b.step(.persisted(voteWrite), now: at(milliseconds: 349))
        #expect(grant.voteResponses.map(\.voteGranted) == [true])
        // a wins; its new epoch takes long to write: it is not leader until then.
        let won = a.step(.receive(from: "b", .voteResponse(try #require(grant.voteResponses.first))), now: at(milliseconds: 350))
        let epochWrite = try #require(won.persists.first)
        #expect(a.state == .candidate && dependents(won).isEmpty)
        #expect(a.step(.tick, now: at(milliseconds: 500)).isEmpty)
        let led = a.step(.persisted(epochWrite), now: at(milliseconds: 500))
        #expect(a.state == .leader && a.fencingEpoch == 1)
        #expect(led.withoutConfigurationTraffic == [.epochChanged(1), .stateChanged(.leader, term: 1, leader: "a"), .leaderChanged("a"), .broadcastHeartbeat])
    }

    @Test("changes made while a write is in flight go out as the next write when it completes")
    func oneWriteInFlight() throws {
        var v = Self.rawCore("v", voters: ["v", "a", "b"])
        let first = v.step(heartbeat(from: "a", term: 1, role: .replica), now: .zero)
        let write = try #require(first.persists.first)
        let meanwhile = v.step(voteRequest(from: "b", term: 2), now: at(milliseconds: 1))
        #expect(meanwhile.persists.isEmpty && meanwhile.voteResponses.isEmpty)
        let next = v.step(.persisted(write), now: at(milliseconds: 2))
        #expect(next.persistedElectionStates == [DurableElectionState(term: 2, votedFor: "b", epoch: 1)])
        #expect(next.voteResponses.isEmpty, "the vote is in the next write, not this one")
        let granted = v.step(.persisted(try #require(next.persists.first)), now: at(milliseconds: 3))
        #expect(granted.voteResponses.map(\.voteGranted) == [true])
    }

    @Test("after a failed write the node retries it no sooner than the retry delay; once it succeeds it votes and stands again")
    func persistRetrySucceedsAndNodeVotesAgain() throws {
        var v = Self.rawCore("v", voters: ["v", "a", "b"])
        let write = try #require(v.step(voteRequest(from: "a", term: 1), now: .zero).persists.first)
        _ = v.step(.persistFailed(write), now: at(milliseconds: 10))
        let retryAt = at(milliseconds: 10) + v.persistRetryDelay
        #expect(v.nextDeadline == retryAt)
        #expect(v.step(.tick, now: at(milliseconds: 11)).persists.isEmpty, "no busy retry")
        let preVote = v.step(voteRequest(from: "b", term: 2, preVote: true), now: at(milliseconds: 12))
        #expect(preVote.voteResponses.map(\.reason) == [ElectionCore.notDurableReason])
        let retry = v.step(.tick, now: retryAt)
        let rewrite = try #require(retry.persists.first)
        #expect(rewrite.electionOnly == DurableElectionState(term: 1, votedFor: nil, epoch: 1), "the vote was forgotten, the term kept")
        _ = v.step(.persisted(rewrite), now: retryAt)
        #expect(!v.lastWriteFailed && v.persisted == rewrite)
        let asked = v.step(voteRequest(from: "a", term: 1, epoch: 1), now: retryAt)
        let grant = v.step(.persisted(try #require(asked.persists.first)), now: retryAt)
        #expect(grant.voteResponses.map(\.voteGranted) == [true])
        var w = makeCore("w", voters: ["w", "a", "b"])
        _ = w.step(.startElection, now: .zero)
        #expect(w.state == .candidate, "and a node with working writes stands")
        var s = Self.rawCore("s", voters: ["s", "a", "b"])
        let standing = s.step(.startElection, now: .zero)
        _ = s.step(.persistFailed(try #require(standing.persists.first)), now: .zero)
        #expect(s.state == .follower && s.step(.startElection, now: .zero).isEmpty)
        let sRetry = s.step(.tick, now: CoreInstant.zero + s.persistRetryDelay)
        _ = s.step(.persisted(try #require(sRetry.persists.first)), now: CoreInstant.zero + s.persistRetryDelay)
        _ = s.step(.startElection, now: CoreInstant.zero + s.persistRetryDelay)
        #expect(s.state == .candidate, "it stands again once a write succeeded")
    }
}
