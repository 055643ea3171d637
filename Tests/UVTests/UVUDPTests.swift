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
}
