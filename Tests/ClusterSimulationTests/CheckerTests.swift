import ClusterCore
import ClusterSimulation
import Testing

// The invariant checker must catch what a working run never shows. Two ways to show it:
// hand-built histories with one planted violation each, and randomised schedules against a
// deliberately broken driver or a core with one rule switched off.

private let msNs: UInt64 = 1_000_000

/// Notes a vote request from the network (sent by `sender`, the candidate by default) reaching
/// `voter`, whose state was `before`, and returns the granted response.
private func grant(
    _ c: inout InvariantChecker, by voter: String, to candidate: String, term: UInt64, lsn: UInt64 = 0,
    epoch: UInt64 = 0, sender: String? = nil, before: NodeSnapshot
) -> ElectionMessage {
    let request = VoteRequest(candidateID: candidate, term: term, lastLSN: lsn, epoch: epoch)
    c.noteVoteRequest(node: voter, from: sender ?? candidate, request, before: before)
    return .voteResponse(VoteResponse(voterID: voter, term: term, voteGranted: true, epoch: epoch))
}

/// What a leader's disk holds when its leadership is durable.
private func durableLeader(_ node: String, _ term: UInt64, _ epoch: UInt64) -> DurableElectionState {
    DurableElectionState(term: term, votedFor: node, epoch: epoch)
}

@Suite("Invariant checker: planted violations in hand-built histories")
struct CheckerHistoryTests {
    /// Runs `plant` on a fresh checker and returns its violations.
    func violations(_ plant: (inout InvariantChecker) -> Void) -> [String] {
        var checker = InvariantChecker(electionTimeoutNanoseconds: 100 * msNs)
        plant(&checker)
        return checker.violations
    }

    @Test("a clean history: a vote, a leader with a real quorum, followers, the token read by everyone")
    func cleanHistory() {
        let found = violations { c in
            c.noteCandidacy(term: 1, epoch: 0)
            c.notePersist(node: "a", DurableElectionState(term: 1, votedFor: "a"), atNanoseconds: 0)
            let message = grant(&c, by: "b", to: "a", term: 1, before: NodeSnapshot(term: 0, voters: ["a", "b", "c"]))
            c.notePersist(node: "b", DurableElectionState(term: 1, votedFor: "a", epoch: 1), atNanoseconds: 1)
            c.noteSend(node: "b", to: "a", message, disk: DurableElectionState(term: 1, votedFor: "a", epoch: 1), atNanoseconds: 1)
            c.notePersist(node: "a", DurableElectionState(term: 1, votedFor: "a", epoch: 1), atNanoseconds: 2)
            c.noteLeader(
                node: "a", term: 1, epoch: 1, voters: ["a", "b", "c"], quorumSize: 2,
                disk: DurableElectionState(term: 1, votedFor: "a", epoch: 1), atNanoseconds: 2)
            c.noteFencingEpoch(node: "a", 1, own: true, atNanoseconds: 2)
            c.noteFencingEpoch(node: "b", 1, own: false, atNanoseconds: 3)
            for node in ["a", "b", "c"] {
                c.checkNode(node: node, term: 1, epoch: 1, fencingEpoch: node == "c" ? 0 : 1, leaderID: "a", atNanoseconds: 3)
            }
        }
        #expect(found.isEmpty, "\(found)")
    }

    @Test("double vote across a restart: the votes a node sent in one term name two candidates")
    func doubleVoteAcrossRestart() {
        let found = violations { c in
            let voters: Set<String> = ["v", "a", "b"]
            let first = grant(&c, by: "v", to: "a", term: 3, before: NodeSnapshot(term: 2, voters: voters))
            c.noteSend(node: "v", to: "a", first, disk: DurableElectionState(term: 3, votedFor: "a", epoch: 1), atNanoseconds: 0)
            c.noteRestart(node: "v", term: 3, atNanoseconds: 1)  // a driver that lost the vote
            let second = grant(&c, by: "v", to: "b", term: 3, before: NodeSnapshot(term: 3, voters: voters))
            c.noteSend(node: "v", to: "b", second, disk: DurableElectionState(term: 3, votedFor: "b", epoch: 1), atNanoseconds: 2)
        }
        #expect(found.count == 1 && found[0].contains("v voted for a and b in term 3"))
    }

    @Test("LSN rule: a grant to a candidate behind the voter's LSN, as the voter's driver knows it")
    func lsnRule() {
        let found = violations { c in
            let message = grant(&c, by: "v", to: "a", term: 1, lsn: 4, before: NodeSnapshot(term: 0, localLSN: 5, voters: ["v", "a"]))
            c.noteSend(node: "v", to: "a", message, disk: DurableElectionState(term: 1, votedFor: "a", epoch: 1), atNanoseconds: 0)
        }
        #expect(found.count == 1 && found[0].contains("candidate LSN 4 < voter LSN 5"))
    }

    @Test("epoch rule and epoch order: a grant to a candidate behind the voter's epoch; a later term's leader with no higher token")
    func epochOrder() {
        let grantFound = violations { c in
            let message = grant(&c, by: "v", to: "a", term: 2, epoch: 3, before: NodeSnapshot(term: 1, epoch: 4, voters: ["v", "a"]))
            c.noteSend(node: "v", to: "a", message, disk: DurableElectionState(term: 2, votedFor: "a", epoch: 4), atNanoseconds: 0)
        }
        #expect(grantFound.count == 1 && grantFound[0].contains("candidate epoch 3 < voter epoch 4"))
        let orderFound = violations { c in
            c.noteLeader(node: "a", term: 2, epoch: 5, voters: ["a"], quorumSize: 1, disk: durableLeader("a", 2, 5), atNanoseconds: 0)
            c.noteLeader(node: "b", term: 3, epoch: 5, voters: ["b"], quorumSize: 1, disk: durableLeader("b", 3, 5), atNanoseconds: 1)
            c.noteLeader(node: "c", term: 1, epoch: 6, voters: ["c"], quorumSize: 1, disk: durableLeader("c", 1, 6), atNanoseconds: 2)
        }
        #expect(orderFound.count == 2 && orderFound.allSatisfy { $0.contains("epoch not increasing") })
    }

    @Test("the epoch the application reads goes down (between restarts)")
    func applicationEpochGoesDown() {
        let found = violations { c in
            c.noteCandidacy(term: 1, epoch: 4)
            c.noteLeader(node: "a", term: 1, epoch: 5, voters: ["a"], quorumSize: 1, disk: durableLeader("a", 1, 5), atNanoseconds: 0)
            c.checkNode(node: "b", term: 1, epoch: 5, fencingEpoch: 5, leaderID: nil, atNanoseconds: 1)
            c.checkNode(node: "b", term: 1, epoch: 5, fencingEpoch: 4, leaderID: nil, atNanoseconds: 2)
            // A restart starts afresh: the fencing epoch is learned again from the primary.
            c.noteRestart(node: "b", term: 1, atNanoseconds: 3)
            c.checkNode(node: "b", term: 1, epoch: 5, fencingEpoch: 0, leaderID: nil, atNanoseconds: 4)
        }
        #expect(found.count == 1 && found[0].contains("the epoch b's application reads went down from 5 to 4"))
    }

    @Test("a term going down, at a restart or a step")
    func termGoingDown() {
        let found = violations { c in
            c.checkTerm(node: "n", term: 5, atNanoseconds: 0)
            c.checkTerm(node: "n", term: 4, atNanoseconds: 1)
        }
        #expect(found.count == 1 && found[0].contains("n's term went down from 5 to 4"))
    }

    @Test("persist before send: a vote request, and a granted vote, sent before the vote is durable")
    func persistBeforeSend() {
        let found = violations { c in
            let request = VoteRequest(candidateID: "a", term: 2)
            c.noteSend(node: "a", to: "b", .voteRequest(request), disk: DurableElectionState(term: 1), atNanoseconds: 0)
            let message = grant(&c, by: "b", to: "a", term: 2, before: NodeSnapshot(term: 1, voters: ["a", "b"]))
            c.noteSend(node: "b", to: "a", message, disk: DurableElectionState(term: 2), atNanoseconds: 1)
            // The vote is on disk, the promised epoch (candidate epoch + 1) not yet.
            let again = grant(&c, by: "c", to: "a", term: 2, before: NodeSnapshot(term: 1, voters: ["a", "c"]))
            c.noteSend(node: "c", to: "a", again, disk: DurableElectionState(term: 2, votedFor: "a"), atNanoseconds: 2)
        }
        #expect(found.count == 3)
        #expect(found[0].contains("asked for votes in term 2 before persisting"))
        #expect(found[1].contains("sent its vote for a in term 2 before persisting it"))
        #expect(found[2].contains("before persisting the promised epoch 1"))
    }

    @Test("a grant released by its write is judged against the request it was withheld for, not a later copy or forgery")
    func withheldGrantJudgedAgainstItsRequest() {
        let voters: Set<String> = ["v", "a", "b"]
        let request = VoteRequest(candidateID: "a", term: 2, lastLSN: 4)
        let found = violations { c in
            c.noteVoteRequest(node: "v", from: "a", request, before: NodeSnapshot(term: 1, localLSN: 4, voters: voters))
            c.noteVoteRequestOutcome(withheld: true)
            // A copy after the LSN moved (refused by the core), and a forgery sent by b: nothing left behind.
            c.noteVoteRequest(node: "v", from: "a", request, before: NodeSnapshot(term: 2, votedFor: "a", localLSN: 5, voters: voters))
            c.noteVoteRequestOutcome(withheld: false)
            c.noteVoteRequest(node: "v", from: "b", request, before: NodeSnapshot(term: 2, votedFor: "a", localLSN: 5, voters: voters))
            c.noteVoteRequestOutcome(withheld: false)
            let grant = ElectionMessage.voteResponse(VoteResponse(voterID: "v", term: 2, voteGranted: true))
            c.noteSend(node: "v", to: "a", grant, disk: DurableElectionState(term: 2, votedFor: "a", epoch: 1), atNanoseconds: 1)
            // Sent once: a second grant has no request behind it.
            c.noteSend(node: "v", to: "a", grant, disk: DurableElectionState(term: 2, votedFor: "a", epoch: 1), atNanoseconds: 2)
        }
        #expect(found.count == 1 && found[0].contains("v granted a a vote that nobody asked for"), "\(found)")
    }

    @Test("the liveness bound: elected too late, no single leader, a node not following")
    func livenessBound() {
        let healed: UInt64 = 1_000 * msNs
        let bound: UInt64 = 1_000 * msNs
        let following = [
            LivenessView(id: "a", state: .leader, term: 4, leaderID: "a"),
            LivenessView(id: "b", state: .follower, term: 4, leaderID: "a"),
        ]
        var late = InvariantChecker()
        late.noteLeader(
            node: "a", term: 4, epoch: 1, voters: ["a"], quorumSize: 1, disk: durableLeader("a", 4, 1),
            atNanoseconds: healed + 1_500 * msNs)
        #expect(late.checkLiveness(nodes: following, healedAtNanoseconds: healed, boundNanoseconds: bound, atNanoseconds: 3_000 * msNs) == nil)
        #expect(late.violations.count == 1 && late.violations[0].contains("beyond the bound"))

        var inTime = InvariantChecker()
        inTime.noteLeader(
            node: "a", term: 4, epoch: 1, voters: ["a"], quorumSize: 1, disk: durableLeader("a", 4, 1),
            atNanoseconds: healed + 300 * msNs)
        #expect(inTime.checkLiveness(nodes: following, healedAtNanoseconds: healed, boundNanoseconds: bound, atNanoseconds: 3_000 * msNs) == 300 * msNs)
        #expect(inTime.violations.isEmpty)
        let lagging = following + [LivenessView(id: "c", state: .follower, term: 3, leaderID: nil)]
        #expect(inTime.checkLiveness(nodes: lagging, healedAtNanoseconds: healed, boundNanoseconds: bound, atNanoseconds: 3_000 * msNs) == nil)
        let none = following.map { LivenessView(id: $0.id, state: .follower, term: 4, leaderID: nil) }
        #expect(inTime.checkLiveness(nodes: none, healedAtNanoseconds: healed, boundNanoseconds: bound, atNanoseconds: 3_000 * msNs) == nil)
        #expect(inTime.violations.count == 2)
        #expect(inTime.violations[0].contains("not every node follows"))
        #expect(inTime.violations[1].contains("no single leader"))
    }

    @Test("the lease (thesis §4.2.3): a vote request's term adopted, or a vote granted, while hearing a live primary")
    func lease() {
        let before = NodeSnapshot(term: 1, state: .follower, leaderID: "l", voters: ["v", "l", "c"])
        let request = VoteRequest(candidateID: "c", term: 2)
        let found = violations { c in
            c.notePrimaryContact(node: "v", atNanoseconds: 0)
            c.noteVoteRequestStep(node: "v", from: "c", request, before: before, afterTerm: 2, granted: true, atNanoseconds: 99 * msNs)
            // Once the lease has run out, the same step is a real election.
            c.noteVoteRequestStep(node: "v", from: "c", request, before: before, afterTerm: 2, granted: true, atNanoseconds: 100 * msNs)
        }
        #expect(found.count == 2)
        #expect(found[0].contains("adopted term 2 from c's vote request while hearing primary l"))
        #expect(found[1].contains("granted c a vote while hearing primary l"))
    }

    @Test("a vote from the network for a stranger, or asked for by another sender")
    func strangerVotes() {
        let found = violations { c in
            let message = grant(&c, by: "v", to: "x", term: 1, before: NodeSnapshot(term: 0, voters: ["v", "a"]))
            c.noteSend(node: "v", to: "x", message, disk: DurableElectionState(term: 1, votedFor: "x", epoch: 1), atNanoseconds: 0)
            let forged = grant(&c, by: "v", to: "a", term: 2, sender: "b", before: NodeSnapshot(term: 1, voters: ["v", "a", "b"]))
            c.noteSend(node: "v", to: "a", forged, disk: DurableElectionState(term: 2, votedFor: "a", epoch: 1), atNanoseconds: 1)
        }
        #expect(found.count == 2)
        #expect(found[0].contains("not a voter it knows"))
        #expect(found[1].contains("asked for by b"))
    }

    @Test("a leader without a quorum of real votes (forged votes counted)")
    func forgedQuorum() {
        let found = violations { c in
            let message = grant(&c, by: "b", to: "a", term: 1, before: NodeSnapshot(term: 0, voters: ["a", "b", "c", "d", "e"]))
            c.noteSend(node: "b", to: "a", message, disk: DurableElectionState(term: 1, votedFor: "a", epoch: 1), atNanoseconds: 0)
            c.noteLeader(
                node: "a", term: 1, epoch: 1, voters: ["a", "b", "c", "d", "e"], quorumSize: 3, disk: durableLeader("a", 1, 1),
                atNanoseconds: 1)
        }
        #expect(found.count == 1 && found[0].contains("with 2 real votes of the 3 it needs"))
    }

    @Test("a stranger's term or epoch spreads; a node follows a leader nobody elected")
    func strangerTermsAndLeaders() {
        let found = violations { c in
            c.noteCandidacy(term: 3, epoch: 1)
            c.checkNode(node: "v", term: 3, epoch: 2, fencingEpoch: 0, leaderID: nil, atNanoseconds: 0)
            c.checkNode(node: "v", term: 2015, epoch: 2, fencingEpoch: 0, leaderID: nil, atNanoseconds: 1)
            c.checkNode(node: "w", term: 3, epoch: 1 << 62, fencingEpoch: 0, leaderID: nil, atNanoseconds: 2)
            c.checkNode(node: "u", term: 3, epoch: 2, fencingEpoch: 0, leaderID: "intruder", atNanoseconds: 3)
        }
        #expect(found.count == 3)
        #expect(found[0].contains("v is at term 2015, above any term"))
        #expect(found[1].contains("w holds epoch"))
        #expect(found[2].contains("u follows intruder in term 3, who was not elected"))
    }
}

@Suite("Invariant checker: ground truth and term inflation (issue 16, holes 6 and 8)")
struct CheckerGroundTruthTests {
    func violations(_ plant: (inout InvariantChecker) -> Void) -> [String] {
        var checker = InvariantChecker(electionTimeoutNanoseconds: 100 * msNs)
        plant(&checker)
        return checker.violations
    }

    @Test("hole 6: a vote request claiming more LSN than the candidate's storage holds is caught at the send, vote granted or not")
    func claimedLSNAboveStorage() {
        let found = violations { c in
            let honest = VoteRequest(candidateID: "a", term: 2, lastLSN: 7, epoch: 1)
            c.noteSend(node: "a", to: "b", .voteRequest(honest), disk: durableLeader("a", 2, 1), storageLSN: 7, atNanoseconds: 0)
            let inflated = VoteRequest(candidateID: "a", term: 3, lastLSN: 1_000_007, epoch: 1, preVote: true)
            c.noteSend(node: "a", to: "b", .voteRequest(inflated), disk: durableLeader("a", 2, 1), storageLSN: 7, atNanoseconds: 1)
            // The voter's own check passes on the claim (1_000_007 >= 9): only the ground truth shows the lie.
            let message = grant(&c, by: "b", to: "a", term: 3, lsn: 1_000_007, epoch: 1, before: NodeSnapshot(term: 2, epoch: 1, localLSN: 9, voters: ["a", "b"]))
            c.noteSend(node: "b", to: "a", message, disk: DurableElectionState(term: 3, votedFor: "a", epoch: 2), atNanoseconds: 2)
        }
        #expect(found.count == 1, "\(found)")
        #expect(found.first?.contains("a asked for pre-votes in term 3 claiming LSN 1000007, but its storage holds 7") == true)
    }

    @Test("hole 6: a candidacy without a forced election, a TimeoutNow from the leader, or a PreVote quorum is term inflation")
    func termInflation() {
        let voters: Set<String> = ["a", "b", "c", "d", "e"]
        let found = violations { c in
            // b and c grant a's PreVote for term 2 (a counts itself): 3 of 5, it may stand.
            for voter in ["b", "c"] {
                let request = VoteRequest(candidateID: "a", term: 2, epoch: 0, preVote: true)
                c.noteVoteRequest(node: voter, from: "a", request, before: NodeSnapshot(term: 1, voters: voters))
                let response = VoteResponse(voterID: voter, term: 2, voteGranted: true, preVote: true)
                c.noteSend(node: voter, to: "a", .voteResponse(response), disk: DurableElectionState(term: 1), atNanoseconds: 0)
                c.noteVoteRequestOutcome(withheld: false)
            }
            c.noteStanding(node: "a", term: 2, cause: .preVote, voters: voters, quorumSize: 3, atNanoseconds: 1)
            // e forced (the application's right); d stands on nothing (as on a broken link, without PreVote).
            c.noteStanding(node: "e", term: 2, cause: .forced, voters: voters, quorumSize: 3, atNanoseconds: 2)
            c.noteStanding(node: "d", term: 2, cause: .preVote, voters: voters, quorumSize: 3, atNanoseconds: 3)
            // A grant from x, not one of b's voters, does not count.
            let request = VoteRequest(candidateID: "b", term: 3, preVote: true)
            c.noteVoteRequest(node: "x", from: "b", request, before: NodeSnapshot(term: 2, voters: voters.union(["x"])))
            c.noteSend(
                node: "x", to: "b", .voteResponse(VoteResponse(voterID: "x", term: 3, voteGranted: true, preVote: true)),
                disk: DurableElectionState(term: 2), atNanoseconds: 4)
            c.noteStanding(node: "b", term: 3, cause: .preVote, voters: ["a", "b", "c"], quorumSize: 2, atNanoseconds: 5)
            // A TimeoutNow from a node that did not lead the term before.
            c.noteStanding(node: "c", term: 4, cause: .timeoutNow(from: "e"), voters: voters, quorumSize: 3, atNanoseconds: 6)
        }
        #expect(found.count == 3, "\(found)")
        #expect(found.first?.contains("d stood in term 2 with 1 PreVote grants of the 3 it needs") == true)
        #expect(found.dropFirst().first?.contains("b stood in term 3 with 1 PreVote grants of the 2 it needs") == true)
        #expect(found.last?.contains("c stood in term 4 on a TimeoutNow from e, who did not lead term 3") == true)
    }

    @Test("hole 8 (seed 3940): a repeated grant whose candidate asks with an epoch below the voter's epoch - 1")
    func repeatedGrantBelowEpochFloor() {
        let voters: Set<String> = ["v", "a", "l"]
        let found = violations { c in
            // v followed a leader of epoch 3; a hostile a asked first, in term 4 with epoch 3 (v promised 4).
            let first = grant(&c, by: "v", to: "a", term: 4, epoch: 3, before: NodeSnapshot(term: 3, epoch: 3, voters: voters))
            c.noteSend(node: "v", to: "a", first, disk: DurableElectionState(term: 4, votedFor: "a", epoch: 4), atNanoseconds: 0)
            // A retry of that request is fine; a's honest candidacy with epoch 2 would make epoch 3 again.
            let retry = grant(&c, by: "v", to: "a", term: 4, epoch: 3, before: NodeSnapshot(term: 4, votedFor: "a", epoch: 4, voters: voters))
            c.noteSend(node: "v", to: "a", retry, disk: DurableElectionState(term: 4, votedFor: "a", epoch: 4), atNanoseconds: 1)
            let honest = grant(&c, by: "v", to: "a", term: 4, epoch: 2, before: NodeSnapshot(term: 4, votedFor: "a", epoch: 4, voters: voters))
            c.noteSend(node: "v", to: "a", honest, disk: DurableElectionState(term: 4, votedFor: "a", epoch: 4), atNanoseconds: 2)
        }
        #expect(found.count == 1, "\(found)")
        #expect(found.first?.contains("v granted a a repeated vote in term 4 with candidate epoch 2 < voter epoch 4 - 1") == true)
    }

    @Test("hole 8 (seeds 2693, 20301039): a withheld grant lost in a crash or dropped by the core is not what a later grant is judged against")
    func withheldGrantForgottenWhenDropped() {
        let voters: Set<String> = ["v", "a", "b"]
        let found = violations { c in
            // v withholds its grant to a (term 9, epoch 4: it promises 5), then crashes before the write.
            c.noteVoteRequest(node: "v", from: "a", VoteRequest(candidateID: "a", term: 9, epoch: 4), before: NodeSnapshot(term: 8, epoch: 4, voters: voters))
            c.noteVoteRequestOutcome(withheld: true)
            c.noteCrash(node: "v")
            c.noteRestart(node: "v", term: 8, atNanoseconds: 1)
            // Restarted from an older disk (epoch 3), it grants a's request of epoch 3 (promising 4), durably.
            c.noteVoteRequest(node: "v", from: "a", VoteRequest(candidateID: "a", term: 9, epoch: 3), before: NodeSnapshot(term: 8, epoch: 3, voters: voters))
            c.noteVoteRequestOutcome(withheld: true)
            let response = ElectionMessage.voteResponse(VoteResponse(voterID: "v", term: 9, voteGranted: true, epoch: 3))
            c.noteSend(node: "v", to: "a", response, disk: DurableElectionState(term: 9, votedFor: "a", epoch: 4), atNanoseconds: 2)
            // The same with a grant the core dropped (its term moved on): the later grant is not judged against it.
            c.noteVoteRequest(node: "v", from: "b", VoteRequest(candidateID: "b", term: 10, epoch: 6), before: NodeSnapshot(term: 9, epoch: 4, voters: voters))
            c.noteVoteRequestOutcome(withheld: true)
            c.noteWithheldVote(node: "v", candidate: nil, term: 11)
            c.noteWithheldVote(node: "v", candidate: nil, term: 10)  // a restart from a disk of term 9, say
            c.noteVoteRequest(node: "v", from: "b", VoteRequest(candidateID: "b", term: 10, epoch: 4), before: NodeSnapshot(term: 9, epoch: 4, voters: voters))
            c.noteVoteRequestOutcome(withheld: true)
            let second = ElectionMessage.voteResponse(VoteResponse(voterID: "v", term: 10, voteGranted: true, epoch: 4))
            c.noteSend(node: "v", to: "b", second, disk: DurableElectionState(term: 10, votedFor: "b", epoch: 5), atNanoseconds: 3)
        }
        #expect(found.isEmpty, "\(found)")
        // And the check still bites: the grant released without the promised epoch on disk.
        let caught = violations { c in
            c.noteVoteRequest(node: "v", from: "a", VoteRequest(candidateID: "a", term: 9, epoch: 4), before: NodeSnapshot(term: 8, epoch: 4, voters: voters))
            c.noteVoteRequestOutcome(withheld: true)
            c.noteWithheldVote(node: "v", candidate: "a", term: 9)  // still withheld
            let response = ElectionMessage.voteResponse(VoteResponse(voterID: "v", term: 9, voteGranted: true, epoch: 4))
            c.noteSend(node: "v", to: "a", response, disk: DurableElectionState(term: 9, votedFor: "a", epoch: 4), atNanoseconds: 2)
        }
        #expect(caught.count == 1 && caught.first?.contains("before persisting the promised epoch 5 (disk: 4)") == true, "\(caught)")
    }
}

@Suite("Invariant checker: schedules against a broken driver or core")
struct BrokenCoreScheduleTests {
    struct BrokenCase: Sendable, CustomTestStringConvertible {
        var name: String
        var sabotage: SimulationConfig.Sabotage = []
        var disabled: ElectionCore.DisabledRules = []
        /// False: the persist-before-send checks are off, so that the invariant named by
        /// `expected` is what catches the break (without the epoch rule, a grant's promised epoch
        /// is never written, which those checks would report first).
        var checksPersistBeforeSend = true
        /// Text of the violation the checker must report in at least one schedule.
        var expected: String
        var testDescription: String { name }
    }

    /// Runs up to `count` schedules with every fault on, broken as `c` says; stops at the first
    /// schedule whose violations contain the expected text.
    static func firstCatch(_ c: BrokenCase, count: Int = 60, knowledge: SimulationConfig.VoterKnowledge = .full) -> [String]? {
        for i in 0..<count {
            var config = SimulationConfig(seed: 7_000 + UInt64(i), nodes: [3, 5, 7][i % 3], knowledge: knowledge)
            config.partitions = true
            config.crashes = true
            config.forcedElections = true
            config.lsnChanges = true
            config.membershipChanges = true
            config.hostilePeers = true
            config.oneWayPartitions = true
            config.sabotage = c.sabotage
            config.disabledCoreRules = c.disabled
            config.checksPersistBeforeSend = c.checksPersistBeforeSend
            var simulation = Simulation(config: config)
            let result = simulation.run()
            if result.violations.contains(where: { $0.contains(c.expected) }) { return result.violations }
        }
        return nil
    }

    @Test(
        "the checker catches a broken driver",
        arguments: [
            BrokenCase(name: "the core learns LSNs late (issue 6, #4)", sabotage: .staleLSN, expected: "< voter LSN"),
            BrokenCase(name: "sends before persists", sabotage: .sendBeforePersist, expected: "before persisting"),
            BrokenCase(name: "restarts from an older state", sabotage: .restartFromOlderState, expected: "term went down"),
            BrokenCase(name: "votes lost after the heal", sabotage: .dropVotesAfterHeal, expected: "no single leader"),
            BrokenCase(
                name: "candidates claim their storage's LSN + 10^6 (issue 16, hole 6)", sabotage: .inflatedLSN,
                expected: "but its storage holds"),
        ])
    func brokenDriver(_ c: BrokenCase) async {
        #expect(await offPool { Self.firstCatch(c) } != nil, "no schedule reported \"\(c.expected)\"")
    }

    @Test(
        "the checker catches a core without one of the rules of issue 6 (#10 to #12)",
        arguments: [
            BrokenCase(name: "no lease", disabled: .lease, expected: "while hearing primary"),
            BrokenCase(name: "votes for strangers", disabled: .knownVoters, expected: "not a voter it knows"),
            BrokenCase(name: "terms and epochs from anywhere below 2^63", disabled: .reach, expected: "above any"),
            BrokenCase(name: "the sender read from the body", disabled: .senderBinding, expected: "was not elected"),
            BrokenCase(
                name: "no epoch rule (the seed's votes)", disabled: .epochRule, checksPersistBeforeSend: false,
                expected: "epoch not increasing"),
            BrokenCase(
                name: "a follower stands at once on a broken link, without PreVote (issue 16, hole 6)",
                disabled: .preVoteOnCrashEvidence, expected: "term inflation"),
        ])
    func brokenCore(_ c: BrokenCase) async {
        #expect(await offPool { Self.firstCatch(c) } != nil, "no schedule reported \"\(c.expected)\"")
    }
}
