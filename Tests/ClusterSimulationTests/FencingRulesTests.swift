import ClusterCore
import Testing

// Issue 16, holes 8 and 9: what randomised schedules found (or were the only thing to catch), as
// rule tests on one core. Every array read goes through `#require` or `first`, so that a broken
// core fails the test it breaks and not the whole test process.

/// A core whose driver writes nothing by itself: the test feeds `.persisted` when it wants.
private func slowDiskCore(_ id: String, voters: [String], durable: DurableElectionState = DurableElectionState()) -> ElectionCore {
    ElectionCore(id: id, settings: testSettings(), durable: durable, voters: voters, seed: 7, now: .zero)
}

/// A hostile member's transfer-marked vote request (it claims a huge LSN: the voter cannot tell).
private func hostileTransferRequest(from member: String, term: UInt64, epoch: UInt64) -> ElectionEvent {
    .receive(
        from: member,
        .voteRequest(VoteRequest(
            candidateID: member, term: term, lastLSN: 1 << 40, epoch: epoch, transfer: true, configuration: bootstrapConfiguration)))
}

@Suite("Issue 16: fencing and durability rules (holes 8 and 9)")
struct FencingRulesTests {
    @Test("hole 8 (seed 3940): after a hostile member's transfer request got the vote, its honest candidacy with a lower epoch is refused")
    func repeatedGrantKeepsTheEpochRule() throws {
        // v follows l, leader of term 3 with epoch 3.
        var v = makeCore("v", voters: ["v", "a", "l"], durable: DurableElectionState(term: 3, epoch: 3))
        _ = v.step(heartbeat(from: "l", term: 3, epoch: 3), now: at(milliseconds: 1))
        // a's forged transfer request for term 4 with epoch 3: exempt from the lease, granted; v promises epoch 4.
        let forged = v.step(hostileTransferRequest(from: "a", term: 4, epoch: 3), now: at(milliseconds: 2))
        #expect(forged.voteResponses.map(\.voteGranted) == [true])
        #expect(v.term == 4 && v.votedFor == "a" && v.epoch == 4)
        // a's own core stands in term 4 with the epoch it knows, 2: winning would make epoch 3, l's.
        let honest = v.step(voteRequest(from: "a", term: 4, epoch: 2), now: at(milliseconds: 3))
        let answer = try #require(honest.voteResponses.first, "the request is answered")
        #expect(!answer.voteGranted, "a repeated grant must not skip the epoch rule")
        #expect(answer.reason == ElectionCore.staleEpochReason)
        // A real retry of the granted request is still granted (a retry is not a new vote).
        let retry = v.step(hostileTransferRequest(from: "a", term: 4, epoch: 3), now: at(milliseconds: 4))
        #expect(retry.voteResponses.map(\.voteGranted) == [true])
        #expect(v.epoch == 4)
    }

    @Test("hole 8 (seed 3940), the whole chain: the candidate cannot win term 4 with the epoch term 3's leader held")
    func candidateCannotReuseALeadersEpoch() throws {
        var v = makeCore("v", voters: ["v", "a", "l"], durable: DurableElectionState(term: 3, epoch: 3))
        _ = v.step(heartbeat(from: "l", term: 3, epoch: 3), now: at(milliseconds: 1))
        _ = v.step(hostileTransferRequest(from: "a", term: 4, epoch: 3), now: at(milliseconds: 2))
        // a (epoch 2: it missed l's election) is forced to stand in term 4.
        var a = makeCore("a", voters: ["v", "a", "l"], durable: DurableElectionState(term: 3, epoch: 2))
        let stood = a.step(.startElection, now: at(milliseconds: 3))
        let request = try #require(stood.voteRequests.first { $0.to == "v" }?.request)
        #expect(request.term == 4 && request.epoch == 2)
        let answer = try #require(v.step(.receive(from: "a", .voteRequest(request)), now: at(milliseconds: 4)).voteResponses.first)
        _ = a.step(.receive(from: "v", .voteResponse(answer)), now: at(milliseconds: 5))
        #expect(a.state != .leader, "a won term 4 with epoch \(a.fencingEpoch), not above l's 3")
    }

    @Test("hole 9: a heartbeat of a lower term is not accepted as the current leader's, and gives no lease")
    func lowerTermHeartbeatIsNotCurrent() throws {
        // No leader known in term 5: l's heartbeat of term 4 (a stale primary) names no leader.
        var f = makeCore("f", voters: ["f", "l", "m", "x"], durable: DurableElectionState(term: 5, epoch: 2))
        let stale = f.step(heartbeat(from: "l", term: 4, epoch: 2), now: at(milliseconds: 1))
        #expect(f.term == 5 && f.leaderID == nil && f.state == .follower)
        #expect(!stale.contains(.leaderChanged("l")))
        // So f holds no lease on l: a PreVote for term 6 is judged on its merits, and granted.
        let preVote = f.step(voteRequest(from: "x", term: 6, epoch: 2, preVote: true), now: at(milliseconds: 2))
        let answer = try #require(preVote.voteResponses.first)
        #expect(answer.voteGranted, "refused: \(answer.reason)")

        // Following m in term 5: l's stale primary heartbeat neither replaces m nor counts as a second primary.
        var g = makeCore("g", voters: ["g", "l", "m", "x"], durable: DurableElectionState(term: 5, epoch: 2))
        _ = g.step(heartbeat(from: "m", term: 5, epoch: 3), now: at(milliseconds: 1))
        let second = g.step(heartbeat(from: "l", term: 4, epoch: 2), now: at(milliseconds: 90))
        #expect(g.leaderID == "m" && g.term == 5)
        #expect(second.dualPrimaryReports.isEmpty)
        // Nor does it renew the lease: T after m's heartbeat, a PreVote is granted.
        let late = g.step(voteRequest(from: "x", term: 6, epoch: 3, preVote: true), now: at(milliseconds: 150))
        #expect(try #require(late.voteResponses.first).voteGranted)
    }

    @Test("hole 9: the epoch never goes down, whatever lower epoch arrives, and the fencing epoch neither")
    func epochNeverGoesDown() throws {
        var f = makeCore("f", voters: ["f", "l", "m", "c"], durable: DurableElectionState(term: 2, epoch: 5))
        var epoch = f.epoch
        var fencing = f.fencingEpoch
        var steps = 0
        func check(_ event: ElectionEvent, at milliseconds: UInt64, _ what: String) {
            _ = f.step(event, now: at(milliseconds: milliseconds))
            steps += 1
            #expect(f.epoch >= epoch, "\(what): epoch went down from \(epoch) to \(f.epoch)")
            #expect(f.fencingEpoch >= fencing, "\(what): fencing epoch went down from \(fencing) to \(f.fencingEpoch)")
            epoch = max(epoch, f.epoch)
            fencing = max(fencing, f.fencingEpoch)
        }
        // A primary of a later term whose epoch is below a promise this node made (a candidate that lost).
        check(heartbeat(from: "l", term: 3, epoch: 4), at: 1, "a later term's primary with a lower epoch")
        check(heartbeat(from: "l", term: 3, epoch: 3), at: 2, "the same primary, a lower epoch")
        check(heartbeat(from: "m", term: 3, role: .replica, epoch: 1), at: 3, "a replica with a lower epoch")
        check(voteResponse(from: "m", term: 3, granted: false, epoch: 0), at: 4, "a refusal with a lower epoch")
        check(voteRequest(from: "c", term: 4, epoch: 4), at: 200, "a vote request with a lower epoch")
        check(voteRequest(from: "c", term: 4, epoch: 6), at: 201, "a vote request with a higher epoch (a promise of 7)")
        #expect(f.epoch == 7)
        check(voteRequest(from: "c", term: 4, epoch: 5), at: 202, "its repeat with a lower epoch")
        check(heartbeat(from: "c", term: 4, epoch: 7), at: 203, "the winner of the promise")
        check(heartbeat(from: "l", term: 3, epoch: 4), at: 204, "a stale primary")
        // As a candidate and leader: grants with low epochs do not lower what it asked with or made.
        check(.startElection, at: 400, "a forced election")
        check(voteResponse(from: "l", term: 5, epoch: 0), at: 401, "a grant with epoch 0")
        check(voteResponse(from: "m", term: 5, epoch: 1), at: 402, "a grant with epoch 1")
        #expect(f.state == .leader && f.fencingEpoch == 8, "leads term 5 with epoch 7 + 1")
        check(heartbeat(from: "c", term: 5, epoch: 3), at: 403, "a replica of its term with a lower epoch")
        check(voteResponse(from: "c", term: 5, granted: false, epoch: 2), at: 404, "a late refusal")
        #expect(steps == 14 && f.epoch == 8)
    }

    @Test("hole 9: a granted vote is not sent before its write is reported durable, nor on a failed write")
    func grantWaitsForItsWrite() throws {
        var v = slowDiskCore("v", voters: ["v", "a", "b"])
        let asked = v.step(voteRequest(from: "a", term: 1), now: at(milliseconds: 1))
        let write = try #require(asked.persists.first, "the vote is written")
        #expect(write.electionOnly == DurableElectionState(term: 1, votedFor: "a", epoch: 1))
        #expect(asked.voteResponses.isEmpty, "granted before the write completed: \(asked.voteResponses)")
        // A retry while the write is in flight: still no grant, no second write.
        let retry = v.step(voteRequest(from: "a", term: 1), now: at(milliseconds: 2))
        #expect(retry.voteResponses.isEmpty && retry.persists.isEmpty, "\(retry)")
        // The write completes: now, and only now, exactly one grant.
        let done = v.step(.persisted(write), now: at(milliseconds: 3))
        #expect(done.voteResponses.map(\.voteGranted) == [true])

        // A write that fails: the withheld vote is refused, never granted.
        var w = slowDiskCore("w", voters: ["w", "a", "b"])
        let wAsked = w.step(voteRequest(from: "b", term: 1), now: at(milliseconds: 1))
        let wWrite = try #require(wAsked.persists.first)
        #expect(wAsked.voteResponses.isEmpty)
        let failed = w.step(.persistFailed(wWrite), now: at(milliseconds: 2))
        #expect(failed.voteResponses.map(\.voteGranted) == [false])
        #expect(failed.voteResponses.map(\.reason) == [ElectionCore.notDurableReason])

        // A vote decided while another write is in flight goes out after its own write, not the earlier one.
        var x = slowDiskCore("x", voters: ["x", "a", "b"])
        let first = x.step(heartbeat(from: "a", term: 1, role: .replica), now: .zero)
        let termWrite = try #require(first.persists.first)
        let meanwhile = x.step(voteRequest(from: "b", term: 2), now: at(milliseconds: 1))
        #expect(meanwhile.voteResponses.isEmpty && meanwhile.persists.isEmpty)
        let next = x.step(.persisted(termWrite), now: at(milliseconds: 2))
        #expect(next.voteResponses.isEmpty, "granted on the earlier write, which does not hold the vote")
        let voteWrite = try #require(next.persists.first)
        #expect(x.step(.persisted(voteWrite), now: at(milliseconds: 3)).voteResponses.map(\.voteGranted) == [true])
    }
}
