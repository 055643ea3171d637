import Foundation
import Testing
import UV

@Suite("UVFile", .timeLimit(.minutes(1)))
struct UVFileTests {
    func scratchDirectory() -> String {
        NSTemporaryDirectory() + "uvfile-\(UUID().uuidString)"
    }

    @Test("an atomic write replaces the content and leaves no temporary file")
    func writeReadReplace() throws {
        let dir = scratchDirectory() + "/a/b"
        try UVFile.makeDirectories(path: dir)
        try UVFile.makeDirectories(path: dir)  // existing is fine
        let path = dir + "/state"
        #expect(try UVFile.read(path: path) == nil)
        try UVFile.writeAtomically(path: path, bytes: Array("first".utf8))
        #expect(try UVFile.read(path: path) == Array("first".utf8))
        let big = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try UVFile.writeAtomically(path: path, bytes: big)
        #expect(try UVFile.read(path: path) == big)
        #expect(try UVFile.read(path: path + ".tmp") == nil)
        try UVFile.remove(path: path)
        try UVFile.remove(path: path)
        #expect(try UVFile.read(path: path) == nil)
    }

    @Test("a write in place extends a new file to its size with zeros, writes at the offset, and leaves the rest as it was")
    func writeInPlace() throws {
        let dir = scratchDirectory()
        try UVFile.makeDirectories(path: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/slots"
        try UVFile.writeInPlace(path: path, offset: 8, bytes: [1, 2, 3], size: 16, beforeSync: nil)
        #expect(try UVFile.read(path: path) == [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0])
        try UVFile.writeInPlace(path: path, offset: 0, bytes: [9, 9], size: 16, beforeSync: nil)
        #expect(try UVFile.read(path: path) == [9, 9, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0])
        // A directory where the file should be: the open fails, naming the path.
        try UVFile.makeDirectories(path: dir + "/taken")
        do {
            try UVFile.writeInPlace(path: dir + "/taken", offset: 0, bytes: [1], size: 16, beforeSync: nil)
            Issue.record("wrote into a directory")
        } catch {
            #expect(error.operation.contains(dir + "/taken"), "\(error)")
        }
    }

    @Test("errors name the operation and libuv's reason")
    func errors() throws {
        #expect(throws: UVError.self) { try UVFile.writeAtomically(path: "/nonexistent-dir-\(UUID().uuidString)/x", bytes: [1]) }
        do {
            try UVFile.writeAtomically(path: "/nonexistent-dir-x1/x", bytes: [1])
        } catch {
            #expect(error.name == "ENOENT")
            #expect(error.description.contains("open /nonexistent-dir-x1/x.tmp"))
        }
        #expect(throws: UVError.self) { _ = try UVFile.read(path: "/", maxBytes: 10) }
    }

    @Test("durable writes off the loop: the write runs on the thread pool and completes on the loop thread")
    func writeOffTheLoop() async throws {
        let dir = scratchDirectory()
        try UVFile.makeDirectories(path: dir)
        let path = dir + "/state"
        let loop = try UVLoop(name: "file")
        let bytes = pattern(count: 300_000, seed: 3)
        let outcome: (error: UVError?, onLoop: Bool) = await onLoop(loop) { done in
            UVFile.writeAtomically(path: path, bytes: bytes, on: loop) { error in done((error, loop.inEventLoop)) }
        }
        #expect(outcome.error == nil)
        #expect(outcome.onLoop)
        #expect(try UVFile.read(path: path) == bytes)
        #expect(try UVFile.read(path: path + ".tmp") == nil)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("durable writes off the loop: a missing directory is reported through the completion, on the loop")
    func writeOffTheLoopError() async throws {
        let loop = try UVLoop(name: "file")
        let path = scratchDirectory() + "/missing/state"
        let outcome: (error: UVError?, onLoop: Bool, calls: Int) = await onLoop(loop) { done in
            var calls = 0
            UVFile.writeAtomically(path: path, bytes: [1, 2, 3], on: loop) { error in
                calls += 1
                // Report on the next turn, so that a second call would be counted.
                let probe = try! UVTimer(loop: loop)
                try! probe.start(timeoutMs: 1) {
                    probe.close()
                    done((error, loop.inEventLoop, calls))
                }
            }
        }
        #expect(outcome.error?.name == "ENOENT")
        #expect(outcome.error?.description.contains("open \(path).tmp") == true)
        #expect(outcome.onLoop)
        #expect(outcome.calls == 1)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("durable writes block the loop: other callbacks run on the loop while a write waits for its fsync")
    func loopRunsDuringWrite() async throws {
        let dir = scratchDirectory()
        try UVFile.makeDirectories(path: dir)
        let path = dir + "/state"
        let loop = try UVLoop(name: "file")
        let release = UVSemaphore()
        // The worker, about to fsync, hands the loop a callback and waits until that callback has
        // run on the loop: this completes only if the loop is free while the write is under way.
        let events = UVLocked<[String]>([])
        let seen: [String] = await onLoop(loop) { done in
            UVFile.writeAtomically(path: path, bytes: Array("durable".utf8), on: loop, beforeSync: {
                loop.execute {
                    events.withLock { $0.append("loop callback during the write") }
                    release.signal()
                }
                release.wait()
            }, completion: { error in
                events.withLock { $0.append(error == nil ? "write done" : "write failed: \(error!)") }
                done(events.withLock { $0 })
            })
            events.withLock { $0.append("write started") }
        }
        #expect(seen == ["write started", "loop callback during the write", "write done"])
        #expect(try UVFile.read(path: path) == Array("durable".utf8))
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("durable writes at shutdown: one not started is cancelled, one under way finishes, one asked for during shutdown is refused")
    func writesAtShutdown() async throws {
        let dir = scratchDirectory()
        try UVFile.makeDirectories(path: dir)
        let loop = try UVLoop(name: "file")
        // Occupy every thread of libuv's pool with a write held before its fsync, so that one more
        // write stays queued.
        let poolSize = min(1024, max(1, Int(ProcessInfo.processInfo.environment["UV_THREADPOOL_SIZE"] ?? "") ?? 4))
        let entered = UVSemaphore()
        let release = UVSemaphore()
        let results = UVLocked<[String: String]>([:])
        let queuedDone = UVSemaphore()
        let duringDone = UVSemaphore()
        @Sendable func record(_ name: String, _ error: UVError?) {
            results.withLock { $0[name] = error?.name ?? "ok" }
        }
        _ = await onLoop(loop) { (done: @escaping @Sendable (Bool) -> Void) in
            for i in 0..<poolSize {
                UVFile.writeAtomically(path: dir + "/held\(i)", bytes: [UInt8(i)], on: loop, beforeSync: {
                    entered.signal()
                    release.wait()
                }, completion: { record("held\(i)", $0) })
            }
            // A connection whose close callback (run by shutdown) asks for one more write.
            let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { _ in }
            try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5000) { result in
                let conn = try! result.get()
                conn.onClose = {
                    UVFile.writeAtomically(path: dir + "/during", bytes: [9], on: loop) { error in
                        record("during", error)
                        duringDone.signal()
                    }
                }
                done(true)
            }
        }
        await onThreads(1) { _ in for _ in 0..<poolSize { entered.wait() } }
        loop.execute {
            UVFile.writeAtomically(path: dir + "/queued", bytes: [7], on: loop) { error in
                record("queued", error)
                queuedDone.signal()
            }
        }
        // Shut down on a thread of its own (it waits for the held writes), and release the held
        // writes only once the queued one and the one asked for during shutdown have reported.
        await onThreads(2) { t in
            if t == 0 {
                loop.shutdown()
            } else {
                queuedDone.wait()
                duringDone.wait()
                for _ in 0..<poolSize { release.signal() }
            }
        }
        let got = results.withLock { $0 }
        #expect(got["queued"] == "ECANCELED")
        #expect(got["during"] == "ECANCELED")
        for i in 0..<poolSize {
            #expect(got["held\(i)"] == "ok")
            #expect(try UVFile.read(path: dir + "/held\(i)") == [UInt8(i)])
        }
        #expect(try UVFile.read(path: dir + "/queued") == nil)
        #expect(try UVFile.read(path: dir + "/during") == nil)
        #expect(loop.closeStatus == 0)
    }
}
