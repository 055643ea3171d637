
// Leadership transfer (Raft thesis §3.10). Part of `ElectionCore` (one door: `step`), split by concern.
extension ElectionCore {
    // MARK: Leadership transfer

    /// ``ElectionEvent/transferLeadership(to:)`` (etcd-io/raft's `MsgTransferLeader` on a leader):
    /// refuses at once, or starts the transfer and tells the target to stand if it is caught up.
    /// Unlike etcd, a second request while one is under way is refused rather than replacing it:
    /// the first may already have a target standing.
    mutating func startTransfer(
        to requested: String?, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        let refusal: String?
        if state != .leader {
            refusal = Self.transferNotLeaderReason
        } else if transfer != nil {
            refusal = Self.transferUnderWayReason
        } else if let requested, requested == id {
            refusal = Self.transferToSelfReason
        } else if let requested, !voters.contains(requested) {
            refusal = Self.transferUnknownTargetReason
        } else {
            refusal = nil
        }
        if let refusal {
            directives.append(.transferEnded(target: requested, succeeded: false, reason: refusal))
            return
        }
        guard let target = requested ?? bestTransferTarget(now: now) else {
            directives.append(.transferEnded(target: nil, succeeded: false, reason: Self.transferNoTargetReason))
            return
        }
        // As etcd resets electionElapsed: the transfer has one election timeout from now.
        transfer = Transfer(
            target: target, term: term, startedAt: now, deadline: now + settings.electionTimeout, timeoutNowSent: false)
        directives.append(.transferStarted(target: target))
        sendTimeoutNowIfCaughtUp(&directives)
    }

    /// The voter heard within an election timeout whose heartbeats reported the highest LSN, then
    /// the highest priority, then the smallest id (nil: none).
    func bestTransferTarget(now: CoreInstant) -> String? {
        var best: (id: String, lsn: UInt64, priority: Int)?
        for voter in voterList where voter != id {  // sorted: the first of equals is the smallest id
            guard let peer = peers[voter], let heard = peer.heardAt, now < heard + settings.electionTimeout else { continue }
            let lsn = peer.reportedLSN
            let priority = peer.priority
            if let b = best, (lsn, priority) <= (b.lsn, b.priority) { continue }
            best = (voter, lsn, priority)
        }
        return best?.id
    }

    /// Sends the target a TimeoutNow if this node still leads and the target's last heartbeat, of
    /// this term, reported an LSN at least ``localLSN`` (the thesis's "brings it up to date",
    /// etcd's `pr.Match == lastIndex`): the target then wins the voters this leader would.
    mutating func sendTimeoutNowIfCaughtUp(_ directives: inout [ElectionDirective]) {
        guard state == .leader, let target = transfer?.target, let peer = peers[target],
              peer.reportedTerm == term, peer.reportedLSN >= localLSN
        else { return }
        transfer?.timeoutNowSent = true
        send(to: target, .timeoutNow(TimeoutNowMessage(from: id, term: term)), &directives)
    }

    /// Reports the end of the transfer under way and forgets it.
    mutating func endTransfer(succeeded: Bool, reason: String?, _ directives: inout [ElectionDirective]) {
        guard let transfer else { return }
        self.transfer = nil
        directives.append(.transferEnded(target: transfer.target, succeeded: succeeded, reason: reason))
    }

    /// A TimeoutNow (etcd-io/raft's `MsgTimeoutNow`, stepped by a follower: `hup(campaignTransfer)`)
    /// makes this node stand only if it comes from the leader this node follows, in this node's
    /// term; otherwise it changes nothing. Unlike etcd, its term is not adopted when higher: a
    /// node that adopted it would know no leader in that term and ignore the message anyway, and
    /// heartbeats carry terms already, so it would only give a peer one more way to move terms.
    /// A leader, a candidate, and a node whose last write failed ignore it.
    mutating func stepTimeoutNow(
        _ message: TimeoutNowMessage, now: CoreInstant, _ directives: inout [ElectionDirective]
    ) {
        guard message.term == term, state == .follower, leaderID == message.from, message.from != id,
              !lastWriteFailed, isVoter
        else { return }
        becomeCandidate(now: now, transfer: true, &directives)  // no PreVote: the leader vouches for the cluster
    }
}
