import FoundationEssentials

/// Go's JSON form of `time.Time`: RFC 3339 with up to nine fractional digits and any UTC offset.
///
/// Encoding follows Go's `time.RFC3339Nano` in UTC: `2026-11-26T10:00:00.123456789Z`, trailing
/// zeros of the fraction trimmed, the zero time as `0001-01-01T00:00:00Z`. `Date` holds a `Double`,
/// so a nanosecond read from the wire comes back within a fraction of a microsecond, not exactly;
/// `format` writes the shortest fraction that parses back to the very same `Date`, so that
/// `…00.123Z` read from the wire is written out again as `…00.123Z`.
public enum GoTime {
    /// Go's zero `time.Time`, `0001-01-01T00:00:00Z`.
    public static let zero = Date(timeIntervalSince1970: -62_135_596_800)

    /// Formats a date the way Go's `time.Time.MarshalJSON` does in UTC.
    public static func format(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var seconds = Int64(t.rounded(.down))
        var nanos = Int64(((t - Double(seconds)) * 1e9).rounded())
        if nanos >= 1_000_000_000 { seconds += 1; nanos -= 1_000_000_000 }
        if nanos < 0 { seconds -= 1; nanos += 1_000_000_000 }
        // A Double cannot hold nine digits near today's dates: the last two or three are noise.
        // Use the fewest digits that still read back as this very Date (nine if none does).
        var unit: Int64 = 1_000_000_000
        while unit > 1 {
            var s = seconds
            var n = (nanos + unit / 2) / unit * unit
            if n >= 1_000_000_000 { s += 1; n -= 1_000_000_000 }
            if makeDate(seconds: s, nanos: n) == date {
                seconds = s
                nanos = n
                break
            }
            unit /= 10
        }
        let days = seconds >= 0 ? seconds / 86_400 : -((-seconds + 86_399) / 86_400)
        let secondOfDay = seconds - days * 86_400
        let (y, m, d) = civil(fromDays: days)
        var out = pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2) + "T"
        out += pad(secondOfDay / 3600, 2) + ":" + pad(secondOfDay / 60 % 60, 2) + ":" + pad(secondOfDay % 60, 2)
        if nanos != 0 {
            var frac = pad(nanos, 9)
            while frac.hasSuffix("0") { frac.removeLast() }
            out += "." + frac
        }
        return out + "Z"
    }

    /// Parses RFC 3339 as Go writes it: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    public static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        var i = 0
        func number(_ digits: Int) -> Int64? {
            guard i + digits <= b.count else { return nil }
            var v: Int64 = 0
            for k in i..<(i + digits) {
                let c = b[k]
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int64(c - 48)
            }
            i += digits
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c || (c == 84 && b[i] == 116) else { return false }
            i += 1
            return true
        }
        guard let year = number(4), expect(45), let month = number(2), expect(45), let day = number(2),
              expect(84), let hour = number(2), expect(58), let minute = number(2), expect(58),
              let second = number(2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
              hour < 24, minute < 60, second < 60  // Go refuses a leap second (60)
        else { return nil }
        var nanos: Int64 = 0
        if i < b.count && b[i] == 46 {  // "."
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 9 { nanos = nanos * 10 + Int64(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            if digits < 9 { for _ in digits..<9 { nanos *= 10 } }
        }
        guard i < b.count else { return nil }
        var offset: Int64 = 0
        if b[i] == 90 || b[i] == 122 {  // Z
            i += 1
        } else if b[i] == 43 || b[i] == 45 {  // + -
            let sign: Int64 = b[i] == 45 ? -1 : 1
            i += 1
            guard let oh = number(2), expect(58), let om = number(2), oh < 24, om < 60 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = days(fromCivil: year, month, day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
        return makeDate(seconds: seconds, nanos: nanos)
    }

    /// The one way both `parse` and `format` turn seconds and nanoseconds into a `Date`.
    private static func makeDate(seconds: Int64, nanos: Int64) -> Date {
        Date(timeIntervalSince1970: Double(seconds) + Double(nanos) / 1e9)
    }

    private static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    private static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    // Howard Hinnant's days-from-civil and civil-from-days algorithms (proleptic Gregorian).
    static func days(fromCivil y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}

extension KeyedDecodingContainer {
    /// Decodes a Go `time.Time` string.
    func decodeGoTime(forKey key: Key) throws -> Date {
        let text = try decode(String.self, forKey: key)
        guard let date = GoTime.parse(text) else {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self, debugDescription: "not an RFC 3339 time: \(text)")
        }
        return date
    }
}
