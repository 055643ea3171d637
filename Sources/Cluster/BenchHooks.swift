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
package final class BenchHooks: @unchecked Sendable {
    package let meshInflight: Int
    private let lock = UVMutex()
    private var roundTrips: [UInt64] = []
    private var latencies: [UInt64] = []
    private var probeSentAt: [PairKey: UInt64] = [:]
    private var recording = false
    /// Heartbeats received and sent, and rounds sent, by all the nodes while recording: counted
    /// on the heartbeat path itself, so that the window is exactly the recorded one (reading each
    /// node's stats takes a pass of its loop, and on a saturated loop the nodes' windows would
    /// stretch past the measured one).
    private let isRecording = Atomic<Bool>(false)
    private let received = Atomic<UInt64>(0)
    private let sent = Atomic<UInt64>(0)
    private let rounds = Atomic<UInt64>(0)

    private struct PairKey: Hashable {
        var from: UInt64
        var to: UInt64
    }

    package init(meshInflight: Int = 0) {
        self.meshInflight = meshInflight
        roundTrips.reserveCapacity(1 << 16)
    }

    /// Starts (or stops) keeping samples: the bench records only its measured window.
    package func setRecording(_ on: Bool) {
        isRecording.store(on, ordering: .relaxed)
        lock.withLock {
            recording = on
            if on {
                roundTrips.removeAll(keepingCapacity: true)
                latencies.removeAll(keepingCapacity: true)
            }
        }
    }

    /// Heartbeats received and sent, and heartbeat rounds, during the recorded windows.
    package var counts: (received: UInt64, sent: UInt64, rounds: UInt64) {
        (received.load(ordering: .relaxed), sent.load(ordering: .relaxed), rounds.load(ordering: .relaxed))
    }

    @inline(__always) func heartbeatReceived() {
        if isRecording.load(ordering: .relaxed) { received.add(1, ordering: .relaxed) }
    }

    @inline(__always) func heartbeatSent() {
        if isRecording.load(ordering: .relaxed) { sent.add(1, ordering: .relaxed) }
    }

    @inline(__always) func roundSent() {
        if isRecording.load(ordering: .relaxed) { rounds.add(1, ordering: .relaxed) }
    }

    /// The samples of the window: round trips and delivery latencies, in nanoseconds.
    package func samples() -> (roundTrips: [UInt64], latencies: [UInt64]) {
        lock.withLock { (roundTrips, latencies) }
    }

    func roundTrip(_ ns: UInt64) {
        lock.withLock { if recording { roundTrips.append(ns) } }
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
}
