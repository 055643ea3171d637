// The checks of the gossip membership simulator, fed from its ground truth.
//
// (a) completeness: after the churn, every live member knows every other live member as alive
//     (checked by the simulator against its own list of who is up, within a bound);
// (b) a crashed member is declared failed by every live member within a bound, and a member that
//     left is known as left (or not at all) by every live member;
// (c) accuracy: a protected member (never stalled, never lossy, never cut off, never crashed)
//     is never declared failed by anyone, except within `accuracyWindowNanoseconds` of a
//     partition (whose other side rightly could not hear it);
// (d) the primary injected at one member reaches every live member.
// (a), (b) and (d) are judged by `GossipSimulation.missing(limit:)` and its crash probes; this
// type holds the violations and judges (c) as each declaration happens.

/// The checker's state: what the ground truth says, and what went wrong.
package struct GossipChecker: Sendable {
    package var violations: [String] = []
    /// Members never faulted: the subjects of the accuracy check.
    package var protected: Set<String> = []
    /// The window after a partition healed during which a protected member may still rightly be
    /// declared failed by a member of the other side.
    package let accuracyWindowNanoseconds: UInt64
    package var partitionActive = false
    package var lastPartitionEnd: UInt64?
    package var crashed: Set<String> = []
    package var left: Set<String> = []
    /// How many declarations were judged.
    package var failedDeclarations = 0

    package init(accuracyWindowNanoseconds: UInt64) {
        self.accuracyWindowNanoseconds = accuracyWindowNanoseconds
    }

    package mutating func noteCrash(_ id: String) { crashed.insert(id) }
    package mutating func noteLeft(_ id: String) { left.insert(id) }
    package mutating func noteUp(_ id: String) {
        crashed.remove(id)
        left.remove(id)
    }

    /// `observer` declared `subject` failed at `at`; `subjectUp` is the ground truth.
    package mutating func noteFailed(observer: String, subject: String, subjectUp: Bool, at: UInt64) {
        failedDeclarations += 1
        guard subjectUp, protected.contains(subject) else { return }
        guard !partitionActive else { return }
        if let end = lastPartitionEnd, at < end + accuracyWindowNanoseconds { return }
        violations.append(
            "accuracy: \(observer) declared \(subject) failed at \(at / 1_000_000)ms, though \(subject) never stopped"
                + " answering and its network was sound")
    }
}
