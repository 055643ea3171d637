import Testing
@testable import UV

@Suite("UVTCP", .timeLimit(.minutes(1)))
struct UVTCPTests {
    @Test("1 MiB echoed over loopback: both directions carry every byte in order")
    func echoOneMebibyte() async throws {
        let loop = try UVLoop()
        let payload = pattern(count: 1 << 20, seed: 7)
        let result: (echoed: [UInt8], serverGot: Int, handlesAfter: Int) = await onLoop(loop) { done in
            var serverGot = 0
            var connections: [UVTCPConnection] = []
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                connections.append(conn)
                try! conn.startReading(onRead: { bytes in
                    serverGot += bytes.byteCount
                    try? conn.write(bytes)  // echo
                }, onEnd: { _ in
                    conn.shutdown { _ in conn.close() }  // echo the half-close back
                })
            }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let client = try! result.get()
                var echoed: [UInt8] = []
                echoed.reserveCapacity(payload.count)
                try! client.startReading(onRead: { bytes in
                    bytes.withUnsafeBytes { echoed.append(contentsOf: $0) }
                }, onEnd: { error in
                    #expect(error == nil)
                    client.close()
                    listener.close()
                    client.onClose = {
                        // Every handle is closed or closing now; count what is left on the next tick.
                        let probe = try! UVTimer(loop: loop)
                        try! probe.start(timeoutMs: 1) {
                            probe.close()
                            done((echoed, serverGot, loop.openHandleCount()))
                        }
                    }
                })
                // Write in uneven pieces to exercise partial writes and queueing.
                var offset = 0
                var step = 1000
                while offset < payload.count {
                    let end = min(payload.count, offset + step)
                    try! client.write(payload[offset..<end])
                    offset = end
                    step = step * 3 % 70_001 + 1
                }
                client.shutdown()
            }
        }
        #expect(result.serverGot == payload.count)
        #expect(result.echoed.count == payload.count)
        #expect(result.echoed == payload)
        #expect(result.handlesAfter == 0)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("200 connections opened and closed leave no handle behind")
    func twoHundredConnections() async throws {
        let loop = try UVLoop()
        let total = 200
        let result: (accepted: Int, connected: Int, closed: Int, handles: Int) = await onLoop(loop) { done in
            var accepted = 0, connected = 0, closed = 0
            var listener: UVTCPListener!
            func finishIfDone() {
                guard closed == 2 * total else { return }
                listener.close()
                let probe = try! UVTimer(loop: loop)
                try! probe.start(timeoutMs: 1) {
                    probe.close()
                    done((accepted, connected, closed, loop.openHandleCount()))
                }
            }
            listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                accepted += 1
                conn.onClose = { closed += 1; finishIfDone() }
                try! conn.startReading(onRead: { _ in }, onEnd: { _ in conn.close() })
            }
            for _ in 0..<total {
                try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                    guard case .success(let conn) = result else { return }
                    connected += 1
                    conn.onClose = { closed += 1; finishIfDone() }
                    conn.close()
                }
            }
        }
        #expect(result.accepted == total)
        #expect(result.connected == total)
        #expect(result.closed == 2 * total)
        #expect(result.handles == 0)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("connecting to a closed port fails with ECONNREFUSED and libuv's message")
    func connectRefused() async throws {
        let loop = try UVLoop()
        let error: UVError? = await onLoop(loop) { done in
            // Take a free port, then close it so nothing listens there.
            let probe = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { _ in }
            let port = probe.port
            probe.close()
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: port, timeoutMs: 5000) { result in
                if case .failure(let e) = result { done(e) } else { done(nil) }
            }
        }
        let e = try #require(error)
        #expect(e.code == UVError.connectionRefused)
        #expect(e.name == "ECONNREFUSED")
        #expect(e.message == "connection refused")
        #expect(e.description.contains("connect to 127.0.0.1:"))
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("bad addresses are refused before dialling, with a clear error")
    func badAddresses() async throws {
        let loop = try UVLoop()
        let errors: [String] = await onLoop(loop) { done in
            var out: [String] = []
            do throws(UVError) { _ = try UVTCPConnection.connect(loop: loop, host: "not-an-ip", port: 80, timeoutMs: 10) { _ in } } catch { out.append(error.name) }
            do throws(UVError) { _ = try UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: 70000, timeoutMs: 10) { _ in } } catch { out.append(error.name) }
            do throws(UVError) { _ = try UVTCPListener(loop: loop, host: "127.0.0.1", port: -1) { _ in } } catch { out.append(error.name) }
            done(out)
        }
        #expect(errors == ["EINVAL", "EINVAL", "EINVAL"])
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("closing a connection before it is established reports ECANCELED once")
    func cancelConnect() async throws {
        let loop = try UVLoop()
        let outcome: (String, Int) = await onLoop(loop) { done in
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { $0.close() }
            var calls = 0
            let conn = try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                calls += 1
                let name: String
                switch result {
                case .success: name = "connected"
                case .failure(let e): name = e.name
                }
                let probe = try! UVTimer(loop: loop)
                try! probe.start(timeoutMs: 5) {
                    probe.close()
                    listener.close()
                    done((name, calls))
                }
            }
            conn.close()
        }
        #expect(outcome.0 == "ECANCELED")
        #expect(outcome.1 == 1)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("half-close: the peer reads the bytes, then EOF, and can still answer")
    func halfClose() async throws {
        let loop = try UVLoop()
        let result: (server: String, client: String, clientEOF: Bool) = await onLoop(loop) { done in
            var serverText = ""
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                try! conn.startReading(onRead: { bytes in
                    bytes.withUnsafeBytes { serverText += String(decoding: $0, as: UTF8.self) }
                }, onEnd: { error in
                    #expect(error == nil)
                    try! conn.write("bye")
                    conn.shutdown { _ in conn.close() }
                })
            }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let client = try! result.get()
                var clientText = ""
                try! client.startReading(onRead: { bytes in
                    bytes.withUnsafeBytes { clientText += String(decoding: $0, as: UTF8.self) }
                }, onEnd: { error in
                    client.close()
                    listener.close()
                    done((serverText, clientText, error == nil))
                })
                try! client.write("hello")
                client.shutdown()
            }
        }
        #expect(result.server == "hello")
        #expect(result.client == "bye")
        #expect(result.clientEOF)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("the write queue grows while the peer does not read, and drains when it does")
    func writeQueueVisible() async throws {
        let loop = try UVLoop()
        let result: (queued: Int, received: Int, drained: Int) = await onLoop(loop) { done in
            var server: UVTCPConnection?
            let total = 16 << 20
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in server = conn }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let client = try! result.get()
                let chunk = [UInt8](repeating: 0xAB, count: 1 << 20)
                for _ in 0..<(total >> 20) { try! client.write(chunk) }
                let queued = client.writeQueueSize
                var received = 0
                let start = try! UVTimer(loop: loop)
                try! start.start(timeoutMs: 1) {
                    start.close()
                    try! server!.startReading(onRead: { bytes in
                        received += bytes.byteCount
                        if received == total {
                            let drained = client.writeQueueSize
                            client.close(); server!.close(); listener.close()
                            done((queued, received, drained))
                        }
                    }, onEnd: { _ in })
                }
            }
        }
        #expect(result.queued > 0)
        #expect(result.received == 16 << 20)
        #expect(result.drained == 0)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("shutdown closes open connections, listeners and pending timers cleanly")
    func shutdownWithOpenHandles() async throws {
        let loop = try UVLoop()
        let closes = UVLocked(0)
        let ready: Int = await onLoop(loop) { done in
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
                conn.onClose = { closes.withLock { $0 += 1 } }
                try! conn.startReading(onRead: { _ in }, onEnd: { _ in })
            }
            let timer = try! UVTimer(loop: loop)
            try! timer.start(timeoutMs: 3_600_000) {}
            let repeating = try! UVTimer(loop: loop)
            try! repeating.start(timeoutMs: 1000, repeatMs: 1000) {}
            var connected = 0
            for _ in 0..<5 {
                try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                    let conn = try! result.get()
                    conn.onClose = { closes.withLock { $0 += 1 } }
                    try! conn.write("pending bytes")
                    connected += 1
                    if connected == 5 { done(loop.openHandleCount()) }
                }
            }
        }
        #expect(ready >= 8)  // listener, two timers, five dialled (plus accepted ones)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
        #expect(closes.withLock { $0 } >= 5)
    }
}

@Suite("UVTCP connect timeout", .timeLimit(.minutes(1)))
struct UVConnectTimeoutTests {
    @Test("a dial that the peer never completes fails with ETIMEDOUT after the timeout, once")
    func connectTimesOut() async throws {
        let loop = try UVLoop()
        let outcome: (names: [String], timedOutAfterMs: UInt64) = await onLoop(loop) { done in
            // A listener with a backlog of 1 that never accepts: once its queue is full, the
            // kernel drops further SYNs and those dials hang.
            let stuck = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0, backlog: 1) { _ in }
            stuck.leavesConnectionsPending = true
            var names: [String] = []
            var finished = 0
            let total = 8
            let start = loop.nowMs
            var lastFailureMs: UInt64 = 0
            for _ in 0..<total {
                try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: stuck.port, timeoutMs: 300) { result in
                    finished += 1
                    switch result {
                    case .success(let conn): names.append("connected"); conn.close()
                    case .failure(let e): names.append(e.name); lastFailureMs = loop.nowMs - start
                    }
                    if finished == total {
                        stuck.close()
                        done((names, lastFailureMs))
                    }
                }
            }
        }
        // Some dials fit in the backlog and complete; the rest time out.
        #expect(outcome.names.contains("ETIMEDOUT"))
        #expect(outcome.names.allSatisfy { $0 == "ETIMEDOUT" || $0 == "connected" })
        #expect(outcome.timedOutAfterMs >= 300)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }
}

@Suite("UVTCP out of descriptors", .timeLimit(.minutes(1)))
struct UVListenerDescriptorTests {
    @Test("hole 1: a listener out of descriptors pauses instead of spinning: it gives up a spare, reports once, leaves the next connection waiting, and hands it on after the pause (issue 16 #1)")
    func hole1ListenerPausesOutOfDescriptors() async throws {
        let loop = try UVLoop()
        struct Outcome: Sendable {
            var sparesBefore = 0, sparesAfterFirst = 0, sparesAtEnd = 0
            var errors: [String] = []
            var acceptedAfterMs: UInt64 = 0
            var accepted = 0
        }
        let outcome: Outcome = await onLoop(loop) { done in
            var outcome = Outcome()
            var client: UVTCPConnection?
            var listener: UVTCPListener?
            let start = loop.nowMs
            listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0, onAcceptError: { outcome.errors.append($0.name) }) { conn in
                outcome.accepted += 1
                outcome.acceptedAfterMs = loop.nowMs - start
                outcome.sparesAtEnd = listener!.spareDescriptorCount
                conn.close()
                client?.close()
                listener!.close()
                done(outcome)
            }
            listener!.descriptorPauseMs = 200
            outcome.sparesBefore = listener!.spareDescriptorCount
            // What libuv's accept loop does when the process has no descriptor left: it calls
            // back with EMFILE, and (its own spare lost) again at once, for as long as it lasts.
            listener!.accept(status: UVError.tooManyOpenFiles)
            outcome.sparesAfterFirst = listener!.spareDescriptorCount
            listener!.accept(status: UVError.tooManyOpenFiles)
            listener!.accept(status: UVError.fileTableFull)
            // A connection arrives during the pause: libuv takes it (into the descriptor a spare
            // freed), and the listener leaves it waiting until the pause ends.
            client = try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener!.port, timeoutMs: 5000) { _ in }
        }
        loop.shutdown()
        #expect(outcome.sparesBefore == 2)
        #expect(outcome.sparesAfterFirst == 1)
        #expect(outcome.errors.count == 1, "\(outcome.errors)")
        #expect(outcome.accepted == 1)
        #expect(outcome.acceptedAfterMs >= 190, "handed on after \(outcome.acceptedAfterMs) ms, within the pause")
        #expect(outcome.sparesAtEnd == 2)
        #expect(loop.closeStatus == 0)
    }
}
