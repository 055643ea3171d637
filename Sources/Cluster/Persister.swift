import ClusterCore
import UV

/// Writes the election core's durable state off the loop: the temporary file, its fsync, the
/// rename and the directory's fsync run on libuv's thread pool, so that a slow disk delays only
/// what depends on the write (the core withholds it), never the loop's heartbeats. The core keeps
/// at most one write in flight. Loop thread only.
final class Persister {
    let store: DurableStateStore
    private let loop: UVLoop
    /// Test hook: runs on the pool thread before the first fsync (a slow or stuck disk).
    private let beforeSync: (@Sendable () -> Void)?

    init(store: DurableStateStore, loop: UVLoop, beforeSync: (@Sendable () -> Void)?) {
        self.store = store
        self.loop = loop
        self.beforeSync = beforeSync
    }

    /// Starts writing `state`; `completion` runs later on the loop thread, with nil once the
    /// state is durable or with the reason it is not. Never calls `completion` before returning.
    func write(_ state: DurableElectionState, completion: @escaping (ClusterError?) -> Void) {
        let bytes: [UInt8]
        do {
            bytes = try store.encode(state)
        } catch {
            // Reported from the loop's next pass, as a failed write would be.
            nonisolated(unsafe) let report = completion
            _ = loop.execute { report(error) }
            return
        }
        let path = store.path
        UVFile.writeAtomically(path: path, bytes: bytes, on: loop, beforeSync: beforeSync) { error in
            completion(error.map { .storage("cannot write \(path): \($0)") })
        }
    }
}
