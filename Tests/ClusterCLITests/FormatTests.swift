@testable import ClusterCLI
import Foundation
import Testing

/// The command's own formatting helpers (it links no Foundation) against Foundation's.
@Suite("The cluster command's text helpers")
struct FormatTests {
    /// Ties, values just below and above them, the extremes, and seeded pseudo-random values
    /// (splitmix64: the same every run): bit patterns, fractions, exact eighths.
    static func values() -> [Double] {
        var values: [Double] = [
            0, -0.0, 0.5, 1.5, 2.5, -2.5, 0.125, 0.375, 2.675, 1.005, 0.05, 0.15, 0.25, 0.35, 99.95, 999.5,
            0.0005, 0.00049999, 4.35, 123_456_789.125, 1e22, 1e23, 1e300, -1e300, .leastNonzeroMagnitude, .leastNormalMagnitude / 3,
            .greatestFiniteMagnitude, .nan, -.nan, .infinity, -.infinity,
        ]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        for i in 0..<6_000 {
            let r = next()
            switch i % 3 {
            case 0: values.append(Double(bitPattern: r))
            case 1: values.append(Double(Int64(bitPattern: r) % 100_000_000) / 1000)
            default: values.append(Double(Int64(bitPattern: r) % 1_000_000) / 8)
            }
        }
        return values
    }

    @Test("format(_:_:) writes what printf's %.Nf writes: the exact value rounded, ties to even; nan, inf, -0.0")
    func formatIsPrintf() {
        var mismatches: [String] = []
        for value in Self.values() {
            for decimals in 0...4 {
                let mine = format(value, decimals), printf = String(format: "%.\(decimals)f", value)
                if mine != printf { mismatches.append("\(value) with \(decimals): \(mine), printf \(printf)") }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) differ, e.g. \(mismatches.prefix(5))")
    }

    @Test("padded(to:) and trimmingWhitespace() do what Foundation's padding and trimming did for the tables; padded(left:) right-aligns")
    func paddingAndTrimming() {
        for text in ["", "a", "n1 *", "127.0.0.1:4000", "follower"] {
            for width in [0, 3, 8, 16] where width >= text.count {
                #expect(text.padded(to: width) == text.padding(toLength: width, withPad: " ", startingAt: 0))
                #expect(text.padded(left: width) == String(repeating: " ", count: width - text.count) + text)
            }
        }
        #expect(" \t 127.0.0.1:1 \n".trimmingWhitespace() == " \t 127.0.0.1:1 \n".trimmingCharacters(in: .whitespacesAndNewlines))
        #expect("n1  leader    ".trimmingWhitespace() == "n1  leader    ".trimmingCharacters(in: .whitespaces))
    }
}
