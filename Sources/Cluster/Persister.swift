import ClusterCore
import UV

/// Writes the election core's durable state off the loop: one slot of the state file, written in
/// place and synced (`DurableStateStore`, `StateSlots`), on libuv's thread pool, so that a slow
/// disk delays only what depends on the write (the core withholds it), never the loop's
/// heartbeats. The core keeps at most one write in flight. Loop thread only.
final class Persister {
    let store: DurableStateStore
    private let loop: UVLoop
    /// Test hook: runs on the pool thread before the sync (a slow or stuck disk).
    private let beforeSync: (@Sendable () -> Void)?
    /// The sequence of the newest copy on disk: the next write is the one after it, into the
    /// other slot. A failed write does not advance it (the retry rewrites the same slot, never
    /// the one holding the last good copy).
    private var sequence: UInt64

    init(store: DurableStateStore, sequence: UInt64, loop: UVLoop, beforeSync: (@Sendable () -> Void)?) {
        self.store = store
        self.sequence = sequence
        self.loop = loop
        self.beforeSync = beforeSync
    }

    /// Starts writing `state`; `completion` runs later on the loop thread, with nil once the
    /// state is durable or with the reason it is not. Never calls `completion` before returning.
    func write(_ state: DurableElectionState, completion: @escaping (ClusterError?) -> Void) {
        let next = sequence + 1
        let image: [UInt8]
        do throws(ClusterError) {
            let payload = try store.payload(state)
            guard let slot = StateSlots.image(payload: payload, sequence: next) else {
                throw ClusterError.storage("the election state is \(payload.count) bytes, more than a slot holds (\(StateSlots.maxPayload))")
            }
            image = slot
        } catch {
            // Reported from the loop's next pass, as a failed write would be.
            nonisolated(unsafe) let report = completion
            _ = loop.execute { report(error) }
            return
        }
        let path = store.path
        UVFile.writeInPlace(
            path: path, offset: StateSlots.slot(for: next) * StateSlots.slotSize, bytes: image, size: StateSlots.fileSize,
            on: loop, beforeSync: beforeSync
        ) { [self] error in
            if error == nil { sequence = next }
            completion(error.map { .storage("cannot write \(path): \($0)") })
        }
    }
}
