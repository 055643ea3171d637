@testable import ClusterCore
import Testing

@Suite struct BackoffTests {
    @Test("the ceiling doubles per failure up to the cap; each delay lies in [ceiling/2, ceiling]")
    func doublesWithJitterUpToCap() {
        var random = SplitMix64(seed: 42)
        let base: UInt64 = 50_000_000, cap: UInt64 = 2_000_000_000
        for failures in 1...30 {
            let ceiling = min(cap, base << UInt64(min(failures - 1, 30)))
            var seen = Set<UInt64>()
            for _ in 0..<200 {
                let d = Backoff.delayNs(failures: failures, baseNs: base, capNs: cap, using: &random)
                #expect(d >= ceiling / 2 && d <= ceiling, "failure \(failures): \(d) outside [\(ceiling / 2), \(ceiling)]")
                seen.insert(d)
            }
            #expect(seen.count > 100, "delays must be jittered")
        }
    }

    @Test("huge failure counts neither overflow nor exceed the cap")
    func noOverflow() {
        var random = SplitMix64(seed: 1)
        for failures in [64, 1000, Int.max] {
            let d = Backoff.delayNs(failures: failures, baseNs: .max / 3, capNs: 5_000, using: &random)
            #expect(d <= 5_000 && d >= 2_500)
        }
    }
}
