
// Messages: heartbeats, vote requests and responses, TimeoutNow (Raft §5.2, §9.6). Part of `ElectionCore` (one door: `step`), split by concern.
extension ElectionCore {
    // MARK: Messages

    /// `recorded`: the sender's record (`peers`) already notes the heartbeat.
    mutating func stepHeartbeat(
        _ heartbeat: HeartbeatMessage, recorded: Bool, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        guard heartbeat.from != id else { return }
        // Not recorded yet only with the known-voters rule switched off (a test's): a voter's
        // heartbeat is still recorded then, a stranger's is not.
        if !recorded, voters.contains(heartbeat.from) {
            peers[heartbeat.from, default: PeerView()].heard(at: now, term: heartbeat.term, lsn: heartbeat.lsn)
        }
        if heartbeat.term > term {
            adoptTerm(heartbeat.term, now: now, &directives)
        }
        if heartbeat.epoch > epoch {
            adoptEpoch(heartbeat.epoch)
        }
        if heartbeat.role == .primary, heartbeat.epoch > fencingEpoch {
            raiseFencingEpoch(heartbeat.epoch, &directives)  // a newer primary than any known
        }
        if heartbeat.term < term, !isVoter, heartbeat.role == .primary, settings.replicatesConfiguration {
            // A member that does not vote follows the primary it hears even behind its own term
            // (a term it reached while it voted, or standing alone): its term never goes down, it
            // has no vote to protect, and the voters never take a non-voter's term.
            setLeader(heartbeat.from, &directives)
            followsBehind = true
            lastLeaderContact = now
            electionDeadline = now + randomizedElectionTimeout
            return
        }
        guard heartbeat.term == term else { return }  // stale sender: it adopts our term from our heartbeats
        if let transfer, heartbeat.from == transfer.target {
            sendTimeoutNowIfCaughtUp(&directives)  // the target may have caught up
        }
        if heartbeat.role == .primary {
            acceptPrimary(heartbeat.from, now: now, &directives)
        } else if heartbeat.from == leaderID {
            // Our leader stepped down (StepDown or CheckQuorum) in this term: it is no longer live.
            setLeader(nil, &directives)
        }
    }

    /// A heartbeat of the current term from a node claiming primary.
    mutating func acceptPrimary(
        _ primary: String, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        if let known = termPrimary, known != primary {
            reportDualPrimary(known, primary, &directives)
            return
        }
        termPrimary = primary
        if let transfer, term > transfer.term {
            // A later term's leader: the transfer worked if it is the target.
            let succeeded = primary == transfer.target
            endTransfer(succeeded: succeeded, reason: succeeded ? nil : Self.transferOtherLeaderReason, &directives)
        }
        if state == .candidate {
            becomeFollower(now: now, leader: primary, &directives)  // Raft §5.2: a candidate yields
        }
        campaign = nil
        setLeader(primary, &directives)
        lastLeaderContact = now
        leaderLinkLost = false  // heard again: the link is back
        evidenceTimer = false
        consecutiveFailures = 0
        electionDeadline = now + randomizedElectionTimeout
    }

    /// A real vote request (Raft §5.2, §5.4.1; see "Voting" and "Disruptive servers" on
    /// ``step(_:now:)``). `vouched`: it came through ``ElectionEvent/vouchedVoteRequest(_:)``.
    mutating func stepVoteRequest(
        _ request: VoteRequest, vouched: Bool, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        let candidate = request.candidateID
        guard candidate != id else { return }
        // Refusals that adopt nothing: the request's term is not this node's business.
        if let reason = disruptionRefusal(request, vouched: vouched, now: now) {
            let refusal = VoteResponse(voterID: id, term: term, voteGranted: false, reason: reason, epoch: epoch)
            send(to: candidate, .voteResponse(refusal), &directives)
            return
        }
        if request.term > term {
            adoptTerm(request.term, now: now, &directives)
        }
        let reason: String
        if request.term < term {
            reason = ClusterError.staleTerm.description
        } else if lastWriteFailed {
            reason = Self.notDurableReason
        } else if let votedFor, votedFor != candidate {
            reason = ClusterError.alreadyVoted.description
        } else if request.lastLSN < localLSN {
            reason = ClusterError.staleLSN.description
        } else if !vouched, request.configuration < configuration.id, !disabledRules.contains(.configurationRule) {
            reason = Self.staleConfigurationReason
        } else if request.epoch < grantEpochFloor(votedFor: votedFor), !disabledRules.contains(.epochRule) {
            reason = Self.staleEpochReason
        } else {
            reason = ""
        }
        guard reason.isEmpty else {
            let refusal = VoteResponse(voterID: id, term: term, voteGranted: false, reason: reason, epoch: epoch)
            send(to: candidate, .voteResponse(refusal), &directives)
            return
        }
        let epochBeforeGrant = Swift.min(epoch, request.epoch)
        if votedFor == nil {
            durable.votedFor = candidate
            durableDirty = true
        }
        if request.epoch >= epoch, !disabledRules.contains(.epochRule) {
            durable.epoch = request.epoch + 1  // the epoch this candidate makes if it wins
            durableDirty = true
        }
        campaign = nil  // we back this candidate: drop our own PreVote round
        electionDeadline = now + randomizedElectionTimeout
        evidenceTimer = false
        let grant = VoteResponse(
            voterID: id, term: term, voteGranted: true, epoch: epochBeforeGrant, configuration: configuration.id)
        // The response waits until the vote and the promised epoch are durable (a repeated grant
        // of a vote already written goes out at once).
        let promised = disabledRules.contains(.epochRule) ? 0 : request.epoch + 1  // a core without the rule promises nothing
        withheldGrant = WithheldGrant(candidate: candidate, response: grant, promisedEpoch: promised)
        releaseWithheld(now: now, &directives)
    }

    /// The lowest candidate epoch a vote request may carry: this node's epoch for a first grant in
    /// the term; for a repeated grant (`votedFor` is the candidate) one less, since the first grant
    /// raised the epoch to its request's epoch + 1. The repeat must still make, if it wins, at
    /// least every epoch this node holds: its request may differ from the first (a hostile member
    /// may have asked first in its name, with a higher epoch), and a repeat that skipped the rule
    /// let a candidate win with an epoch a leader had already held (issue 16, seed 3940).
    func grantEpochFloor(votedFor: String?) -> UInt64 {
        guard votedFor != nil else { return epoch }
        return epoch > 0 ? epoch - 1 : 0
    }

    /// A PreVote request (thesis §9.6): "would you vote for me at `request.term`?" Changes no state.
    /// Granted iff the request's term is above ours (or equal, with no vote given to another), no
    /// live primary has been heard within `electionTimeout`, and the LSN and epoch rules hold
    /// (and, from the network, the candidate is a known voter; see ``stepVoteRequest``).
    mutating func stepPreVoteRequest(
        _ request: VoteRequest, vouched: Bool, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        let candidate = request.candidateID
        guard candidate != id else { return }
        let reason: String
        if !isWithinReach(term: request.term, epoch: request.epoch, candidateEpoch: true) {
            reason = Self.outOfRangeReason
        } else if !vouched, !isVoter, !disabledRules.contains(.knownVoters) {
            reason = Self.notVoterReason
        } else if !vouched, !isKnownVoter(candidate) {
            reason = Self.unknownCandidateReason
        } else if request.term < term {
            reason = ClusterError.staleTerm.description
        } else if lastWriteFailed {
            reason = Self.notDurableReason
        } else if request.term == term, let votedFor, votedFor != candidate {
            reason = ClusterError.alreadyVoted.description
        } else if hasLiveLeader(now: now) {
            reason = Self.liveLeaderReason
        } else if request.lastLSN < localLSN {
            reason = ClusterError.staleLSN.description
        } else if !vouched, request.configuration < configuration.id, !disabledRules.contains(.configurationRule) {
            reason = Self.staleConfigurationReason
        } else if request.epoch < epoch, !disabledRules.contains(.epochRule) {
            reason = Self.staleEpochReason
        } else {
            reason = ""
        }
        let response = VoteResponse(
            voterID: id, term: request.term, voteGranted: reason.isEmpty, reason: reason, preVote: true,
            epoch: epoch, configuration: configuration.id)
        send(to: candidate, .voteResponse(response), &directives)
        if reason.isEmpty, evidenceTimer, campaign == nil {
            // Another follower stood first on the same evidence, and this node would vote for it:
            // give it one campaign's time before standing too, so that the two do not split the vote.
            electionDeadline = Swift.max(electionDeadline, now + settings.voteRequestTimeout)
        }
        if reason.isEmpty, !vouched, let own = campaign, own.kind == .preVote, own.term == request.term,
           (request.priority, id) > (settings.priority, candidate)
        {
            // Two PreVote rounds for one term at once, each granting the other: both would stand
            // and split the vote (with two voters, every time). The one of lower priority (then the
            // larger id) yields, and waits a fresh election timeout; the other stands.
            campaign = nil
            resetElectionTimer(now: now)
        }
    }

    mutating func stepVoteResponse(
        _ response: VoteResponse, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        if response.term > term {
            adoptTerm(response.term, now: now, &directives)
        }
        if response.epoch > epoch {
            adoptEpoch(response.epoch)
        }
        guard response.voteGranted, response.term == term, state == .candidate,
              campaign?.kind == .vote, campaign?.requestsSent == true, response.voterID != id
        else { return }
        // A vote from a non-voter is not counted (and the voter is not added): see `tallyCampaign`.
        // Nor one from a voter whose configuration is newer than this node's: an honest voter
        // refuses this node's own request, so the grant answered one forged in its name.
        guard !grantAnsweredAnotherRequest(response) else { return }
        campaign?.grants[response.voterID] = response.epoch
        tallyCampaign(now: now, &directives)
    }

    mutating func stepPreVoteResponse(
        _ response: VoteResponse, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        guard response.voteGranted, state == .follower, let campaign, campaign.kind == .preVote,
              response.term == campaign.term, response.voterID != id
        else { return }
        guard !grantAnsweredAnotherRequest(response) else { return }
        self.campaign?.grants[response.voterID] = response.epoch
        tallyCampaign(now: now, &directives)
    }

    /// A grant from a voter whose configuration is newer than this node's: not an answer to this
    /// node's own request (which carried its configuration, and which that voter refuses).
    func grantAnsweredAnotherRequest(_ response: VoteResponse) -> Bool {
        settings.replicatesConfiguration && !disabledRules.contains(.configurationRule)
            && response.configuration > configuration.id
    }
}
