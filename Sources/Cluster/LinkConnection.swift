import UV

/// What a ``Link`` uses of its connection: writing, the write queue and its drain callback,
/// pausing and resuming reads, closing, and the peer's address. Reads arrive through the
/// callbacks given to `startReading`, from the socket's read callback for a `UVTCPConnection`.
/// Tests and the fuzz harness give the runtime a connection of their own (see
/// `ElectionManager.accept(_:)`), which then takes the same path after the socket as a real one.
/// Loop thread only; the semantics are `UVTCPConnection`'s.
package protocol LinkConnection: AnyObject {
    /// Starts reading: `onRead` gets each chunk (valid during the call only); `onEnd` runs once,
    /// with nil at end of stream or with the error that ended reading.
    func startReading(onRead: @escaping (RawSpan) -> Void, onEnd: @escaping (UVError?) -> Void) throws(UVError)
    /// No `onRead` until `resumeReading()`.
    func pauseReading()
    func resumeReading()
    /// Writes `bytes` after what was written before; throws once the connection is closing.
    func write(_ bytes: [UInt8]) throws(UVError)
    /// Bytes written and not yet taken by the kernel.
    var writeQueueSize: Int { get }
    /// Called once the write queue falls to `writeLowWaterMark` bytes or fewer after a write.
    var onWriteDrained: (() -> Void)? { get set }
    var writeLowWaterMark: Int { get set }
    /// Called once the connection is closed (after `close()` or `closeAfterFlush`, or on an error).
    var onClose: (() -> Void)? { get set }
    /// Closes at once, dropping what is queued.
    func close()
    /// Sends what is queued, then closes; closes anyway after `timeoutMs`. No reads after it.
    func closeAfterFlush(timeoutMs: UInt64)
    var peerAddress: UVSocketAddress? { get }
    func setSendBufferSize(_ bytes: Int32) throws(UVError)
    func setReceiveBufferSize(_ bytes: Int32) throws(UVError)
}

extension UVTCPConnection: LinkConnection {}
