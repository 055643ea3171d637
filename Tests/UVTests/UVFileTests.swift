import Foundation
import Testing
import UV

@Suite("UVFile")
struct UVFileTests {
    func scratchDirectory() -> String {
        NSTemporaryDirectory() + "uvfile-\(UUID().uuidString)"
    }

    @Test("an atomic write replaces the content and leaves no temporary file")
    func writeReadReplace() throws {
        let dir = scratchDirectory() + "/a/b"
        try UVFile.makeDirectories(path: dir)
        try UVFile.makeDirectories(path: dir)  // existing is fine
        let path = dir + "/state"
        #expect(try UVFile.read(path: path) == nil)
        try UVFile.writeAtomically(path: path, bytes: Array("first".utf8))
        #expect(try UVFile.read(path: path) == Array("first".utf8))
        let big = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try UVFile.writeAtomically(path: path, bytes: big)
        #expect(try UVFile.read(path: path) == big)
        #expect(try UVFile.read(path: path + ".tmp") == nil)
        try UVFile.remove(path: path)
        try UVFile.remove(path: path)
        #expect(try UVFile.read(path: path) == nil)
    }

    @Test("errors name the operation and libuv's reason")
    func errors() throws {
        #expect(throws: UVError.self) { try UVFile.writeAtomically(path: "/nonexistent-dir-\(UUID().uuidString)/x", bytes: [1]) }
        do {
            try UVFile.writeAtomically(path: "/nonexistent-dir-x1/x", bytes: [1])
        } catch {
            #expect(error.name == "ENOENT")
            #expect(error.description.contains("open /nonexistent-dir-x1/x.tmp"))
        }
        #expect(throws: UVError.self) { _ = try UVFile.read(path: "/", maxBytes: 10) }
    }
}
