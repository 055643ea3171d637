import CCoreLock

/// The lock of the cluster logic's shared state (the membership, the keyring): a pthread mutex
/// from `CCoreLock`, held through an opaque handle this object owns and frees in its deinit.
package final class CoreLock: @unchecked Sendable {
    private let lock: OpaquePointer

    package init() { lock = ccorelock_new() }

    deinit { ccorelock_free(lock) }

    /// Runs `body` with the lock held. Keep it short; never do I/O inside.
    @inline(__always)
    package func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        ccorelock_lock(lock)
        defer { ccorelock_unlock(lock) }
        return try body()
    }
}

/// A value guarded by a `CoreLock`.
package final class CoreLocked<Value: Sendable>: @unchecked Sendable {
    private let lock = CoreLock()
    private var value: Value

    package init(_ value: Value) { self.value = value }

    @inline(__always)
    package func withLock<T, E: Error>(_ body: (inout Value) throws(E) -> T) throws(E) -> T {
        try lock.withLock { () throws(E) -> T in try body(&value) }
    }
}
