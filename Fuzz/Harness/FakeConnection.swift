import Cluster
import UV

/// A connection without a socket, handed to the runtime with `ElectionManager.accept(_:)`. It
/// keeps what the runtime writes, queued until the harness drains it (the peer reading), and
/// hands the harness the callbacks the runtime gave `startReading`, through which reads and the
/// end of the stream reach the runtime as they do from a socket's read callback. It behaves as
/// `UVTCPConnection` does: no reads while paused or after a close has begun, no writes after it.
/// Loop thread only.
final class FakeConnection: LinkConnection {
    enum Closing { case open, flushing, closed }

    /// `open`, then `flushing` after `closeAfterFlush`, `closed` after `close()`.
    private(set) var closing = Closing.open
    /// True from `closeAfterFlush` or `close()` on, whatever came first.
    private(set) var closeRequested = false
    /// Every byte the runtime wrote, in order.
    private(set) var written: [UInt8] = []
    /// Written and not drained yet: what `writeQueueSize` reports.
    private(set) var queued = 0
    /// The most that was ever queued.
    private(set) var maxQueued = 0
    /// Writes tried after the close began (refused, as `UVTCPConnection` refuses them).
    private(set) var writesAfterClose = 0
    /// Reads the runtime paused.
    private(set) var pauses = 0
    private(set) var isReading = false
    private var onRead: ((RawSpan) -> Void)?
    private var onEnd: ((UVError?) -> Void)?
    private var drainArmed = false

    var onWriteDrained: (() -> Void)?
    var writeLowWaterMark = 0
    var onClose: (() -> Void)?
    var peerAddress: UVSocketAddress? { nil }

    // MARK: What the runtime calls

    func startReading(onRead: @escaping (RawSpan) -> Void, onEnd: @escaping (UVError?) -> Void) throws(UVError) {
        guard !closeRequested else { throw UVError(code: UVError.notConnected, operation: "read on a closed connection") }
        self.onRead = onRead
        self.onEnd = onEnd
        isReading = true
    }

    func pauseReading() {
        guard !closeRequested, isReading else { return }
        isReading = false
        pauses += 1
    }

    func resumeReading() {
        guard !closeRequested, !isReading, onRead != nil else { return }
        isReading = true
    }

    func write(_ bytes: [UInt8]) throws(UVError) {
        guard !closeRequested else {
            writesAfterClose += 1
            throw UVError(code: UVError.notConnected, operation: "write")
        }
        guard !bytes.isEmpty else { return }
        written += bytes
        queued += bytes.count
        maxQueued = max(maxQueued, queued)
        drainArmed = true
    }

    var writeQueueSize: Int { closing == .closed ? 0 : queued }

    func close() {
        guard closing != .closed else { return }
        closing = .closed
        closeRequested = true
        stopReading()
        onWriteDrained = nil
    }

    func closeAfterFlush(timeoutMs: UInt64) {
        guard !closeRequested else { return }
        closing = .flushing
        closeRequested = true
        stopReading()
    }

    func setSendBufferSize(_ bytes: Int32) throws(UVError) {}
    func setReceiveBufferSize(_ bytes: Int32) throws(UVError) {}

    private func stopReading() {
        isReading = false
        onRead = nil
        onEnd = nil
    }

    // MARK: What the harness calls

    /// One read, delivered as the socket's read callback delivers it: only while reading, and
    /// never empty. Returns false when it was not delivered.
    @discardableResult
    func deliver(_ bytes: [UInt8]) -> Bool {
        guard isReading, let onRead, !bytes.isEmpty else { return false }
        onRead(bytes.span.bytes)
        return true
    }

    /// The end of the stream (nil) or a read error, as the read callback reports it; an error
    /// closes the connection.
    func end(_ error: UVError? = nil) {
        let end = onEnd
        stopReading()
        end?(error)
        if error != nil { close() }
    }

    /// The peer read everything: the queue empties, and `onWriteDrained` runs as after the last
    /// write completed.
    func drain() {
        queued = 0
        guard closing != .closed, drainArmed, queued <= writeLowWaterMark else { return }
        drainArmed = false
        onWriteDrained?()
    }

    /// The close completes (what was queued is sent, or dropped): `onClose` runs, as from
    /// libuv's close callback. Only once a close was asked for.
    func finishClose() {
        guard closeRequested else { return }
        closing = .closed
        let callback = onClose
        onClose = nil
        onWriteDrained = nil
        callback?()
    }
}
