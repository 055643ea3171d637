import ClusterCore

/// What the checker knows of a node just before a step: what a granted vote is judged against.
struct NodeSnapshot {
    var term: UInt64
    var votedFor: String?
    var epoch: UInt64
    var localLSN: UInt64
}

/// Checks the election's safety invariants after every step, from outside the cores, across
/// the whole history of the run (restarts included):
/// - at most one leader per term (Raft §5.2);
/// - leaders' epochs strictly increase with their terms (the epoch is a fencing token);
/// - every granted vote respects the LSN rule (candidate lastLSN >= voter localLSN at grant time)
///   and the epoch rule (candidate epoch >= voter epoch, for a first grant);
/// - a node never votes for two candidates in one term (its persisted votes are tracked here,
///   so a restart that forgot a vote is caught);
/// - a node's term never goes down;
/// - persist before send: a vote request or granted vote is sent only once the vote is durable;
/// - no core reports a dual primary.
struct InvariantChecker {
    struct LeaderRecord {
        var node: String
        var epoch: UInt64
        var atNanoseconds: UInt64
    }

    private(set) var violations: [String] = []
    private(set) var leaderByTerm: [UInt64: LeaderRecord] = [:]
    /// Leader terms in increasing order (for the epoch-order check).
    private var leaderTerms: [UInt64] = []
    private var voteByVoterTerm: [VoterTerm: String] = [:]
    private var highestTerm: [String: UInt64] = [:]

    private struct VoterTerm: Hashable {
        var voter: String
        var term: UInt64
    }

    mutating func report(_ text: String, atNanoseconds now: UInt64) {
        violations.append("t=\(Double(now) / 1e6)ms: \(text)")
    }

    /// A node (re)started or stepped: its term must not have gone down.
    mutating func checkTerm(node: String, term: UInt64, atNanoseconds now: UInt64) {
        let highest = highestTerm[node] ?? 0
        if term < highest {
            report("\(node)'s term went down from \(highest) to \(term)", atNanoseconds: now)
        } else if term > highest {
            highestTerm[node] = term
        }
    }

    /// A `.persist` was carried out: the durable vote is what counts for "one vote per term".
    mutating func notePersist(node: String, _ state: DurableElectionState, atNanoseconds now: UInt64) {
        guard let candidate = state.votedFor else { return }
        let key = VoterTerm(voter: node, term: state.term)
        if let earlier = voteByVoterTerm[key] {
            if earlier != candidate {
                report("\(node) voted for \(earlier) and \(candidate) in term \(state.term)", atNanoseconds: now)
            }
        } else {
            voteByVoterTerm[key] = candidate
        }
    }

    /// A `.send` was carried out by `node`, while processing `event`, from the state `before`.
    mutating func noteSend(
        node: String, to peer: String, _ message: ElectionMessage, event: ElectionEvent, before: NodeSnapshot,
        persisted: DurableElectionState, atNanoseconds now: UInt64
    ) {
        switch message {
        case .voteRequest(let request) where !request.preVote:
            if persisted.term != request.term || persisted.votedFor != node {
                report("\(node) asked for votes in term \(request.term) before persisting its own vote", atNanoseconds: now)
            }
        case .voteResponse(let response) where response.voteGranted:
            guard case .receive(_, .voteRequest(let request)) = event,
                  request.candidateID == peer, request.term == response.term, request.preVote == response.preVote
            else {
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
            if !response.preVote, persisted.term != response.term || persisted.votedFor != peer {
                report("\(node) sent its vote for \(peer) in term \(response.term) before persisting it", atNanoseconds: now)
            }
        default:
            break
        }
    }

    /// A node became leader of `term` with `epoch`.
    mutating func noteLeader(node: String, term: UInt64, epoch: UInt64, atNanoseconds now: UInt64) {
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
