import CLibUV

/// A libuv timer: one-shot or repeating, stoppable and re-armable. Loop thread only.
///
/// Ownership: `timer` is allocated in `init` and freed in the close callback (`didClose`).
public final class UVTimer: UVHandle {
    private let timer: UnsafeMutablePointer<uv_timer_t>
    private var callback: (() -> Void)?

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
