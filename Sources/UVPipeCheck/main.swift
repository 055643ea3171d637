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

/// `uv-pipe-check release-code-pages`: the check of `UVProcess.releaseCodePages` (UVTests), in a
/// process of its own, since the release reads the whole of /proc/self/smaps, which in the test
/// runner (many threads, much memory) holds up the other tests' page faults. Two private mappings
/// of one file: one only read, one with a page written (a copy-on-write copy) and then made
/// read-only. The release must let go of the first and keep the second and what was written.
/// Exit status 0 when it did; 5, with the reason, when it did not; 2 on a setup error.
func checkReleaseCodePages() -> Int32 {
    let path = "/tmp/uv-release-\(getpid())"
    let pages = 16, size = pages * 4096
    do {
        try UVFile.writeAtomically(path: path, bytes: [UInt8](repeating: 7, count: size))
    } catch {
        print("uv-pipe-check: cannot write \(path): \(error)")
        return 2
    }
    defer { try? UVFile.remove(path: path) }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return 2 }
    defer { close(fd) }
    guard let clean = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), clean != MAP_FAILED,
          let written = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), written != MAP_FAILED
    else { return 2 }
    defer { munmap(clean, size); munmap(written, size) }
    var sum = 0
    for page in 0..<pages {
        sum += Int(clean.load(fromByteOffset: page * 4096, as: UInt8.self))
        sum += Int(written.load(fromByteOffset: page * 4096, as: UInt8.self))
    }
    written.storeBytes(of: 42, toByteOffset: 4096, as: UInt8.self)
    guard sum == 14 * pages, mprotect(written, size, PROT_READ) == 0 else { return 2 }

    /// Pages of the mapping at `base` present in this process's page table, from
    /// /proc/self/pagemap (bit 63 of each page's entry).
    func present(_ base: UnsafeMutableRawPointer) -> Int? {
        let pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pm >= 0 else { return nil }
        defer { close(pm) }
        var entries = [UInt64](repeating: 0, count: pages)
        let offset = off_t(UInt(bitPattern: base) / 4096 * 8)
        let got = entries.withUnsafeMutableBytes { pread(pm, $0.baseAddress, $0.count, offset) }
        guard got == pages * 8 else { return nil }
        return entries.filter { $0 >> 63 == 1 }.count
    }
    guard let cleanBefore = present(clean), let writtenBefore = present(written) else { return 2 }
    let released: Int
    do {
        released = try UVProcess.releaseCodePages()
    } catch {
        print("uv-pipe-check: release failed: \(error)")
        return 5
    }
    guard let cleanAfter = present(clean), let writtenAfter = present(written) else { return 2 }
    let text = "released \(released) KiB; clean mapping \(cleanBefore) -> \(cleanAfter) pages, written one \(writtenBefore) -> \(writtenAfter)"
    // Read before the checks below touch the pages again.
    guard cleanBefore == pages, writtenBefore == pages, released >= pages * 4 else {
        print("uv-pipe-check: setup did not map every page: \(text)")
        return 2
    }
    guard cleanAfter == 0, writtenAfter == pages else {
        print("uv-pipe-check: wrong mappings let go: \(text)")
        return 5
    }
    // What was written is still there; what was let go reads back from the file.
    guard written.load(fromByteOffset: 4096, as: UInt8.self) == 42, clean.load(fromByteOffset: 4096, as: UInt8.self) == 7 else {
        print("uv-pipe-check: contents changed: \(text)")
        return 5
    }
    print("uv-pipe-check: \(text)")
    return 0
}

exit(CommandLine.arguments.dropFirst().first == "release-code-pages" ? checkReleaseCodePages() : check())
