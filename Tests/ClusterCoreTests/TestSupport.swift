import Foundation
@testable import ClusterCore

/// A clock that moves only when told. Safe to read from any thread.
final class FakeClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = start }

    func now() -> Date {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    func advance(_ d: Duration) {
        lock.lock()
        defer { lock.unlock() }
        current = current.addingTimeInterval(d.seconds)
    }
}

/// 2026-11-26T10:00:00Z, the instant the protocol notes' examples use.
let exampleInstant: Double = 1_795_687_200

func encodeJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try JSONDecoder().decode(type, from: Data(text.utf8))
}
