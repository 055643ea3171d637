import Foundation
import ClusterCore

// Helpers for driving election cores directly, with explicit times.

let ms: UInt64 = 1_000_000
/// The election timeout of every test core.
let T: UInt64 = 100 * ms
let voteTimeout: UInt64 = 50 * ms

func at(milliseconds: UInt64) -> CoreInstant { CoreInstant(nanoseconds: milliseconds * ms) }

func testSettings(
    minQuorumSize: Int = 1, priority: Int = 1, autoFailover: Bool = true, maxElectionRetries: Int = 3
) -> ElectionCore.Settings {
    ElectionCore.Settings(
        electionTimeout: T, heartbeatInterval: 20 * ms, voteRequestTimeout: voteTimeout, minQuorumSize: minQuorumSize,
        priority: priority, autoFailover: autoFailover, maxElectionRetries: maxElectionRetries)
}

/// Steps a core as a synchronous driver whose writes succeed at once: after each `.persist` it
/// feeds `.persisted` with the same state, and puts what that releases right after the `.persist`.
/// A batch without a `.persist` is returned as it is (no allocation on the hot path).
func stepWritingAtOnce(_ core: inout ElectionCore, _ event: ElectionEvent, now: CoreInstant) -> [ElectionDirective] {
    let directives = core.step(event, now: now)
    guard directives.contains(where: { if case .persist = $0 { return true } else { return false } }) else {
        return directives
    }
    var all: [ElectionDirective] = []
    for directive in directives {
        all.append(directive)
        if case .persist(let state) = directive {
            all += stepWritingAtOnce(&core, .persisted(state), now: now)
        }
    }
    return all
}

/// A core whose driver writes synchronously and never fails (``stepWritingAtOnce``): what the rule
/// tests need. Reads go to the core; tests of slow or failing writes step ``core`` directly.
@dynamicMemberLookup
struct SyncCore {
    var core: ElectionCore

    subscript<Value>(dynamicMember keyPath: KeyPath<ElectionCore, Value>) -> Value { core[keyPath: keyPath] }

    mutating func step(_ event: ElectionEvent, now: CoreInstant) -> [ElectionDirective] {
        stepWritingAtOnce(&core, event, now: now)
    }

    func heartbeat(seq: UInt64, ackSeq: UInt64 = 0, probe: Bool = false) -> HeartbeatMessage {
        core.heartbeat(seq: seq, ackSeq: ackSeq, probe: probe)
    }
}

func makeCore(
    _ id: String, voters: [String], durable: DurableElectionState = DurableElectionState(), lsn: UInt64 = 0,
    settings: ElectionCore.Settings = testSettings(), seed: UInt64 = 7
) -> SyncCore {
    var core = SyncCore(core: ElectionCore(id: id, settings: settings, durable: durable, voters: voters, seed: seed, now: .zero))
    if lsn > 0 { _ = core.step(.setLocalLSN(lsn), now: .zero) }
    return core
}

/// The identity of the configuration `makeCore` bootstraps its cores with.
let bootstrapConfiguration = ConfigurationID(term: 0, version: 1)

/// A vote request as a candidate that holds `configuration` (by default the bootstrap one that
/// `makeCore` gives every core) sends it.
func voteRequest(
    from candidate: String, term: UInt64, lsn: UInt64 = 0, epoch: UInt64 = 0, preVote: Bool = false,
    configuration: ConfigurationID = bootstrapConfiguration
) -> ElectionEvent {
    .receive(
        from: candidate,
        .voteRequest(VoteRequest(
            candidateID: candidate, term: term, lastLSN: lsn, epoch: epoch, preVote: preVote, configuration: configuration)))
}

func voteResponse(
    from voter: String, term: UInt64, granted: Bool = true, epoch: UInt64 = 0, preVote: Bool = false
) -> ElectionEvent {
    .receive(
        from: voter,
        .voteResponse(VoteResponse(voterID: voter, term: term, voteGranted: granted, preVote: preVote, epoch: epoch)))
}

func heartbeat(
    from sender: String, term: UInt64, role: NodeRole = .primary, epoch: UInt64 = 0, lsn: UInt64 = 0
) -> ElectionEvent {
    .receive(from: sender, .heartbeat(HeartbeatMessage(from: sender, seq: 1, epoch: epoch, term: term, lsn: lsn, role: role)))
}

/// A leader of `term` 1 made by a forced election and the votes of `grantedBy`.
func makeLeader(_ id: String, voters: [String], grantedBy: [String], settings: ElectionCore.Settings = testSettings()) -> SyncCore {
    var core = makeCore(id, voters: voters, settings: settings)
    _ = core.step(.startElection, now: .zero)
    for voter in grantedBy { _ = core.step(voteResponse(from: voter, term: core.term), now: .zero) }
    return core
}

extension Array where Element == ElectionDirective {
    var persists: [DurableElectionState] {
        compactMap { if case .persist(let state) = $0 { return state } else { return nil } }
    }

    /// The term, vote and epoch of each write (the configuration, which every write carries, left
    /// out: `persistedConfigurations` has it).
    var persistedElectionStates: [DurableElectionState] { persists.map(\.electionOnly) }

    /// Everything but the configuration's own traffic (its sends, acknowledgements and changes).
    var withoutConfigurationTraffic: [ElectionDirective] {
        filter {
            switch $0 {
            case .configurationChanged, .send(_, .configuration), .send(_, .configurationAck): return false
            default: return true
            }
        }
    }

    var configurationSends: [(to: String, message: ConfigurationMessage)] {
        compactMap { if case .send(let to, .configuration(let m)) = $0 { return (to, m) } else { return nil } }
    }

    var persistedConfigurations: [VoterConfiguration] {
        compactMap { if case .persist(let state) = $0 { return state.configuration } else { return nil } }
    }

    var voteResponses: [VoteResponse] {
        compactMap { if case .send(_, .voteResponse(let r)) = $0 { return r } else { return nil } }
    }

    var voteRequests: [(to: String, request: VoteRequest)] {
        compactMap { if case .send(let to, .voteRequest(let r)) = $0 { return (to, r) } else { return nil } }
    }

    var stateChanges: [ElectionState] {
        compactMap { if case .stateChanged(let s, _, _) = $0 { return s } else { return nil } }
    }

    var dualPrimaryReports: [[String]] {
        compactMap { if case .dualPrimaryDetected(_, let p) = $0 { return p } else { return nil } }
    }

    var firstPersistIndex: Int? { firstIndex { if case .persist = $0 { return true } else { return false } } }

    var firstSendIndex: Int? { firstIndex { if case .send = $0 { return true } else { return false } } }
}

/// A few cores on a zero-latency network, driven in fixed steps of simulated time (after
/// etcd-io/raft's test network: `isolate`, `recover`). Every node heartbeats every voter every
/// 20 ms and on `.broadcastHeartbeat`; ticks are delivered at each core's `nextDeadline`.
struct TestCluster {
    var cores: [String: ElectionCore] = [:]
    var ids: [String]
    var nowMilliseconds: UInt64 = 0
    var isolated: Set<String> = []
    /// Links that carry nothing (each as its two ends, sorted, joined by "|").
    var brokenLinks: Set<String> = []
    /// Every directive, by node, in order.
    var log: [(node: String, directive: ElectionDirective)] = []
    private var inFlight: [(from: String, to: String, message: ElectionMessage)] = []

    init(ids: [String], voters: (String) -> [String], settings: (String) -> ElectionCore.Settings) {
        self.ids = ids.sorted()
        for (index, id) in self.ids.enumerated() {
            cores[id] = ElectionCore(
                id: id, settings: settings(id), durable: DurableElectionState(), voters: voters(id),
                seed: UInt64(index + 1), now: .zero)
        }
    }

    var leaders: [String] { ids.filter { cores[$0]?.state == .leader } }

    mutating func apply(_ id: String, _ event: ElectionEvent) {
        guard var core = cores[id] else { return }
        let directives = stepWritingAtOnce(&core, event, now: at(milliseconds: nowMilliseconds))
        cores[id] = core
        for directive in directives {
            log.append((id, directive))
            switch directive {
            case .send(let to, let message): enqueue(from: id, to: to, message)
            case .broadcastHeartbeat: sendHeartbeats(id)
            default: break
            }
        }
    }

    /// Every node heartbeats every node (as the node runtime heartbeats its linked peers), not
    /// only the voters it knows.
    var heartbeatsEveryone = false

    mutating func sendHeartbeats(_ id: String) {
        guard let core = cores[id] else { return }
        for voter in (heartbeatsEveryone ? ids : core.voters.sorted()) where voter != id {
            let message = HeartbeatMessage(
                from: id, seq: nowMilliseconds + 1, epoch: core.epoch, term: core.term, lsn: core.localLSN, role: core.role)
            enqueue(from: id, to: voter, .heartbeat(message))
        }
    }

    mutating func enqueue(from: String, to: String, _ message: ElectionMessage) {
        guard !isolated.contains(from), !isolated.contains(to), !isBroken(from, to), cores[to] != nil else { return }
        inFlight.append((from, to, message))
    }

    mutating func deliverAll() {
        var delivered = 0
        while !inFlight.isEmpty, delivered < 100_000 {
            let (from, to, message) = inFlight.removeFirst()
            delivered += 1
            guard !isolated.contains(from), !isolated.contains(to), !isBroken(from, to) else { continue }
            apply(to, .receive(from: from, message))
        }
    }

    /// Advances time in 5 ms steps: ticks due, heartbeats every 20 ms, every message delivered.
    mutating func run(milliseconds: UInt64) {
        let end = nowMilliseconds + milliseconds
        while nowMilliseconds < end {
            nowMilliseconds += 5
            for id in ids {
                if let deadline = cores[id]?.nextDeadline, deadline <= at(milliseconds: nowMilliseconds) {
                    apply(id, .tick)
                }
            }
            if nowMilliseconds % 20 == 0 { for id in ids { sendHeartbeats(id) } }
            deliverAll()
        }
    }

    mutating func isolate(_ id: String) { isolated.insert(id) }
    mutating func recover() {
        isolated.removeAll()
        brokenLinks.removeAll()
    }

    private func linkKey(_ a: String, _ b: String) -> String { a < b ? "\(a)|\(b)" : "\(b)|\(a)" }
    func isBroken(_ a: String, _ b: String) -> Bool { brokenLinks.contains(linkKey(a, b)) }

    /// The link between `a` and `b` breaks, both ends live: it carries nothing from now on, and
    /// each end's core is told (`.peerUnreachable`), as the runtime tells it.
    mutating func breakLink(_ a: String, _ b: String) {
        brokenLinks.insert(linkKey(a, b))
        apply(a, .peerUnreachable(b))
        apply(b, .peerUnreachable(a))
    }

    /// `id` crashes: it is cut off, and every other node's link to it ends (its kernel closed them).
    mutating func crash(_ id: String) {
        isolated.insert(id)
        for other in ids where other != id { apply(other, .peerUnreachable(id)) }
    }
}

/// Runs CPU-heavy work (simulated schedules) on a thread of its own and awaits it, so that it
/// does not hold one of the few threads of Swift's cooperative pool (two on a 2-core machine):
/// the loopback tests running beside it await events on that pool, and would time out.
func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread { continuation.resume(returning: work()) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}

extension DurableElectionState {
    /// The term, vote and epoch alone.
    var electionOnly: DurableElectionState { DurableElectionState(term: term, votedFor: votedFor, epoch: epoch) }
}
