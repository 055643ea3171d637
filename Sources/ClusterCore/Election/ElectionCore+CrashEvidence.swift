
// Crash evidence: a follower whose link to its leader ends stands early (see `linkLost`). Part of `ElectionCore` (one door: `step`), split by concern.
extension ElectionCore {
    // MARK: Crash evidence

    /// The width of one rank of the crash-evidence delay: a quarter of the election timeout.
    /// A follower whose link to its leader ends stands after
    /// `(behind + r) · evidenceSlot / max(1, priority)`, r uniform in [0, 1) (see `linkLost`).
    package var evidenceSlot: UInt64 { Swift.max(1, settings.electionTimeout / 4) }

    /// ``ElectionEvent/peerUnreachable(_:)``: the transport's link to `peer` ended. When a process
    /// dies its kernel closes its sockets, so every follower's link to a crashed leader ends at
    /// once: evidence, not proof (a link also ends when only it broke, or when the runtime's sweep
    /// closes one silent for an election timeout). A follower whose link to its current leader
    /// ends therefore:
    /// - (a) stops counting that leader as heard for the lease (`hasLiveLeader`): it grants
    ///   PreVotes and votes from others, as it would an election timeout after the last
    ///   heartbeat; the leader's next heartbeat (over a new link) restores the lease;
    /// - (b) with `autoFailover`, brings its election timer forward to
    ///   `now + (behind + r) · evidenceSlot / max(1, priority)`, r uniform in [0, 1), `behind` the
    ///   number of other voters heard within T whose heartbeats reported a higher LSN than this
    ///   node's: the most up-to-date, highest-priority follower usually stands first (the others
    ///   would refuse a less up-to-date one anyway). When the timer fires it forgets the leader and
    ///   starts a PreVote round, exactly as on an election timeout. A follower that grants a
    ///   PreVote while such a timer runs waits at least a vote request timeout from then (another
    ///   follower stood first on the same evidence; two candidacies at once would split the vote).
    ///
    /// Ignored by a leader (CheckQuorum judges its followers by silence), a candidate, a follower
    /// for any peer but its leader, and a follower whose evidence timer already runs.
    ///
    /// Why safety is unchanged: the event touches no term, vote or epoch and persists nothing; it
    /// only moves a timer and ends one node's lease. Raft's safety (one leader per term, Raft
    /// §5.2) never depended on timing: the election still goes through a PreVote round that needs
    /// a real majority (``quorumSize``) of grants, a candidacy that raises the term only after
    /// that round is won (or by the operator's `startElection`, or a leader's TimeoutNow, as
    /// before), one durable vote per term, and persist before send. The lease itself is a
    /// liveness guard against disruptive servers (thesis §4.2.3), not a safety rule; etcd-io/raft
    /// likewise grants votes as soon as a follower no longer counts its leader as live (its
    /// `inLease` test) and uses the transport's unreachability reports (`MsgUnreachable`) only on
    /// the leader. What the lease protects still holds: a link that broke only between two live
    /// nodes ends the lease of the one follower at its end; the primary's other followers still
    /// hear it and refuse PreVotes (and votes) by their leases, so while the nodes holding a lease
    /// on the primary (it included) are a majority, no PreVote round against it can win, nobody's
    /// term moves (thesis §9.6), and it stays primary. The follower's failed round counts as a
    /// failed attempt (the back-off), and the leader's next heartbeat ends it.
    mutating func linkLost(to peer: String, now: CoreInstant) {
        let aboutLeader = peer == leaderID || disabledRules.contains(.evidenceFromLeaderLinkOnly)
        guard state == .follower, peer != id, leaderID != nil, aboutLeader, !leaderLinkLost else { return }
        leaderLinkLost = true
        guard settings.autoFailover, campaign == nil, !lastWriteFailed else { return }
        let deadline = now + evidenceDelay(now: now)
        if deadline < electionDeadline {
            electionDeadline = deadline
            evidenceTimer = true
        }
    }

    /// `(behind + r) · evidenceSlot / max(1, priority)`: see `linkLost`.
    mutating func evidenceDelay(now: CoreInstant) -> UInt64 {
        var behind: UInt64 = 0
        for voter in voterList where voter != id && voter != leaderID {
            guard let peer = peers[voter], let heard = peer.heardAt, now < heard + settings.electionTimeout,
                  peer.reportedLSN > localLSN
            else { continue }
            behind += 1
        }
        let slot = evidenceSlot
        return (behind * slot + rng.next(upperBound: slot)) / UInt64(Swift.max(1, settings.priority))
    }
}
