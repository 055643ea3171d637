import CLibUV

/// A lock on libuv's `uv_mutex_t` (a pthread mutex). Used in place of `Synchronization.Mutex`,
/// which Swift 6.3.1's thread sanitizer reports false races in.
///
/// Ownership: `mutex` is allocated and initialised in `init` and destroyed and freed in
/// `deinit`; it never leaves this object.
public final class UVMutex: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<uv_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        let status = uv_mutex_init(mutex)
        precondition(status == 0, "uv_mutex_init failed: \(status)")
    }

    deinit {
        uv_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the lock held. Keep it short; never do I/O inside.
    @inline(__always)
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        uv_mutex_lock(mutex)
        defer { uv_mutex_unlock(mutex) }
        return try body()
    }
}

/// A value guarded by a `UVMutex`, safe to share across threads.
public final class UVLocked<Value: Sendable>: @unchecked Sendable {
    private let lock = UVMutex()
    private var value: Value

    public init(_ value: Value) { self.value = value }

    /// Runs `body` with exclusive access to the value.
    @inline(__always)
    public func withLock<T, E: Error>(_ body: (inout Value) throws(E) -> T) throws(E) -> T {
        try lock.withLock { () throws(E) -> T in try body(&value) }
    }
}

/// A counting semaphore on libuv's `uv_sem_t`.
///
/// Ownership: `sem` is allocated and initialised in `init`, destroyed and freed in `deinit`.
public final class UVSemaphore: @unchecked Sendable {
    private let sem: UnsafeMutablePointer<uv_sem_t>

    public init(value: UInt32 = 0) {
        sem = .allocate(capacity: 1)
        precondition(uv_sem_init(sem, value) == 0, "uv_sem_init failed")
    }

    deinit {
        uv_sem_destroy(sem)
        sem.deallocate()
    }

    public func signal() { uv_sem_post(sem) }

    public func wait() { uv_sem_wait(sem) }
}
