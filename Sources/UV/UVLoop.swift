import CLibUV
import Glibc

/// A libuv event loop running on a thread of its own.
///
/// Any thread may hand the loop work with `execute(_:)`: the work is queued under a lock and the
/// loop is woken with `uv_async_send`; several sends may coalesce into one wake-up, so the
/// callback drains the whole queue. Everything else on the loop (timers, TCP) must be used on
/// the loop's thread only, which is why those types are not `Sendable`.
///
/// `shutdown()` runs the work already queued, closes every handle still open with `uv_close`,
/// cancels thread-pool work that has not started, lets the close callbacks free the handles,
/// closes the loop (`uv_loop_close` must return 0: `closeStatus`) and joins the thread.
///
/// SIGPIPE: the loop thread blocks SIGPIPE in its own signal mask when it starts. On Linux libuv
/// writes to sockets with plain `write`, and a write to a connection the peer has closed raises
/// SIGPIPE, whose default action ends the whole process. The kernel directs that signal at the
/// writing thread; blocked there, it stays pending on that thread (and is dropped when the thread
/// ends) while the write fails with `EPIPE`, which the connection reports like any write error.
/// The process-wide disposition is left as the application set it.
///
/// Ownership:
/// - `loop` (the `uv_loop_t`) is allocated in `init`, closed on the loop thread when `uv_run`
///   returns, and freed in `deinit`.
/// - `async` (the `uv_async_t`) is allocated in `init` and freed in its close callback during
///   shutdown. Its `data` is this object, unretained: the thread keeps the object alive. Every
///   `uv_async_send` happens under the `shared` lock while the phase is not `.stopped`, and the
///   phase becomes `.stopped` under that lock before `uv_close`: no send can reach it once it is
///   closing or freed.
/// - `readBuffer`, the one read buffer of all the loop's connections, is allocated on first use
///   and freed in `deinit`.
/// - Thread-pool requests (`uv_work_t`) are owned by `runInThreadPool`; see there.
/// - The thread holds a retained reference to this object from `init` until it ends.
public final class UVLoop: @unchecked Sendable {
    private enum Phase { case running, stopping, stopped }

    private struct Shared {
        var queue: [@Sendable () -> Void] = []
        var wakePending = false
        var phase = Phase.running
        var closeStatus: Int32 = 1
    }

    let loop: UnsafeMutablePointer<uv_loop_t>
    private let async: UnsafeMutablePointer<uv_async_t>
    private let shared = UVLocked(Shared())
    private let thread: UnsafeMutablePointer<uv_thread_t>
    private var loopThread = uv_thread_t()  // written by the loop thread: before `init` returns, and as it ends
    private let started: UnsafeMutablePointer<uv_sem_t>
    private var joined = false  // guarded by joinLock
    private let joinLock = UVMutex()
    /// Loop-thread state: set once shutdown has begun closing handles; no new handles then.
    var isClosingHandles = false
    /// Loop-thread state: thread-pool work not yet completed, by identity, for cancellation at
    /// shutdown.
    private var poolWork: [ObjectIdentifier: PoolWork] = [:]
    /// The read buffer shared by every connection of this loop (see `sharedReadBuffer()`).
    private var readBuffer: UnsafeMutableRawBufferPointer?
    /// How many read buffers this loop has allocated (at most one). Loop thread only.
    package private(set) var readBuffersAllocated = 0
    /// The name given at `init`, for diagnostics.
    public let name: String
    /// What `uv_loop_close` returned at shutdown: 0 when nothing was left open. Read it after
    /// `shutdown()` returns.
    public var closeStatus: Int32 { shared.withLock { $0.closeStatus } }

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
        readBuffer?.deallocate()
        loop.deallocate()
        thread.deallocate()
        started.deallocate()
    }

    private func runOnThread() {
        var pipe = sigset_t()
        sigemptyset(&pipe)
        sigaddset(&pipe, SIGPIPE)
        let masked = pthread_sigmask(SIG_BLOCK, &pipe, nil)
        precondition(masked == 0, "pthread_sigmask: \(masked)")
        loopThread = uv_thread_self()
        uv_sem_post(started)
        uv_run(loop, UV_RUN_DEFAULT)
        var status = uv_loop_close(loop)
        if status != 0 {
            // A close callback is still pending: let it run, then try again once.
            uv_run(loop, UV_RUN_NOWAIT)
            status = uv_loop_close(loop)
        }
        shared.withLock { $0.closeStatus = status }  // under the lock: read from any thread
        // A thread created after this one ends may get its id back (pthread ids are reused): no
        // thread is this loop's from here on, or `executeAndWait` on such a thread would run its
        // work itself after the shutdown (seen once in a full test run). Joining the thread
        // orders this write before anything the joiner does next.
        loopThread = uv_thread_t()
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

    /// Hands `work` to the loop thread, from any thread, at any time. Returns false (and drops
    /// the work) once shutdown has begun; after it has returned true the work runs, before the
    /// loop closes.
    @discardableResult
    public func execute(_ work: @escaping @Sendable () -> Void) -> Bool {
        shared.withLock { s in
            guard s.phase == .running else { return false }
            s.queue.append(work)
            if !s.wakePending {
                s.wakePending = true
                // Under the lock: `closeEverything` closes `async` only after setting `.stopped`
                // under this lock. One send per drain, so the lock is rarely held across it.
                uv_async_send(async)
            }
            return true
        }
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
        shared.withLock { s in
            guard s.phase == .running else { return }
            s.phase = .stopping
            uv_async_send(async)  // under the lock, as in `execute`
        }
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
        // Thread-pool work that has not started is cancelled (its completion reports ECANCELED);
        // work already running finishes and reports its outcome.
        for work in poolWork.values { work.cancel() }
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

extension UVLoop {
    /// The read buffer every connection of this loop reads into, allocated on first use.
    ///
    /// One buffer serves all connections because a loop reads one stream at a time, on its one
    /// thread: libuv calls a stream's alloc callback, reads into the buffer and calls its read
    /// callback before it reads from anything else, and the connection hands the bytes to its
    /// owner as a `RawSpan`, which cannot outlive that callback. So the buffer is free again
    /// before the next alloc callback, whichever connection that is for.
    fileprivate func poolWorkCompleted(_ item: PoolWork) {
        poolWork[ObjectIdentifier(item)] = nil
    }

    func sharedReadBuffer() -> UnsafeMutableRawBufferPointer {
        if let readBuffer { return readBuffer }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: UVTCPConnection.readBufferSize, alignment: 16)
        readBuffer = buffer
        readBuffersAllocated += 1
        return buffer
    }

    /// Runs `work` on libuv's thread pool (`uv_queue_work`) and then `completion` on the loop
    /// thread, exactly once: with the work's result, or with nil when the work did not run
    /// because the loop is shutting down (cancelled before it started, or asked for after
    /// shutdown began). Loop thread only. Shutdown waits for work that has started.
    ///
    /// Ownership: one `uv_work_t` is allocated per call; its `data` holds a retained `PoolWork`,
    /// which the loop also lists in `poolWork` until it completes. libuv calls the after-work
    /// callback exactly once (with `ECANCELED` when `uv_cancel` took the request back); that
    /// callback takes the retained reference back, removes the entry, frees the request and
    /// only then calls `completion`.
    func runInThreadPool<T: Sendable>(_ work: @escaping @Sendable () -> T, completion: @escaping (T?) -> Void) {
        preconditionInEventLoop()
        let result = UVLocked<T?>(nil)
        let item = PoolWork(
            loop: self,
            run: { result.withLock { $0 = work() } },
            finish: { ran in completion(ran ? result.withLock { $0 } : nil) })
        let req = UnsafeMutablePointer<uv_work_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(item).toOpaque()
        let status = uv_queue_work(loop, req, { req in
            // On a pool thread. The request stays valid until the after-work callback.
            guard let req, let data = req.pointee.data else { return }
            Unmanaged<PoolWork>.fromOpaque(data).takeUnretainedValue().runUnlessCancelled()
        }, { req, status in
            guard let req, let data = req.pointee.data else { return }
            let item = Unmanaged<PoolWork>.fromOpaque(data).takeRetainedValue()
            req.deallocate()
            item.complete(status: status)
        })
        precondition(status == 0, "uv_queue_work cannot fail with a work callback: \(status)")
        item.req = req
        poolWork[ObjectIdentifier(item)] = item
        // Asked for during shutdown: queued all the same, so that the completion runs from the
        // loop, then cancelled at once (a pool thread that took it already skips the work).
        if isClosingHandles { item.cancel() }
    }
}

/// One piece of thread-pool work (see `UVLoop.runInThreadPool`).
final class PoolWork: @unchecked Sendable {
    private let loop: UVLoop
    private let run: @Sendable () -> Void
    private let finish: (Bool) -> Void  // loop thread only
    /// The queued request, until the after-work callback. Loop thread only.
    fileprivate var req: UnsafeMutablePointer<uv_work_t>?
    /// Written on the loop thread, read on the pool thread.
    private let state = UVLocked<(cancelled: Bool, ran: Bool)>((false, false))

    init(loop: UVLoop, run: @escaping @Sendable () -> Void, finish: @escaping (Bool) -> Void) {
        self.loop = loop
        self.run = run
        self.finish = finish
    }

    /// Loop thread, at shutdown: skips the work if it has not started, and takes the request
    /// back from the pool's queue if it is still there (`uv_cancel`; EBUSY when it is running
    /// or done, which is fine).
    func cancel() {
        state.withLock { $0.cancelled = true }
        if let req { _ = uv_cancel(clibuv_work_as_req(req)) }
    }

    /// Pool thread.
    func runUnlessCancelled() {
        let go = state.withLock { s -> Bool in
            guard !s.cancelled else { return false }
            s.ran = true
            return true
        }
        if go { run() }
    }

    /// Loop thread, once, from the after-work callback.
    func complete(status: Int32) {
        req = nil
        loop.poolWorkCompleted(self)
        let ran = state.withLock { $0.ran }
        finish(ran && status == 0)
    }
}

/// The process's resource use, from `uv_getrusage`.
public struct UVResourceUsage: Sendable, Equatable {
    /// User plus system CPU time of all threads, in seconds.
    public var cpuSeconds: Double
    /// Of which in the kernel (system time), in seconds.
    public var systemSeconds: Double = 0
    /// Peak resident set size, in KiB.
    public var maxRSSKiB: Int

    /// Reads the current figures; nil if libuv cannot.
    public static func current() -> UVResourceUsage? {
        var usage = uv_rusage_t()
        guard uv_getrusage(&usage) == 0 else { return nil }
        let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
        let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return UVResourceUsage(cpuSeconds: user + system, systemSeconds: system, maxRSSKiB: Int(usage.ru_maxrss))
    }
}

/// Process-wide settings of the operating system that the libuv layer's users need.
public enum UVProcess {
    /// Has the kernel send `signal` to this process when the process that started it ends
    /// (Linux's `PR_SET_PDEATHSIG`): a helper process started by a command does not outlive it,
    /// even when the command is killed (SIGKILL, or SIGPIPE at its default disposition when its
    /// output pipe closes). False when the parent had already ended, or the call failed.
    public static func signalWhenParentExits(_ signal: Int32) -> Bool {
        clibuv_signal_when_parent_exits(signal, getppid()) == 0
    }

    /// The process's descriptor limits (`RLIMIT_NOFILE`): soft (what applies) and hard (the
    /// most the soft one may be raised to); `UInt64.max` for no limit. nil if unreadable.
    public static func descriptorLimits() -> (soft: UInt64, hard: UInt64)? {
        var soft: UInt64 = 0
        var hard: UInt64 = 0
        guard clibuv_nofile_limits(&soft, &hard) == 0 else { return nil }
        return (soft, hard)
    }

    /// Raises the soft descriptor limit to the hard one (a systemd service starts at 1024, its
    /// hard limit far higher). Returns the limits before and after.
    @discardableResult
    public static func raiseDescriptorLimit() throws(UVError) -> (before: UInt64, after: UInt64) {
        guard let limits = descriptorLimits() else { throw UVError(code: UVError.invalidArgument, operation: "getrlimit(RLIMIT_NOFILE)") }
        guard limits.soft < limits.hard else { return (limits.soft, limits.soft) }
        let status = clibuv_set_nofile_soft(limits.hard)
        guard status == 0 else { throw UVError(code: status, operation: "setrlimit(RLIMIT_NOFILE, \(limits.hard))") }
        return (limits.soft, descriptorLimits()?.soft ?? limits.hard)
    }

    /// Lets go of the resident pages of the process's code that nothing wrote (the executable's
    /// and its libraries' read-only code mappings; see `clibuv_release_code_pages`): the pages stay
    /// in the page cache, and code that runs again faults its page back in. Called once a
    /// long-running process has started, what start-up alone touched stops counting in its
    /// resident set. Returns the KiB let go.
    public static func releaseCodePages() throws(UVError) -> Int {
        let kib = clibuv_release_code_pages()
        guard kib >= 0 else { throw UVError(code: Int32(kib), operation: "release code pages") }
        return kib
    }
}
