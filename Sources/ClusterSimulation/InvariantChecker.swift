import ClusterCore

/// What the checker knows of a node just before a step: what a granted vote is judged against
/// (taken when the vote request arrives, where the core decides; the grant may go out later).
struct NodeSnapshot {
    var term: UInt64
    var votedFor: String?
    var epoch: UInt64
    var localLSN: UInt64
}

/// Checks the election's safety invariants after every step, from outside the cores, across
/// the whole history of the run (restarts included), against what was really written (each
/// node's simulated disk), not what a core believes:
/// - at most one leader per term (Raft §5.2);
/// - leaders' epochs strictly increase with their terms (the epoch is a fencing token), and a
///   leader's term, self-vote and epoch are on disk when it becomes leader;
/// - the fencing epoch a node exposes never decreases, and one learned from others is the epoch of
///   a primary that really led (a new primary whose write failed exposes nothing);
/// - every granted vote respects the LSN rule (candidate lastLSN >= voter localLSN when the request
///   arrived) and the epoch rule (candidate epoch >= voter epoch, for a first grant);
/// - a node never votes for two candidates (itself included) in one term: the votes it sent are
///   tracked here, so a restart that forgot a vote, or a vote granted from memory, is caught;
/// - the term on a node's disk never goes down, nor a live core's term between restarts;
/// - persist before send: a vote request or granted vote is sent only once the disk holds the
///   vote (and, for a grant, the promised epoch);
/// - no core reports a dual primary.
struct InvariantChecker {
    struct LeaderRecord {
        var node: String
        var epoch: UInt64
        var atNanoseconds: UInt64
    }

    private(set) var violations: [String] = []
    /// False: sends are not judged against the disk (see `SimulationConfig.checksPersistBeforeSend`).
    var checksPersistBeforeSend = true
    private(set) var leaderByTerm: [UInt64: LeaderRecord] = [:]
    /// Leader terms in increasing order (for the epoch-order check).
    private var leaderTerms: [UInt64] = []
    private var voteByVoterTerm: [VoterTerm: String] = [:]
    /// The highest term written to each node's disk.
    private var highestTerm: [String: UInt64] = [:]
    /// The highest term of each node's live core since its last (re)start.
    private var highestLiveTerm: [String: UInt64] = [:]
    /// Each node's fencing epoch as last exposed (since its last (re)start).
    private var fencingEpoch: [String: UInt64] = [:]
    /// Every epoch a leader held.
    private var leaderEpochs: Set<UInt64> = []
    /// The last vote request of each (voter, candidate, term, kind), with the voter's state then.
    private var requests: [RequestKey: (request: VoteRequest, before: NodeSnapshot)] = [:]

    private struct VoterTerm: Hashable {
        var voter: String
        var term: UInt64
    }

    private struct RequestKey: Hashable {
        var voter: String
        var candidate: String
        var term: UInt64
        var preVote: Bool
    }

    mutating func report(_ text: String, atNanoseconds now: UInt64) {
        violations.append("t=\(Double(now) / 1e6)ms: \(text)")
    }

    /// A node (re)started from its disk: its term must be the highest it ever wrote.
    mutating func checkTerm(node: String, term: UInt64, atNanoseconds now: UInt64) {
        let highest = highestTerm[node] ?? 0
        if term < highest {
            report("\(node)'s term went down from \(highest) to \(term)", atNanoseconds: now)
        } else if term > highest {
            highestTerm[node] = term
        }
    }

    /// A node's core (re)started: what it exposes in memory starts afresh from its disk.
    mutating func noteRestart(node: String, term: UInt64, atNanoseconds now: UInt64) {
        checkTerm(node: node, term: term, atNanoseconds: now)
        highestLiveTerm[node] = term
        fencingEpoch[node] = 0
    }

    /// A node's core stepped: its term must not have gone down since its last (re)start.
    mutating func checkLiveTerm(node: String, term: UInt64, atNanoseconds now: UInt64) {
        let highest = highestLiveTerm[node] ?? 0
        if term < highest {
            report("\(node)'s term went down from \(highest) to \(term) without a restart", atNanoseconds: now)
        } else if term > highest {
            highestLiveTerm[node] = term
        }
    }

    /// A write landed on the node's disk (reported or not): the written term never goes down.
    mutating func notePersist(node: String, _ state: DurableElectionState, atNanoseconds now: UInt64) {
        checkTerm(node: node, term: state.term, atNanoseconds: now)
    }

    /// A vote request reached `node`, whose state was `before`: the vote is decided now.
    mutating func noteVoteRequest(node: String, _ request: VoteRequest, before: NodeSnapshot) {
        let key = RequestKey(voter: node, candidate: request.candidateID, term: request.term, preVote: request.preVote)
        requests[key] = (request, before)
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

    /// A `.send` was carried out by `node`, whose disk then held `disk`.
    mutating func noteSend(
        node: String, to peer: String, _ message: ElectionMessage, disk: DurableElectionState, atNanoseconds now: UInt64
    ) {
        switch message {
        case .voteRequest(let request) where !request.preVote:
            if checksPersistBeforeSend, disk.term != request.term || disk.votedFor != node {
                report("\(node) asked for votes in term \(request.term) before persisting its own vote", atNanoseconds: now)
            }
            noteVote(node: node, term: request.term, for: node, atNanoseconds: now)
        case .voteResponse(let response) where response.voteGranted:
            let key = RequestKey(voter: node, candidate: peer, term: response.term, preVote: response.preVote)
            guard let (request, before) = requests[key] else {
                report("\(node) granted \(peer) a vote that nobody asked for", atNanoseconds: now)
                return
            }
            if request.lastLSN < before.localLSN {
                report(
                    "\(node) granted \(peer) a \(response.preVote ? "pre-vote" : "vote") in term \(request.term)"
                        + " with candidate LSN \(request.lastLSN) < voter LSN \(before.localLSN)", atNanoseconds: now)
            }
            let repeatedGrant = before.term == request.term && before.votedFor == peer
            if !repeatedGrant, request.epoch < before.epoch {
                report(
                    "\(node) granted \(peer) a \(response.preVote ? "pre-vote" : "vote") in term \(request.term)"
                        + " with candidate epoch \(request.epoch) < voter epoch \(before.epoch)", atNanoseconds: now)
            }
            guard !response.preVote else { return }
            if !checksPersistBeforeSend {
                // judged by the votes it sent, below
            } else if disk.term != response.term || disk.votedFor != peer {
                report("\(node) sent its vote for \(peer) in term \(response.term) before persisting it", atNanoseconds: now)
            } else if disk.epoch < request.epoch + 1 {
                report(
                    "\(node) sent its vote for \(peer) in term \(response.term) before persisting the promised epoch"
                        + " \(request.epoch + 1) (disk: \(disk.epoch))", atNanoseconds: now)
            }
            noteVote(node: node, term: response.term, for: peer, atNanoseconds: now)
        default:
            break
        }
    }

    /// `node` exposed a new fencing epoch (`.epochChanged`); `own` when it is the leader of it.
    mutating func noteFencingEpoch(node: String, _ epoch: UInt64, own: Bool, atNanoseconds now: UInt64) {
        let previous = fencingEpoch[node] ?? 0
        if epoch <= previous {
            report("\(node)'s fencing epoch went from \(previous) to \(epoch)", atNanoseconds: now)
        }
        fencingEpoch[node] = epoch
        if !own, !leaderEpochs.contains(epoch) {
            report("\(node) exposes fencing epoch \(epoch), which no primary held", atNanoseconds: now)
        }
    }

    /// A node became leader of `term` with `epoch` (its fencing epoch), its disk then holding `disk`.
    mutating func noteLeader(
        node: String, term: UInt64, epoch: UInt64, disk: DurableElectionState, atNanoseconds now: UInt64
    ) {
        if checksPersistBeforeSend, disk.term != term || disk.votedFor != node || disk.epoch != epoch {
            report(
                "\(node) leads term \(term) with epoch \(epoch) before it is durable (disk: term \(disk.term),"
                    + " vote \(disk.votedFor ?? "-"), epoch \(disk.epoch))", atNanoseconds: now)
        }
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
}
