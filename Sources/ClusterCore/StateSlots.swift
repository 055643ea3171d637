import Crypto

/// The layout of a node's durable election state on disk: a file of two fixed slots, written
/// alternately in place, each holding one whole copy of the state with a sequence number and a
/// checksum. A write touches one slot (`pwrite` + `fdatasync`, no rename, no directory sync once
/// the file exists); a write cut short (a crash, a torn sector) spoils at most the slot it was
/// writing, and the other still holds the state before it. Reading takes the valid slot with the
/// higher sequence (TigerBeetle's superblock copies, etcd's WAL: neither renames per write).
///
/// A slot: `magic` (8 bytes) · sequence (u64, big-endian) · payload length (u32) · SHA-256 of the
/// sequence, the length and the payload (32 bytes) · the payload (the state as JSON). The rest of
/// the slot is not read. Pure functions: the file's I/O is the node's (`DurableStateStore`).
package enum StateSlots {
    /// The size of one slot: the largest state (64 voters of 255-byte ids) fits with room.
    package static let slotSize = 32 * 1024
    /// The file: two slots.
    package static let fileSize = 2 * slotSize
    package static let headerSize = 8 + 8 + 4 + 32
    package static let maxPayload = slotSize - headerSize
    static let magic: [UInt8] = Array("CLSTATE1".utf8)

    /// What a file holds.
    package enum Content: Equatable, Sendable {
        /// Nothing written yet (no valid slot, and no byte set: a file created, never written).
        case empty
        /// The newest valid copy: its sequence, its payload, the slot it is in.
        case state(sequence: UInt64, payload: [UInt8], slot: Int)
        /// Bytes, but no valid copy in either slot: `reason` says what was found.
        case corrupt(reason: String)
    }

    /// The slot a write of `sequence` goes to (they alternate).
    package static func slot(for sequence: UInt64) -> Int { Int(sequence % 2) }

    /// The bytes of a slot holding `payload` as copy number `sequence` (header and payload only:
    /// what follows in the slot is never read). Nil when the payload does not fit.
    package static func image(payload: [UInt8], sequence: UInt64) -> [UInt8]? {
        guard payload.count <= maxPayload else { return nil }
        var out = magic
        out.reserveCapacity(headerSize + payload.count)
        var body: [UInt8] = []
        body.reserveCapacity(12 + payload.count)
        for shift in stride(from: 56, through: 0, by: -8) { body.append(UInt8(truncatingIfNeeded: sequence >> UInt64(shift))) }
        let length = UInt32(payload.count)
        for shift in stride(from: 24, through: 0, by: -8) { body.append(UInt8(truncatingIfNeeded: length >> UInt32(shift))) }
        let digest = Array(SHA256.hash(data: body + payload))
        out += body
        out += digest
        out += payload
        return out
    }

    /// The copy a slot holds, or why it holds none.
    package static func decode(_ slot: ArraySlice<UInt8>) -> Result<(sequence: UInt64, payload: [UInt8]), SlotProblem> {
        let bytes = Array(slot)
        guard bytes.count >= headerSize else { return .failure(.short) }
        if bytes.allSatisfy({ $0 == 0 }) { return .failure(.blank) }
        guard Array(bytes[0..<8]) == magic else { return .failure(.notASlot) }
        let sequence = bytes[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let length = Int(bytes[16..<20].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        guard length <= maxPayload, headerSize + length <= bytes.count else { return .failure(.badLength) }
        let payload = Array(bytes[headerSize..<(headerSize + length)])
        let digest = Array(SHA256.hash(data: Array(bytes[8..<20]) + payload))
        guard digest == Array(bytes[20..<52]) else { return .failure(.badChecksum) }
        return .success((sequence, payload))
    }

    /// Why a slot holds no copy.
    package enum SlotProblem: Error, Equatable, Sendable, CustomStringConvertible {
        case short, blank, notASlot, badLength, badChecksum
        package var description: String {
            switch self {
            case .short: return "cut short"
            case .blank: return "never written"
            case .notASlot: return "not a state slot"
            case .badLength: return "a length out of range"
            case .badChecksum: return "a checksum that does not match"
            }
        }
    }

    /// What the bytes of a whole file hold.
    package static func read(file: [UInt8]) -> Content {
        var best: (sequence: UInt64, payload: [UInt8], slot: Int)?
        var problems: [SlotProblem] = []
        for index in 0..<2 {
            let start = index * slotSize
            let end = min(file.count, start + slotSize)
            let slice = start < end ? file[start..<end] : []
            switch decode(slice) {
            case .success(let copy):
                if best == nil || copy.sequence > best!.sequence { best = (copy.sequence, copy.payload, index) }
            case .failure(let problem):
                problems.append(problem)
            }
        }
        if let best { return .state(sequence: best.sequence, payload: best.payload, slot: best.slot) }
        if problems.allSatisfy({ $0 == .blank || $0 == .short }) && file.allSatisfy({ $0 == 0 }) { return .empty }
        return .corrupt(reason: "slot 0: \(problems[0]), slot 1: \(problems[1])")
    }
}
