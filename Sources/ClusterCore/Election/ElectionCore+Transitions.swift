
// Transitions: follower, pre-candidate, candidate, leader, and the leadership each holds. Part of `ElectionCore` (one door: `step`), split by concern.
extension ElectionCore {
    // MARK: Transitions

    /// Becomes (or stays) follower in the current term, with a fresh randomised election timer.
    mutating func becomeFollower(
        now: CoreInstant, leader: String?, _ directives: inout [ElectionDirective]
    ) {
        let previous = state
        state = .follower
        campaign = nil
        pendingLeaderEpoch = nil
        if previous == .leader {
            configResendAt = nil
            if let change = voterChange {
                voterChange = nil
                directives.append(.voterChangeEnded(change, succeeded: false, reason: Self.changeLostLeadershipReason))
            }
        }
        if previous == .leader, let transfer {
            if !transfer.timeoutNowSent {
                // Nobody was told to stand: nothing can complete it (etcd aborts it on any step-down).
                endTransfer(succeeded: false, reason: Self.transferLostLeadershipReason, &directives)
            } else {
                // Most likely it voted for its target: it waits an election timeout to hear the winner.
                self.transfer?.deadline = Swift.max(transfer.deadline, now + settings.electionTimeout)
            }
        }
        resetElectionTimer(now: now)
        if previous != .follower {
            directives.append(.stateChanged(.follower, term: term, leader: leader))
        }
        setLeader(leader, &directives)
    }

    /// Starts a PreVote round (thesis §9.6) for term + 1, without changing term or vote: the node
    /// stays a follower (and announces itself as a replica), so a node cut off from the cluster
    /// cannot inflate its term and depose a healthy leader when it comes back.
    mutating func becomePreCandidate(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        let preTerm = term + 1
        campaign = Campaign(
            kind: .preVote, term: preTerm, epoch: epoch, deadline: now + settings.voteRequestTimeout,
            grants: [id: epoch])
        let request = VoteRequest(
            candidateID: id, term: preTerm, lastLSN: localLSN, epoch: epoch, priority: settings.priority,
            preVote: true, configuration: configuration.id)
        for voter in voterList where voter != id {
            send(to: voter, .voteRequest(request), &directives)
        }
        tallyCampaign(now: now, &directives)
    }

    /// Starts a candidacy (Raft §5.2): term + 1, vote for itself, persist; once that is durable,
    /// ask every voter (see `releaseWithheld`). Reached from a successful PreVote round, or at once
    /// by ``ElectionEvent/startElection``. A node whose last write failed does not stand.
    mutating func becomeCandidate(
        now: CoreInstant, transfer: Bool = false, _ directives: inout [ElectionDirective]
    ) {
        guard !lastWriteFailed, isVoter else {
            campaign = nil
            return
        }
        durable.term += 1
        durable.votedFor = id
        durableDirty = true
        termPrimary = nil
        reportedDualPrimaries.removeAll()
        withheldGrant = nil  // a vote of an older term
        pendingLeaderEpoch = nil
        state = .candidate
        campaign = Campaign(
            kind: .vote, term: term, epoch: epoch, deadline: now + settings.voteRequestTimeout,
            grants: [id: epoch], requestsSent: false, transfer: transfer)
        directives.append(.stateChanged(.candidate, term: term, leader: nil))
        setLeader(nil, &directives)
    }

    /// Wins the term: makes a new epoch, `max(own epoch, every granting voter's epoch) + 1`, and
    /// persists it. The node becomes leader only once that epoch is durable (`assumeLeadership`):
    /// the fencing token is durable before anyone hears of it.
    mutating func becomeLeader(
        now: CoreInstant, grantEpoch: UInt64, _ directives: inout [ElectionDirective]
    ) {
        let newEpoch = Swift.max(epoch, grantEpoch) + 1
        durable.epoch = newEpoch
        if settings.replicatesConfiguration {
            // The configuration of its own term, written with the epoch (one write): it may change
            // voters only once this one is committed (Raft's rule that a leader first commits an
            // entry of its own term; without it, single-server changes of two terms can form
            // disjoint quorums).
            durable.configuration = configuration.next(voters: configuration.voters, term: term)
            configurationCommitted = false
        }
        durableDirty = true
        campaign = nil
        pendingLeaderEpoch = newEpoch
    }

    /// The won election's epoch is durable: leader, with that epoch as fencing token, announced
    /// at once.
    mutating func assumeLeadership(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        pendingLeaderEpoch = nil
        state = .leader
        if transfer != nil {  // this node won a later term than its transfer's: not the target
            endTransfer(succeeded: false, reason: Self.transferOtherLeaderReason, &directives)
        }
        consecutiveFailures = 0
        termPrimary = id
        checkQuorumDeadline = now + settings.electionTimeout
        raiseFencingEpoch(epoch, &directives)
        directives.append(.stateChanged(.leader, term: term, leader: id))
        setLeader(id, &directives)
        directives.append(.broadcastHeartbeat)
        guard settings.replicatesConfiguration else { return }
        directives.append(.configurationChanged(configuration, committed: false))
        for voter in voterList { peers[voter]?.configAck = nil }
        configRecipients = voterList.filter { $0 != id }
        resendConfiguration(now: now, &directives)
    }

    /// A PreVote round or candidacy ran out of time: back to follower, wait a fresh randomised
    /// timeout (with the back-off after `maxElectionRetries` consecutive failures), try again.
    mutating func failCampaign(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        consecutiveFailures += 1
        campaign = nil
        if state == .candidate {
            becomeFollower(now: now, leader: nil, &directives)
        } else {
            resetElectionTimer(now: now)
        }
    }

    /// Counts the granted votes of the running campaign; on a quorum, moves on (PreVote round →
    /// candidacy, candidacy → leadership). Only votes of current voters count; a candidacy counts
    /// nothing before its self-vote is durable and its requests are out.
    mutating func tallyCampaign(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        guard let campaign, campaign.requestsSent else { return }
        var granted = 0
        var grantEpoch: UInt64 = 0
        for (voter, voterEpoch) in campaign.grants where voters.contains(voter) {
            granted += 1
            grantEpoch = Swift.max(grantEpoch, voterEpoch)
        }
        guard granted >= quorumSize else { return }
        switch campaign.kind {
        case .preVote: becomeCandidate(now: now, &directives)
        case .vote: becomeLeader(now: now, grantEpoch: grantEpoch, &directives)
        }
    }

    /// The seed's StepDown(term). A `term` above the current one is adopted (as from any message):
    /// the node becomes a follower of that term with no vote. Otherwise a leader, or a candidate
    /// that won and waits for its epoch to be durable, steps down to follower in its own term (it
    /// cannot win this term again) and other states are unchanged.
    mutating func stepDown(term newTerm: UInt64, now: CoreInstant, _ directives: inout [ElectionDirective]) {
        if newTerm > term {
            adoptTerm(newTerm, now: now, &directives)
        } else if state == .leader || pendingLeaderEpoch != nil {
            becomeFollower(now: now, leader: nil, &directives)
        }
    }
}
