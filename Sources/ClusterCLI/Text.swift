import Glibc
import UV

// Small text and process helpers of the command, in place of Foundation's (`String(format:)`,
// `padding(toLength:…)`, `trimmingCharacters(in:)`, `Thread.sleep`, `NSTemporaryDirectory`,
// `FileHandle`): the `cluster` executable links FoundationEssentials at most.

/// `value` with `decimals` digits after the point (0...9), as C's `printf("%.<decimals>f")`
/// writes it: the exact binary value rounded to the nearest, ties to even; `nan`, `inf` and a
/// minus sign whenever the sign bit is set (`-0.0`).
func format(_ value: Double, _ decimals: Int = 1) -> String {
    precondition((0...9).contains(decimals), "format: 0...9 decimals")
    let sign = value.sign == .minus ? "-" : ""
    if value.isNaN { return sign + "nan" }
    if value.isInfinite { return sign + "inf" }
    // |value| = significand × 2^exponent exactly, the significand an integer below 2^53.
    let bits = value.magnitude
    let significand = bits.exponentBitPattern == 0 ? bits.significandBitPattern : bits.significandBitPattern | 1 << 52
    let exponent = (bits.exponentBitPattern == 0 ? 1 : Int(bits.exponentBitPattern)) - 1075
    var scale: UInt64 = 1
    for _ in 0..<decimals { scale *= 10 }
    // The value in units of 10^-decimals, as decimal digits (below 2^83 before the shift).
    let scaled = UInt128(significand) * UInt128(scale)
    var digits: [UInt8]
    if exponent >= 0 {
        digits = decimalDigits(of: scaled)
        var left = exponent
        while left > 0 {
            let step = min(left, 32)
            multiply(&digits, by: 1 << step)
            left -= step
        }
    } else {
        let shift = -exponent
        var units: UInt128 = 0
        if shift < 100 {
            units = scaled >> shift
            let rest = scaled & ((1 << shift) - 1)
            let half: UInt128 = 1 << (shift - 1)
            if rest > half || (rest == half && units & 1 == 1) { units += 1 }
        }  // else below half a unit (scaled < 2^83 ≤ 2^(shift - 1)): rounds to 0
        digits = decimalDigits(of: units)
    }
    while digits.count < decimals + 1 { digits.insert(0, at: 0) }
    var text = sign
    for (i, d) in digits.enumerated() {
        if i == digits.count - decimals { text += "." }
        text.unicodeScalars.append(Unicode.Scalar(0x30 + d))
    }
    return text
}

/// The decimal digits of `n`, most significant first (one 0 for 0).
private func decimalDigits(of n: UInt128) -> [UInt8] {
    var n = n
    var digits: [UInt8] = []
    repeat {
        digits.append(UInt8(n % 10))
        n /= 10
    } while n > 0
    return digits.reversed()
}

/// Multiplies the number whose decimal digits (most significant first) are `digits` by
/// `factor` (at most 2^32).
private func multiply(_ digits: inout [UInt8], by factor: UInt64) {
    var carry: UInt64 = 0
    for i in digits.indices.reversed() {
        let d = UInt64(digits[i]) * factor + carry
        digits[i] = UInt8(d % 10)
        carry = d / 10
    }
    var high: [UInt8] = []
    while carry > 0 {
        high.append(UInt8(carry % 10))
        carry /= 10
    }
    digits.insert(contentsOf: high.reversed(), at: 0)
}

extension String {
    /// Padded with spaces at the end to `width` characters (`printf("%-*s")`); never cut.
    func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }

    /// Padded with spaces at the start to `width` characters (`printf("%*s")`); never cut.
    func padded(left width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}

extension StringProtocol {
    /// Without the white space (spaces, tabs, line breaks) at either end.
    func trimmingWhitespace() -> String {
        var rest = Substring(self)
        while rest.first?.isWhitespace == true { rest.removeFirst() }
        while rest.last?.isWhitespace == true { rest.removeLast() }
        return String(rest)
    }
}

/// Writes `text` to standard output at once, unbuffered (piped output arrives as it is made).
func writeOut(_ text: String) {
    try? UVFile.writeAll(fd: STDOUT_FILENO, Array(text.utf8))
}

/// Prints to standard error.
func printError(_ text: String) {
    try? UVFile.writeAll(fd: STDERR_FILENO, Array((text + "\n").utf8))
}

/// Blocks the calling thread for `seconds` (at least; interruptions by signals are slept out).
func pause(seconds: Double) {
    guard seconds > 0 else { return }
    let end = UVLoop.hrtimeNs() + UInt64(seconds * 1e9)
    while true {
        let now = UVLoop.hrtimeNs()
        guard now < end else { return }
        usleep(useconds_t(min((end - now + 999) / 1000, UInt64(UInt32.max))))
    }
}

/// The folder for temporary files, ending in `/`: `$TMPDIR`, else `/tmp/` (what
/// `NSTemporaryDirectory()` gives on Linux).
func temporaryDirectory() -> String {
    guard let dir = getenv("TMPDIR").map({ String(cString: $0) }), !dir.isEmpty else { return "/tmp/" }
    return dir.hasSuffix("/") ? dir : dir + "/"
}
