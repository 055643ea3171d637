/// At most one log line a second per cause: what strangers and a failing network can make a
/// node say (accept failures, refused connections, protocol violations) must not flood its log.
/// The first line of a cause is logged; the rest within the second are counted, and the count
/// goes with the next line logged. Loop thread only.
struct LogLimiter {
    private struct Cause {
        var lastNs: UInt64
        var skipped: Int
    }
    private var causes: [String: Cause] = [:]
    /// The shortest time between two lines of a cause.
    let intervalNs: UInt64
    /// The most causes remembered; beyond, all are forgotten (each is then said once more).
    static let maxCauses = 1024

    init(intervalNs: UInt64 = 1_000_000_000) {
        self.intervalNs = intervalNs
    }

    /// nil: leave this line out (counted). Otherwise log it, telling how many were left out
    /// since the last line of its cause.
    mutating func admit(_ cause: String, nowNs: UInt64) -> Int? {
        // Causes named by what strangers send (an id) cannot grow this without end.
        if causes.count >= Self.maxCauses, causes[cause] == nil { causes.removeAll(keepingCapacity: true) }
        if var entry = causes[cause], nowNs &- entry.lastNs < intervalNs {
            entry.skipped += 1
            causes[cause] = entry
            return nil
        }
        let skipped = causes[cause]?.skipped ?? 0
        causes[cause] = Cause(lastNs: nowNs, skipped: 0)
        return skipped
    }
}
