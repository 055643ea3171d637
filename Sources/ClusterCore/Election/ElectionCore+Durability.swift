
// Durability: what waits for a write, and what a failed write undoes. Part of `ElectionCore` (one door: `step`), split by concern.
extension ElectionCore {
    // MARK: Durability

    /// Sends what waited for a write, now that ``persisted`` may hold it: a granted vote, a
    /// candidacy's vote requests, a won election's leadership. Each goes out only if the written
    /// state holds exactly what it depends on.
    mutating func releaseWithheld(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        if let withheld = withheldGrant {
            if persisted.term == withheld.response.term, persisted.votedFor == withheld.candidate,
               persisted.epoch >= withheld.promisedEpoch
            {
                withheldGrant = nil
                send(to: withheld.candidate, .voteResponse(withheld.response), &directives)
            }
        }
        if state == .candidate, var campaign, campaign.kind == .vote, !campaign.requestsSent,
           persisted.term == term, persisted.votedFor == id
        {
            campaign.requestsSent = true
            campaign.deadline = now + settings.voteRequestTimeout  // the campaign's time starts now
            self.campaign = campaign
            let request = VoteRequest(
                candidateID: id, term: term, lastLSN: localLSN, epoch: campaign.epoch, priority: settings.priority,
                transfer: campaign.transfer, configuration: configuration.id)
            for voter in voterList where voter != id {
                send(to: voter, .voteRequest(request), &directives)
            }
            tallyCampaign(now: now, &directives)  // a single-voter cluster wins at once
        }
        if state == .candidate, let newEpoch = pendingLeaderEpoch, persisted.term == term,
           persisted.votedFor == id, persisted.epoch >= newEpoch, persisted.configuration == configuration
        {
            assumeLeadership(now: now, &directives)
        }
        if let primary = configAckTo, persisted.configuration == configuration {
            configAckTo = nil
            send(to: primary, .configurationAck(ConfigurationAck(from: id, term: term, configuration: configuration.id)), &directives)
        }
        if state == .leader, configResendAt == nil, !configurationCommitted, persisted.configuration == configuration {
            resendConfiguration(now: now, &directives)  // a change's configuration is durable here: out it goes
        }
    }

    /// The write in flight failed. Nothing that waited for it is sent: a withheld vote is refused
    /// instead, a pending candidate or leader becomes follower, a PreVote round stops, and a vote
    /// not written is forgotten (a retried request must be decided, and written, afresh). The term
    /// and epoch are kept (they only rise) and written again at the retry.
    mutating func writeFailed(now: CoreInstant, _ directives: inout [ElectionDirective]) {
        lastWriteFailed = true
        retryWriteAt = now + persistRetryDelay
        durableDirty = true  // the retry: a successful write is what ends this
        if let withheld = withheldGrant {
            withheldGrant = nil
            let refusal = VoteResponse(
                voterID: id, term: term, voteGranted: false, reason: Self.notDurableReason, epoch: epoch)
            send(to: withheld.candidate, .voteResponse(refusal), &directives)
        }
        if durable.votedFor != nil, persisted.term != durable.term || persisted.votedFor != durable.votedFor {
            durable.votedFor = nil
        }
        if state == .candidate {
            becomeFollower(now: now, leader: nil, &directives)
        } else if campaign != nil {
            campaign = nil  // a PreVote round
            resetElectionTimer(now: now)
        }
    }
}
