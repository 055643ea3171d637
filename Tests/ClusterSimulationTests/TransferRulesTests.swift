import ClusterCore
import Testing

// Leadership transfer (issue 7), rule by rule: Raft thesis §3.10, as etcd-io/raft does it
// (`MsgTransferLeader`, `MsgTimeoutNow`, `campaignTransfer` and its `force` past the lease, the
// abort after an election timeout). See "Leadership transfer" on `ElectionCore.step(_:now:)`.

extension Array where Element == ElectionDirective {
    var transferEnds: [TransferEnd] {
        compactMap {
            if case .transferEnded(let target, let succeeded, let reason) = $0 {
                return TransferEnd(target: target, succeeded: succeeded, reason: reason)
            }
            return nil
        }
    }

    var transferStarts: [String] {
        compactMap { if case .transferStarted(let target) = $0 { return target } else { return nil } }
    }

    var timeoutNows: [(to: String, message: TimeoutNowMessage)] {
        compactMap { if case .send(let to, .timeoutNow(let m)) = $0 { return (to, m) } else { return nil } }
    }
}

struct TransferEnd: Equatable, Sendable {
    var target: String?
    var succeeded: Bool
    var reason: String?
}

func timeoutNow(from leader: String, term: UInt64, via sender: String? = nil) -> ElectionEvent {
    .receive(from: sender ?? leader, .timeoutNow(TimeoutNowMessage(from: leader, term: term)))
}

func transferRequest(
    from candidate: String, term: UInt64, lsn: UInt64 = 0, epoch: UInt64 = 0, preVote: Bool = false,
    configuration: ConfigurationID = bootstrapConfiguration
) -> ElectionEvent {
    .receive(
        from: candidate,
        .voteRequest(VoteRequest(
            candidateID: candidate, term: term, lastLSN: lsn, epoch: epoch, preVote: preVote, transfer: true,
            configuration: configuration)))
}

/// The configuration `makeLeader`'s leader makes at its election (term 1); its voters hold it
/// once it has told them.
let ledConfiguration = ConfigurationID(term: 1, version: 2)

/// A follower `v` of `leader` in `term` (heard at `now`), with voters v, the leader and c.
func follower(_ id: String = "v", of leader: String = "l", term: UInt64 = 1, epoch: UInt64 = 1, lsn: UInt64 = 0, now: CoreInstant = .zero) -> SyncCore {
    var core = makeCore(id, voters: [id, leader, "c"], durable: DurableElectionState(term: term, epoch: epoch), lsn: lsn)
    _ = core.step(heartbeat(from: leader, term: term, epoch: epoch), now: now)
    return core
}

@Suite("Leadership transfer (thesis §3.10, etcd-io/raft)")
struct TransferRules {
    @Test("a transfer to a named voter of a healthy 5-node cluster: the target leads the next term within two heartbeat intervals, and the old leader reports success")
    func namedTarget() {
        let ids = ["a", "b", "c", "d", "e"]
        var cluster = TestCluster(ids: ids, voters: { _ in ids }, settings: { _ in testSettings(minQuorumSize: 3) })
        cluster.run(milliseconds: 1_000)
        guard let old = cluster.leaders.first, cluster.leaders.count == 1 else {
            Issue.record("no single leader: \(cluster.leaders)")
            return
        }
        let term = cluster.cores[old]!.term
        let target = ids.last { $0 != old }!
        let logStart = cluster.log.count
        cluster.apply(old, .transferLeadership(to: target))
        var waited: UInt64 = 0
        while cluster.leaders != [target], waited < 40 {  // two heartbeat intervals of TestCluster
            cluster.run(milliseconds: 5)
            waited += 5
        }
        #expect(cluster.leaders == [target], "after \(waited) ms")
        #expect(cluster.cores[target]!.term == term + 1)
        cluster.run(milliseconds: 100)
        let log = cluster.log[logStart...]
        let oldDirectives = log.filter { $0.node == old }.map(\.directive)
        #expect(oldDirectives.transferStarts == [target])
        #expect(oldDirectives.transferEnds == [TransferEnd(target: target, succeeded: true, reason: nil)])
        // The target stood at once: no PreVote, every request marked, and followers under the
        // lease of the old leader granted them (it needed 3 of 5 votes, the old leader's is one).
        let requests = log.filter { $0.node == target }.map(\.directive).voteRequests
        #expect(!requests.isEmpty && requests.allSatisfy { $0.request.transfer && !$0.request.preVote })
        let grants = log.filter { $0.node != target && $0.node != old }.map(\.directive).voteResponses
            .filter { $0.voteGranted && $0.term == term + 1 }
        #expect(grants.count >= 2)
        #expect(cluster.ids.allSatisfy { cluster.cores[$0]!.leaderID == target })
        #expect(cluster.cores[old]!.transfer == nil)
    }

    struct BestCase: Sendable, CustomTestStringConvertible {
        var name: String
        var priorities: [String: Int]
        var best: String
        var testDescription: String { name }
    }

    @Test(
        "an unnamed transfer picks the voter heard within T with the highest reported LSN, then priority, then the smallest id",
        arguments: [
            BestCase(name: "LSN ties broken by id", priorities: [:], best: "c"),
            BestCase(name: "LSN ties broken by priority", priorities: ["d": 3], best: "d"),
            BestCase(name: "an unreported priority counts as 1", priorities: ["c": 0], best: "d"),
            BestCase(name: "priority never beats LSN", priorities: ["b": 9], best: "c"),
        ])
    func bestTarget(_ c: BestCase) {
        var leader = makeLeader("a", voters: ["a", "b", "c", "d", "e"], grantedBy: ["b", "c"])
        _ = leader.step(.setLocalLSN(7), now: .zero)
        for (voter, priority) in c.priorities { _ = leader.step(.setVoterPriority(voter, priority), now: .zero) }
        // e reports the highest LSN but is not heard within T of the request: it cannot stand.
        _ = leader.step(heartbeat(from: "e", term: 1, role: .replica, lsn: 9), now: .zero)
        for (voter, lsn) in [("b", UInt64(5)), ("c", 7), ("d", 7)] {
            _ = leader.step(heartbeat(from: voter, term: 1, role: .replica, lsn: lsn), now: at(milliseconds: 95))
        }
        let directives = leader.step(.transferLeadership(to: nil), now: at(milliseconds: 105))
        #expect(directives.transferStarts == [c.best])
        #expect(directives.timeoutNows.map(\.to) == [c.best])
        #expect(directives.timeoutNows.first?.message == TimeoutNowMessage(from: "a", term: 1))
        #expect(leader.transfer?.target == c.best && leader.transfer?.timeoutNowSent == true)
        #expect(leader.state == .leader)
    }

    @Test("a lagging target is told to stand only once a heartbeat of this term shows its LSN caught up; then again at each such heartbeat")
    func waitsForLaggingTarget() {
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        _ = leader.step(.setLocalLSN(10), now: .zero)
        _ = leader.step(heartbeat(from: "b", term: 1, role: .replica, lsn: 8), now: at(milliseconds: 1))
        let started = leader.step(.transferLeadership(to: "b"), now: at(milliseconds: 2))
        #expect(started.transferStarts == ["b"])
        #expect(started.timeoutNows.isEmpty)
        #expect(leader.transfer?.timeoutNowSent == false)
        #expect(leader.step(heartbeat(from: "b", term: 1, role: .replica, lsn: 9), now: at(milliseconds: 20)).timeoutNows.isEmpty)
        // A heartbeat of an older term does not count, whatever its LSN.
        #expect(leader.step(heartbeat(from: "b", term: 0, role: .replica, lsn: 10), now: at(milliseconds: 30)).timeoutNows.isEmpty)
        // Another voter catching up does not count either.
        #expect(leader.step(heartbeat(from: "c", term: 1, role: .replica, lsn: 10), now: at(milliseconds: 35)).timeoutNows.isEmpty)
        let caughtUp = leader.step(heartbeat(from: "b", term: 1, role: .replica, lsn: 10), now: at(milliseconds: 40))
        #expect(caughtUp.timeoutNows.map(\.to) == ["b"])
        #expect(leader.transfer?.timeoutNowSent == true)
        // A lost TimeoutNow is sent again at the target's next up-to-date heartbeat (as etcd does).
        #expect(leader.step(heartbeat(from: "b", term: 1, role: .replica, lsn: 10), now: at(milliseconds: 60)).timeoutNows.count == 1)
        #expect(leader.state == .leader)
    }

    @Test("the target stands at once on its leader's TimeoutNow: no PreVote, term + 1, every request marked transfer; even without autoFailover")
    func targetStands() {
        for autoFailover in [true, false] {
            var v = makeCore("v", voters: ["v", "l", "c"], durable: DurableElectionState(term: 3, epoch: 2), lsn: 4,
                settings: testSettings(autoFailover: autoFailover))
            _ = v.step(heartbeat(from: "l", term: 3, epoch: 2), now: .zero)
            let directives = v.step(timeoutNow(from: "l", term: 3), now: at(milliseconds: 1))
            #expect(v.state == .candidate && v.term == 4 && v.votedFor == "v")
            #expect(directives.stateChanges == [.candidate])
            #expect(directives.persistedElectionStates.first == DurableElectionState(term: 4, votedFor: "v", epoch: 2))
            let requests = directives.voteRequests
            #expect(requests.map(\.to) == ["c", "l"])
            #expect(requests.allSatisfy {
                $0.request == VoteRequest(candidateID: "v", term: 4, lastLSN: 4, epoch: 2, priority: 1, transfer: true, configuration: bootstrapConfiguration)
            })
        }
    }

    struct IgnoredCase: Sendable, CustomTestStringConvertible {
        var name: String
        var event: ElectionEvent
        var testDescription: String { name }
    }

    @Test(
        "a TimeoutNow that is not from the node's leader in its term changes nothing",
        arguments: [
            IgnoredCase(name: "from a voter that is not its leader", event: timeoutNow(from: "c", term: 3)),
            IgnoredCase(name: "from its leader, of an older term", event: timeoutNow(from: "l", term: 2)),
            IgnoredCase(name: "from its leader, of a later term (not adopted)", event: timeoutNow(from: "l", term: 4)),
            IgnoredCase(name: "from a stranger", event: timeoutNow(from: "x", term: 3)),
            IgnoredCase(name: "naming the leader over another voter's link", event: timeoutNow(from: "l", term: 3, via: "c")),
            IgnoredCase(name: "beyond reach", event: timeoutNow(from: "l", term: 3 + ElectionCore.maxTermJump + 1)),
        ])
    func timeoutNowIgnored(_ c: IgnoredCase) {
        var v = follower(of: "l", term: 3)
        let directives = v.step(c.event, now: at(milliseconds: 1))
        #expect(v.state == .follower && v.term == 3 && v.leaderID == "l")
        #expect(v.votedFor == nil)
        #expect(directives.isEmpty)
    }

    @Test("a leader or a candidate ignores a TimeoutNow")
    func leaderAndCandidateIgnoreTimeoutNow() {
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        #expect(leader.step(timeoutNow(from: "b", term: 1), now: at(milliseconds: 1)).isEmpty)
        #expect(leader.state == .leader && leader.term == 1)
        var candidate = makeCore("a", voters: ["a", "b", "c"])
        _ = candidate.step(.startElection, now: .zero)
        #expect(candidate.step(timeoutNow(from: "b", term: 1), now: at(milliseconds: 1)).isEmpty)
        #expect(candidate.state == .candidate && candidate.term == 1)
    }

    struct ExemptionCase: Sendable, CustomTestStringConvertible {
        var name: String
        var event: ElectionEvent
        var granted: Bool
        var reason: String
        /// The request's term is adopted (Raft §5.1) though the vote is refused: the lease let it through.
        var adopted: Bool
        var testDescription: String { name }
    }

    /// The flag is honoured from any known voter: a voter cannot tell a real transfer candidate
    /// from a member that got no TimeoutNow (etcd and hashicorp/raft make the same choice). A
    /// member can depose a leader by a heartbeat of a higher term anyway (Raft §5.1); strangers,
    /// far terms and PreVotes get nothing from it, and every other voting rule still holds.
    @Test(
        "a follower under a live primary's lease exempts a transfer-marked request from the lease only: for its term + 1, from a known voter, by the other rules",
        arguments: [
            ExemptionCase(name: "a known voter, term + 1, no TimeoutNow seen: granted (the documented choice)",
                event: transferRequest(from: "c", term: 2, lsn: 5, epoch: 1), granted: true, reason: "", adopted: true),
            ExemptionCase(name: "term + 2: not a transfer from this term, the lease holds",
                event: transferRequest(from: "c", term: 3, lsn: 5, epoch: 1), granted: false, reason: ElectionCore.liveLeaderReason,
                adopted: false),
            ExemptionCase(name: "a stranger",
                event: transferRequest(from: "x", term: 2, lsn: 5, epoch: 1), granted: false,
                reason: ElectionCore.unknownCandidateReason, adopted: false),
            ExemptionCase(name: "a PreVote never skips the lease",
                event: transferRequest(from: "c", term: 2, lsn: 5, epoch: 1, preVote: true), granted: false,
                reason: ElectionCore.liveLeaderReason, adopted: false),
            ExemptionCase(name: "the LSN rule holds",
                event: transferRequest(from: "c", term: 2, lsn: 4, epoch: 1), granted: false, reason: ClusterError.staleLSN.description,
                adopted: true),
            ExemptionCase(name: "the epoch rule holds",
                event: transferRequest(from: "c", term: 2, lsn: 5, epoch: 0), granted: false, reason: ElectionCore.staleEpochReason,
                adopted: true),
            ExemptionCase(name: "the range rule holds",
                event: transferRequest(from: "c", term: 2, lsn: 5, epoch: 3), granted: false, reason: ElectionCore.outOfRangeReason,
                adopted: false),
        ])
    func followerExemption(_ c: ExemptionCase) {
        var v = follower(of: "l", term: 1, epoch: 1, lsn: 5)
        let directives = v.step(c.event, now: at(milliseconds: 10))
        let response = directives.voteResponses.first
        #expect(response?.voteGranted == c.granted)
        #expect(response?.reason == c.reason)
        #expect(v.votedFor == (c.granted ? "c" : nil))
        if c.adopted {
            #expect(v.term == 2 && v.leaderID == nil)
        } else {
            #expect(v.term == 1 && v.leaderID == "l")
            #expect(directives.persists.isEmpty)
        }
    }

    @Test("a transfer-marked request keeps one vote per term")
    func oneVotePerTermWithTransfer() {
        var v = follower(of: "l", term: 1, epoch: 1)
        #expect(v.step(transferRequest(from: "c", term: 2, epoch: 1), now: at(milliseconds: 10)).voteResponses.first?.voteGranted == true)
        let second = v.step(transferRequest(from: "l", term: 2, epoch: 1), now: at(milliseconds: 11))
        #expect(second.voteResponses.first?.reason == ClusterError.alreadyVoted.description)
        #expect(v.votedFor == "c")
    }

    @Test("a leader exempts only the target it told to stand: not a member with a forged flag, not its target before the TimeoutNow")
    func leaderExemptsOnlyItsTarget() {
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        // No transfer: a forged flag from a member is refused under the lease.
        var refused = leader.step(transferRequest(from: "c", term: 2, epoch: 1), now: at(milliseconds: 1))
        #expect(refused.voteResponses.first?.reason == ElectionCore.liveLeaderReason)
        // A transfer to b that waits for b to catch up: b's own marked request is refused too.
        _ = leader.step(.setLocalLSN(3), now: at(milliseconds: 2))
        _ = leader.step(.transferLeadership(to: "b"), now: at(milliseconds: 2))
        refused = leader.step(transferRequest(from: "b", term: 2, lsn: 3, epoch: 1), now: at(milliseconds: 3))
        #expect(refused.voteResponses.first?.reason == ElectionCore.liveLeaderReason)
        #expect(leader.state == .leader)
        // b catches up and is told to stand: c's forged flag is still refused, b's request granted.
        #expect(leader.step(heartbeat(from: "b", term: 1, role: .replica, lsn: 3), now: at(milliseconds: 4)).timeoutNows.count == 1)
        refused = leader.step(transferRequest(from: "c", term: 2, lsn: 3, epoch: 1), now: at(milliseconds: 5))
        #expect(refused.voteResponses.first?.reason == ElectionCore.liveLeaderReason)
        let granted = leader.step(transferRequest(from: "b", term: 2, lsn: 3, epoch: 1, configuration: ledConfiguration), now: at(milliseconds: 6))
        #expect(granted.voteResponses.first?.voteGranted == true)
        #expect(leader.state == .follower && leader.term == 2 && leader.votedFor == "b")
        // It stepped down, but the transfer waits to hear who won.
        #expect(granted.transferEnds.isEmpty)
        #expect(leader.transfer?.target == "b")
        let won = leader.step(heartbeat(from: "b", term: 2, epoch: 2), now: at(milliseconds: 7))
        #expect(won.transferEnds == [TransferEnd(target: "b", succeeded: true, reason: nil)])
        #expect(leader.transfer == nil && leader.leaderID == "b")
    }

    @Test("a transfer not completed within an election timeout is abandoned: the leader, still leading, reports it and goes on")
    func abandonedAfterElectionTimeout() {
        for lostTimeoutNow in [false, true] {
            var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
            // A lagging b never catches up; or b is caught up but the TimeoutNow is lost.
            _ = leader.step(.setLocalLSN(lostTimeoutNow ? 0 : 10), now: .zero)
            _ = leader.step(heartbeat(from: "b", term: 1, role: .replica, lsn: 0), now: at(milliseconds: 5))
            let started = leader.step(.transferLeadership(to: "b"), now: at(milliseconds: 10))
            #expect(started.timeoutNows.count == (lostTimeoutNow ? 1 : 0))
            #expect(leader.transfer?.deadline == at(milliseconds: 110))
            #expect(leader.nextDeadline! <= at(milliseconds: 110))
            for ms: UInt64 in [50, 100] {  // the quorum is heard: CheckQuorum keeps it leader
                _ = leader.step(heartbeat(from: "c", term: 1, role: .replica), now: at(milliseconds: ms))
            }
            #expect(leader.step(.tick, now: at(milliseconds: 109)).transferEnds.isEmpty)
            let ended = leader.step(.tick, now: at(milliseconds: 110))
            #expect(ended.transferEnds == [TransferEnd(target: "b", succeeded: false, reason: ElectionCore.transferTimedOutReason)])
            #expect(leader.state == .leader && leader.term == 1 && leader.transfer == nil)
            // It may be asked again.
            #expect(leader.step(.transferLeadership(to: "c"), now: at(milliseconds: 111)).transferStarts == ["c"])
        }
    }

    struct RefusalCase: Sendable, CustomTestStringConvertible {
        var name: String
        var to: String?
        var reason: String
        var testDescription: String { name }
    }

    @Test(
        "a leader refuses a transfer to itself, to a non-voter, or to nobody live; the refusal comes in the same step and changes nothing",
        arguments: [
            RefusalCase(name: "to itself", to: "a", reason: ElectionCore.transferToSelfReason),
            RefusalCase(name: "to a non-voter", to: "z", reason: ElectionCore.transferUnknownTargetReason),
            RefusalCase(name: "unnamed, no voter heard within T", to: nil, reason: ElectionCore.transferNoTargetReason),
        ])
    func leaderRefuses(_ c: RefusalCase) {
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])  // b heard at 0 only
        let directives = leader.step(.transferLeadership(to: c.to), now: at(milliseconds: 150))
        #expect(directives.transferEnds == [TransferEnd(target: c.to, succeeded: false, reason: c.reason)])
        #expect(directives.count == 1)
        #expect(leader.transfer == nil && leader.state == .leader)
    }

    @Test("a follower, a candidate, and a leader with a transfer under way refuse a transfer request")
    func othersRefuse() {
        var v = follower(of: "l")
        #expect(v.step(.transferLeadership(to: "c"), now: at(milliseconds: 1)).transferEnds
            == [TransferEnd(target: "c", succeeded: false, reason: ElectionCore.transferNotLeaderReason)])
        var candidate = makeCore("a", voters: ["a", "b", "c"])
        _ = candidate.step(.startElection, now: .zero)
        #expect(candidate.step(.transferLeadership(to: nil), now: at(milliseconds: 1)).transferEnds
            == [TransferEnd(target: nil, succeeded: false, reason: ElectionCore.transferNotLeaderReason)])
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        _ = leader.step(.setLocalLSN(1), now: .zero)
        #expect(leader.step(.transferLeadership(to: "b"), now: at(milliseconds: 1)).transferStarts == ["b"])
        #expect(leader.step(.transferLeadership(to: "c"), now: at(milliseconds: 2)).transferEnds
            == [TransferEnd(target: "c", succeeded: false, reason: ElectionCore.transferUnderWayReason)])
        #expect(leader.transfer?.target == "b")
    }

    @Test("a transfer ends when the leader stops leading before the TimeoutNow, when its target leaves, or when another node wins")
    func endsOtherwise() {
        // Stepped down while the target catches up: nobody will stand.
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        _ = leader.step(.setLocalLSN(1), now: .zero)
        _ = leader.step(.transferLeadership(to: "b"), now: at(milliseconds: 1))
        #expect(leader.step(.stepDown(term: 1), now: at(milliseconds: 2)).transferEnds
            == [TransferEnd(target: "b", succeeded: false, reason: ElectionCore.transferLostLeadershipReason)])
        // The target leaves the voter set.
        leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        _ = leader.step(.setLocalLSN(1), now: .zero)
        _ = leader.step(.transferLeadership(to: "b"), now: at(milliseconds: 1))
        #expect(leader.step(.removeVoter("b"), now: at(milliseconds: 2)).transferEnds
            == [TransferEnd(target: "b", succeeded: false, reason: ElectionCore.transferTargetRemovedReason)])
        // Told to stand, then deposed (CheckQuorum): it waits, and hears that c won instead.
        leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"])
        _ = leader.step(heartbeat(from: "b", term: 1, role: .replica), now: at(milliseconds: 1))
        #expect(leader.step(.transferLeadership(to: "b"), now: at(milliseconds: 2)).timeoutNows.count == 1)
        _ = leader.step(.tick, now: at(milliseconds: 101))  // nobody heard within T: steps down
        #expect(leader.state == .follower && leader.transfer != nil)
        #expect(leader.step(heartbeat(from: "c", term: 2, epoch: 2), now: at(milliseconds: 102)).transferEnds
            == [TransferEnd(target: "b", succeeded: false, reason: ElectionCore.transferOtherLeaderReason)])
    }

    @Test("a failed write of the target's candidacy: it sends no vote request, and the leader abandons the transfer after T")
    func targetWriteFails() throws {
        var target = ElectionCore(
            id: "b", settings: testSettings(), durable: DurableElectionState(term: 1, epoch: 1), voters: ["a", "b", "c"], seed: 3,
            now: .zero)
        _ = target.step(heartbeat(from: "a", term: 1, epoch: 1), now: .zero)
        let stood = target.step(timeoutNow(from: "a", term: 1), now: at(milliseconds: 1))
        #expect(stood.persistedElectionStates == [DurableElectionState(term: 2, votedFor: "b", epoch: 1)])
        #expect(stood.voteRequests.isEmpty)  // withheld until the vote is durable
        let failed = target.step(.persistFailed(try #require(stood.persists.first)), now: at(milliseconds: 2))
        #expect(failed.voteRequests.isEmpty)
        #expect(target.state == .follower && target.lastWriteFailed)
        // And while its writes fail, a TimeoutNow does not make it stand (a new leader of term 2).
        _ = target.step(heartbeat(from: "c", term: 2, epoch: 2), now: at(milliseconds: 3))
        #expect(target.step(timeoutNow(from: "c", term: 2), now: at(milliseconds: 4)).isEmpty)
        #expect(target.state == .follower)
    }

    @Test("a failed write of the old leader's grant: the target gets a refusal, and the transfer ends T after the old leader stepped down")
    func leaderGrantWriteFails() {
        var leader = makeLeader("a", voters: ["a", "b", "c"], grantedBy: ["b"]).core
        _ = leader.step(heartbeat(from: "b", term: 1, role: .replica), now: at(milliseconds: 1))
        #expect(leader.step(.transferLeadership(to: "b"), now: at(milliseconds: 2)).timeoutNows.count == 1)
        let asked = leader.step(transferRequest(from: "b", term: 2, epoch: 1, configuration: ledConfiguration), now: at(milliseconds: 3))
        #expect(leader.state == .follower && leader.term == 2)
        #expect(asked.voteResponses.isEmpty)  // the grant waits for its write
        guard let write = asked.persists.first else {
            Issue.record("no write of the grant")
            return
        }
        let failed = leader.step(.persistFailed(write), now: at(milliseconds: 4))
        #expect(failed.voteResponses == [
            VoteResponse(voterID: "a", term: 2, voteGranted: false, reason: ElectionCore.notDurableReason, epoch: 2)
        ])
        #expect(leader.transfer?.target == "b")
        // It stopped leading at 3 ms, after b was told to stand: it waits T from then to hear the winner.
        #expect(leader.transfer?.deadline == at(milliseconds: 103))
        #expect(leader.nextDeadline! <= at(milliseconds: 103))
        #expect(leader.step(.tick, now: at(milliseconds: 102)).transferEnds.isEmpty)
        #expect(leader.step(.tick, now: at(milliseconds: 103)).transferEnds
            == [TransferEnd(target: "b", succeeded: false, reason: ElectionCore.transferTimedOutReason)])
    }
}
