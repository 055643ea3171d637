import CLibUV

/// A libuv event loop running on a thread of its own.
///
/// Any thread may hand the loop work with `execute(_:)`: the work is queued under a lock and the
/// loop is woken with `uv_async_send`; several sends may coalesce into one wake-up, so the
/// callback drains the whole queue. Everything else on the loop (timers, TCP) must be used on
/// the loop's thread only, which is why those types are not `Sendable`.
///
/// `shutdown()` runs the work already queued, closes every handle still open with `uv_close`,
/// lets their close callbacks free them, closes the loop (`uv_loop_close` must return 0:
/// `closeStatus`) and joins the thread.
///
/// Ownership:
/// - `loop` (the `uv_loop_t`) is allocated in `init`, closed on the loop thread when `uv_run`
///   returns, and freed in `deinit`.
/// - `async` (the `uv_async_t`) is allocated in `init` and freed in its close callback during
///   shutdown. Its `data` is this object, unretained: the thread keeps the object alive.
/// - The thread holds a retained reference to this object from `init` until it ends.
public final class UVLoop: @unchecked Sendable {
    private enum Phase { case running, stopping, stopped }

    private struct Shared {
        var queue: [@Sendable () -> Void] = []
        var wakePending = false
        var phase = Phase.running
    }

    let loop: UnsafeMutablePointer<uv_loop_t>
    private let async: UnsafeMutablePointer<uv_async_t>
    private let shared = UVLocked(Shared())
    private let thread: UnsafeMutablePointer<uv_thread_t>
    private var loopThread = uv_thread_t()  // written once by the loop thread before `init` returns
    private let started: UnsafeMutablePointer<uv_sem_t>
    private var joined = false  // guarded by joinLock
    private let joinLock = UVMutex()
    /// Loop-thread state: set once shutdown has begun closing handles; no new handles then.
    var isClosingHandles = false
    /// The name given at `init`, for diagnostics.
    public let name: String
    /// What `uv_loop_close` returned at shutdown: 0 when nothing was left open. Read it after
    /// `shutdown()` returns.
    public private(set) var closeStatus: Int32 = 1

    /// Starts a loop on a new thread.
    public init(name: String = "uv-loop") throws(UVError) {
        self.name = name
        loop = .allocate(capacity: 1)
        async = .allocate(capacity: 1)
        thread = .allocate(capacity: 1)
        started = .allocate(capacity: 1)
        do {
            try UVError.check(uv_loop_init(loop), "uv_loop_init")
        } catch {
            loop.deallocate(); async.deallocate(); thread.deallocate(); started.deallocate()
            throw error
        }
        let status = uv_async_init(loop, async) { handle in
            guard let handle, let data = handle.pointee.data else { return }
            Unmanaged<UVLoop>.fromOpaque(data).takeUnretainedValue().drain()
        }
        precondition(status == 0, "uv_async_init cannot fail on a fresh loop: \(status)")
        async.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        precondition(uv_sem_init(started, 0) == 0, "uv_sem_init")
        let retained = Unmanaged.passRetained(self).toOpaque()
        let created = uv_thread_create(thread, { arg in
            let me = Unmanaged<UVLoop>.fromOpaque(arg!).takeRetainedValue()
            me.runOnThread()
        }, retained)
        precondition(created == 0, "uv_thread_create failed: \(created)")
        uv_sem_wait(started)
        uv_sem_destroy(started)
    }

    deinit {
        // Only reached after the thread has ended (it holds a reference until then).
        loop.deallocate()
        thread.deallocate()
        started.deallocate()
    }

    private func runOnThread() {
        loopThread = uv_thread_self()
        uv_sem_post(started)
        uv_run(loop, UV_RUN_DEFAULT)
        var status = uv_loop_close(loop)
        if status != 0 {
            // A close callback is still pending: let it run, then try again once.
            uv_run(loop, UV_RUN_NOWAIT)
            status = uv_loop_close(loop)
        }
        closeStatus = status
    }

    /// True on the loop's own thread.
    public var inEventLoop: Bool {
        var me = uv_thread_self()
        var owner = loopThread  // a copy: `&loopThread` would be a modifying access
        return uv_thread_equal(&owner, &me) != 0
    }

    /// Traps unless called on the loop's thread.
    public func preconditionInEventLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(inEventLoop, "not on the event loop thread of \(name)", file: file, line: line)
    }

    /// Hands `work` to the loop thread, from any thread. Returns false (and drops the work) once
    /// shutdown has begun.
    @discardableResult
    public func execute(_ work: @escaping @Sendable () -> Void) -> Bool {
        let wake: Bool? = shared.withLock { s in
            guard s.phase == .running else { return nil }
            s.queue.append(work)
            if s.wakePending { return false }
            s.wakePending = true
            return true
        }
        guard let wake else { return false }
        if wake { uv_async_send(async) }
        return true
    }

    /// Runs `work` on the loop thread and waits for its result (at once when called on the loop
    /// thread). Returns nil, without running it, once shutdown has begun.
    public func executeAndWait<T: Sendable>(_ work: @escaping @Sendable () -> T) -> T? {
        if inEventLoop { return work() }
        let result = UVLocked<T?>(nil)
        let done = UVSemaphore()
        guard execute({
            let value = work()
            result.withLock { $0 = value }
            done.signal()
        }) else { return nil }
        done.wait()
        return result.withLock { $0 }
    }

    /// The loop's cached time in milliseconds (`uv_now`). Loop thread only.
    public var nowMs: UInt64 {
        preconditionInEventLoop()
        return uv_now(loop)
    }

    /// A monotonic clock in nanoseconds (`uv_hrtime`), from any thread.
    public static func hrtimeNs() -> UInt64 { uv_hrtime() }

    /// The handles open on this loop, the loop's own wake-up handle not counted. Loop thread only.
    public func openHandleCount() -> Int {
        preconditionInEventLoop()
        var count = 0
        withUnsafeMutablePointer(to: &count) { countPtr in
            uv_walk(loop, { handle, arg in
                guard let handle, uv_is_closing(handle) == 0 else { return }
                arg!.assumingMemoryBound(to: Int.self).pointee += 1
            }, countPtr)
        }
        return count - (uv_is_closing(clibuv_async_as_handle(async)) == 0 ? 1 : 0)
    }

    /// Stops the loop: runs the work already queued, closes every open handle, closes the loop and
    /// joins its thread. Idempotent. Must not be called on the loop thread.
    public func shutdown() {
        precondition(!inEventLoop, "shutdown() would join its own thread")
        let wake = shared.withLock { s -> Bool in
            guard s.phase == .running else { return false }
            s.phase = .stopping
            return true
        }
        if wake { uv_async_send(async) }
        joinLock.withLock {
            guard !joined else { return }
            uv_thread_join(thread)
            joined = true
        }
    }

    private func drain() {
        let (work, stopping) = shared.withLock { s -> ([@Sendable () -> Void], Bool) in
            let work = s.queue
            s.queue.removeAll(keepingCapacity: true)
            s.wakePending = false
            return (work, s.phase == .stopping)
        }
        for item in work { item() }
        if stopping { closeEverything() }
    }

    private func closeEverything() {
        shared.withLock { s in
            s.phase = .stopped
            s.queue.removeAll()
        }
        isClosingHandles = true
        // Close the wrappers first (their close callbacks free them), then the wake-up handle.
        uv_walk(loop, { handle, _ in
            guard let handle, uv_is_closing(handle) == 0, let data = handle.pointee.data else { return }
            if handle.pointee.type == UV_ASYNC { return }
            Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue().close()
        }, nil)
        uv_close(clibuv_async_as_handle(async)) { handle in
            UnsafeMutableRawPointer(handle!).assumingMemoryBound(to: uv_async_t.self).deallocate()
        }
    }
}

/// The process's resource use, from `uv_getrusage`.
public struct UVResourceUsage: Sendable, Equatable {
    /// User plus system CPU time of all threads, in seconds.
    public var cpuSeconds: Double
    /// Peak resident set size, in KiB.
    public var maxRSSKiB: Int

    /// Reads the current figures; nil if libuv cannot.
    public static func current() -> UVResourceUsage? {
        var usage = uv_rusage_t()
        guard uv_getrusage(&usage) == 0 else { return nil }
        let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return UVResourceUsage(cpuSeconds: user + system, maxRSSKiB: Int(usage.ru_maxrss))
    }
}
