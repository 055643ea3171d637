// TEMPORARY: stand-ins for APIs that land with the UV and membership branches.
import ClusterCore
import UV

extension UVTCPConnection {
    func pauseReading() {}
    func resumeReading() {}
    var onWriteDrained: (() -> Void)? { get { nil } set {} }
    func closeAfterFlush(timeoutMs: UInt64) { close() }
}

