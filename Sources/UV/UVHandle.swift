import CLibUV

/// The common part of every libuv handle wrapper. Loop thread only.
///
/// Lifetime (as uvloop and uvw do it): after a successful `uv_*_init`, `handle.data` holds a
/// retained reference to the wrapper, so the wrapper lives at least until libuv is done with the
/// handle. `close()` calls `uv_close`; the close callback releases that reference and calls
/// `didClose()`, where the subclass frees its uv struct. A handle is never freed before its
/// close callback. Whatever is still open at loop shutdown is closed by `UVLoop`.
public class UVHandle {
    /// The loop this handle lives on.
    public let loop: UVLoop
    /// Points at the subclass's uv struct, viewed as its `uv_handle_t` prefix. Valid until the
    /// close callback has run.
    let handle: UnsafeMutablePointer<uv_handle_t>
    /// True once `close()` was called (the close callback may still be pending). Loop thread
    /// only, read by every write and queue check: no dynamic exclusivity check.
    @exclusivity(unchecked) public private(set) var isClosing = false
    /// True once the close callback has run: the uv struct is freed.
    public private(set) var isClosed = false

    init(loop: UVLoop, handle: UnsafeMutablePointer<uv_handle_t>) {
        self.loop = loop
        self.handle = handle
    }

    /// Call right after the handle's `uv_*_init` succeeded.
    final func retainUntilClosed() {
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// Closes the handle with `uv_close`. Idempotent. Callbacks of the handle do not run after
    /// the close callback.
    public func close() {
        loop.preconditionInEventLoop()
        guard !isClosing else { return }
        isClosing = true
        willClose()
        uv_close(handle) { handle in
            guard let handle, let data = handle.pointee.data else { return }
            handle.pointee.data = nil
            let me = Unmanaged<UVHandle>.fromOpaque(data).takeRetainedValue()
            me.isClosed = true
            me.didClose()
        }
    }

    /// Called by `close()` before `uv_close`. Subclasses stop their activity here.
    func willClose() {}

    /// Called from the close callback. Subclasses free their uv struct here (and report).
    func didClose() {}

    /// Throws when the loop no longer accepts new handles (it is shutting down).
    static func checkLoopOpen(_ loop: UVLoop, _ operation: String) throws(UVError) {
        loop.preconditionInEventLoop()
        if loop.isClosingHandles { throw UVError(code: UVError.canceled, operation: operation + " (loop is shutting down)") }
    }
}

@available(*, unavailable)
extension UVHandle: Sendable {}
