// uv-pipe-check: a child process for the SIGPIPE test (UVTests). It checks that SIGPIPE is at its
// default disposition and not blocked on its main thread, then makes a peer close a TCP connection
// on a UVLoop and keeps writing to it until a write fails. Exit status: 0 when the writes failed
// and the process lived on; 2 on a setup error; 3 when no write failed in time; 4 when SIGPIPE was
// not at its default disposition (the check would prove nothing). Killed by signal 13 (SIGPIPE)
// when a write raises SIGPIPE on a loop thread, which is the defect this guards against.
import Glibc
import UV

/// True when SIGPIPE is at SIG_DFL and not blocked on this thread.
func sigpipeIsDefault() -> Bool {
    var action = sigaction()
    guard sigaction(SIGPIPE, nil, &action) == 0 else { return false }
    var mask = sigset_t()
    guard pthread_sigmask(SIG_BLOCK, nil, &mask) == 0 else { return false }
    return action.__sigaction_handler.sa_handler == nil && sigismember(&mask, SIGPIPE) == 0
}

/// Runs the check; returns the exit status.
func check() -> Int32 {
    guard sigpipeIsDefault() else {
        print("uv-pipe-check: SIGPIPE is not at its default disposition; the check would prove nothing")
        return 4
    }

    let loop: UVLoop
    do {
        loop = try UVLoop(name: "pipe-check")
    } catch {
        print("uv-pipe-check: \(error)")
        return 2
    }

    let outcome = UVLocked<(code: Int32, text: String)>((2, "no outcome"))
    let finished = UVSemaphore()
    let maxTicks = 5_000  // writes 1 ms apart: a failed write is expected within the first few

    loop.execute {
        var done = false
        func finish(_ code: Int32, _ text: String) {
            guard !done else { return }
            done = true
            outcome.withLock { $0 = (code, text) }
            finished.signal()
        }
        do {
            // The peer: accepts and closes at once.
            let listener = try UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { $0.close() }
            try UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 5_000) { result in
                let client: UVTCPConnection
                switch result {
                case .success(let c): client = c
                case .failure(let error): return finish(2, "connect: \(error)")
                }
                let chunk = [UInt8](repeating: 0x5A, count: 1024)
                do {
                    try client.startReading(onRead: { _ in }, onEnd: { _ in
                        // The peer has closed: write until the kernel refuses.
                        var ticks = 0
                        do {
                            let timer = try UVTimer(loop: loop)
                            try timer.start(timeoutMs: 0, repeatMs: 1) {
                                ticks += 1
                                do throws(UVError) {
                                    try client.write(chunk)
                                } catch {
                                    timer.close()
                                    return finish(0, "write \(ticks) failed: \(error.name)")
                                }
                                if ticks >= maxTicks {
                                    timer.close()
                                    finish(3, "\(ticks) writes after the peer closed, none failed")
                                }
                            }
                        } catch {
                            finish(2, "timer: \(error)")
                        }
                    })
                } catch {
                    finish(2, "read: \(error)")
                }
            }
        } catch {
            finish(2, "setup: \(error)")
        }
    }

    finished.wait()
    loop.shutdown()
    let (code, text) = outcome.withLock { $0 }
    print("uv-pipe-check: \(text)")
    return code
}

exit(check())
