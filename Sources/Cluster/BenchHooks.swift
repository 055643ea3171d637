import Synchronization
import UV

/// What `cluster bench` measures inside the nodes of one process, shared by all of them
/// (`NodeOptions.benchHooks`; nil in every other use, where the heartbeat path only tests for
/// nil). Thread-safe: nodes on several loops record into it.
///
/// - Probe round trips: every probe answered, in nanoseconds.
/// - Delivery latency: for probe heartbeats only (one round in ten, so that measuring costs
///   little), from the sender's write to the receiver's read, on the process's one clock.
/// - Mesh mode (`meshInflight` > 0): each node keeps that many probes in flight to every peer,
///   sending the next one as soon as one is answered, as `uvmesh` does flat out.
///
/// What every heartbeat records goes to a `Shard` of the node's loop thread, so that nodes on
/// two loops never write to one cache line: shared counters and one shared lock made two loop
/// threads carry barely more than one in the mesh benchmark once a frame cost little.
package final class BenchHooks: @unchecked Sendable {
    package let meshInflight: Int
    private let lock = UVMutex()
    private var latencies: [UInt64] = []
    private var probeSentAt: [PairKey: UInt64] = [:]
    private var recording = false
    private var shards: [ObjectIdentifier: Shard] = [:]
    /// Read on every heartbeat, written only when the window starts and ends.
    fileprivate let isRecording = Atomic<Bool>(false)

    private struct PairKey: Hashable {
        var from: UInt64
        var to: UInt64
    }

    /// The counts and round trips of the nodes of one loop thread. Heartbeats received and sent,
    /// and rounds sent, are counted on the heartbeat path itself while recording, so that the
    /// window is exactly the recorded one (reading each node's stats takes a pass of its loop,
    /// and on a saturated loop the nodes' windows would stretch past the measured one).
    package final class Shard: @unchecked Sendable {
        /// `unowned(unsafe)`: the hooks keep their shards, and every node that holds a shard holds
        /// the hooks; a checked reference would touch the hooks' reference count, shared by both
        /// threads, on every heartbeat.
        unowned(unsafe) let hooks: BenchHooks
        let meshInflight: Int
        fileprivate let lock = UVMutex()
        fileprivate var roundTrips: [UInt64] = []
        fileprivate let received = Atomic<UInt64>(0)
        fileprivate let sent = Atomic<UInt64>(0)
        fileprivate let rounds = Atomic<UInt64>(0)

        fileprivate init(hooks: BenchHooks) {
            self.hooks = hooks
            meshInflight = hooks.meshInflight
            roundTrips.reserveCapacity(1 << 16)
        }

        @inline(__always) func heartbeatReceived() {
            if hooks.isRecording.load(ordering: .relaxed) { received.add(1, ordering: .relaxed) }
        }

        @inline(__always) func heartbeatSent() {
            if hooks.isRecording.load(ordering: .relaxed) { sent.add(1, ordering: .relaxed) }
        }

        @inline(__always) func roundSent() {
            if hooks.isRecording.load(ordering: .relaxed) { rounds.add(1, ordering: .relaxed) }
        }

        func roundTrip(_ ns: UInt64) {
            guard hooks.isRecording.load(ordering: .relaxed) else { return }
            lock.withLock { roundTrips.append(ns) }
        }
    }

    package init(meshInflight: Int = 0) {
        self.meshInflight = meshInflight
    }

    /// The shard of the nodes on `loop` (made on first use).
    func shard(for loop: UVLoop) -> Shard {
        lock.withLock {
            if let shard = shards[ObjectIdentifier(loop)] { return shard }
            let shard = Shard(hooks: self)
            shards[ObjectIdentifier(loop)] = shard
            return shard
        }
    }

    /// Starts (or stops) keeping samples: the bench records only its measured window.
    package func setRecording(_ on: Bool) {
        let all = lock.withLock {
            recording = on
            if on { latencies.removeAll(keepingCapacity: true) }
            return Array(shards.values)
        }
        if on { for shard in all { shard.lock.withLock { shard.roundTrips.removeAll(keepingCapacity: true) } } }
        isRecording.store(on, ordering: .relaxed)
    }

    /// Heartbeats received and sent, and heartbeat rounds, during the recorded windows.
    package var counts: (received: UInt64, sent: UInt64, rounds: UInt64) {
        lock.withLock { shards.values.reduce((UInt64(0), UInt64(0), UInt64(0))) { total, shard in
            (total.0 + shard.received.load(ordering: .relaxed), total.1 + shard.sent.load(ordering: .relaxed),
             total.2 + shard.rounds.load(ordering: .relaxed))
        } }
    }

    /// The samples of the window: round trips and delivery latencies, in nanoseconds.
    package func samples() -> (roundTrips: [UInt64], latencies: [UInt64]) {
        let (all, latencies) = lock.withLock { (Array(shards.values), self.latencies) }
        var roundTrips: [UInt64] = []
        for shard in all { shard.lock.withLock { roundTrips += shard.roundTrips } }
        return (roundTrips, latencies)
    }

    func probeSent(from: UInt64, to: UInt64, at ns: UInt64) {
        lock.withLock { probeSentAt[PairKey(from: from, to: to)] = ns }
    }

    func probeDelivered(from: UInt64, to: UInt64, at ns: UInt64) {
        lock.withLock {
            guard let sent = probeSentAt.removeValue(forKey: PairKey(from: from, to: to)), recording, ns >= sent else { return }
            latencies.append(ns - sent)
        }
    }

    // MARK: - Gossip

    /// A member's state changed in one node's gossip layer: `subject` became `state` in
    /// `observer`'s view at `atNs` (libuv's clock). Kept only while `gossipWatch` names the subject.
    package struct GossipEvent: Sendable {
        package var observer: String
        package var subject: String
        package var state: String
        package var atNs: UInt64
    }

    private var gossipWatch: Set<String> = []
    private var gossipEvents: [GossipEvent] = []

    /// Starts keeping the gossip events about `subjects` (forgetting those kept before).
    package func watchGossip(_ subjects: Set<String>) {
        lock.withLock {
            gossipWatch = subjects
            gossipEvents.removeAll()
        }
    }

    /// The gossip events kept since `watchGossip`, from the `from`th on: a copy of those only,
    /// so that the nodes' next appends do not copy the whole record (which a reader holding it
    /// would make them do, every time).
    package func gossipEvents(from: Int) -> [GossipEvent] {
        lock.withLock { from < gossipEvents.count ? Array(gossipEvents[from...]) : [] }
    }

    /// Stalls (`cluster bench members --scenario stall`, as memberlist-mesh's deaf transport):
    /// until the time set here, a node's gossip layer holds the datagrams that arrive (delivered
    /// once the time has passed, at its next datagram or timer), as a stalled process would.
    private var deafUntil: [String: UInt64] = [:]
    /// Whether any node was ever made deaf (read without the lock on every datagram).
    private let anyDeaf = Atomic<Bool>(false)

    package func makeDeaf(_ nodeID: String, untilNs: UInt64) {
        anyDeaf.store(true, ordering: .relaxed)
        lock.withLock { deafUntil[nodeID] = untilNs }
    }

    func isDeaf(_ nodeID: String, nowNs: UInt64) -> Bool {
        guard anyDeaf.load(ordering: .relaxed) else { return false }
        return lock.withLock { (deafUntil[nodeID] ?? 0) > nowNs }
    }

    /// A node's gossip layer learnt of a newer primary: `leader` at `term`, at `atNs`.
    package struct PrimaryEvent: Sendable {
        package var observer: String
        package var leader: String
        package var term: UInt64
        package var atNs: UInt64
    }

    private var primaryEvents: [PrimaryEvent] = []

    /// The primary events from the `from`th on (all are kept: a few per member per election).
    package func primaryEvents(from: Int) -> [PrimaryEvent] {
        lock.withLock { from < primaryEvents.count ? Array(primaryEvents[from...]) : [] }
    }

    func gossipPrimary(observer: String, leader: String, term: UInt64, atNs: UInt64) {
        lock.withLock { primaryEvents.append(PrimaryEvent(observer: observer, leader: leader, term: term, atNs: atNs)) }
    }

    func gossipChanged(observer: String, subject: String, state: String, atNs: UInt64) {
        lock.withLock {
            guard gossipWatch.contains(subject) else { return }
            gossipEvents.append(GossipEvent(observer: observer, subject: subject, state: state, atNs: atNs))
        }
    }
}
