import Foundation
import Testing

/// The gossip membership with many members in one process (`cluster bench members`, which
/// `make bench` runs at 1,000 members): here at a smaller N, as a user runs the command.
@Suite("Gossip membership at scale (one process)", .serialized, .timeLimit(.minutes(4)))
struct GossipScaleTests {
    @Test("96 members in one process, three of them voters: every member sees every other alive, killed members are declared failed by all, and a killed primary's successor is named by every member")
    func manyMembersConvergeDetectAndSpreadThePrimary() async throws {
        let result = try await runChildAwaiting(
            "cluster",
            ["bench", "members", "--nodes", "96", "--probe-interval", "100ms", "--scenario", "crash,primary", "--trials", "2",
             "--converge-timeout", "120s"],
            timeoutSeconds: 200)
        #expect(result.exitCode == 0, "\(result)")
        // The JSON line on stdout (stderr's progress lines, which the child's output interleaves,
        // end in carriage returns and clear the line before the next).
        let line = result.output.split(whereSeparator: { $0 == "\n" || $0 == "\r" })
            .compactMap { segment in segment.range(of: "{\"impl\":\"swift-cluster\"").map { String(segment[$0.lowerBound...]) } }.last
        let json = try #require(line.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }, "\(result)")
        #expect(json["convergence_ms"] as? Double != nil, "\(json)")
        #expect(json["crash_completed"] as? Int == 2, "\(json)")
        #expect(json["primary_completed"] as? Int == 1, "\(json)")
        #expect(json["primary_members"] as? Int == 93, "\(json)")
    }
}
