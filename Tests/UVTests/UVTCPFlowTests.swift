import Testing
@testable import UV

/// Writes `chunk` until `conn`'s write queue is non-empty (the kernel's buffers are full), at
/// most `limit` bytes. Returns the bytes written.
func writeUntilQueued(_ conn: UVTCPConnection, chunk: [UInt8], limit: Int = 256 << 20) -> Int {
    var written = 0
    while conn.writeQueueSize == 0 && written < limit {
        try! conn.write(chunk)
        written += chunk.count
    }
    return written
}

@Suite("UVTCP read buffer", .timeLimit(.minutes(1)))
struct UVReadBufferTests {
    @Test("memory per connection: 200 connections accepted and closed share one read buffer")
    func oneReadBufferForManyConnections() async throws {
        let loop = try UVLoop()
        let total = 200
        let result: (closed: Int, buffers: Int) = await onLoop(loop) { done in
            var closed = 0
            var listener: UVTCPListener!
            func finishIfDone() {
                guard closed == 2 * total else { return }
                listener.close()
                done((closed, loop.readBuffersAllocated))
            }
            var accepted = 0
            listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                accepted += 1
                conn.onClose = { closed += 1; finishIfDone() }
                if accepted % 3 == 0 {
                    conn.close()  // refused at once
                } else {
                    try! conn.startReading(onRead: { _ in }, onEnd: { _ in conn.close() })
                }
            }
            for i in 0..<total {
                try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                    let conn = try! result.get()
                    conn.onClose = { closed += 1; finishIfDone() }
                    if i % 2 == 0 { try? conn.write("hello") }
                    try! conn.startReading(onRead: { _ in }, onEnd: { _ in conn.close() })
                    conn.shutdown()
                }
            }
        }
        #expect(result.closed == 2 * total)
        #expect(result.buffers == 1)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("memory per connection: data on 40 concurrent connections arrives intact through the shared buffer")
    func sharedBufferKeepsStreamsApart() async throws {
        let loop = try UVLoop()
        let total = 40
        let size = 150_000
        let result: (good: Int, bad: [String], buffers: Int) = await onLoop(loop) { done in
            var good = 0
            var bad: [String] = []
            var listener: UVTCPListener!
            func finishIfDone() {
                guard good + bad.count == total else { return }
                listener.close()
                done((good, bad, loop.readBuffersAllocated))
            }
            listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                var got: [UInt8] = []
                try! conn.startReading(onRead: { bytes in
                    bytes.withUnsafeBytes { got.append(contentsOf: $0) }
                }, onEnd: { _ in
                    // The first byte names the sender; the rest must be its pattern.
                    if let seed = got.first, got.count == size + 1, Array(got.dropFirst()) == pattern(count: size, seed: seed) {
                        good += 1
                    } else {
                        bad.append("\(got.first ?? 0): \(got.count) bytes")
                    }
                    conn.close()
                    finishIfDone()
                })
            }
            for i in 0..<total {
                try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                    let conn = try! result.get()
                    let bytes = [UInt8(i)] + pattern(count: size, seed: UInt8(i))
                    // Uneven pieces, so that reads of different connections interleave.
                    var offset = 0
                    var step = 700 + 37 * i
                    while offset < bytes.count {
                        let end = min(bytes.count, offset + step)
                        try! conn.write(bytes[offset..<end])
                        offset = end
                        step = step * 7 % 20_011 + 1
                    }
                    conn.closeAfterFlush(timeoutMs: 10_000)
                }
            }
        }
        #expect(result.good == total)
        #expect(result.bad == [])
        #expect(result.buffers == 1)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }
}

@Suite("UVTCP graceful close", .timeLimit(.minutes(1)))
struct UVGracefulCloseTests {
    @Test("closing drops queued output: closeAfterFlush sends every queued byte, then EOF")
    func closeAfterFlushDeliversEverything() async throws {
        let loop = try UVLoop()
        let payload = pattern(count: 6 << 20, seed: 11)
        let result: (received: [UInt8], eof: Bool, queuedAtClose: Int, closes: Int) = await onLoop(loop) { done in
            var received: [UInt8] = []
            received.reserveCapacity(payload.count)
            var queuedAtClose = 0
            var closes = 0
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                conn.onClose = { closes += 1 }
                try! conn.write(payload)
                queuedAtClose = conn.writeQueueSize
                conn.closeAfterFlush(timeoutMs: 30_000)
                conn.closeAfterFlush(timeoutMs: 1)  // idempotent: the first call's timeout holds
            }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let client = try! result.get()
                try! client.startReading(onRead: { bytes in
                    bytes.withUnsafeBytes { received.append(contentsOf: $0) }
                }, onEnd: { error in
                    client.close()
                    listener.close()
                    // Let the server side's close callback run first.
                    let probe = try! UVTimer(loop: loop)
                    try! probe.start(timeoutMs: 1) {
                        probe.close()
                        done((received, error == nil, queuedAtClose, closes))
                    }
                })
            }
        }
        #expect(result.queuedAtClose > 0, "the test needs output still queued when closing")
        #expect(result.received.count == payload.count)
        let intact = result.received == payload  // (a failing #expect would print 6 MiB)
        #expect(intact)
        #expect(result.eof)
        #expect(result.closes == 1)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("closeAfterFlush: a peer that never reads is closed after the timeout")
    func closeAfterFlushTimesOut() async throws {
        let loop = try UVLoop()
        let result: (queued: Int, elapsedMs: UInt64, closedQueue: Int) = await onLoop(loop) { done in
            var peer: UVTCPConnection?
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                try! conn.setReceiveBufferSize(4096)
                peer = conn  // never reads
            }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let client = try! result.get()
                try! client.setSendBufferSize(4096)
                _ = writeUntilQueued(client, chunk: [UInt8](repeating: 1, count: 64 << 10))
                try! client.write([UInt8](repeating: 2, count: 1 << 20))
                let queued = client.writeQueueSize
                let start = loop.nowMs
                client.onClose = {
                    let elapsed = loop.nowMs - start
                    peer?.close()
                    listener.close()
                    done((queued, elapsed, client.writeQueueSize))
                }
                client.closeAfterFlush(timeoutMs: 150)
            }
        }
        #expect(result.queued >= 1 << 20)
        #expect(result.elapsedMs >= 150)
        #expect(result.closedQueue == 0)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("closeAfterFlush then close() closes at once; writes after closeAfterFlush are refused without closing")
    func closeAfterFlushThenClose() async throws {
        let loop = try UVLoop()
        let result: (writeError: String, closingAfterWrite: Bool, closes: Int, quick: Bool) = await onLoop(loop) { done in
            var peer: UVTCPConnection?
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                try! conn.setReceiveBufferSize(4096)
                peer = conn  // never reads: the flush cannot finish
            }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let client = try! result.get()
                try! client.setSendBufferSize(4096)
                _ = writeUntilQueued(client, chunk: [UInt8](repeating: 1, count: 64 << 10))
                var closes = 0
                let start = loop.nowMs
                client.closeAfterFlush(timeoutMs: 30_000)
                var name = "none"
                do throws(UVError) { try client.write("late") } catch { name = error.name }
                let closingAfterWrite = client.isClosing
                client.onClose = {
                    closes += 1
                    let probe = try! UVTimer(loop: loop)
                    try! probe.start(timeoutMs: 1) {
                        probe.close()
                        peer?.close()
                        listener.close()
                        done((name, closingAfterWrite, closes, loop.nowMs - start < 10_000))
                    }
                }
                client.close()
                client.close()
            }
        }
        #expect(result.writeError == "EPIPE")
        #expect(result.closingAfterWrite == false)
        #expect(result.closes == 1)
        #expect(result.quick)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("a write after shutdown() is refused and does not drop the output queued before it")
    func writeAfterShutdownKeepsQueuedOutput() async throws {
        let loop = try UVLoop()
        let payload = pattern(count: 6 << 20, seed: 5)
        let result: (received: Int, intact: Bool, eof: Bool, lateError: String, queued: Int) = await onLoop(loop) { done in
            var received: [UInt8] = []
            var lateError = "none"
            var queued = 0
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                try! conn.write(payload)
                queued = conn.writeQueueSize
                conn.shutdown { _ in conn.close() }
                do throws(UVError) { try conn.write("late") } catch { lateError = error.name }
            }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let client = try! result.get()
                try! client.startReading(onRead: { bytes in
                    bytes.withUnsafeBytes { received.append(contentsOf: $0) }
                }, onEnd: { error in
                    client.close()
                    listener.close()
                    done((received.count, received == payload, error == nil, lateError, queued))
                })
            }
        }
        #expect(result.queued > 0, "the test needs output still queued at the shutdown")
        #expect(result.lateError == "EPIPE")
        #expect(result.received == payload.count)
        #expect(result.intact)
        #expect(result.eof)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }
}

@Suite("UVTCP back-pressure", .timeLimit(.minutes(1)))
struct UVBackPressureTests {
    /// One side of a connection, used only on its own loop's thread.
    final class Side: @unchecked Sendable {
        var listener: UVTCPListener?
        var conn: UVTCPConnection?
        var received: [UInt8] = []
        var readsBeforeResume = 0
        var resumed = false
        var drains: [Int] = []  // writeQueueSize at each onWriteDrained
        var waiter: (() -> Void)?
        func poke() { waiter?() }
    }

    @Test("unbounded write queues: pauseReading stalls the sender, resumeReading keeps the callbacks, onWriteDrained says when the queue drained")
    func pauseResumeAndDrain() async throws {
        // Server and client on two loops (two threads): while the server is paused, the client
        // writes on its own thread, so a server that kept reading would be seen reading.
        let serverLoop = try UVLoop(name: "server")
        let clientLoop = try UVLoop(name: "client")
        let server = Side()
        let client = Side()
        let chunk = pattern(count: 64 << 10, seed: 9)

        let port: Int = await onLoop(serverLoop) { done in
            let listener = try! UVTCPListener(loop: serverLoop, host: "127.0.0.1", port: 0) { conn in
                server.conn = conn
                try! conn.startReading(onRead: { bytes in
                    if !server.resumed { server.readsBeforeResume += 1 }
                    bytes.withUnsafeBytes { server.received.append(contentsOf: $0) }
                    server.poke()
                }, onEnd: { _ in })
                conn.pauseReading()  // before any read could happen
                conn.pauseReading()  // twice is harmless
                server.poke()
            }
            server.listener = listener
            done(listener.port)
        }
        // Round 1: the server is paused; the client writes until the rest queues.
        let round1: (sent: Int, queued: Int) = await onLoop(clientLoop) { done in
            try! UVTCPConnection.connect(loop: clientLoop, host: "127.0.0.1", port: port, timeoutMs: 5000) { result in
                let conn = try! result.get()
                client.conn = conn
                conn.onWriteDrained = {
                    client.drains.append(conn.writeQueueSize)
                    client.poke()
                }
                var sent = writeUntilQueued(conn, chunk: chunk)
                // More on top: these go to the queue whole.
                for _ in 0..<8 { try! conn.write(chunk) }
                sent += 8 * chunk.count
                done((sent, conn.writeQueueSize))
            }
        }
        #expect(round1.queued > 0)
        // The server, still paused, has read nothing; resumed, it gets everything.
        let serverRound1: (readsBeforeResume: Int, received: [UInt8]) = await onLoop(serverLoop) { done in
            func check() {
                guard let conn = server.conn else { return }
                if !server.resumed {
                    server.resumed = true
                    conn.resumeReading()  // the callbacks given to startReading
                    conn.resumeReading()  // twice is harmless
                }
                if server.received.count >= round1.sent { server.waiter = nil; done((server.readsBeforeResume, server.received)) }
            }
            server.waiter = check
            check()
        }
        #expect(serverRound1.readsBeforeResume == 0)
        #expect(serverRound1.received.count == round1.sent)
        let intact = stride(from: 0, to: serverRound1.received.count, by: chunk.count).allSatisfy {
            serverRound1.received[$0..<$0 + chunk.count].elementsEqual(chunk)
        }
        #expect(intact)
        // The client's queue drained: onWriteDrained ran once, with the queue empty.
        let drains1: [Int] = await onLoop(clientLoop) { done in
            func check() { if !client.drains.isEmpty { client.waiter = nil; done(client.drains) } }
            client.waiter = check
            check()
        }
        #expect(drains1 == [0])

        // Round 2: with a low-water mark, onWriteDrained runs once the queue is down to it.
        let mark = 256 << 10
        let queued2: Int = await onLoop(clientLoop) { done in
            let conn = client.conn!
            conn.writeLowWaterMark = mark
            try! conn.write([UInt8](repeating: 3, count: 16 << 20))
            done(conn.writeQueueSize)
        }
        #expect(queued2 > mark)
        let drains2: [Int] = await onLoop(clientLoop) { done in
            func check() { if client.drains.count >= 2 { client.waiter = nil; done(client.drains) } }
            client.waiter = check
            check()
        }
        #expect(drains2.count == 2)
        #expect(drains2.last.map { $0 <= mark } == true)
        let total2: Int = await onLoop(serverLoop) { done in
            func check() { if server.received.count >= round1.sent + (16 << 20) { server.waiter = nil; done(server.received.count) } }
            server.waiter = check
            check()
        }
        #expect(total2 == round1.sent + (16 << 20))
        let drainsAtEnd: Int = await onLoop(clientLoop) { done in
            client.conn!.close()
            done(client.drains.count)
        }
        #expect(drainsAtEnd == 2)
        _ = await onLoop(serverLoop) { (done: @escaping @Sendable (Bool) -> Void) in
            server.conn?.close()
            server.listener?.close()
            done(true)
        }
        clientLoop.shutdown()
        serverLoop.shutdown()
        #expect(clientLoop.closeStatus == 0)
        #expect(serverLoop.closeStatus == 0)
    }

    @Test("socket buffer sizes can be set and read back; bad values are refused")
    func bufferSizes() async throws {
        let loop = try UVLoop()
        let result: (send: Int32?, receive: Int32?, zero: String, afterClose: String, nilAfterClose: Bool) = await onLoop(loop) { done in
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { $0.close() }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let conn = try! result.get()
                try! conn.setSendBufferSize(8192)
                try! conn.setReceiveBufferSize(8192)
                let send = conn.sendBufferSize
                let receive = conn.receiveBufferSize
                var zero = "none"
                do throws(UVError) { try conn.setSendBufferSize(0) } catch { zero = error.name }
                conn.close()
                var afterClose = "none"
                do throws(UVError) { try conn.setReceiveBufferSize(8192) } catch { afterClose = error.name }
                listener.close()
                done((send, receive, zero, afterClose, conn.sendBufferSize == nil))
            }
        }
        // Linux doubles the value asked for (for its own bookkeeping).
        #expect(result.send.map { $0 >= 8192 && $0 <= 4 * 8192 } == true)
        #expect(result.receive.map { $0 >= 8192 && $0 <= 4 * 8192 } == true)
        #expect(result.zero == "EINVAL")
        #expect(result.afterClose == "ENOTCONN")
        #expect(result.nilAfterClose)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }
}
