import Testing
@testable import UV

@Suite("UVUDP", .timeLimit(.minutes(1)))
struct UVUDPTests {
    @Test("a batch of datagrams to two sockets: each arrives whole, to its own socket; all handles close")
    func batchArrivesWhole() async throws {
        let loop = try UVLoop()
        defer { loop.shutdown() }
        let result: (a: [[UInt8]], b: [[UInt8]], sent: Int, handlesAfter: Int) = await onLoop(loop) { done in
            let a = try! UVUDPSocket(loop: loop, host: "127.0.0.1", port: 0)
            let b = try! UVUDPSocket(loop: loop, host: "127.0.0.1", port: 0)
            let sender = try! UVUDPSocket(loop: loop, host: "127.0.0.1", port: 0)
            var gotA: [[UInt8]] = [], gotB: [[UInt8]] = []
            func finishIfDone() {
                guard gotA.count == 3, gotB.count == 2 else { return }
                for s in [a, b, sender] { s.close() }
                let probe = try! UVTimer(loop: loop)
                try! probe.start(timeoutMs: 1) {
                    probe.close()
                    done((gotA, gotB, 5, loop.openHandleCount()))
                }
            }
            try! a.startReceiving { bytes in
                bytes.withUnsafeBytes { gotA.append(Array($0)) }
                finishIfDone()
            }
            try! b.startReceiving { bytes in
                bytes.withUnsafeBytes { gotB.append(Array($0)) }
                finishIfDone()
            }
            #expect(a.port != 0 && b.port != 0 && a.port != b.port)
            let toA = try! UVDatagramTarget(host: "127.0.0.1", port: a.port)
            let toB = try! UVDatagramTarget(host: "127.0.0.1", port: b.port)
            var batch = UVDatagramBatch()
            for (i, to) in [toA, toB, toA, toB, toA].enumerated() {
                batch.append(to: to) { out, start in
                    #expect(start == out.count)
                    out += pattern(count: 100 + i, seed: UInt8(i))
                }
            }
            batch.append(to: toA) { _, _ in }  // appends nothing: no datagram
            #expect(batch.count == 5)
            #expect(sender.send(&batch) == 5)
            #expect(batch.isEmpty)
        }
        #expect(result.a == [0, 2, 4].map { pattern(count: 100 + $0, seed: UInt8($0)) })
        #expect(result.b == [1, 3].map { pattern(count: 100 + $0, seed: UInt8($0)) })
        #expect(result.handlesAfter == 0)
    }

    @Test("binding a taken port fails with libuv's reason; a bad address is refused")
    func bindErrors() async throws {
        let loop = try UVLoop()
        defer { loop.shutdown() }
        let errors: [String] = await onLoop(loop) { done in
            let first = try! UVUDPSocket(loop: loop, host: "127.0.0.1", port: 0)
            var errors: [String] = []
            do { _ = try UVUDPSocket(loop: loop, host: "127.0.0.1", port: first.port) } catch { errors.append("\(error)") }
            do { _ = try UVDatagramTarget(host: "not-an-ip", port: 1) } catch { errors.append("\(error)") }
            first.close()
            done(errors)
        }
        #expect(errors.count == 2)
        #expect(errors.first?.contains("EADDRINUSE") == true)
    }

    @Test("a datagram to a port where nothing listens is reported refused, with the address it went to; the socket keeps receiving")
    func refusalsReported() async throws {
        let loop = try UVLoop()
        defer { loop.shutdown() }
        let result: (refused: [Int], goneEchoes: [Int], after: [UInt8]?, handles: Int) = await onLoop(loop) { done in
            // Ports bound by the kernel's choice and closed at once: nothing listens there (a
            // process could bind one meanwhile; three of them make that harmless).
            let gone = (0..<3).map { _ -> Int in
                let s = try! UVUDPSocket(loop: loop, host: "127.0.0.1", port: 0)
                defer { s.close() }
                return s.port
            }
            let live = try! UVUDPSocket(loop: loop, host: "127.0.0.1", port: 0)
            let sender = try! UVUDPSocket(loop: loop, host: "127.0.0.1", port: 0)
            var refused: [Int] = []
            var finished = false
            let deadline = try! UVTimer(loop: loop)
            func finish(_ after: [UInt8]?) {
                guard !finished else { return }
                finished = true
                for s in [live, sender] { s.close() }
                deadline.close()
                let probe = try! UVTimer(loop: loop)
                try! probe.start(timeoutMs: 1) {
                    probe.close()
                    done((refused, gone, after, loop.openHandleCount()))
                }
            }
            try! sender.reportRefusals { address in
                #expect(address.host == "127.0.0.1")
                refused.append(address.port)
                guard refused.count == 1 else { return }
                // After a refusal the socket still receives: the live socket answers it.
                var batch = UVDatagramBatch()
                batch.append(to: try! UVDatagramTarget(host: "127.0.0.1", port: live.port)) { out, _ in out += [1, 2, 3] }
                _ = sender.send(&batch)
            }
            try! sender.startReceiving { bytes in finish(bytes.withUnsafeBytes { Array($0) }) }
            try! live.startReceiving { bytes in
                var batch = UVDatagramBatch()
                let echo = bytes.withUnsafeBytes { Array($0) }
                batch.append(to: try! UVDatagramTarget(host: "127.0.0.1", port: sender.port)) { out, _ in out += echo }
                _ = live.send(&batch)
            }
            var batch = UVDatagramBatch()
            for port in gone { batch.append(to: try! UVDatagramTarget(host: "127.0.0.1", port: port)) { out, _ in out += [9] } }
            #expect(sender.send(&batch) == 3)
            try! deadline.start(timeoutMs: 5_000) { finish(nil) }
        }
        #expect(!result.refused.isEmpty && result.refused.allSatisfy(result.goneEchoes.contains), "refused \(result.refused), sent to \(result.goneEchoes)")
        #expect(result.after == [1, 2, 3])
        #expect(result.handles == 0)
    }
}
