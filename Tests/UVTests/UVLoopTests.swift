import Dispatch
import Glibc
import Testing
import UV

@Suite("UVLoop", .timeLimit(.minutes(1)))
struct UVLoopTests {
    @Test("work handed from many threads at once all runs, in per-thread order, none lost")
    func manyThreadsExecute() async throws {
        let loop = try UVLoop(name: "exec")
        let threads = 8
        let perThread = 5_000
        // Loop-thread state, only touched by work running on the loop.
        final class Tally: @unchecked Sendable {
            var count = 0
            var lastByThread = [Int](repeating: -1, count: 8)
            var outOfOrder = 0
        }
        let tally = Tally()
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0..<perThread {
                let ok = loop.execute {
                    if tally.lastByThread[t] != i - 1 { tally.outOfOrder += 1 }
                    tally.lastByThread[t] = i
                    tally.count += 1
                }
                precondition(ok)
            }
        }
        let (count, outOfOrder) = await onLoop(loop) { done in done((tally.count, tally.outOfOrder)) }
        #expect(count == threads * perThread)
        #expect(outOfOrder == 0)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("executeAndWait returns the loop's result, runs inline on the loop thread, and refuses after shutdown")
    func executeAndWait() throws {
        let loop = try UVLoop()
        #expect(loop.executeAndWait { loop.inEventLoop } == true)
        // Nested: on the loop thread it runs at once instead of waiting for itself.
        #expect(loop.executeAndWait { loop.executeAndWait { 41 }.map { $0 + 1 } } == 42)
        loop.shutdown()
        #expect(loop.executeAndWait { 1 } == nil)
    }

    @Test("inEventLoop is true only on the loop thread")
    func inEventLoop() async throws {
        let loop = try UVLoop()
        #expect(!loop.inEventLoop)
        let inside = await onLoop(loop) { done in done(loop.inEventLoop) }
        #expect(inside)
        loop.shutdown()
    }

    @Test("after shutdown, execute refuses work; shutdown is idempotent")
    func executeAfterShutdown() async throws {
        let loop = try UVLoop()
        loop.shutdown()
        loop.shutdown()
        #expect(loop.execute {} == false)
        #expect(loop.closeStatus == 0)
    }

    @Test("shutdown races: execute and executeAndWait from several threads while another thread shuts the loop down")
    func executeDuringShutdown() async throws {
        // Each round: three threads hand work to the loop as fast as they can until it refuses;
        // a fourth shuts the loop down once they are under way. Work accepted must run; nothing
        // may touch the loop's wake-up handle after it is freed (ASan and TSan check that).
        for round in 0..<300 {
            let loop = try UVLoop(name: "race-\(round)")
            let accepted = UVLocked(0)
            let ran = UVLocked(0)
            let underWay = UVSemaphore()
            await onThreads(4) { t in
                if t == 3 {
                    underWay.wait()
                    loop.shutdown()
                    return
                }
                for i in 0..<20_000 {
                    if i == 100 && t == 0 { underWay.signal() }
                    if i % 50 == 49 {
                        guard loop.executeAndWait({ ran.withLock { $0 += 1 } }) != nil else { break }
                        accepted.withLock { $0 += 1 }
                    } else {
                        guard loop.execute({ ran.withLock { $0 += 1 } }) else { break }
                        accepted.withLock { $0 += 1 }
                    }
                }
            }
            #expect(loop.execute {} == false)
            #expect(loop.executeAndWait { 1 } == nil)
            #expect(ran.withLock { $0 } == accepted.withLock { $0 })
            #expect(loop.closeStatus == 0)
        }
    }

    @Test("work queued before shutdown still runs")
    func queuedWorkRunsBeforeShutdown() async throws {
        let loop = try UVLoop()
        let ran = UVLocked(0)
        for _ in 0..<100 { loop.execute { ran.withLock { $0 += 1 } } }
        loop.shutdown()
        #expect(ran.withLock { $0 } == 100)
    }
}

@Suite("UVTimer", .timeLimit(.minutes(1)))
struct UVTimerTests {
    @Test("one-shot timers fire in deadline order, whatever order they were armed in")
    func deadlineOrder() async throws {
        let loop = try UVLoop()
        let deadlines: [UInt64] = [50, 10, 30, 0, 20, 40, 25, 5]
        let order: [UInt64] = await onLoop(loop) { done in
            var fired: [UInt64] = []
            for d in deadlines {
                let timer = try! UVTimer(loop: loop)
                try! timer.start(timeoutMs: d) {
                    fired.append(d)
                    timer.close()
                    if fired.count == deadlines.count { done(fired) }
                }
            }
        }
        #expect(order == deadlines.sorted())
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("a repeating timer repeats; a stopped timer never fires; a re-armed timer uses its new schedule")
    func repeatStopRearm() async throws {
        let loop = try UVLoop()
        let result: (Int, Bool, String) = await onLoop(loop) { done in
            var ticks = 0
            var cancelledFired = false
            let cancelled = try! UVTimer(loop: loop)
            try! cancelled.start(timeoutMs: 5) { cancelledFired = true }
            cancelled.stop()
            let rearmed = try! UVTimer(loop: loop)
            var which = ""
            try! rearmed.start(timeoutMs: 1) { which = "first" }
            try! rearmed.start(timeoutMs: 15) { which = "second" }
            let repeating = try! UVTimer(loop: loop)
            try! repeating.start(timeoutMs: 1, repeatMs: 2) {
                ticks += 1
                if ticks == 5 {
                    repeating.stop()
                    // Give the stopped and re-armed timers time to (not) fire.
                    let after = try! UVTimer(loop: loop)
                    try! after.start(timeoutMs: 30) {
                        done((ticks, cancelledFired, which))
                        after.close()
                    }
                }
            }
        }
        #expect(result.0 == 5)
        #expect(result.1 == false)
        #expect(result.2 == "second")
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("a periodic timer keeps its fixed schedule after a stalled loop and skips the ticks it missed")
    func periodicKeepsSchedule() async throws {
        let loop = try UVLoop()
        // (start, due times seen from the callbacks, missed ticks)
        let result: (UInt64, [UInt64], UInt64) = await onLoop(loop) { done in
            let timer = try! UVTimer(loop: loop)
            let start = loop.nowMs
            var dues: [UInt64] = []
            try! timer.startPeriodic(firstTimeoutMs: 1, periodMs: 40) {
                dues.append(timer.nextDueMs)
                if dues.count == 1 {
                    usleep(100_000)  // a busy pass: the loop is late for the next tick, and for one more
                } else if dues.count == 4 {
                    timer.close()
                    done((start, dues, timer.missedTicks))
                }
            }
        }
        let (start, dues, missed) = result
        // Every tick is due at start + 1 + k·40, whenever the callbacks ran (libuv's repeat would
        // count from the late pass instead).
        for due in dues { #expect((due - start - 1) % 40 == 0, "due \(due - start) ms after the start") }
        #expect(zip(dues, dues.dropFirst()).allSatisfy { $0 < $1 })
        #expect(missed >= 1)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }

    @Test("a closed timer reports closed; closing twice is harmless")
    func closeTwice() async throws {
        let loop = try UVLoop()
        let handles: Int = await onLoop(loop) { done in
            let t = try! UVTimer(loop: loop)
            try! t.start(timeoutMs: 1000) {}
            t.close()
            t.close()
            let check = try! UVTimer(loop: loop)
            try! check.start(timeoutMs: 0) {
                check.close()
                done(loop.openHandleCount() + (t.isClosed ? 0 : 100))
            }
        }
        #expect(handles == 0)
        loop.shutdown()
        #expect(loop.closeStatus == 0)
    }
}

@Suite("UVLoop signals", .timeLimit(.minutes(1)))
struct UVSignalTests {
    @Test("SIGPIPE: a process with SIGPIPE at its default survives writes to a connection its peer closed")
    func sigpipeDoesNotKillTheProcess() async throws {
        let child = try #require(executableBesideTests("uv-pipe-check"), "build it first: swift build --build-tests")
        let outcome = try await runChildWithDefaultSIGPIPE(child, timeoutMs: 30_000)
        #expect(outcome == .exited(0), "uv-pipe-check \(outcome) (signal 13 is SIGPIPE)")
    }
}

@Suite("UVProcess.releaseCodePages", .timeLimit(.minutes(1)))
struct UVReleaseCodePagesTests {
    /// In a child process (`uv-pipe-check release-code-pages`, see there): the release reads all
    /// of /proc/self/smaps, which in this runner would hold up the other tests' page faults.
    @Test("lets go of a read-only file mapping nothing wrote; keeps one holding a written (copy-on-write) page, and its content")
    func releasesCleanMappingsOnly() async throws {
        let child = try #require(executableBesideTests("uv-pipe-check"), "build it first: swift build --build-tests")
        let outcome = try await runChildWithDefaultSIGPIPE(child, arguments: ["release-code-pages"], timeoutMs: 30_000)
        #expect(outcome == .exited(0), "uv-pipe-check release-code-pages \(outcome) (5: a wrong mapping let go; 2: setup)")
    }
}
