import Foundation
import Testing
@testable import ClusterCore

@Suite struct RolesTests {
    @Test func nodeRoleRawValuesAndDescriptions() {
        #expect(NodeRole.replica.rawValue == 0)
        #expect(NodeRole.candidate.rawValue == 1)
        #expect(NodeRole.primary.rawValue == 2)
        #expect(NodeRole.allCases.map(\.description) == ["replica", "candidate", "primary"])
        #expect(NodeRole(rawValue: 3) == nil)
    }

    @Test func electionStateRawValuesAndDescriptions() {
        #expect(ElectionState.follower.rawValue == 0)
        #expect(ElectionState.candidate.rawValue == 1)
        #expect(ElectionState.leader.rawValue == 2)
        #expect(ElectionState.allCases.map(\.description) == ["follower", "candidate", "leader"])
        #expect(ElectionState.allCases.map(\.role) == [.replica, .candidate, .primary])
    }

    @Test func nodeRoleEncodesAsAnInteger() throws {
        #expect(try encodeJSON([NodeRole.replica, .candidate, .primary]) == "[0,1,2]")
        #expect(try decodeJSON([NodeRole].self, "[2,0,1]") == [.primary, .replica, .candidate])
        #expect(throws: DecodingError.self) { try decodeJSON(NodeRole.self, "3") }
        #expect(throws: DecodingError.self) { try decodeJSON(NodeRole.self, "\"primary\"") }
    }
}
