import Foundation
import Testing
import UV

/// Runs `body` on the loop thread and waits for it to call `done`.
func onLoop<T: Sendable>(_ loop: UVLoop, _ body: @escaping @Sendable (_ done: @escaping @Sendable (T) -> Void) -> Void) async -> T {
    await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
        let once = UVLocked(false)
        let accepted = loop.execute {
            body { value in
                let first = once.withLock { fired -> Bool in
                    defer { fired = true }
                    return !fired
                }
                if first { continuation.resume(returning: value) }
            }
        }
        precondition(accepted, "loop is shut down")
    }
}

/// A byte pattern that is easy to check and not periodic on small strides.
func pattern(count: Int, seed: UInt8) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    var x = UInt32(seed) &+ 1
    for i in 0..<count {
        x = x &* 1_103_515_245 &+ 12345
        out[i] = UInt8(truncatingIfNeeded: x >> 16)
    }
    return out
}

/// Runs `body(i)` for i in 0..<count, each on a thread of its own (not the cooperative pool, so
/// that they may block), and returns once all have finished.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let left = UVLocked(count)
        for i in 0..<count {
            Thread {
                body(i)
                if left.withLock({ n -> Bool in n -= 1; return n == 0 }) { continuation.resume() }
            }.start()
        }
    }
}
