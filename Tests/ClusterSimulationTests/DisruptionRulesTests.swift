import ClusterCore
import Testing

// Issue 6, items 10 to 12, on the core: who may move a node's term, and by how much.
// Disruptive servers: Ongaro's thesis §4.2.3 (the lease of a live primary) and §9.6 (PreVote).
// Each test is named for the defect it pins down; each fails on the core before the fix.

/// A vote request whose transport sender and body candidate may differ.
private func request(
    from sender: String, candidate: String? = nil, term: UInt64, lsn: UInt64 = 0, epoch: UInt64 = 0,
    preVote: Bool = false
) -> ElectionEvent {
    .receive(
        from: sender,
        .voteRequest(VoteRequest(candidateID: candidate ?? sender, term: term, lastLSN: lsn, epoch: epoch, preVote: preVote, configuration: bootstrapConfiguration)))
}

@Suite("#10: a stranger deposes a healthy primary (thesis §4.2.3)")
struct StrangerDeposesPrimaryTests {
    @Test("a vote request from a non-voter is refused and its term is not adopted, live primary or not")
    func strangerRefused() {
        var voter = makeCore("v", voters: ["v", "a", "b"], durable: DurableElectionState(term: 2, epoch: 1))
        for preVote in [false, true] {
            let directives = voter.step(request(from: "stranger", term: 2015, epoch: 1, preVote: preVote), now: .zero)
            #expect(directives.voteResponses.first?.voteGranted == false)
            #expect(directives.voteResponses.first?.reason == ElectionCore.unknownCandidateReason)
            #expect(directives.persists.isEmpty)
        }
        #expect(voter.term == 2 && voter.votedFor == nil && voter.epoch == 1)
    }

    @Test("a follower that heard a live primary within T neither grants a member's vote request nor adopts its term")
    func followerKeepsLease() {
        var voter = makeCore("v", voters: ["v", "l", "c"])
        _ = voter.step(heartbeat(from: "l", term: 1), now: at(milliseconds: 10))
        #expect(voter.leaderID == "l")
        let directives = voter.step(voteRequest(from: "c", term: 2015), now: at(milliseconds: 10 + 99))
        #expect(directives.voteResponses.first?.voteGranted == false)
        #expect(directives.voteResponses.first?.reason == ElectionCore.liveLeaderReason)
        #expect(directives.voteResponses.first?.term == 1)
        #expect(directives.persists.isEmpty)
        #expect(voter.term == 1 && voter.leaderID == "l")
        // Once the lease has run out (no heartbeat within T), the same request is a real election.
        let later = voter.step(voteRequest(from: "c", term: 2015), now: at(milliseconds: 10 + 100))
        #expect(later.voteResponses.first?.voteGranted == true)
        #expect(voter.term == 2015 && voter.votedFor == "c")
    }

    @Test("a leader that hears its quorum neither grants a member's vote request nor adopts its term")
    func leaderKeepsLease() {
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        let directives = leader.step(voteRequest(from: "c", term: 9), now: at(milliseconds: 1))
        #expect(directives.voteResponses.first?.voteGranted == false)
        #expect(directives.voteResponses.first?.reason == ElectionCore.liveLeaderReason)
        #expect(leader.state == .leader && leader.term == 1)
    }

    @Test("the lease does not refuse the repeated grant of this term's vote to the same candidate (a retry)")
    func repeatedGrantUnderLease() {
        var voter = makeCore("v", voters: ["v", "a", "b"])
        #expect(voter.step(voteRequest(from: "a", term: 1), now: .zero).voteResponses.first?.voteGranted == true)
        _ = voter.step(heartbeat(from: "a", term: 1), now: at(milliseconds: 1))  // a won
        #expect(voter.step(voteRequest(from: "a", term: 1), now: at(milliseconds: 2)).voteResponses.first?.voteGranted == true)
        #expect(voter.step(voteRequest(from: "b", term: 1), now: at(milliseconds: 3)).voteResponses.first?.reason
            == ElectionCore.liveLeaderReason)
    }

    @Test("the application's door (vouchedVoteRequest) keeps the seed's rules: any candidate, live primary or not")
    func vouchedDoorKeepsSeedRules() {
        var voter = makeCore("v", voters: ["v", "l"])
        _ = voter.step(heartbeat(from: "l", term: 1), now: .zero)
        let directives = voter.step(
            .vouchedVoteRequest(VoteRequest(candidateID: "outsider", term: 2)), now: at(milliseconds: 1))
        #expect(directives.voteResponses.first?.voteGranted == true)
        #expect(directives.voteRequests.isEmpty)
        #expect(voter.term == 2 && voter.votedFor == "outsider")
        #expect(directives.persistedElectionStates.last == DurableElectionState(term: 2, votedFor: "outsider", epoch: 1))
        // The seed's refusals still hold there: a second candidate in the term, a stale term.
        let second = voter.step(.vouchedVoteRequest(VoteRequest(candidateID: "l", term: 2)), now: at(milliseconds: 2))
        #expect(second.voteResponses.first?.reason == ClusterError.alreadyVoted.description)
        let stale = voter.step(.vouchedVoteRequest(VoteRequest(candidateID: "l", term: 1)), now: at(milliseconds: 3))
        #expect(stale.voteResponses.first?.reason == ClusterError.staleTerm.description)
    }

    @Test("a dozen vote requests with rising terms, from strangers and members, leave a healthy 3-node cluster in its term")
    func risingTermsDoNotMoveHealthyCluster() {
        var cluster = TestCluster(ids: ["a", "b", "c"], voters: { _ in ["a", "b", "c"] }, settings: { _ in testSettings() })
        cluster.run(milliseconds: 1_000)
        let leaders = cluster.leaders
        #expect(leaders.count == 1)
        let term = cluster.cores["a"]!.term
        for i in 0..<12 {
            let requestTerm = term + 1 + UInt64(i) * 183  // up to term + 2014
            for target in cluster.ids {
                cluster.apply(target, request(from: "stranger\(i)", term: requestTerm))
                // A member's id, as a JSON client could claim it: refused under the lease.
                let member = cluster.ids.first { $0 != target && !leaders.contains($0) } ?? target
                cluster.apply(target, request(from: member, term: requestTerm))
            }
            cluster.run(milliseconds: 20)
        }
        cluster.run(milliseconds: 500)
        #expect(cluster.leaders == leaders)
        #expect(cluster.ids.allSatisfy { cluster.cores[$0]!.term == term })
    }
}

@Suite("#11: one JSON line stops elections for good")
struct OneLineStopsElectionsTests {
    static let top: UInt64 = (1 << 63) - 1

    @Test("a vote request with term and epoch 2^63 - 1 is refused and nothing of it is saved, at either door")
    func hugeVoteRequestRefused() {
        var voter = makeCore("v", voters: ["v", "a", "b"])
        let huge = VoteRequest(candidateID: "a", term: Self.top, lastLSN: 0, epoch: Self.top)
        for event in [ElectionEvent.receive(from: "a", .voteRequest(huge)), .vouchedVoteRequest(huge)] {
            let directives = voter.step(event, now: .zero)
            #expect(directives.voteResponses.first?.voteGranted == false)
            #expect(directives.voteResponses.first?.reason == ElectionCore.outOfRangeReason)
            #expect(directives.persists.isEmpty)
        }
        #expect(voter.durable.electionOnly == DurableElectionState())
        // A real candidate still gets the vote.
        #expect(voter.step(voteRequest(from: "b", term: 1), now: .zero).voteResponses.first?.voteGranted == true)
    }

    struct ReachCase: Sendable, CustomTestStringConvertible {
        var name: String
        var event: ElectionEvent
        var testDescription: String { name }
    }

    @Test(
        "a term or epoch beyond reach is neither adopted nor saved (terms: maxTermJump ahead; a candidate's epoch: own + 1)",
        arguments: [
            ReachCase(name: "vote request, term", event: voteRequest(from: "a", term: 10 + ElectionCore.maxTermJump + 1, epoch: 5)),
            ReachCase(name: "vote request, epoch + 2", event: voteRequest(from: "a", term: 11, epoch: 7)),
            ReachCase(name: "pre-vote request, epoch + 2", event: voteRequest(from: "a", term: 11, epoch: 7, preVote: true)),
            ReachCase(name: "heartbeat, term", event: heartbeat(from: "a", term: 10 + ElectionCore.maxTermJump + 1, epoch: 5)),
            ReachCase(name: "heartbeat, epoch", event: heartbeat(from: "a", term: 10, epoch: 5 + ElectionCore.maxTermJump + 1)),
            ReachCase(name: "vote response, term", event: voteResponse(from: "a", term: 10 + ElectionCore.maxTermJump + 1, granted: false)),
            ReachCase(name: "vote response, epoch", event: voteResponse(from: "a", term: 10, granted: false, epoch: 1 << 40)),
        ])
    func beyondReachNotAdopted(_ c: ReachCase) {
        var core = makeCore("v", voters: ["v", "a", "b"], durable: DurableElectionState(term: 10, epoch: 5))
        let directives = core.step(c.event, now: .zero)
        #expect(core.durable.electionOnly == DurableElectionState(term: 10, epoch: 5))
        #expect(directives.persists.isEmpty)
        #expect(directives.voteResponses.allSatisfy { !$0.voteGranted })
    }

    @Test("within reach, terms and epochs are adopted: a voter lagging many elections learns them from a heartbeat, then votes")
    func laggingVoterCatchesUp() {
        var voter = makeCore("v", voters: ["v", "a", "b"], durable: DurableElectionState(term: 3, epoch: 2))
        // The cluster moved on by 1000 elections while v was away; a candidate knows epoch 900.
        let refused = voter.step(voteRequest(from: "a", term: 1004, epoch: 900), now: .zero)
        #expect(refused.voteResponses.first?.reason == ElectionCore.outOfRangeReason)
        #expect(voter.term == 3)
        _ = voter.step(heartbeat(from: "a", term: 1003, role: .replica, epoch: 900), now: at(milliseconds: 1))
        #expect(voter.term == 1003 && voter.epoch == 900)
        let granted = voter.step(voteRequest(from: "a", term: 1004, epoch: 900), now: at(milliseconds: 2))
        #expect(granted.voteResponses.first?.voteGranted == true)
    }

    @Test("stepDown with a huge term saves a term the node can still stand in")
    func stepDownStaysUsable() {
        var core = makeCore("a", voters: ["a"])
        _ = core.step(.stepDown(term: Self.top), now: .zero)
        #expect(core.term == ElectionCore.maxTermJump)
        _ = core.step(.startElection, now: .zero)
        #expect(core.state == .leader && core.term < ElectionCore.maxAcceptedTerm)
    }
}

@Suite("#12: votes and heartbeats are not bound to who sent them")
struct UnboundSenderTests {
    @Test("one peer forges a quorum: granted votes naming other voters, sent by b, are not counted")
    func forgedQuorumFromOnePeer() {
        let voters = ["a", "b", "c", "d", "e"]
        var a = makeCore("a", voters: voters)
        _ = a.step(.startElection, now: .zero)
        for forged in ["c", "d", "e"] {
            let vote = VoteResponse(voterID: forged, term: a.term, voteGranted: true)
            #expect(a.step(.receive(from: "b", .voteResponse(vote)), now: .zero).isEmpty)
        }
        #expect(a.state == .candidate)
        // b's own vote counts, once: a has 2 of the 3 it needs.
        _ = a.step(voteResponse(from: "b", term: a.term), now: .zero)
        _ = a.step(voteResponse(from: "b", term: a.term), now: .zero)
        #expect(a.state == .candidate)
        _ = a.step(voteResponse(from: "c", term: a.term), now: .zero)
        #expect(a.state == .leader)
    }

    @Test("a heartbeat naming another member is dropped: it neither keeps a primary alive nor deposes one")
    func forgedHeartbeatDropped() {
        var f = makeCore("f", voters: ["f", "l", "b"])
        let forged = HeartbeatMessage(from: "l", seq: 1, epoch: 0, term: 1, lsn: 0, role: .primary)
        #expect(f.step(.receive(from: "b", .heartbeat(forged)), now: .zero).isEmpty)
        #expect(f.leaderID == nil && f.term == 0)
        let deposing = HeartbeatMessage(from: "l", seq: 2, epoch: 0, term: 7, lsn: 0, role: .replica)
        #expect(f.step(.receive(from: "b", .heartbeat(deposing)), now: .zero).isEmpty)
        #expect(f.term == 0)
    }

    @Test("a heartbeat counts only while its sender is a voter: dropped once removed, heard again once added back, and at once from a voter added later")
    func heartbeatsFollowTheVoterSet() {
        var f = makeCore("f", voters: ["f", "l", "b"])
        _ = f.step(.removeVoter("l"), now: .zero)
        #expect(f.step(heartbeat(from: "l", term: 3), now: .zero).isEmpty)
        #expect(f.term == 0)
        _ = f.step(.addVoter("l"), now: .zero)
        _ = f.step(heartbeat(from: "l", term: 3), now: .zero)
        #expect(f.term == 3)
        _ = f.step(.addVoter("n"), now: .zero)
        _ = f.step(heartbeat(from: "n", term: 4), now: .zero)
        #expect(f.term == 4)
        // Its own id, from a link: dropped.
        let leader = f.leaderID
        #expect(f.step(.receive(from: "f", .heartbeat(HeartbeatMessage(from: "f", seq: 1, epoch: 0, term: 9, lsn: 0, role: .primary))), now: .zero).isEmpty)
        #expect(f.term == 4 && f.leaderID == leader && leader != "f")
    }

    @Test("a vote request naming another candidate is dropped; a non-voter's heartbeat and vote response too")
    func otherForgeriesDropped() {
        var v = makeCore("v", voters: ["v", "a", "b"])
        #expect(v.step(request(from: "b", candidate: "a", term: 1), now: .zero).isEmpty)
        #expect(v.step(heartbeat(from: "stranger", term: 5), now: .zero).isEmpty)
        #expect(v.step(voteResponse(from: "stranger", term: 5, granted: false), now: .zero).isEmpty)
        #expect(v.durable.electionOnly == DurableElectionState() && v.leaderID == nil)
    }
}
