import ClusterCore

/// What the checker knows of a node just before a step: what a granted vote is judged against
/// (taken when the vote request arrives, where the core decides; the grant may go out later, once
/// the vote is durable). `localLSN` is the driver's LSN (the storage's), not the one the core was
/// last told: the LSN rule must hold against the real log position at the moment of the vote.
package struct NodeSnapshot: Sendable {
    package var term: UInt64
    package var votedFor: String?
    package var epoch: UInt64
    package var localLSN: UInt64
    package var state: ElectionState
    package var leaderID: String?
    /// The voters this node knows (its driver's view), itself included.
    package var voters: Set<String>
    /// As leader: the target of its transfer under way that it told to stand (TimeoutNow sent).
    package var toldToStand: String?

    package init(
        term: UInt64, votedFor: String? = nil, epoch: UInt64 = 0, localLSN: UInt64 = 0, state: ElectionState = .follower,
        leaderID: String? = nil, voters: Set<String> = [], toldToStand: String? = nil
    ) {
        self.term = term
        self.votedFor = votedFor
        self.epoch = epoch
        self.localLSN = localLSN
        self.state = state
        self.leaderID = leaderID
        self.voters = voters
        self.toldToStand = toldToStand
    }
}

/// A node as the liveness check sees it at the end of a run.
package struct LivenessView: Sendable {
    package var id: String
    package var state: ElectionState
    package var term: UInt64
    package var leaderID: String?
    /// A member that does not vote (voters by consent) need only name the leader: its term may be
    /// ahead (terms never go down, and it cannot make the voters adopt its term).
    package var votes: Bool

    package init(id: String, state: ElectionState, term: UInt64, leaderID: String?, votes: Bool = true) {
        self.id = id
        self.state = state
        self.term = term
        self.leaderID = leaderID
        self.votes = votes
    }
}

/// Checks the election's invariants after every step, from outside the cores, across the whole
/// history of the run (restarts included), against what was really written (each node's simulated
/// disk), not what a core believes:
/// - at most one leader per term (Raft §5.2), and every leader won a quorum of votes that its
///   voters really sent (a forged vote is never counted);
/// - leaders' epochs strictly increase with their terms (the epoch is a fencing token), and a
///   leader's term, self-vote and epoch are on disk when it becomes leader;
/// - the fencing epoch a node exposes (what its application reads) never decreases between
///   restarts, and one learned from others is the epoch of a primary that really led (a new
///   primary whose write failed exposes nothing);
/// - every granted vote respects the LSN rule (candidate lastLSN >= the voter's LSN as its driver
///   knows it when the request arrived) and the epoch rule (candidate epoch >= voter epoch for a
///   first grant, >= voter epoch - 1 for a repeated grant to the same candidate in the term),
///   goes from the network only to a known voter that sent the request itself, and is not given
///   (nor its term adopted) while the voter hears a live primary (thesis §4.2.3);
/// - a candidate's claimed LSN is the storage's: a vote request (or PreVote) sent by a node
///   claims no more than its driver's LSN at the send (so the LSN rule above, judged on the
///   claim, holds on the LSN the candidate really has; a hostile member's forged claim is not a
///   core's, and is judged as it arrives);
/// - no term inflation: a node enters a higher term as candidate only by a forced election
///   (`.startElection`), a TimeoutNow from the leader of its term, or a won PreVote round, that is,
///   PreVote grants for that term really sent to it by a quorum of its voters (itself included);
///   with the lease rule on PreVote grants, a follower cut off or on a broken link cannot raise
///   the cluster's term while a majority holds a lease on a live primary;
/// - the lease: no vote or PreVote from the network is granted while the voter holds a lease on
///   its primary, that is, is the primary or accepted the primary's heartbeat within an election
///   timeout over a link that has not ended since (a `.peerUnreachable` for that primary,
///   delivered to that voter, ends its lease and no other's). So a broken link frees only the
///   voter at its end: a primary whose lease a majority holds is not deposed by votes;
/// - a node never votes for two candidates (itself included) in one term: the votes it sent are
///   tracked here, so a restart that forgot a vote, or a vote granted from memory, is caught;
/// - the term on a node's disk never goes down, nor a live core's term between restarts;
/// - persist before send: a vote request or granted vote is sent only once the disk holds the
///   vote (and, for a grant, the promised epoch);
/// - no node's term or epoch exceeds what the honest nodes (and the hostile members' in-reach
///   requests) made: a stranger's or a forger's term never spreads;
/// - a node follows only the leader elected in its term;
/// - no core reports a dual primary;
/// - leadership transfer: only the leader of a term sends a TimeoutNow for it; a node asks for
///   votes marked `transfer` only after a TimeoutNow from the leader of the term before; a vote
///   request is exempt from the lease only as the core's rule says (marked, for the voter's term
///   + 1, and on a leader from the target it told to stand); every transfer started ends within
///   one election timeout while its node still leads, two at most (unless its node crashes); a
///   transfer reported successful really made its target leader of a later term;
/// - liveness, at the end: one leader, followed by every node, elected within the bound after the heal.
package struct InvariantChecker: Sendable {
    package struct LeaderRecord: Sendable {
        package var node: String
        package var epoch: UInt64
        package var atNanoseconds: UInt64
    }

    package private(set) var violations: [String] = []
    /// Voter configurations: their voters, the one each was made from, who stored each, which
    /// are committed, and the configuration each term's leader held.
    private var configurationVoters: [ConfigurationID: [String]] = [:]
    private var configurationParent: [ConfigurationID: ConfigurationID] = [:]
    private var storedBy: [ConfigurationID: Set<String>] = [:]
    private var committedConfigurations: [ConfigurationID] = []
    private var leaderConfigurations: [UInt64: (node: String, configuration: ConfigurationID)] = [:]

    package private(set) var leaderByTerm: [UInt64: LeaderRecord] = [:]
    /// The election timeout, for the lease rule.
    package var electionTimeoutNanoseconds: UInt64
    /// False: sends and leaders are not judged against the disk (see
    /// `SimulationConfig.checksPersistBeforeSend`).
    package var checksPersistBeforeSend = true
    /// Leader terms in increasing order (for the epoch-order check).
    private var leaderTerms: [UInt64] = []
    private var voteByVoterTerm: [VoterTerm: String] = [:]
    /// Votes really sent: voters by (candidate, term).
    private var grantsByCandidateTerm: [VoterTerm: Set<String>] = [:]
    /// The highest term written to each node's disk.
    private var highestTerm: [String: UInt64] = [:]
    /// The highest term of each node's live core since its last (re)start.
    private var highestLiveTerm: [String: UInt64] = [:]
    /// Each node's fencing epoch as last exposed through `.epochChanged` (since its last (re)start).
    private var fencingEpoch: [String: UInt64] = [:]
    /// The highest fencing epoch each node's application read after a step (since its last (re)start).
    private var highestAppEpoch: [String: UInt64] = [:]
    /// Every epoch a leader held.
    private var leaderEpochs: Set<UInt64> = []
    /// The vote request whose grant is withheld until the vote is durable, for each (voter,
    /// candidate, term, kind): its sender (nil: vouched for by the application) and the voter's
    /// state when it arrived. Removed when the grant is sent.
    private var requests: [RequestKey: NoteRequest] = [:]
    /// The vote request being stepped (see ``noteVoteRequest(node:from:_:before:)``), and whether
    /// a grant answered it at once.
    private var stepped: (key: RequestKey, note: NoteRequest, answered: Bool)?
    /// When each node last accepted a heartbeat from the primary of its term, and from whom (nil:
    /// not said); removed when the node's link to that primary ends.
    private var lastPrimaryContact: [String: (primary: String?, atNanoseconds: UInt64)] = [:]
    /// The highest term any honest candidacy (or in-reach hostile request) made.
    private var termCeiling: UInt64 = 0
    /// The highest epoch any honest leader made or any honest candidacy may make.
    private var epochCeiling: UInt64 = 0
    /// The terms in which each node got a TimeoutNow from that term's elected leader.
    private var toldToStandIn: [String: Set<UInt64>] = [:]
    /// The transfer under way on each node: target, the term it started in, when.
    private var transfers: [String: (target: String, term: UInt64, atNanoseconds: UInt64)] = [:]
    /// PreVote grants really sent: voters by (candidate, term asked for).
    private var preVoteGrants: [VoterTerm: Set<String>] = [:]

    private struct VoterTerm: Hashable {
        var voter: String
        var term: UInt64
    }

    private struct NoteRequest {
        var request: VoteRequest
        var sender: String?
        var before: NodeSnapshot
        /// The voter held a lease on its primary when the request arrived.
        var leaseHeld = false
    }

    private struct RequestKey: Hashable {
        var voter: String
        var candidate: String
        var term: UInt64
        var preVote: Bool
    }

    package init(electionTimeoutNanoseconds: UInt64 = 100_000_000) {
        self.electionTimeoutNanoseconds = electionTimeoutNanoseconds
    }

    package mutating func report(_ text: String, atNanoseconds now: UInt64) {
        violations.append("t=\(Double(now) / 1e6)ms: \(text)")
    }

    /// A node's disk was written or read at a restart: its term must be the highest it ever wrote.
    package mutating func checkTerm(node: String, term: UInt64, atNanoseconds now: UInt64) {
        let highest = highestTerm[node] ?? 0
        if term < highest {
            report("\(node)'s term went down from \(highest) to \(term)", atNanoseconds: now)
        } else if term > highest {
            highestTerm[node] = term
        }
    }

    /// A node's core (re)started from a disk holding `term`: what it exposes in memory starts
    /// afresh, and it holds no lease.
    package mutating func noteRestart(node: String, term: UInt64, atNanoseconds now: UInt64) {
        checkTerm(node: node, term: term, atNanoseconds: now)
        highestLiveTerm[node] = term
        fencingEpoch[node] = 0
        highestAppEpoch[node] = nil
        lastPrimaryContact[node] = nil
        transfers[node] = nil
    }

    /// A node crashed: a transfer it had under way ends with it, unreported, and so do the votes it
    /// withheld until durable (a later grant of the restarted node answers a later request).
    package mutating func noteCrash(node: String) {
        transfers[node] = nil
        requests = requests.filter { $0.key.voter != node }
    }

    /// After a step of `node`: the core withholds the grant of its vote in `term` to `candidate`
    /// (nil: it withholds none). A withheld grant the core dropped (its term moved on, its write
    /// failed) is never sent: its request is forgotten, so that a later grant is not judged
    /// against it.
    package mutating func noteWithheldVote(node: String, candidate: String?, term: UInt64) {
        guard !requests.isEmpty else { return }
        for key in requests.keys where key.voter == node && !key.preVote {
            if key.candidate != candidate || key.term != term { requests[key] = nil }
        }
    }

    /// How a node came to stand as candidate (see ``noteStanding(node:term:cause:voters:quorumSize:atNanoseconds:)``).
    package enum StandingCause: Sendable {
        /// The application forced an election (`.startElection`).
        case forced
        /// A TimeoutNow from `from` (the core acts only on its leader's, in its own term).
        case timeoutNow(from: String)
        /// Anything else: the core's only other way to stand is a won PreVote round.
        case preVote
    }

    /// `node` became candidate for `term` (its term + 1). No term inflation: unless forced, or told
    /// to stand by the leader of `term - 1`, it must have won a PreVote round for `term`: PreVote
    /// grants really sent to it by voters in `voters` (as it counts them), with its own, reach
    /// `quorumSize`. (Grants of an earlier round for the same term count too: a sound check, not a
    /// tight one.)
    package mutating func noteStanding(
        node: String, term: UInt64, cause: StandingCause, voters: Set<String>, quorumSize: Int, atNanoseconds now: UInt64
    ) {
        switch cause {
        case .forced:
            return
        case .timeoutNow(let sender):
            if !(toldToStandIn[node]?.contains(term &- 1) ?? false) {
                report(
                    "\(node) stood in term \(term) on a TimeoutNow from \(sender), who did not lead term \(term &- 1)",
                    atNanoseconds: now)
            }
        case .preVote:
            let granted = preVoteGrants[VoterTerm(voter: node, term: term), default: []]
                .intersection(voters).subtracting([node]).count + 1
            if granted < quorumSize {
                report(
                    "\(node) stood in term \(term) with \(granted) PreVote grants of the \(quorumSize) it needs:"
                        + " term inflation, unforced and not told to stand", atNanoseconds: now)
            }
        }
    }

    // MARK: Leadership transfer

    /// A TimeoutNow from `sender` for `term` reached `node` (over the network, or forged): it may
    /// make `node` stand only if `sender` is the leader elected in `term`.
    package mutating func noteTimeoutNowDelivered(node: String, from sender: String, term: UInt64) {
        if leaderByTerm[term]?.node == sender { toldToStandIn[node, default: []].insert(term) }
    }

    /// `node` (the leader of `term`) started a transfer to `target`.
    package mutating func noteTransferStarted(node: String, target: String, term: UInt64, atNanoseconds now: UInt64) {
        if transfers[node] != nil {
            report("\(node) started a transfer to \(target) while one was under way", atNanoseconds: now)
        }
        if leaderByTerm[term]?.node != node {
            report("\(node) started a transfer in term \(term), which it does not lead", atNanoseconds: now)
        }
        transfers[node] = (target, term, now)
    }

    /// `node` reported the end of its transfer to `target` (not a refused request).
    package mutating func noteTransferEnded(node: String, target: String?, succeeded: Bool, atNanoseconds now: UInt64) {
        guard let started = transfers.removeValue(forKey: node) else {
            report("\(node) reported the end of a transfer it had not started", atNanoseconds: now)
            return
        }
        if started.target != target {
            report("\(node) started a transfer to \(started.target) but reported one to \(target ?? "-")", atNanoseconds: now)
        }
        if succeeded, !leaderByTerm.contains(where: { $0.key > started.term && $0.value.node == started.target }) {
            report(
                "\(node) reported its transfer to \(started.target) done, but it led no term after \(started.term)",
                atNanoseconds: now)
        }
    }

    /// Every transfer under way started at most two election timeouts ago (its end is reported
    /// by then: the core is ticked at its deadline), at most one while its node still leads.
    package mutating func checkTransfersEnd(node: String, leads: Bool, atNanoseconds now: UInt64) {
        if leads, let transfer = transfers[node], now > transfer.atNanoseconds + electionTimeoutNanoseconds {
            report(
                "\(node) still leads and its transfer to \(transfer.target), started at"
                    + " \(Double(transfer.atNanoseconds) / 1e6)ms, has not ended within an election timeout", atNanoseconds: now)
            transfers[node] = nil
        }
        for (node, transfer) in transfers where now > transfer.atNanoseconds + 2 * electionTimeoutNanoseconds {
            report(
                "\(node)'s transfer to \(transfer.target), started at \(Double(transfer.atNanoseconds) / 1e6)ms, has not"
                    + " ended within two election timeouts", atNanoseconds: now)
            transfers[node] = nil
        }
    }

    /// A node's core stepped: its term must not have gone down since its last (re)start.
    package mutating func checkLiveTerm(node: String, term: UInt64, atNanoseconds now: UInt64) {
        let highest = highestLiveTerm[node] ?? 0
        if term < highest {
            report("\(node)'s term went down from \(highest) to \(term) without a restart", atNanoseconds: now)
        } else if term > highest {
            highestLiveTerm[node] = term
        }
    }

    /// After a step: the fencing epoch the node's application reads never goes down; the node's
    /// term and epoch (its core's, promises included) come from honest elections; the leader it
    /// follows is the one elected in its term.
    package mutating func checkNode(
        node: String, term: UInt64, epoch: UInt64, fencingEpoch: UInt64, leaderID: String?, votes: Bool = true,
        atNanoseconds now: UInt64
    ) {
        if let read = highestAppEpoch[node], fencingEpoch < read {
            report("the epoch \(node)'s application reads went down from \(read) to \(fencingEpoch)", atNanoseconds: now)
        }
        highestAppEpoch[node] = max(highestAppEpoch[node] ?? 0, fencingEpoch)
        if term > termCeiling {
            report("\(node) is at term \(term), above any term an honest node stood in (\(termCeiling))", atNanoseconds: now)
        }
        if max(epoch, fencingEpoch) > epochCeiling {
            report(
                "\(node) holds epoch \(max(epoch, fencingEpoch)), above any epoch an honest node made or promised"
                    + " (\(epochCeiling))", atNanoseconds: now)
        }
        if let leaderID, leaderID != node, leaderByTerm[term]?.node != leaderID,
           votes || !leaderByTerm.values.contains(where: { $0.node == leaderID })
        {
            // A member that does not vote may follow a primary of an earlier term than its own.
            report("\(node) follows \(leaderID) in term \(term), who was not elected in it", atNanoseconds: now)
        }
    }

    /// A node started a candidacy for `term`, asking with `epoch`.
    package mutating func noteCandidacy(term: UInt64, epoch: UInt64) {
        termCeiling = max(termCeiling, term)
        epochCeiling = max(epochCeiling, epoch + 1)
    }

    /// A hostile member sent a vote request within reach: its term and epoch may be adopted.
    package mutating func noteHostileRequest(term: UInt64, epoch: UInt64) {
        termCeiling = max(termCeiling, term)
        epochCeiling = max(epochCeiling, epoch + 1)
    }

    /// `node` accepted a heartbeat from the primary of its term (`primary`, if said): its lease
    /// starts again.
    package mutating func notePrimaryContact(node: String, primary: String? = nil, atNanoseconds now: UInt64) {
        lastPrimaryContact[node] = (primary, now)
    }

    /// `node`'s link to `peer` ended (the core was stepped with `.peerUnreachable(peer)`): if
    /// `peer` is the primary it holds a lease on, the lease ends. No other node's lease changes.
    package mutating func noteLinkLost(node: String, peer: String) {
        if let contact = lastPrimaryContact[node], contact.primary == peer { lastPrimaryContact[node] = nil }
    }

    /// True when `node`, in the state `before`, holds a lease on its primary at `now`: it is the
    /// primary, or it accepted the primary's heartbeat within an election timeout and its link to
    /// the primary has not ended since.
    private func holdsLease(node: String, before: NodeSnapshot, atNanoseconds now: UInt64) -> Bool {
        guard before.leaderID != nil else { return false }
        if before.state == .leader { return true }
        return lastPrimaryContact[node].map { now < $0.atNanoseconds + electionTimeoutNanoseconds } ?? false
    }

    /// A write landed on the node's disk (reported or not): the written term never goes down. (A
    /// vote on disk counts only once sent: a vote whose write was reported failed is forgotten
    /// unsent, and the node may vote again in that term.)
    package mutating func notePersist(node: String, _ state: DurableElectionState, atNanoseconds now: UInt64) {
        checkTerm(node: node, term: state.term, atNanoseconds: now)
    }

    /// A vote request reaches `node`, whose state is `before`: the vote is decided in the step
    /// that follows. `sender` is the transport's sender, nil when the application vouched for the
    /// request. A grant sent in that step is judged against this request; call
    /// ``noteVoteRequestOutcome(withheld:)`` after the step.
    package mutating func noteVoteRequest(
        node: String, from sender: String?, _ request: VoteRequest, before: NodeSnapshot, atNanoseconds now: UInt64 = 0
    ) {
        let key = RequestKey(voter: node, candidate: request.candidateID, term: request.term, preVote: request.preVote)
        let lease = holdsLease(node: node, before: before, atNanoseconds: now)
        stepped = (key, NoteRequest(request: request, sender: sender, before: before, leaseHeld: lease), false)
    }

    /// The step of the request noted last is over. `withheld`: the core decided to grant this
    /// request and withholds the grant until it is durable, so a later grant is judged against
    /// this request. It replaces an earlier one still withheld for the same candidate and term (the
    /// core keeps one withheld grant, the latest decision's). A refused or dropped request leaves
    /// nothing behind.
    package mutating func noteVoteRequestOutcome(withheld: Bool) {
        defer { stepped = nil }
        guard let stepped, withheld, !stepped.answered else { return }
        requests[stepped.key] = stepped.note
    }

    /// `node` gave its vote in `term` to `candidate` (itself, as a candidate): once per term, ever.
    private mutating func noteVote(node: String, term: UInt64, for candidate: String, atNanoseconds now: UInt64) {
        let key = VoterTerm(voter: node, term: term)
        if let earlier = voteByVoterTerm[key] {
            if earlier != candidate {
                report("\(node) voted for \(earlier) and \(candidate) in term \(term)", atNanoseconds: now)
            }
        } else {
            voteByVoterTerm[key] = candidate
        }
    }

    /// A network vote request was stepped: from the state `before` to `afterTerm`; `granted` when
    /// the node gave (or now withholds until durable) its vote. While the node hears a live
    /// primary, neither a grant nor the request's term is allowed (thesis §4.2.3); the repeated
    /// grant of this term's vote to the same candidate is.
    package mutating func noteVoteRequestStep(
        node: String, from sender: String, _ request: VoteRequest, before: NodeSnapshot, afterTerm: UInt64,
        granted: Bool, atNanoseconds now: UInt64
    ) {
        guard !request.preVote, let leader = before.leaderID else { return }
        guard holdsLease(node: node, before: before, atNanoseconds: now) else { return }
        if request.term == before.term && before.votedFor == request.candidateID { return }
        // A leadership transfer's request (see ElectionCore, "Leadership transfer").
        if request.transfer, request.term == before.term + 1,
           before.state != .leader || before.toldToStand == request.candidateID
        {
            return
        }
        if afterTerm != before.term {
            report(
                "\(node) adopted term \(afterTerm) from \(sender)'s vote request while hearing primary \(leader)",
                atNanoseconds: now)
        }
        if granted {
            report("\(node) granted \(request.candidateID) a vote while hearing primary \(leader)", atNanoseconds: now)
        }
    }

    /// A `.send` was carried out by `node`, whose disk then held `disk` and whose storage then held
    /// `storageLSN` (nil: not known, as in hand-built histories). A granted vote is judged against
    /// its request, as noted by ``noteVoteRequest(node:from:_:before:)``.
    package mutating func noteSend(
        node: String, to peer: String, _ message: ElectionMessage, disk: DurableElectionState, storageLSN: UInt64? = nil,
        atNanoseconds now: UInt64
    ) {
        if case .voteRequest(let request) = message, let storageLSN, request.lastLSN > storageLSN {
            report(
                "\(node) asked for \(request.preVote ? "pre-votes" : "votes") in term \(request.term) claiming LSN"
                    + " \(request.lastLSN), but its storage holds \(storageLSN)", atNanoseconds: now)
        }
        switch message {
        case .timeoutNow(let message):
            if leaderByTerm[message.term]?.node != node || message.from != node {
                report("\(node) sent \(peer) a TimeoutNow for term \(message.term), which it does not lead", atNanoseconds: now)
            }
        case .voteRequest(let request) where !request.preVote:
            if checksPersistBeforeSend, disk.term != request.term || disk.votedFor != node {
                report("\(node) asked for votes in term \(request.term) before persisting its own vote", atNanoseconds: now)
            }
            if request.transfer, !(toldToStandIn[node]?.contains(request.term &- 1) ?? false) {
                report(
                    "\(node) asked for transfer votes in term \(request.term) without a TimeoutNow from the leader of"
                        + " term \(request.term &- 1)", atNanoseconds: now)
            }
            noteVote(node: node, term: request.term, for: node, atNanoseconds: now)
        case .voteResponse(let response) where response.voteGranted:
            let key = RequestKey(voter: node, candidate: peer, term: response.term, preVote: response.preVote)
            let note: NoteRequest
            if let stepped, stepped.key == key {
                note = stepped.note  // answered at once
                self.stepped?.answered = true
            } else if let withheld = requests.removeValue(forKey: key) {
                note = withheld  // released by the write
            } else {
                report("\(node) granted \(peer) a vote that nobody asked for", atNanoseconds: now)
                return
            }
            let (request, sender, before) = (note.request, note.sender, note.before)
            if response.preVote, sender != nil, note.leaseHeld {
                report(
                    "\(node) granted \(peer) a pre-vote in term \(request.term) while holding a lease on primary"
                        + " \(before.leaderID ?? "-")", atNanoseconds: now)
            }
            if let sender {
                if sender != request.candidateID {
                    report("\(node) granted \(request.candidateID) a vote asked for by \(sender)", atNanoseconds: now)
                }
                if !before.voters.contains(request.candidateID) {
                    report(
                        "\(node) granted a vote from the network to \(request.candidateID), not a voter it knows",
                        atNanoseconds: now)
                }
            }
            if request.lastLSN < before.localLSN {
                report(
                    "\(node) granted \(peer) a \(response.preVote ? "pre-vote" : "vote") in term \(request.term)"
                        + " with candidate LSN \(request.lastLSN) < voter LSN \(before.localLSN)", atNanoseconds: now)
            }
            // A repeated grant (the voter's vote in the term already went to this candidate): its
            // first grant raised the voter's epoch to that request's epoch + 1, so one less.
            let repeatedGrant = before.term == request.term && before.votedFor == peer
            let epochFloor = repeatedGrant ? max(before.epoch, 1) - 1 : before.epoch
            if request.epoch < epochFloor {
                report(
                    "\(node) granted \(peer) a \(repeatedGrant ? "repeated " : "")\(response.preVote ? "pre-vote" : "vote")"
                        + " in term \(request.term) with candidate epoch \(request.epoch) < voter epoch"
                        + " \(before.epoch)\(repeatedGrant ? " - 1" : "")", atNanoseconds: now)
            }
            if response.preVote {
                preVoteGrants[VoterTerm(voter: peer, term: response.term), default: []].insert(node)
                return
            }
            if !checksPersistBeforeSend {
                // judged by the votes it sent, below
            } else if disk.term != response.term || disk.votedFor != peer {
                report("\(node) sent its vote for \(peer) in term \(response.term) before persisting it", atNanoseconds: now)
            } else if disk.epoch < request.epoch + 1 {
                report(
                    "\(node) sent its vote for \(peer) in term \(response.term) before persisting the promised epoch"
                        + " \(request.epoch + 1) (disk: \(disk.epoch))", atNanoseconds: now)
            }
            grantsByCandidateTerm[VoterTerm(voter: peer, term: response.term), default: []].insert(node)
            noteVote(node: node, term: response.term, for: peer, atNanoseconds: now)
        default:
            break
        }
    }

    /// `node` exposed a new fencing epoch (`.epochChanged`); `own` when it is the leader of it.
    package mutating func noteFencingEpoch(node: String, _ epoch: UInt64, own: Bool, atNanoseconds now: UInt64) {
        let previous = fencingEpoch[node] ?? 0
        if epoch <= previous {
            report("\(node)'s fencing epoch went from \(previous) to \(epoch)", atNanoseconds: now)
        }
        fencingEpoch[node] = epoch
        if !own, !leaderEpochs.contains(epoch) {
            report("\(node) exposes fencing epoch \(epoch), which no primary held", atNanoseconds: now)
        }
    }

    /// A node became leader of `term` with fencing epoch `epoch`, with `voters` and `quorumSize`
    /// as it counted them, its disk then holding `disk`.
    // MARK: Voter configurations (issue 15)

    /// A configuration a primary made (at its election, or for a change), from `parent`: the
    /// lineage the committed-configuration check follows. One identity is one configuration.
    package mutating func noteConfigurationMade(
        node: String, _ made: VoterConfiguration, parent: ConfigurationID, atNanoseconds now: UInt64
    ) {
        if let known = configurationVoters[made.id], known != made.voters {
            report("\(node) made configuration \(made.id) of \(made.voters), already made of \(known)", atNanoseconds: now)
        }
        configurationVoters[made.id] = made.voters
        configurationParent[made.id] = parent
    }

    /// A write reached a node's disk, with `stored` its configuration and `term` its term. Once a
    /// majority of its voters have stored it in the term it was made in (as Raft counts a leader's
    /// entry committed by the acknowledgements of its term), it is committed: every leader of a
    /// later term must hold it or a configuration made from it. A configuration that reaches a
    /// disk later, relayed when links come back, commits nothing (no primary counted it).
    package mutating func noteStoredConfiguration(
        node: String, _ stored: VoterConfiguration, term: UInt64, atNanoseconds now: UInt64
    ) {
        guard !stored.isNone else { return }
        if let known = configurationVoters[stored.id], known != stored.voters {
            report("\(node) stored configuration \(stored.id) of \(stored.voters), made of \(known)", atNanoseconds: now)
        }
        configurationVoters[stored.id] = stored.voters
        guard term == stored.term else { return }
        storedBy[stored.id, default: []].insert(node)
        guard !committedConfigurations.contains(stored.id),
              storedBy[stored.id, default: []].intersection(stored.voters).count >= stored.majority
        else { return }
        committedConfigurations.append(stored.id)
        for (term, held) in leaderConfigurations where term > stored.term && !descends(held.configuration, from: stored.id) {
            report(
                "configuration \(stored.id) committed, but \(held.node) leads term \(term) with \(held.configuration),"
                    + " which does not hold it", atNanoseconds: now)
        }
    }

    /// The configuration a new leader holds (its disk's: written with its epoch). It must hold
    /// every configuration committed in an earlier term (Raft's leader completeness, for the one
    /// entry this project replicates).
    package mutating func noteLeaderConfiguration(
        node: String, term: UInt64, _ held: VoterConfiguration, atNanoseconds now: UInt64
    ) {
        leaderConfigurations[term] = (node, held.id)
        for committed in committedConfigurations where committed.term < term && !descends(held.id, from: committed) {
            report(
                "\(node) leads term \(term) with configuration \(held.id), which lost the committed configuration"
                    + " \(committed)", atNanoseconds: now)
        }
    }

    /// `id` is `ancestor` or was made from it, one change after another.
    private func descends(_ id: ConfigurationID, from ancestor: ConfigurationID) -> Bool {
        var current: ConfigurationID? = id
        while let configuration = current, configuration >= ancestor {
            if configuration == ancestor { return true }
            current = configurationParent[configuration]
        }
        return false
    }

    package mutating func noteLeader(
        node: String, term: UInt64, epoch: UInt64, voters: Set<String>, quorumSize: Int, disk: DurableElectionState,
        atNanoseconds now: UInt64
    ) {
        if checksPersistBeforeSend, disk.term != term || disk.votedFor != node || disk.epoch != epoch {
            report(
                "\(node) leads term \(term) with epoch \(epoch) before it is durable (disk: term \(disk.term),"
                    + " vote \(disk.votedFor ?? "-"), epoch \(disk.epoch))", atNanoseconds: now)
        }
        let granted = grantsByCandidateTerm[VoterTerm(voter: node, term: term), default: []]
            .intersection(voters).subtracting([node]).count + 1
        if granted < quorumSize {
            report(
                "\(node) became leader of term \(term) with \(granted) real votes of the \(quorumSize) it needs",
                atNanoseconds: now)
        }
        epochCeiling = max(epochCeiling, epoch)
        leaderEpochs.insert(epoch)
        if let other = leaderByTerm[term] {
            if other.node != node {
                report("two leaders in term \(term): \(other.node) and \(node)", atNanoseconds: now)
            }
            return
        }
        leaderByTerm[term] = LeaderRecord(node: node, epoch: epoch, atNanoseconds: now)
        let index = leaderTerms.firstIndex { $0 > term } ?? leaderTerms.endIndex
        if index > 0, let previous = leaderByTerm[leaderTerms[index - 1]], previous.epoch >= epoch {
            report(
                "epoch not increasing: \(previous.node) led term \(leaderTerms[index - 1]) with epoch"
                    + " \(previous.epoch), \(node) leads term \(term) with epoch \(epoch)", atNanoseconds: now)
        }
        if index < leaderTerms.endIndex, let next = leaderByTerm[leaderTerms[index]], next.epoch <= epoch {
            report(
                "epoch not increasing: \(node) leads term \(term) with epoch \(epoch), \(next.node) led"
                    + " later term \(leaderTerms[index]) with epoch \(next.epoch)", atNanoseconds: now)
        }
        leaderTerms.insert(term, at: index)
    }

    /// Liveness, at the end of a run: exactly one leader, every node in `nodes` at its term and
    /// following it, elected at most `boundNanoseconds` after the heal. Returns how long after the
    /// heal it was elected (0: before the heal), or nil after reporting a violation.
    package mutating func checkLiveness(
        nodes: [LivenessView], healedAtNanoseconds healed: UInt64, boundNanoseconds bound: UInt64,
        atNanoseconds now: UInt64
    ) -> UInt64? {
        let summary = nodes.map { "\($0.id):\($0.state)/t\($0.term)/leader=\($0.leaderID ?? "-")" }.joined(separator: " ")
        let leaders = nodes.filter { $0.state == .leader }
        guard leaders.count == 1, let leader = leaders.first else {
            report(
                "no single leader at the end (\(leaders.map(\.id))), \(Double(now - healed) / 1e6)ms after the heal;"
                    + " states: \(summary)", atNanoseconds: now)
            return nil
        }
        if nodes.contains(where: { ($0.votes && $0.term != leader.term) || $0.leaderID != leader.id }) {
            report("\(leader.id) leads term \(leader.term) but not every node follows it; states: \(summary)", atNanoseconds: now)
            return nil
        }
        let electedAt = leaderByTerm[leader.term]?.atNanoseconds ?? 0
        let after = electedAt > healed ? electedAt - healed : 0
        if after > bound {
            report(
                "leader \(leader.id) of term \(leader.term) elected \(Double(after) / 1e6)ms after the heal,"
                    + " beyond the bound of \(Double(bound) / 1e6)ms", atNanoseconds: now)
            return nil
        }
        return after
    }
}
