import CLibUV

/// A libuv timer: one-shot or repeating, stoppable and re-armable. Loop thread only.
///
/// Ownership: `timer` is allocated in `init` and freed in the close callback (`didClose`).
public final class UVTimer: UVHandle {
    private let timer: UnsafeMutablePointer<uv_timer_t>
    private var callback: (() -> Void)?
    /// Fixed-schedule mode (`startPeriodic`): the loop time the next tick is due at, and the period.
    private var periodicDueMs: UInt64 = 0
    private var periodicMs: UInt64 = 0
    /// Ticks of a fixed schedule that the loop was too late for, and so skipped.
    public private(set) var missedTicks: UInt64 = 0
    /// On a fixed schedule (`startPeriodic`), the loop time in milliseconds the next tick is due at.
    public var nextDueMs: UInt64 { periodicDueMs }

    /// Creates a stopped timer on `loop`. Must be called on the loop thread.
    public init(loop: UVLoop) throws(UVError) {
        try UVHandle.checkLoopOpen(loop, "uv_timer_init")
        timer = .allocate(capacity: 1)
        let status = uv_timer_init(loop.loop, timer)
        if status < 0 {
            timer.deallocate()
            throw UVError(code: status, operation: "uv_timer_init")
        }
        super.init(loop: loop, handle: clibuv_timer_as_handle(timer))
        retainUntilClosed()
    }

    /// Arms the timer: `callback` runs after `timeoutMs`, then every `repeatMs` if that is not 0.
    /// Re-arming a running timer replaces its schedule and callback.
    public func start(timeoutMs: UInt64, repeatMs: UInt64 = 0, _ callback: @escaping () -> Void) throws(UVError) {
        loop.preconditionInEventLoop()
        guard !isClosing else { throw UVError(code: UVError.invalidArgument, operation: "uv_timer_start on a closed timer") }
        self.callback = callback
        let status = uv_timer_start(timer, { t in
            guard let t, let data = t.pointee.data else { return }
            let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVTimer.self)
            me.callback?()
        }, timeoutMs, repeatMs)
        try UVError.check(status, "uv_timer_start")
    }

    /// Arms the timer on a fixed schedule: `callback` runs at `firstTimeoutMs` from the loop's
    /// time, then at every `periodMs` after that, each tick due one period after the previous one
    /// was due (not after it ran). libuv's own repeat counts from the loop time at which a
    /// callback ran, so on a busy loop the timers that ran in one pass stay aligned for good and
    /// their ticks merge into bursts; a fixed schedule keeps the phases apart. A tick the loop
    /// is a whole period late for is skipped (`missedTicks`), never run in a burst.
    public func startPeriodic(firstTimeoutMs: UInt64, periodMs: UInt64, _ callback: @escaping () -> Void) throws(UVError) {
        loop.preconditionInEventLoop()
        guard !isClosing else { throw UVError(code: UVError.invalidArgument, operation: "uv_timer_start on a closed timer") }
        periodicMs = max(1, periodMs)
        periodicDueMs = uv_now(loop.loop) &+ firstTimeoutMs
        self.callback = callback
        try UVError.check(armPeriodic(timeoutMs: firstTimeoutMs), "uv_timer_start")
    }

    private func armPeriodic(timeoutMs: UInt64) -> Int32 {
        uv_timer_start(timer, { t in
            guard let t, let data = t.pointee.data else { return }
            let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVTimer.self)
            me.periodicTick()
        }, timeoutMs, 0)
    }

    private func periodicTick() {
        let now = uv_now(loop.loop)
        periodicDueMs &+= periodicMs
        while periodicDueMs <= now {
            periodicDueMs &+= periodicMs
            missedTicks &+= 1
        }
        // Re-armed before the callback runs, which may stop or close the timer.
        _ = armPeriodic(timeoutMs: periodicDueMs - now)
        callback?()
    }

    /// Stops the timer; it can be started again.
    public func stop() {
        loop.preconditionInEventLoop()
        guard !isClosing else { return }
        uv_timer_stop(timer)
    }

    /// Restarts a repeating timer from now with its repeat interval (`uv_timer_again`).
    public func again() throws(UVError) {
        loop.preconditionInEventLoop()
        guard !isClosing else { return }
        try UVError.check(uv_timer_again(timer), "uv_timer_again")
    }

    /// True while the timer is armed.
    public var isActive: Bool { !isClosing && uv_is_active(handle) != 0 }

    /// The repeat interval in milliseconds (0: one-shot).
    public var repeatMs: UInt64 {
        get { isClosing ? 0 : uv_timer_get_repeat(timer) }
        set { if !isClosing { uv_timer_set_repeat(timer, newValue) } }
    }

    override func willClose() {
        uv_timer_stop(timer)
        callback = nil
    }

    override func didClose() {
        timer.deallocate()
    }
}
