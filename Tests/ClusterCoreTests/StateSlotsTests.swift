import Foundation
import Testing
@testable import ClusterCore

/// Issue 19: the election state in two checksummed slots written alternately in place.
@Suite("The state file's two slots")
struct StateSlotsTests {
    static func payload(_ term: Int) -> [UInt8] { Array(#"{"term":\#(term),"votedFor":"n2"}"#.utf8) }

    /// A file holding copies 1 (slot 1) and 2 (slot 0), as a node leaves it after two writes.
    static func twoCopies() -> [UInt8] {
        var file = [UInt8](repeating: 0, count: StateSlots.fileSize)
        for sequence: UInt64 in 1...2 {
            let image = StateSlots.image(payload: payload(Int(sequence)), sequence: sequence)!
            let offset = StateSlots.slot(for: sequence) * StateSlots.slotSize
            file.replaceSubrange(offset..<(offset + image.count), with: image)
        }
        return file
    }

    @Test("the newest valid copy is read; copies alternate between the slots")
    func newestCopy() {
        #expect(StateSlots.slot(for: 1) != StateSlots.slot(for: 2))
        #expect(StateSlots.read(file: Self.twoCopies()) == .state(sequence: 2, payload: Self.payload(2), slot: 0))
        #expect(StateSlots.read(file: []) == .empty)
        #expect(StateSlots.read(file: [UInt8](repeating: 0, count: StateSlots.fileSize)) == .empty)
    }

    @Test("a write cut at every byte leaves the copy before it, or the new one once whole: never a mix, never neither")
    func everyCutPoint() {
        let before = Self.twoCopies()
        let image = StateSlots.image(payload: Self.payload(3), sequence: 3)!
        let offset = StateSlots.slot(for: 3) * StateSlots.slotSize
        for cut in 0...image.count {
            var file = before
            file.replaceSubrange(offset..<(offset + cut), with: image[0..<cut])
            // Whole once every byte that differs from the slot's older copy is written.
            let whole = Array(file[offset..<(offset + image.count)]) == image
            let expected: StateSlots.Content = whole
                ? .state(sequence: 3, payload: Self.payload(3), slot: 1)
                : .state(sequence: 2, payload: Self.payload(2), slot: 0)
            #expect(StateSlots.read(file: file) == expected, "cut after \(cut) of \(image.count) bytes")
            if cut < 20 { #expect(!whole, "the header's first bytes differ") }
        }
    }

    @Test("a flipped bit anywhere in the newest copy falls back to the one before")
    func flippedBits() {
        let file = Self.twoCopies()
        let image = StateSlots.image(payload: Self.payload(2), sequence: 2)!
        for index in 0..<image.count {
            var damaged = file
            damaged[index] ^= 0x10
            #expect(StateSlots.read(file: damaged) == .state(sequence: 1, payload: Self.payload(1), slot: 1), "byte \(index)")
        }
    }

    @Test("both slots damaged: corrupt, saying what each holds; a slot of another format is no copy")
    func bothDamaged() {
        var file = Self.twoCopies()
        file[30] ^= 1
        file[StateSlots.slotSize + 30] ^= 1
        guard case .corrupt(let reason) = StateSlots.read(file: file) else {
            Issue.record("read a damaged file as valid")
            return
        }
        #expect(reason.contains("checksum"), "\(reason)")
        // The previous format's whole-file JSON is not a slot.
        let legacy = Array(#"{"term":3,"votedFor":"n1"}"#.utf8)
        #expect(StateSlots.read(file: legacy) != .empty)
        if case .state = StateSlots.read(file: legacy) { Issue.record("a JSON file read as a slot") }
    }

    @Test("a payload larger than a slot is refused before any write")
    func tooLarge() {
        #expect(StateSlots.image(payload: [UInt8](repeating: 1, count: StateSlots.maxPayload), sequence: 1) != nil)
        #expect(StateSlots.image(payload: [UInt8](repeating: 1, count: StateSlots.maxPayload + 1), sequence: 1) == nil)
    }
}
