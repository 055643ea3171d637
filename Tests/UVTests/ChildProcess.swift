import Foundation
import Glibc
import UV

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

/// Runs `path` with `arguments` in a child process whose signals (SIGPIPE among them) are at
/// their default disposition and unblocked, whatever the test runner has set (a runner or a
/// shell may ignore SIGPIPE, which hides the defect this exists to catch): `UVChildProcess`,
/// which starts children as a shell does. The child's output is printed once it has ended.
/// Waits at most `timeoutMs`, then kills the child with SIGKILL.
func runChildWithDefaultSIGPIPE(_ path: String, arguments: [String] = [], timeoutMs: Int) async throws -> ChildOutcome {
    let child = try UVChildProcess(path: path, arguments: arguments)
    // The wait blocks: on a thread of its own, not on one of the test runner's.
    return await withCheckedContinuation { (continuation: CheckedContinuation<ChildOutcome, Never>) in
        Thread {
            var outcome: ChildOutcome
            switch child.waitForEnd(seconds: Double(timeoutMs) / 1000) {
            case .exited(let code)?: outcome = .exited(code)
            case .signalled(let signal)?: outcome = .signaled(signal)
            case nil:
                child.signal(SIGKILL)
                _ = child.waitForEnd(seconds: .infinity)
                outcome = .timedOut
            }
            print(String(decoding: child.output, as: UTF8.self), terminator: "")
            continuation.resume(returning: outcome)
        }.start()
    }
}
