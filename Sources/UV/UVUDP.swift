import CLibUV

/// Where a datagram goes: a numeric IPv4 or IPv6 address and a port, parsed once.
public struct UVDatagramTarget: @unchecked Sendable, Equatable {
    // @unchecked: a plain C struct of integers and byte tuples (the importer does not infer it).
    fileprivate var storage: sockaddr_storage

    public init(host: String, port: Int) throws(UVError) {
        storage = try makeSocketAddress(host: host, port: port, operation: "datagram target")
    }

    public static func == (a: UVDatagramTarget, b: UVDatagramTarget) -> Bool {
        var x = a.storage, y = b.storage
        return memcmp(&x, &y, MemoryLayout<sockaddr_storage>.size) == 0
    }
}

/// Where a datagram came from, as the kernel gave it: read as a `UVSocketAddress` only when
/// needed (making one formats the host as a string).
public struct UVDatagramSource: @unchecked Sendable {
    fileprivate var storage = sockaddr_storage()

    /// Copies the address at `addr` (libuv's, valid during its callback only): as many bytes as
    /// its family's address holds.
    fileprivate init(_ addr: UnsafePointer<sockaddr>) {
        let size = addr.pointee.sa_family == sa_family_t(AF_INET6)
            ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size
        withUnsafeMutableBytes(of: &storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(addr), count: size))
        }
    }

    /// The address, host and port.
    public var address: UVSocketAddress { UVSocketAddress(storage) }
}

/// Datagrams gathered during a pass of the loop, sent together by `UVUDPSocket.send(_:)` (one
/// `sendmmsg` per 64). Reuses its storage: after the first passes, appending allocates nothing.
public struct UVDatagramBatch {
    private(set) var bytes: [UInt8] = []
    private(set) var starts: [UInt32] = []
    private(set) var lengths: [UInt32] = []
    private(set) var targets: [sockaddr_storage] = []

    public init() {}

    public var count: Int { starts.count }
    public var isEmpty: Bool { starts.isEmpty }

    /// Adds one datagram to `target`, whose bytes `encode` appends to the buffer it is given
    /// (which holds the batch's earlier datagrams before the index it is handed). If `encode`
    /// appends nothing, no datagram is added.
    @inline(__always)
    public mutating func append(to target: UVDatagramTarget, _ encode: (inout [UInt8], Int) -> Void) {
        let start = bytes.count
        encode(&bytes, start)
        guard bytes.count > start else { return }
        starts.append(UInt32(truncatingIfNeeded: start))
        lengths.append(UInt32(truncatingIfNeeded: bytes.count - start))
        targets.append(target.storage)
    }

    /// Empties the batch, keeping its storage.
    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        starts.removeAll(keepingCapacity: true)
        lengths.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
    }
}

/// A bound UDP socket. Loop thread only.
///
/// Ownership: `udp` is allocated in `init` and freed in the close callback (`didClose`). Datagrams
/// are read into the loop's shared read buffer (see `UVLoop.sharedReadBuffer`) and handed over
/// as a `RawSpan` valid during the call only; sends borrow the batch's storage for the call.
public final class UVUDPSocket: UVHandle {
    private let udp: UnsafeMutablePointer<uv_udp_t>
    private var onDatagram: ((RawSpan, UVDatagramSource) -> Void)?
    private var onRefused: ((UVSocketAddress) -> Void)?
    /// Datagrams that did not fit the read buffer (cut short by the kernel) and were dropped.
    public private(set) var truncatedDatagrams: UInt64 = 0
    /// The address bound: with port 0 the kernel picks a free port, reported here.
    public private(set) var boundAddress = UVSocketAddress(sockaddr_storage())

    /// Binds `host:port` (port 0: any free port). Not reading until `startReceiving`.
    public init(loop: UVLoop, host: String, port: Int) throws(UVError) {
        try UVHandle.checkLoopOpen(loop, "udp bind")
        var addr = try makeSocketAddress(host: host, port: port, operation: "udp bind")
        udp = .allocate(capacity: 1)
        let status = uv_udp_init(loop.loop, udp)
        if status < 0 {
            udp.deallocate()
            throw UVError(code: status, operation: "uv_udp_init")
        }
        super.init(loop: loop, handle: clibuv_udp_as_handle(udp))
        retainUntilClosed()
        do {
            try UVError.check(uv_udp_bind(udp, clibuv_sockaddr(&addr), 0), "udp bind \(host):\(port)")
            var bound = sockaddr_storage()
            var len = Int32(MemoryLayout<sockaddr_storage>.size)
            try UVError.check(uv_udp_getsockname(udp, clibuv_sockaddr_mut(&bound), &len), "udp getsockname")
            boundAddress = UVSocketAddress(bound)
        } catch {
            close()
            throw error
        }
    }

    /// The bound port.
    public var port: Int { boundAddress.port }

    /// Starts reading: `onDatagram` gets each datagram whole (valid during the call only).
    /// Datagrams larger than the read buffer (64 KiB) are dropped and counted.
    public func startReceiving(_ onDatagram: @escaping (RawSpan) -> Void) throws(UVError) {
        try startReceivingWithSource { bytes, _ in onDatagram(bytes) }
    }

    /// Starts reading: `onDatagram` gets each datagram whole and the address it came from (both
    /// valid during the call only). Datagrams larger than the read buffer are dropped and counted.
    public func startReceivingWithSource(_ onDatagram: @escaping (RawSpan, UVDatagramSource) -> Void) throws(UVError) {
        loop.preconditionInEventLoop()
        guard !isClosing else { throw UVError(code: UVError.notConnected, operation: "udp receive on a closed socket") }
        self.onDatagram = onDatagram
        try UVError.check(uv_udp_recv_start(udp, { handle, _, buf in
            guard let handle, let buf, let data = handle.pointee.data else { return }
            let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVUDPSocket.self)
            let buffer = me.loop.sharedReadBuffer()
            buf.pointee = uv_buf_init(buffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(buffer.count))
        }, { handle, nread, _, addr, flags in
            // nread 0 with no address: nothing more to read (EAGAIN); 0 with one: an empty
            // datagram. Errors on an unconnected UDP socket concern one datagram, not the socket.
            guard let handle, let data = handle.pointee.data else { return }
            let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVUDPSocket.self)
            guard nread > 0, addr != nil else {
                // The end of a burst of reads, or an error: refusals are read off the error queue.
                if me.onRefused != nil { me.drainRefusals() }
                return
            }
            me.deliver(count: nread, partial: flags & UInt32(UV_UDP_PARTIAL.rawValue) != 0, from: addr!)
        }), "uv_udp_recv_start")
    }

    private func deliver(count: Int, partial: Bool, from addr: UnsafePointer<sockaddr>) {
        guard let onDatagram, !isClosing else { return }
        if partial {
            truncatedDatagrams &+= 1
            return
        }
        let bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(loop.sharedReadBuffer())[0..<count])
        // The source, copied out of libuv's buffer (a sockaddr_in or sockaddr_in6, by family).
        let source = UVDatagramSource(addr)
        onDatagram(RawSpan(_unsafeBytes: bytes), source)
    }

    /// Reports datagrams refused by the host they went to (ICMP port unreachable: nothing listens
    /// at that port, the usual sign of a process that is gone) to `onRefused`, with the address
    /// each was sent to. Refusals are read off the socket's error queue (IP_RECVERR) at the end
    /// of each burst of reads; the error queue is drained every time, so an error never keeps
    /// the socket readable. Call before `startReceiving`.
    public func reportRefusals(_ onRefused: @escaping (UVSocketAddress) -> Void) throws(UVError) {
        loop.preconditionInEventLoop()
        var fd: uv_os_fd_t = -1
        try UVError.check(uv_fileno(clibuv_udp_as_handle(udp), &fd), "udp fileno")
        try UVError.check(clibuv_udp_report_refusals(fd, boundAddress.host.contains(":") ? 1 : 0), "udp IP_RECVERR")
        self.onRefused = onRefused
    }

    /// Reads the error queue dry (bounded: at most 256 entries a call), reporting refusals.
    private func drainRefusals() {
        var fd: uv_os_fd_t = -1
        guard uv_fileno(clibuv_udp_as_handle(udp), &fd) == 0 else { return }
        var to = sockaddr_storage()
        for _ in 0..<256 {
            let r = clibuv_udp_next_refused(fd, &to)
            if r < 0 { return }
            if r == 1, let onRefused, !isClosing { onRefused(UVSocketAddress(to)) }
        }
    }

    /// Sends the batch's datagrams (sendmmsg, nonblocking) and empties it. Returns how many the
    /// kernel took; the rest are dropped (the socket buffer was full, or the send failed), as a
    /// datagram may be.
    @discardableResult
    public func send(_ batch: inout UVDatagramBatch) -> Int {
        loop.preconditionInEventLoop()
        defer { batch.removeAll() }
        guard !batch.isEmpty, !isClosing else { return 0 }
        var fd: uv_os_fd_t = -1
        guard uv_fileno(clibuv_udp_as_handle(udp), &fd) == 0 else { return 0 }
        let sent = batch.bytes.withUnsafeBufferPointer { bytes in
            batch.starts.withUnsafeBufferPointer { starts in
                batch.lengths.withUnsafeBufferPointer { lengths in
                    batch.targets.withUnsafeBufferPointer { targets in
                        clibuv_udp_send_batch(
                            fd, bytes.baseAddress, starts.baseAddress, lengths.baseAddress, targets.baseAddress,
                            Int32(batch.count))
                    }
                }
            }
        }
        return max(0, Int(sent))
    }

    /// Sets SO_RCVBUF (the kernel doubles it for its bookkeeping).
    public func setReceiveBufferSize(_ bytes: Int32) throws(UVError) {
        var value = bytes
        try UVError.check(uv_recv_buffer_size(clibuv_udp_as_handle(udp), &value), "udp SO_RCVBUF")
    }

    override func willClose() {
        onDatagram = nil
        onRefused = nil
        uv_udp_recv_stop(udp)
    }

    override func didClose() {
        udp.deallocate()
    }
}
