import Foundation
import Glibc

/// How a child process ended.
enum ChildOutcome: Sendable, Equatable, CustomStringConvertible {
    /// It exited with this status.
    case exited(Int32)
    /// A signal killed it (13 is SIGPIPE).
    case signaled(Int32)
    /// It ran past the timeout and was killed with SIGKILL.
    case timedOut

    var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let signal): "killed by signal \(signal)"
        case .timedOut: "timed out (killed)"
        }
    }
}

/// The path of an executable of this package built beside the test bundle (`.build/debug/name`,
/// or the sanitizers' scratch folders), or nil when it is not there.
func executableBesideTests(_ name: String) -> String? {
    let bundle = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    let path = bundle.deletingLastPathComponent().appendingPathComponent(name).path
    return access(path, X_OK) == 0 ? path : nil
}

/// Runs `path` with `arguments` in a child process whose SIGPIPE disposition is reset to the
/// default and whose signal mask is empty, whatever the test runner has set (a runner or a shell
/// may ignore SIGPIPE, which hides the defect this exists to catch). The child inherits stdout
/// and stderr. Waits at most `timeoutMs`, then kills the child with SIGKILL.
///
/// The wait runs on a thread of its own: `waitid(WNOWAIT)` learns that the child ended without
/// reaping it, so the timeout's `kill` can never reach a recycled pid; `waitpid` then reaps it.
func runChildWithDefaultSIGPIPE(_ path: String, arguments: [String] = [], timeoutMs: Int) async throws -> ChildOutcome {
    struct SpawnError: Error, CustomStringConvertible {
        let code: Int32
        var description: String { "posix_spawn: \(String(cString: strerror(code)))" }
    }
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var defaults = sigset_t()
    sigemptyset(&defaults)
    sigaddset(&defaults, SIGPIPE)
    posix_spawnattr_setsigdefault(&attr, &defaults)
    var noMask = sigset_t()
    sigemptyset(&noMask)
    posix_spawnattr_setsigmask(&attr, &noMask)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for arg in argv { free(arg) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, nil, &attr, argv, environ)
    guard spawned == 0 else { throw SpawnError(code: spawned) }
    let child = pid

    // `ended`: the child has ended (not yet reaped); `timedOut`: the timeout killed it.
    let state = ChildWaitState(pid: child)
    return await withCheckedContinuation { (continuation: CheckedContinuation<ChildOutcome, Never>) in
        let waiter = Thread {
            var info = siginfo_t()
            while waitid(P_PID, id_t(child), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
            let timedOut = state.markEnded()
            var status: Int32 = 0
            while waitpid(child, &status, 0) < 0 && errno == EINTR {}
            let outcome: ChildOutcome
            if timedOut {
                outcome = .timedOut
            } else if status & 0x7f == 0 {
                outcome = .exited((status >> 8) & 0xff)
            } else {
                outcome = .signaled(status & 0x7f)
            }
            continuation.resume(returning: outcome)
        }
        waiter.start()
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(timeoutMs)) {
            state.killIfRunning()
        }
    }
}

/// The waiter's and the timeout's shared view of the child, under a lock.
private final class ChildWaitState: @unchecked Sendable {
    private let lock = NSLock()
    private let pid: pid_t
    private var ended = false
    private var timedOut = false

    init(pid: pid_t) { self.pid = pid }

    /// The child has ended (it is a zombie until reaped). Returns whether the timeout killed it.
    func markEnded() -> Bool {
        lock.withLock {
            ended = true
            return timedOut
        }
    }

    /// Kills the child with SIGKILL (and records the timeout) unless it has ended. Under the
    /// lock: the child is not reaped before `markEnded`, so its pid cannot have been reused.
    func killIfRunning() {
        lock.withLock {
            guard !ended else { return }
            timedOut = true
            kill(pid, SIGKILL)
        }
    }
}
