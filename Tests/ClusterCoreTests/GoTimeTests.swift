import Foundation
import Testing
@testable import ClusterCore

@Suite struct GoTimeTests {
    func seconds(_ text: String) throws -> Double {
        try #require(GoTime.parse(text)).timeIntervalSince1970
    }

    @Test func nineFractionalDigits() throws {
        let t = try seconds("2026-11-26T10:00:00.123456789Z")
        #expect(abs(t - (exampleInstant + 0.123456789)) < 1e-6)
    }

    @Test(arguments: [
        ("2026-11-26T10:00:00Z", 0.0),
        ("2026-11-26T10:00:00.5Z", 0.5),
        ("2026-11-26T10:00:00.25Z", 0.25),
        ("2026-11-26T10:00:00.123Z", 0.123),
        ("2026-11-26T10:00:00.000001Z", 0.000001),
        ("2026-11-26T10:00:00.1234567891234Z", 0.123456789),  // more than nine: extra digits dropped
    ])
    func fewerOrMoreDigits(_ text: String, _ fraction: Double) throws {
        #expect(abs(try seconds(text) - (exampleInstant + fraction)) < 1e-6)
    }

    @Test func offsets() throws {
        #expect(try seconds("2026-11-26T11:00:00+01:00") == exampleInstant)
        #expect(try seconds("2026-11-26T04:30:00-05:30") == exampleInstant)
        #expect(try seconds("2026-11-26T10:00:00+00:00") == exampleInstant)
        let withFraction = try seconds("2026-11-26T10:00:00.123456789+01:00")
        #expect(abs(withFraction - (exampleInstant - 3600 + 0.123456789)) < 1e-6)
    }

    @Test func zeroTime() throws {
        let zero = try #require(GoTime.parse("0001-01-01T00:00:00Z"))
        #expect(zero == GoTime.zero)
        #expect(GoTime.format(GoTime.zero) == "0001-01-01T00:00:00Z")
        #expect(GoTime.zero.timeIntervalSince1970 == -62_135_596_800)
    }

    @Test func leapDays() throws {
        #expect(try seconds("2024-02-29T12:34:56Z") == 1_709_210_096)
        #expect(GoTime.format(Date(timeIntervalSince1970: 1_709_210_096)) == "2024-02-29T12:34:56Z")
        #expect(GoTime.parse("2000-02-29T00:00:00Z") != nil)
        #expect(GoTime.parse("2023-02-29T00:00:00Z") == nil)
        #expect(GoTime.parse("1900-02-29T00:00:00Z") == nil)
    }

    @Test(arguments: [
        "", "garbage", "2026-11-26", "2026-11-26T10:00:00",  // no zone
        "2026-11-26T10:00:00Zjunk", "2026-11-26T10:00:00+01:00 ", " 2026-11-26T10:00:00Z",  // junk
        "2026-11-26 10:00:00Z", "2026/11/26T10:00:00Z", "26-11-26T10:00:00Z",
        "2026-11-26T10:00:00.Z", "2026-11-26T10:00:00+0100", "2026-11-26T10:00:00+01",
        "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-00T00:00:00Z",
        "2026-11-26T24:00:00Z", "2026-11-26T10:60:00Z", "2026-11-26T10:00:60Z", "2026-11-26T10:00:00+24:00", "2026-11-26T10:00:00+01:60",
    ])
    func rejects(_ text: String) {
        #expect(GoTime.parse(text) == nil)
    }

    @Test func formatIsRFC3339NanoInUTC() {
        #expect(GoTime.format(Date(timeIntervalSince1970: exampleInstant)) == "2026-11-26T10:00:00Z")
        #expect(GoTime.format(Date(timeIntervalSince1970: exampleInstant + 0.5)) == "2026-11-26T10:00:00.5Z")
        #expect(GoTime.format(Date(timeIntervalSince1970: exampleInstant + 0.25)) == "2026-11-26T10:00:00.25Z")
        #expect(GoTime.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(GoTime.format(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.5Z")
        #expect(GoTime.format(Date(timeIntervalSince1970: 1_000_000_000.25)) == "2001-09-09T01:46:40.25Z")
    }

    /// What Go wrote comes back out as Go wrote it (in UTC), where a `Date` can hold it.
    @Test(arguments: [
        "2026-11-26T10:00:00.123Z", "2026-11-26T10:00:00.1Z", "2026-11-26T10:00:00.000001Z",
        "2026-11-26T10:00:00.123456Z", "1999-12-31T23:59:59.999Z", "2024-02-29T00:00:00Z",
    ])
    func roundTrip(_ text: String) throws {
        #expect(GoTime.format(try #require(GoTime.parse(text))) == text)
    }

    @Test func offsetIsFormattedAsZ() throws {
        #expect(GoTime.format(try #require(GoTime.parse("2026-11-26T11:00:00.5+01:00"))) == "2026-11-26T10:00:00.5Z")
    }

    @Test func nineDigitsRoundTripWithinAMicrosecond() throws {
        let d = try #require(GoTime.parse("2026-11-26T10:00:00.123456789Z"))
        let again = try #require(GoTime.parse(GoTime.format(d)))
        #expect(abs(again.timeIntervalSince(d)) < 1e-6)
        #expect(GoTime.format(d).hasPrefix("2026-11-26T10:00:00.123456"))
    }
}
