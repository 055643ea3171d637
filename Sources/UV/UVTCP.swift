import CLibUV

/// Parses a numeric IPv4 or IPv6 host and a port into a socket address.
func makeSocketAddress(host: String, port: Int, operation: String) throws(UVError) -> sockaddr_storage {
    var storage = sockaddr_storage()
    guard (0...65535).contains(port) else { throw UVError(code: UVError.invalidArgument, operation: operation + ": port \(port)") }
    let status = clibuv_parse_ip(host, Int32(port), &storage)
    try UVError.check(status, operation + ": address \(host)")
    return storage
}

/// A numeric host and a port, as read back from a socket.
public struct UVSocketAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    init(_ storage: sockaddr_storage) {
        var s = storage
        var buf = [CChar](repeating: 0, count: 64)
        _ = clibuv_sockaddr_host(&s, &buf, buf.count)
        host = String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        port = Int(clibuv_sockaddr_port(&s))
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x.x.x): this host.
    public var isLoopback: Bool {
        host.hasPrefix("127.") || host == "::1" || host.lowercased().hasPrefix("::ffff:127.")
    }
}

/// A listening TCP socket. Loop thread only.
///
/// Out of descriptors (EMFILE, ENFILE), libuv's accept loop calls back with the error and tries
/// again at once, for as long as the process has none: the loop spins and serves nothing else.
/// (libuv has a spare descriptor of its own for this, but another thread can take the one it
/// frees before libuv takes it back, and then nothing stops the spin.) So the listener holds
/// spare descriptors of its own: on the first such error it pauses (reporting the error once to
/// `onAcceptError`) and gives one up; libuv's next accept takes a connection into it, which the
/// listener leaves un-accepted, and libuv stops polling a listener whose connection waits. After
/// `descriptorPauseMs` the listener takes its spares back and accepts that connection: handed on
/// when the spares were all taken back, closed at once when not (the process is still out of
/// descriptors; that frees one for a spare). Either way libuv then polls the listener again.
///
/// Ownership: `tcp` is allocated in `init` and freed in the close callback (`didClose`). The
/// spare descriptors (`spares`) are opened in `init` and whenever the listener resumes, and
/// closed when given up or when the listener closes (`willClose`). `pauseTimer` is a handle of
/// its own, closed in `willClose`.
public final class UVTCPListener: UVHandle {
    private let tcp: UnsafeMutablePointer<uv_tcp_t>
    private var onConnection: ((UVTCPConnection) -> Void)?
    private var onAcceptError: ((UVError) -> Void)?
    /// Spare descriptors held to give up when the process has no descriptor left (see above).
    private var spares: [Int32] = []
    private static let spareCount = 2
    /// The spare descriptors held now (tests).
    var spareDescriptorCount: Int { spares.count }
    private var pauseTimer: UVTimer?
    /// True from running out of descriptors until the pause ends.
    public private(set) var isPausedForDescriptors = false
    /// True while a connection libuv took during a pause waits to be accepted.
    private var holdsPendingConnection = false
    /// How long accepting pauses when the process runs out of descriptors.
    public var descriptorPauseMs: UInt64 = 250
    /// Pauses for want of descriptors so far.
    public private(set) var descriptorPauses: UInt64 = 0
    /// Connections closed at once at the end of a pause because the process was still out of
    /// descriptors.
    public private(set) var connectionsShed: UInt64 = 0
    /// The address actually bound: with port 0 the kernel picks a free port, reported here.
    public let localAddress: UVSocketAddress

    /// Binds `host:port` (port 0: any free port) and listens. Each accepted connection is handed
    /// to `onConnection`, not yet reading; a failed accept is reported to `onAcceptError`.
    public init(
        loop: UVLoop, host: String, port: Int, backlog: Int32 = 1024,
        onAcceptError: ((UVError) -> Void)? = nil,
        onConnection: @escaping (UVTCPConnection) -> Void
    ) throws(UVError) {
        try UVHandle.checkLoopOpen(loop, "listen")
        var addr = try makeSocketAddress(host: host, port: port, operation: "listen")
        tcp = .allocate(capacity: 1)
        let status = uv_tcp_init(loop.loop, tcp)
        if status < 0 {
            tcp.deallocate()
            throw UVError(code: status, operation: "uv_tcp_init")
        }
        self.onConnection = onConnection
        self.onAcceptError = onAcceptError
        localAddress = UVSocketAddress(addr)
        super.init(loop: loop, handle: clibuv_tcp_as_handle(tcp))
        retainUntilClosed()
        do {
            try UVError.check(uv_tcp_bind(tcp, clibuv_sockaddr(&addr), 0), "bind \(host):\(port)")
            try UVError.check(uv_listen(clibuv_tcp_as_stream(tcp), backlog) { server, status in
                guard let server, let data = server.pointee.data else { return }
                let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVTCPListener.self)
                me.accept(status: status)
            }, "listen \(host):\(port)")
            var bound = sockaddr_storage()
            var len = Int32(MemoryLayout<sockaddr_storage>.size)
            try UVError.check(uv_tcp_getsockname(tcp, clibuv_sockaddr_mut(&bound), &len), "getsockname")
            boundAddress = UVSocketAddress(bound)
        } catch {
            close()
            throw error
        }
        refillSpares()
    }

    /// Opens spare descriptors up to `spareCount`; true when it holds them all.
    @discardableResult
    private func refillSpares() -> Bool {
        while spares.count < Self.spareCount {
            let fd = clibuv_open_spare_fd()
            guard fd >= 0 else { return false }
            spares.append(fd)
        }
        return true
    }

    /// The bound address; its port is the one the kernel picked when 0 was asked for.
    public private(set) var boundAddress = UVSocketAddress(sockaddr_storage())

    /// The bound port.
    public var port: Int { boundAddress.port }

    /// Tests only: leave connections un-accepted, so that the kernel's backlog fills and later
    /// dials hang (libuv stops polling a listener whose pending connection was not accepted).
    var leavesConnectionsPending = false

    /// libuv's connection callback (tests call it to play libuv's accept loop out of descriptors).
    func accept(status: Int32) {
        guard !isClosing, !leavesConnectionsPending else { return }
        if status == UVError.tooManyOpenFiles || status == UVError.fileTableFull {
            outOfDescriptors(status)
            return
        }
        if status < 0 {
            onAcceptError?(UVError(code: status, operation: "accept"))
            return
        }
        if isPausedForDescriptors {
            // The connection a spare made room for: left un-accepted, it makes libuv stop
            // polling this listener (and leave its accept loop) until the pause ends.
            holdsPendingConnection = true
            return
        }
        takeConnection()
    }

    /// libuv's accept failed for want of descriptors and it is about to try again: pause, and
    /// give up a spare so that its next try succeeds and ends the loop (see the class comment).
    private func outOfDescriptors(_ status: Int32) {
        if !isPausedForDescriptors {
            isPausedForDescriptors = true
            descriptorPauses &+= 1
            startPauseTimer()
            onAcceptError?(UVError(code: status, operation: "accept (pausing \(descriptorPauseMs) ms: out of descriptors)"))
        }
        if let fd = spares.popLast() {
            clibuv_close_fd(fd)
            return
        }
        // No spare left (another thread took what each one freed): any descriptor another
        // thread frees ends the loop the same way; until then libuv retries.
    }

    private func startPauseTimer() {
        do {
            let timer = try pauseTimer ?? UVTimer(loop: loop)
            pauseTimer = timer
            try timer.start(timeoutMs: max(1, descriptorPauseMs)) { [unowned self] in endPause() }
        } catch {
            // No timer (the loop is closing): nothing to resume to.
            isPausedForDescriptors = false
        }
    }

    private func endPause() {
        guard !isClosing else { return }
        let refilled = refillSpares()
        isPausedForDescriptors = false
        guard holdsPendingConnection else { return }
        holdsPendingConnection = false
        if refilled {
            takeConnection()
            return
        }
        // Still out of descriptors: close the waiting connection, which frees one for a spare.
        if let conn = try? UVTCPConnection(loop: loop) {
            if uv_accept(clibuv_tcp_as_stream(tcp), conn.stream) == 0 { connectionsShed &+= 1 }
            conn.close()
        }
        refillSpares()
    }

    /// Accepts the pending connection and hands it on.
    private func takeConnection() {
        let conn: UVTCPConnection
        do {
            conn = try UVTCPConnection(loop: loop)
        } catch {
            onAcceptError?(error)
            return
        }
        let accepted = uv_accept(clibuv_tcp_as_stream(tcp), conn.stream)
        if accepted < 0 {
            conn.close()
            onAcceptError?(UVError(code: accepted, operation: "uv_accept"))
            return
        }
        conn.markConnected()
        onConnection?(conn)
    }

    override func willClose() {
        onConnection = nil
        onAcceptError = nil
        pauseTimer?.close()
        pauseTimer = nil
        for fd in spares { clibuv_close_fd(fd) }
        spares.removeAll()
    }

    override func didClose() {
        tcp.deallocate()
    }
}

/// One TCP connection, accepted or dialled. Loop thread only.
///
/// Reading delivers each chunk as a `RawSpan` that is valid only during the callback (it views
/// the loop's one read buffer, shared by all its connections: see `UVLoop.sharedReadBuffer`).
/// Reading can be paused and resumed with the same callbacks (`pauseReading`, `resumeReading`).
///
/// Writes copy nothing when the kernel takes all the bytes at once (`uv_try_write`); otherwise
/// the rest is copied into one heap block with its `uv_write_t` and queued, preserving order.
/// `writeQueueSize` shows the bytes queued, and `onWriteDrained` says when a queue has drained,
/// so callers can apply back-pressure. A write error closes the connection.
///
/// Closing: `close()` closes at once and drops what is queued; `closeAfterFlush(timeoutMs:)`
/// sends what is queued, then FIN, then closes. Every callback of the connection is released
/// when it closes, so closures that capture the connection do not keep it alive.
///
/// Ownership: `tcp` is allocated in `init` and freed in the close callback (`didClose`). Each
/// queued write owns one heap block holding its `uv_write_t` and its bytes, freed in the write
/// callback; connect and shutdown requests are heap-allocated likewise and freed in their
/// callbacks (a shutdown request's `data` holds a retained box with its completion, released
/// there). Those callbacks run (with `ECANCELED` if need be) before the close callback, so the
/// connection outlives them. The read buffer belongs to the loop.
public final class UVTCPConnection: UVHandle {
    private let tcp: UnsafeMutablePointer<uv_tcp_t>
    var stream: UnsafeMutablePointer<uv_stream_t> { clibuv_tcp_as_stream(tcp) }

    private var onRead: ((RawSpan) -> Void)?
    private var onEnd: ((UVError?) -> Void)?
    private var connectCompletion: ((Result<UVTCPConnection, UVError>) -> Void)?
    private var connectTimer: UVTimer?
    private var connectTimedOut = false
    private var connectOperation = ""
    /// True once reading has ended (EOF or error): it cannot be resumed.
    private var readingEnded = false
    /// True once a shutdown request was accepted: no more writes.
    private var writesShutDown = false
    /// True while a shutdown request is pending.
    private var shutdownPending = false
    /// True once `closeAfterFlush` has begun; `flushTimer` is its fallback.
    private var flushing = false
    private var flushTimer: UVTimer?
    /// True when a write was queued since `onWriteDrained` last ran.
    private var drainArmed = false
    /// Called once, from the close callback, whoever closed the connection.
    public var onClose: (() -> Void)?
    /// Called on the loop when queued writes have drained: after a write that had to be queued
    /// completes and `writeQueueSize` is then at most `writeLowWaterMark`. It runs once per such
    /// drain (again only after another write has been queued), never for writes the kernel took
    /// at once, and never after `close()`.
    public var onWriteDrained: (() -> Void)?
    /// The queue size, in bytes, at or below which `onWriteDrained` runs. 0 (the default): the
    /// queue is empty.
    public var writeLowWaterMark = 0
    /// True once connected (dialled and established, or accepted).
    public private(set) var isConnected = false
    /// True while reading (false while paused).
    public private(set) var isReading = false
    /// The first write error seen (the connection is closed when one happens).
    public private(set) var writeError: UVError?
    /// Bytes handed to `write` so far, and bytes the kernel has taken.
    public private(set) var bytesQueued: UInt64 = 0
    /// The size of the read buffer each chunk is read into (one per loop).
    public static let readBufferSize = 64 * 1024

    init(loop: UVLoop) throws(UVError) {
        try UVHandle.checkLoopOpen(loop, "uv_tcp_init")
        tcp = .allocate(capacity: 1)
        let status = uv_tcp_init(loop.loop, tcp)
        if status < 0 {
            tcp.deallocate()
            throw UVError(code: status, operation: "uv_tcp_init")
        }
        super.init(loop: loop, handle: clibuv_tcp_as_handle(tcp))
        retainUntilClosed()
    }

    func markConnected() {
        isConnected = true
        _ = uv_tcp_nodelay(tcp, 1)
        var fd: uv_os_fd_t = -1
        if uv_fileno(handle, &fd) == 0 { socketFD = fd }
    }

    /// The socket's descriptor once connected (-1 before, or if libuv could not say): writes try
    /// `send` on it first. Owned by libuv's handle, which closes it.
    private var socketFD: uv_os_fd_t = -1

    /// Dials `host:port` (numeric IPv4 or IPv6). `completion` runs exactly once on the loop
    /// thread: with the connection once established (TCP_NODELAY set), or with the error:
    /// `ETIMEDOUT` after `timeoutMs`, `ECANCELED` if the connection is closed first, or what the
    /// kernel said (`ECONNREFUSED`, …). Errors found before dialling are thrown instead.
    @discardableResult
    public static func connect(
        loop: UVLoop, host: String, port: Int, timeoutMs: UInt64,
        _ completion: @escaping (Result<UVTCPConnection, UVError>) -> Void
    ) throws(UVError) -> UVTCPConnection {
        let operation = "connect to \(host.contains(":") ? "[\(host)]" : host):\(port)"
        var addr = try makeSocketAddress(host: host, port: port, operation: operation)
        let conn = try UVTCPConnection(loop: loop)
        conn.connectOperation = operation
        let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passUnretained(conn).toOpaque()
        let status = uv_tcp_connect(req, conn.tcp, clibuv_sockaddr(&addr)) { req, status in
            guard let req else { return }
            let me = Unmanaged<UVTCPConnection>.fromOpaque(req.pointee.data!).takeUnretainedValue()
            req.deallocate()
            me.connectFinished(status: status)
        }
        if status < 0 {
            req.deallocate()
            conn.close()
            throw UVError(code: status, operation: operation)
        }
        conn.connectCompletion = completion
        if timeoutMs > 0 {
            do {
                let timer = try UVTimer(loop: loop)
                conn.connectTimer = timer
                try timer.start(timeoutMs: timeoutMs) { [unowned conn] in
                    conn.connectTimedOut = true
                    conn.close()  // the connect callback then reports ETIMEDOUT
                }
            } catch {
                conn.connectCompletion = nil
                conn.close()
                throw error
            }
        }
        return conn
    }

    private func connectFinished(status: Int32) {
        connectTimer?.close()
        connectTimer = nil
        guard let completion = connectCompletion else { return }
        connectCompletion = nil
        if status == 0 && !isClosing {
            connectOperation = ""  // only a failure names it: a connection lives long, its text need not
            markConnected()
            completion(.success(self))
        } else {
            let code = connectTimedOut ? UVError.timedOut : (status == 0 ? UVError.canceled : status)
            completion(.failure(UVError(code: code, operation: connectOperation)))
            close()
        }
    }

    // MARK: Reading

    /// Starts reading. `onRead` gets each chunk (valid only during the call); `onEnd` runs once
    /// when reading ends: with nil when the peer half-closed (EOF; the connection stays open for
    /// writing), or with the error (the connection is then closed). Called again, it replaces
    /// the callbacks.
    public func startReading(onRead: @escaping (RawSpan) -> Void, onEnd: @escaping (UVError?) -> Void) throws(UVError) {
        loop.preconditionInEventLoop()
        guard !isClosing, !flushing else { throw UVError(code: UVError.notConnected, operation: "read on a closed connection") }
        self.onRead = onRead
        self.onEnd = onEnd
        if isReading { return }
        try UVError.check(startUVRead(), "uv_read_start")
        isReading = true
    }

    /// `uv_read_start` with this connection's callbacks: the alloc callback hands out the loop's
    /// shared read buffer, the read callback delivers what was read into it.
    private func startUVRead() -> Int32 {
        uv_read_start(stream, { handle, _, buf in
            guard let handle, let buf, let data = handle.pointee.data else { return }
            let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVTCPConnection.self)
            let buffer = me.loop.sharedReadBuffer()
            buf.pointee = uv_buf_init(buffer.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(buffer.count))
        }, { stream, nread, _ in
            guard let stream, let data = stream.pointee.data else { return }
            let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVTCPConnection.self)
            if nread > 0 {
                me.deliver(count: nread)
            } else if nread < 0 {
                me.readEnded(status: Int32(nread))
            }
        })
    }

    private func deliver(count: Int) {
        // While flushing to close, input is read and dropped (see `closeAfterFlush`).
        guard let onRead, !isClosing, !flushing else { return }
        let bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(loop.sharedReadBuffer())[0..<count])
        onRead(RawSpan(_unsafeBytes: bytes))
    }

    private func readEnded(status: Int32) {
        uv_read_stop(stream)
        isReading = false
        readingEnded = true
        let end = onEnd
        onRead = nil
        onEnd = nil
        if status == UVError.eof {
            end?(nil)
        } else {
            end?(UVError(code: status, operation: "read"))
            close()
        }
    }

    /// Pauses reading: no more `onRead` until `resumeReading()`; the kernel buffers what
    /// arrives, and once its buffer is full the peer's sends stall (TCP flow control). Keeps the
    /// callbacks given to `startReading`. Does nothing after `closeAfterFlush` (input is then
    /// read and dropped until the close).
    public func pauseReading() {
        loop.preconditionInEventLoop()
        guard !isClosing, !flushing, isReading else { return }
        uv_read_stop(stream)
        isReading = false
    }

    /// Resumes reading with the callbacks given to `startReading`. Does nothing while reading,
    /// before `startReading`, after reading has ended (EOF or error), after `closeAfterFlush`
    /// or once closed. If libuv refuses, reading ends with that error (`onEnd`) and the
    /// connection is closed.
    public func resumeReading() {
        loop.preconditionInEventLoop()
        guard !isClosing, !flushing, !isReading, !readingEnded, onRead != nil else { return }
        let status = startUVRead()
        if status < 0 {
            readEnded(status: status)
        } else {
            isReading = true
        }
    }

    /// Stops reading; `resumeReading()` or `startReading` starts it again. The same as
    /// `pauseReading()`.
    public func stopReading() {
        pauseReading()
    }

    // MARK: Writing

    /// Bytes queued in libuv and not yet taken by the kernel.
    public var writeQueueSize: Int {
        isClosing ? 0 : Int(uv_stream_get_write_queue_size(stream))
    }

    /// Writes `bytes`, in order with earlier writes. Throws when the connection is closed or
    /// shut down for writing; when the kernel refuses, throws and closes the connection.
    public func write(_ bytes: [UInt8]) throws(UVError) {
        if let error = bytes.withUnsafeBytes({ raw in writeReporting(raw: raw) }) { throw error }
    }

    /// Writes a slice of bytes, in order with earlier writes.
    public func write(_ bytes: ArraySlice<UInt8>) throws(UVError) {
        if let error = bytes.withUnsafeBytes({ raw in writeReporting(raw: raw) }) { throw error }
    }

    /// Writes the bytes of a span, in order with earlier writes.
    public func write(_ bytes: RawSpan) throws(UVError) {
        if let error = bytes.withUnsafeBytes({ raw in writeReporting(raw: raw) }) { throw error }
    }

    /// Writes the UTF-8 bytes of a string.
    public func write(_ text: String) throws(UVError) {
        var text = text
        if let error = text.withUTF8({ utf8 in writeReporting(raw: UnsafeRawBufferPointer(utf8)) }) { throw error }
    }

    private func writeReporting(raw: UnsafeRawBufferPointer) -> UVError? {
        do { try write(raw: raw) } catch { return error }
        return nil
    }

    private static let requestSize = (MemoryLayout<uv_write_t>.size + 15) & ~15

    private func write(raw: UnsafeRawBufferPointer) throws(UVError) {
        loop.preconditionInEventLoop()
        if let writeError { throw writeError }
        guard !isClosing, isConnected else { throw UVError(code: UVError.notConnected, operation: "write") }
        // After a shutdown, libuv would refuse the write with EPIPE and the connection would be
        // closed, dropping the output still queued: refuse it here instead.
        guard !writesShutDown else { throw UVError(code: UVError.brokenPipe, operation: "write after shutdown") }
        let count = raw.count
        guard count > 0, let base = raw.baseAddress else { return }
        guard count <= Int(UInt32.max) else {
            throw UVError(code: UVError.invalidArgument, operation: "write of \(count) bytes (at most \(UInt32.max) at once)")
        }
        bytesQueued &+= UInt64(count)
        var sent = 0
        // What the kernel takes at once goes with one send(2), when nothing is queued before it
        // (libuv's uv_try_write, with send instead of write); the rest is queued with uv_write.
        if socketFD >= 0 && writeQueueSize == 0 {
            let tried = clibuv_send(socketFD, base, count)
            if tried >= 0 {
                sent = tried
                if sent == count { return }
            } else if tried != Int(UV_EAGAIN.rawValue) {
                fail(UVError(code: Int32(tried), operation: "write"))
                throw writeError!
            }
        }
        var buf: uv_buf_t
        let rest = count - sent
        let block = UnsafeMutableRawPointer.allocate(byteCount: Self.requestSize + rest, alignment: 16)
        let req = block.bindMemory(to: uv_write_t.self, capacity: 1)
        let data = block + Self.requestSize
        data.copyMemory(from: base + sent, byteCount: rest)
        buf = uv_buf_init(data.assumingMemoryBound(to: CChar.self), UInt32(rest))
        let status = uv_write(req, stream, &buf, 1) { req, status in
            guard let req else { return }
            if let handle = req.pointee.handle, let data = handle.pointee.data {
                let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVTCPConnection.self)
                me.writeFinished(status: status)
            }
            UnsafeMutableRawPointer(req).deallocate()
        }
        if status < 0 {
            block.deallocate()
            fail(UVError(code: status, operation: "write"))
            throw writeError!
        }
        drainArmed = true
    }

    /// A queued write's callback.
    private func writeFinished(status: Int32) {
        if status < 0 {
            if status != UVError.canceled { fail(UVError(code: status, operation: "write")) }
            return
        }
        guard !isClosing, drainArmed, writeQueueSize <= writeLowWaterMark else { return }
        drainArmed = false
        onWriteDrained?()
    }

    private func fail(_ error: UVError) {
        if writeError == nil { writeError = error }
        close()
    }

    /// Half-closes: no more writes; the queued ones are sent first, then FIN. Reading goes on.
    /// `completion` (optional) runs once with nil or the error.
    public func shutdown(_ completion: ((UVError?) -> Void)? = nil) {
        loop.preconditionInEventLoop()
        guard !isClosing, isConnected else {
            completion?(UVError(code: UVError.notConnected, operation: "shutdown"))
            return
        }
        final class Box { let completion: ((UVError?) -> Void)?; init(_ c: ((UVError?) -> Void)?) { completion = c } }
        let req = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(Box(completion)).toOpaque()
        let status = uv_shutdown(req, stream) { req, status in
            guard let req else { return }
            let box = Unmanaged<Box>.fromOpaque(req.pointee.data!).takeRetainedValue()
            let handle = req.pointee.handle
            req.deallocate()
            box.completion?(status < 0 ? UVError(code: status, operation: "shutdown") : nil)
            if let handle, let data = handle.pointee.data {
                let me = unsafeDowncast(Unmanaged<UVHandle>.fromOpaque(data).takeUnretainedValue(), to: UVTCPConnection.self)
                me.shutdownFinished()
            }
        }
        if status < 0 {
            Unmanaged<Box>.fromOpaque(req.pointee.data!).release()
            req.deallocate()
            completion?(UVError(code: status, operation: "shutdown"))
            return
        }
        writesShutDown = true
        shutdownPending = true
    }

    private func shutdownFinished() {
        shutdownPending = false
        if flushing { close() }
    }

    /// Closes gracefully: what is queued is sent, then FIN, then the connection is closed; if
    /// that has not happened within `timeoutMs` (a peer that does not read), it is closed anyway,
    /// dropping the rest. From the call on, writes are refused and `onRead`/`onEnd` are not
    /// called; input is still read and dropped, because closing a socket with unread input makes
    /// the kernel send a reset instead of FIN, which can destroy output not yet delivered. (Input
    /// that arrives after the close resets the connection all the same.) Idempotent; `close()`
    /// afterwards closes at once. A connection that is not connected yet is closed at once.
    public func closeAfterFlush(timeoutMs: UInt64) {
        loop.preconditionInEventLoop()
        guard !isClosing, !flushing else { return }
        guard isConnected else { return close() }
        flushing = true
        onRead = nil
        onEnd = nil
        if !isReading && !readingEnded && startUVRead() == 0 { isReading = true }
        do {
            let timer = try UVTimer(loop: loop)
            flushTimer = timer
            try timer.start(timeoutMs: timeoutMs) { [unowned self] in close() }
        } catch {
            return close()
        }
        if shutdownPending { return }  // an earlier shutdown() is under way: close from its callback
        if writesShutDown { return close() }  // shut down already: FIN follows what was queued
        shutdown()
        if !shutdownPending { close() }  // refused (the error was reported to no one): close now
    }

    // MARK: Socket options

    /// Sets the socket's send buffer size (`SO_SNDBUF` via `uv_send_buffer_size`; Linux doubles
    /// the value and enforces a minimum). `bytes` must be positive.
    public func setSendBufferSize(_ bytes: Int32) throws(UVError) {
        try setBufferSize(bytes, "uv_send_buffer_size", uv_send_buffer_size)
    }

    /// Sets the socket's receive buffer size (`SO_RCVBUF` via `uv_recv_buffer_size`; Linux
    /// doubles the value and enforces a minimum). `bytes` must be positive.
    public func setReceiveBufferSize(_ bytes: Int32) throws(UVError) {
        try setBufferSize(bytes, "uv_recv_buffer_size", uv_recv_buffer_size)
    }

    /// The socket's send buffer size as the kernel reports it, or nil once closed.
    public var sendBufferSize: Int32? { bufferSize(uv_send_buffer_size) }

    /// The socket's receive buffer size as the kernel reports it, or nil once closed.
    public var receiveBufferSize: Int32? { bufferSize(uv_recv_buffer_size) }

    private func setBufferSize(
        _ bytes: Int32, _ name: String,
        _ call: (UnsafeMutablePointer<uv_handle_t>, UnsafeMutablePointer<Int32>) -> Int32
    ) throws(UVError) {
        loop.preconditionInEventLoop()
        guard bytes > 0 else { throw UVError(code: UVError.invalidArgument, operation: "\(name) \(bytes)") }
        guard !isClosing else { throw UVError(code: UVError.notConnected, operation: name) }
        var value = bytes
        try UVError.check(call(handle, &value), name)
    }

    private func bufferSize(_ call: (UnsafeMutablePointer<uv_handle_t>, UnsafeMutablePointer<Int32>) -> Int32) -> Int32? {
        loop.preconditionInEventLoop()
        guard !isClosing else { return nil }
        var value: Int32 = 0  // 0 asks for the current size
        return call(handle, &value) == 0 ? value : nil
    }

    // MARK: Addresses

    /// The peer's address, if connected.
    public var peerAddress: UVSocketAddress? {
        guard !isClosing else { return nil }
        var addr = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        guard uv_tcp_getpeername(tcp, clibuv_sockaddr_mut(&addr), &len) == 0 else { return nil }
        return UVSocketAddress(addr)
    }

    /// This end's address, if bound.
    public var localAddress: UVSocketAddress? {
        guard !isClosing else { return nil }
        var addr = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        guard uv_tcp_getsockname(tcp, clibuv_sockaddr_mut(&addr), &len) == 0 else { return nil }
        return UVSocketAddress(addr)
    }

    override func willClose() {
        if isReading { uv_read_stop(stream) }
        isReading = false
        onRead = nil
        onEnd = nil
        onWriteDrained = nil
        connectTimer?.close()
        connectTimer = nil
        flushTimer?.close()
        flushTimer = nil
    }

    override func didClose() {
        tcp.deallocate()
        let callback = onClose
        onClose = nil
        callback?()
    }
}
