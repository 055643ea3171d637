/// Capped exponential back-off with jitter, for redialling a lost peer.
///
/// The n-th consecutive failure (n ≥ 1) waits a delay drawn uniformly from [c/2, c], where
/// c = min(cap, base · 2^(n−1)): the ceiling doubles per failure up to the cap, and the jitter
/// keeps nodes that lost each other at the same moment from redialling in lockstep.
public enum Backoff {
    /// The delay in nanoseconds before retrying after `failures` consecutive failures.
    public static func delayNs<R: RandomNumberGenerator>(failures: Int, baseNs: UInt64, capNs: UInt64, using random: inout R) -> UInt64 {
        let exponent = UInt64(max(0, min(failures - 1, 40)))
        let (shifted, overflow) = baseNs.multipliedReportingOverflow(by: 1 << exponent)
        let ceiling = min(capNs, overflow ? capNs : shifted)
        return ceiling / 2 + random.next() % (ceiling - ceiling / 2 + 1)
    }
}
