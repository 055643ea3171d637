import CLibUV
import Glibc

/// A child process started with `posix_spawn` as a shell would start it: every signal at its
/// default disposition and unblocked, whatever this process has set. Its standard output and
/// standard error go into one pipe, which a thread of its own reads to the end into memory;
/// that thread then reaps the child. (What Foundation's `Process` and `Pipe` did for `cluster
/// demo`, without Foundation.)
///
/// The reaper first learns that the child ended without reaping it (`waitid` with `WNOWAIT`),
/// then reaps it under the lock: `signal(_:)`, which also takes the lock, can never reach a
/// recycled pid.
///
/// Ownership:
/// - `mutex` and `changed` (a `uv_mutex_t` and a `uv_cond_t`) are allocated and initialised in
///   `init`, destroyed and freed in `deinit`.
/// - The pipe's write end is closed in `init` once the child holds it; the read end belongs to
///   the reader thread, which closes it at end of file.
/// - The reader thread (detached) holds a retained reference to this object from `init` until it
///   has reaped the child.
public final class UVChildProcess: @unchecked Sendable {
    /// The child's process id.
    public let pid: pid_t
    private let mutex: UnsafeMutablePointer<uv_mutex_t>
    private let changed: UnsafeMutablePointer<uv_cond_t>
    /// Guarded by `mutex`: what the child wrote so far.
    private var bytes: [UInt8] = []
    /// Guarded by `mutex`: true once the pipe reached end of file.
    private var outputEnded = false
    /// Guarded by `mutex`: the wait status once the child is reaped.
    private var waitStatus: Int32?

    /// Starts the program at `path` with `arguments` (not counting argv[0], which is `path`).
    public init(path: String, arguments: [String]) throws(UVError) {
        // Both ends close-on-exec (uv_pipe), so that no other child inherits them.
        var ends: [uv_file] = [-1, -1]
        try UVError.check(uv_pipe(&ends, 0, 0), "uv_pipe")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 leaves the copies open across exec (no close-on-exec on them).
        posix_spawn_file_actions_adddup2(&actions, ends[1], STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, ends[1], STDERR_FILENO)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, path, &actions, &attributes, argv, environ)
        close(ends[1])
        guard status == 0 else {
            close(ends[0])
            throw UVError(code: -status, operation: "posix_spawn \(path)")
        }
        pid = child
        mutex = .allocate(capacity: 1)
        changed = .allocate(capacity: 1)
        precondition(uv_mutex_init(mutex) == 0, "uv_mutex_init")
        precondition(uv_cond_init(changed) == 0, "uv_cond_init")
        let reader = ReaderStart(process: self, fd: ends[0])
        var thread = uv_thread_t()
        let created = uv_thread_create(&thread, { arg in
            let start = Unmanaged<ReaderStart>.fromOpaque(arg!).takeRetainedValue()
            start.process.readAndReap(start.fd)
        }, Unmanaged.passRetained(reader).toOpaque())
        precondition(created == 0, "uv_thread_create failed: \(created)")
        pthread_detach(thread)
    }

    deinit {
        // Only reached after the reader thread has reaped the child (it holds a reference).
        uv_cond_destroy(changed)
        uv_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// What the reader thread starts with: this object (retained) and the pipe's read end.
    private final class ReaderStart {
        let process: UVChildProcess
        let fd: Int32
        init(process: UVChildProcess, fd: Int32) {
            self.process = process
            self.fd = fd
        }
    }

    /// The reader thread: reads to end of file, then waits for the child's end and reaps it.
    private func readAndReap(_ fd: Int32) {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            locked {
                bytes += chunk[0..<n]
                uv_cond_broadcast(changed)
            }
        }
        close(fd)
        locked {
            outputEnded = true
            uv_cond_broadcast(changed)
        }
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
        locked {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            waitStatus = status
            uv_cond_broadcast(changed)
        }
    }

    private func locked<T>(_ body: () -> T) -> T {
        uv_mutex_lock(mutex)
        defer { uv_mutex_unlock(mutex) }
        return body()
    }

    /// Waits, holding the lock, until `done()` or `seconds` have passed; returns `done()`.
    private func wait(seconds: Double, until done: () -> Bool) -> Bool {
        // At most about 31 years: `.infinity` waits for good.
        let deadline = uv_hrtime() + UInt64((seconds.isNaN ? 0 : min(max(0, seconds), 1e9)) * 1e9)
        return locked {
            while !done() {
                let now = uv_hrtime()
                guard now < deadline else { return false }
                _ = uv_cond_timedwait(changed, mutex, deadline - now)
            }
            return true
        }
    }

    /// Everything the child wrote so far (standard output and standard error, interleaved).
    public var output: [UInt8] { locked { bytes } }

    /// Waits up to `seconds` until `found` holds for the output so far; false when it does not
    /// by then, or the output ended without it. `found` runs under the lock: keep it short.
    public func waitForOutput(seconds: Double, until found: ([UInt8]) -> Bool) -> Bool {
        var matched = false
        _ = wait(seconds: seconds) {
            matched = found(bytes)
            return matched || outputEnded
        }
        return matched
    }

    /// True until the child has ended and been reaped.
    public var isRunning: Bool { locked { waitStatus == nil } }

    /// Sends `signal` to the child if it has not been reaped yet.
    public func signal(_ signal: Int32) {
        locked {
            if waitStatus == nil { _ = kill(pid, signal) }
        }
    }

    /// How a child ended: its exit status, or the signal that ended it.
    public enum Ending: Sendable, Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    /// Waits up to `seconds` for the child to end: how it ended; nil if it still runs then.
    public func waitForEnd(seconds: Double) -> Ending? {
        guard wait(seconds: seconds, until: { waitStatus != nil }) else { return nil }
        let status = locked { waitStatus! }
        let signal = status & 0x7f
        return signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }

    /// Waits up to `seconds` for the child to end: its exit status, or the number of the signal
    /// that ended it; nil if it still runs then.
    public func waitForExit(seconds: Double) -> Int32? {
        switch waitForEnd(seconds: seconds) {
        case .exited(let code)?: code
        case .signalled(let signal)?: signal
        case nil: nil
        }
    }

    /// The path of this process's executable (`uv_exepath`), for starting another copy of it.
    public static func executablePath() throws(UVError) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        var size = buffer.count
        try UVError.check(uv_exepath(&buffer, &size), "uv_exepath")
        return String(decoding: buffer[0..<size].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
