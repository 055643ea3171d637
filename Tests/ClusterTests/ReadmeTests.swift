import Foundation
import Testing

/// The README's library program is `Examples/LibraryExample/main.swift`, built with the package
/// (target `library-example`): so the README's example always compiles, as long as the two agree.
@Suite("The README")
struct ReadmeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("the README's library program is, line for line, the example the package builds")
    func libraryProgramIsBuilt() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let example = try String(contentsOf: Self.root.appendingPathComponent("Examples/LibraryExample/main.swift"), encoding: .utf8)
        // The Swift block after the line that names `Sources/myapp/main.swift`.
        let lines = readme.components(separatedBy: "\n")
        let named = try #require(lines.firstIndex { $0.hasPrefix("`Sources/myapp/main.swift`") })
        let open = try #require(lines[named...].firstIndex { $0 == "```swift" })
        let close = try #require(lines[(open + 1)...].firstIndex { $0 == "```" })
        let block = lines[(open + 1)..<close].joined(separator: "\n") + "\n"
        #expect(block == example, "README.md and Examples/LibraryExample/main.swift differ")
    }
}
