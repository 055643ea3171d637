import Foundation
import Testing
@testable import ClusterCore

@Suite struct NodeInfoCodingTests {
    /// Exactly what Go's encoding/json writes for the seed's NodeInfo (PROTOCOL-NOTES.md).
    static let goJSON = #"{"ID":"n1","Addr":"127.0.0.1:7001","Role":2,"LastSeen":"2026-11-26T10:00:00.123456789+01:00","LastHeartbeatSeq":17,"Epoch":2,"Term":3,"LastLSN":120,"Priority":1}"#

    func expectExample(_ n: NodeInfo) {
        #expect(n.id == "n1")
        #expect(n.addr == "127.0.0.1:7001")
        #expect(n.role == .primary)
        #expect(abs(n.lastSeen.timeIntervalSince1970 - (exampleInstant - 3600 + 0.123456789)) < 1e-6)
        #expect(n.lastHeartbeatSeq == 17)
        #expect(n.epoch == 2)
        #expect(n.term == 3)
        #expect(n.lastLSN == 120)
        #expect(n.priority == 1)
    }

    @Test func decodesGoOutput() throws {
        expectExample(try decodeJSON(NodeInfo.self, Self.goJSON))
    }

    @Test func decodesKeysWithoutRegardToCase() throws {
        let lower = #"{"id":"n1","addr":"127.0.0.1:7001","role":2,"lastseen":"2026-11-26T10:00:00.123456789+01:00","lastheartbeatseq":17,"epoch":2,"term":3,"lastlsn":120,"priority":1}"#
        let mixed = #"{"Id":"n1","ADDR":"127.0.0.1:7001","rOLE":2,"lastSeen":"2026-11-26T10:00:00.123456789+01:00","LastHeartBeatSeq":17,"EPOCH":2,"term":3,"lastLsn":120,"PRIORITY":1}"#
        expectExample(try decodeJSON(NodeInfo.self, lower))
        expectExample(try decodeJSON(NodeInfo.self, mixed))
    }

    @Test func exactKeyWinsOverFoldedOne() throws {
        let n = try decodeJSON(NodeInfo.self, #"{"id":"folded","ID":"exact"}"#)
        #expect(n.id == "exact")
    }

    @Test func uint64MaxRoundTripsExactly() throws {
        let max = UInt64.max
        let n = NodeInfo(
            id: "n1", addr: "a:1", lastSeen: Date(timeIntervalSince1970: exampleInstant),
            lastHeartbeatSeq: max, epoch: max, term: max, lastLSN: max)
        let json = try encodeJSON(n)
        #expect(json.contains(#""Epoch":18446744073709551615"#))
        #expect(json.contains(#""LastHeartbeatSeq":18446744073709551615"#))
        #expect(json.contains(#""LastLSN":18446744073709551615"#))
        #expect(json.contains(#""Term":18446744073709551615"#))
        let back = try decodeJSON(NodeInfo.self, json)
        #expect(back == n)

        let literal = try decodeJSON(
            NodeInfo.self,
            #"{"LastHeartbeatSeq":18446744073709551615,"Epoch":18446744073709551614,"Term":9007199254740993,"LastLSN":18446744073709551615}"#)
        #expect(literal.lastHeartbeatSeq == max)
        #expect(literal.epoch == max - 1)
        #expect(literal.term == 9_007_199_254_740_993)  // 2^53 + 1: not representable as a Double
        #expect(literal.lastLSN == max)
    }

    @Test func encodesGoKeys() throws {
        let n = NodeInfo(
            id: "n1", addr: "127.0.0.1:7001", role: .primary, lastSeen: Date(timeIntervalSince1970: exampleInstant + 0.5),
            lastHeartbeatSeq: 17, epoch: 2, term: 3, lastLSN: 120, priority: 1)
        #expect(try encodeJSON(n) == #"{"Addr":"127.0.0.1:7001","Epoch":2,"ID":"n1","LastHeartbeatSeq":17,"LastLSN":120,"LastSeen":"2026-11-26T10:00:00.5Z","Priority":1,"Role":2,"Term":3}"#)
    }

    @Test func missingKeysDecodeAsGoZeroValues() throws {
        let zero = NodeInfo(id: "", addr: "", role: .replica, lastSeen: GoTime.zero, priority: 0)
        #expect(try decodeJSON(NodeInfo.self, "{}") == zero)
        let nulls = #"{"ID":null,"Addr":null,"Role":null,"LastSeen":null,"LastHeartbeatSeq":null,"Epoch":null,"Term":null,"LastLSN":null,"Priority":null}"#
        #expect(try decodeJSON(NodeInfo.self, nulls) == zero)
    }

    @Test func unknownKeysAreIgnored() throws {
        let n = try decodeJSON(NodeInfo.self, #"{"ID":"n9","Whatever":[1,2,3]}"#)
        #expect(n.id == "n9")
    }

    @Test(arguments: [#"{"Role":3}"#, #"{"Role":-1}"#, #"{"Role":"primary"}"#])
    func badRoleIsAnError(_ json: String) {
        #expect(throws: DecodingError.self) { try decodeJSON(NodeInfo.self, json) }
    }

    @Test(arguments: [#"{"LastSeen":"yesterday"}"#, #"{"LastSeen":12}"#, #"{"Epoch":-1}"#, #"{"ID":5}"#, "[]"])
    func malformedFieldsAreErrors(_ json: String) {
        #expect(throws: DecodingError.self) { try decodeJSON(NodeInfo.self, json) }
    }

    @Test func initDefaults() {
        let n = NodeInfo(id: "n1", addr: "a:1")
        #expect(n.role == .replica)
        #expect(n.lastHeartbeatSeq == 0 && n.epoch == 0 && n.term == 0 && n.lastLSN == 0)
        #expect(n.priority == 1)
        #expect(abs(n.lastSeen.timeIntervalSinceNow) < 60)
    }

    @Test func isHealthyIsStrictlyYoungerThanTheTimeout() {
        let seen = Date(timeIntervalSince1970: 1_800_000_000)
        let n = NodeInfo(id: "n1", addr: "a:1", lastSeen: seen)
        #expect(n.isHealthy(timeout: .seconds(5), now: seen))
        #expect(n.isHealthy(timeout: .seconds(5), now: seen.addingTimeInterval(4.999)))
        #expect(!n.isHealthy(timeout: .seconds(5), now: seen.addingTimeInterval(5)))
        #expect(!n.isHealthy(timeout: .seconds(5), now: seen.addingTimeInterval(60)))
        #expect(NodeInfo(id: "n", addr: "a:1").isHealthy(timeout: .seconds(60)))
        #expect(!NodeInfo(id: "n", addr: "a:1", lastSeen: GoTime.zero).isHealthy(timeout: .seconds(60)))
    }

    @Test func durationHelpers() {
        #expect(Duration.milliseconds(1500).seconds == 1.5)
        #expect(Duration.milliseconds(1500).nanoseconds == 1_500_000_000)
        #expect(Duration.seconds(-1).nanoseconds == 0)
        #expect(Duration.seconds(Int64.max).nanoseconds == .max)
    }
}
