import Cluster
import Foundation
import Glibc
import Testing
import UV

/// `cluster members` against real agents: statuses, filters, outputs and exit codes (issue 18).
@Suite("cluster members against real agents", .serialized, .timeLimit(.minutes(3)))
struct MembersCommandTests {
    /// `cluster members ARGUMENTS` run to its end.
    static func members(_ arguments: [String]) throws -> ChildResult {
        try runChild("cluster", ["members"] + arguments, timeoutSeconds: 30)
    }

    /// The `-o json` document's members, by id.
    static func jsonMembers(_ output: String) throws -> (document: [String: Any], members: [String: [String: Any]]) {
        let object = try JSONSerialization.jsonObject(with: Data(output.utf8))
        let document = try #require(object as? [String: Any], "not a JSON object: \(output)")
        let list = try #require(document["members"] as? [[String: Any]], "no members: \(output)")
        var byID: [String: [String: Any]] = [:]
        for member in list { byID[member["id"] as? String ?? ""] = member }
        return (document, byID)
    }

    @Test("statuses alive, failed and left; --status and --id filter; -o json in snake_case with named roles; exit 0")
    func statusesFiltersAndJSON() async throws {
        let cluster = try await AgentCluster.start(size: 3)
        let leader = try #require(await cluster.agreedLeader(among: cluster.ids))
        let asked = cluster.ids.first { $0 != leader }!
        let addr = cluster.agent(asked).address.description
        // Every member alive once every link is up.
        #expect(await eventually(timeout: .seconds(10)) {
            guard let status = cluster.agent(asked).status() else { return false }
            return status.members.count == 3 && status.liveness.values.allSatisfy { $0.status == .alive && $0.voter }
        })
        let json = try Self.members(["--addr", addr, "-o", "json"])
        #expect(json.exitCode == 0, "\(json)")
        let (document, all) = try Self.jsonMembers(json.output)
        #expect(Set(all.keys) == Set(cluster.ids))
        #expect(document["leader_id"] as? String == leader && document["has_quorum"] as? Bool == true, "\(json.output)")
        #expect(all[leader]?["role"] as? String == "primary" && all[leader]?["state"] as? String == "leader", "\(json.output)")
        #expect(all.values.allSatisfy { $0["status"] as? String == "alive" && $0["voter"] as? Bool == true }, "\(json.output)")
        let keys = Set(document.keys).union(all.values.flatMap(\.keys))
        #expect(keys.allSatisfy { $0 == $0.lowercased() && !$0.contains("-") }, "not snake_case: \(keys.sorted())")

        // A member killed: failed once not heard within twice the health timeout.
        let gone = cluster.ids.first { $0 != leader && $0 != asked }!
        cluster.remove(gone)
        #expect(await eventually(timeout: .seconds(10)) {
            cluster.agent(asked).status()?.liveness[gone]?.status == .failed
        })
        let failed = try Self.members(["--addr", addr, "--status", "failed"])
        #expect(failed.exitCode == 0, "\(failed)")
        let failedRows = failed.output.split(separator: "\n").dropFirst(2)
        #expect(failedRows.count == 1 && failedRows.first?.hasPrefix(gone + " ") == true, "\(failed)")
        #expect(failedRows.first?.contains(" failed ") == true, "\(failed)")
        let one = try Self.members(["--addr", addr, "--id", leader, "-o", "wide"])
        let oneRows = one.output.split(separator: "\n").dropFirst(1)
        #expect(oneRows.first?.contains("INC") == true && oneRows.count == 2 && oneRows.last?.hasPrefix(leader + " ") == true, "\(one)")

        // Force-left: a tombstone, shown as left.
        let forced = try runChild("cluster", ["force-leave", "--addr", addr, gone], timeoutSeconds: 30)
        #expect(forced.exitCode == 0, "\(forced)")
        let left = try Self.members(["--addr", addr, "--status", "left", "-o", "json"])
        #expect(left.exitCode == 0, "\(left)")
        let leftMembers = try Self.jsonMembers(left.output).members
        #expect(Array(leftMembers.keys) == [gone] && leftMembers[gone]?["status"] as? String == "left", "\(left.output)")
    }

    @Test("exit 2 when the node asked knows no primary, the table still printed and the reason on stderr")
    func noPrimaryExitsTwo() async throws {
        let dataDir = NSTemporaryDirectory() + "cluster-members-noprimary-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        // Two voters, one never started: no election can be won.
        let agent = try await AgentProcess.start("p1", seeds: [], dataDir: dataDir, minQuorum: 1, extra: ["--voters", "p1,p2"])
        let result = try Self.members(["--addr", agent.address.description])
        #expect(result.exitCode == 2, "\(result)")
        #expect(result.output.contains("ID ") && result.output.contains("p1 *"), "\(result)")
        #expect(result.output.hasSuffix("cluster members: p1 knows no primary\n"), "\(result)")
        // --json, the raw line as before: exit 0 whenever the node answers, nothing but the line.
        let raw = try Self.members(["--addr", agent.address.description, "--json"])
        #expect(raw.exitCode == 0, "\(raw)")
        #expect(raw.output.hasPrefix("{\"") && raw.output.hasSuffix("}\n") && raw.output.split(separator: "\n").count == 1, "\(raw)")
    }

    @Test("the default address is CLUSTER_ADDR; transfer --to the leader exits 0; restarted, an agent says the term and vote it restored at the default log level")
    func environmentAddressAndRestoredState() async throws {
        let dataDir = NSTemporaryDirectory() + "cluster-members-env-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        var agent = try await AgentProcess.start("v1", seeds: [], dataDir: dataDir, minQuorum: 1)
        #expect(await eventually(timeout: .seconds(20)) { agent.status()?.state == .leader })
        let cluster = productsDirectory().appendingPathComponent("cluster").path
        let shell = try ChildProcess(path: "/bin/sh", ["-c", "CLUSTER_ADDR=\(agent.address) exec '\(cluster)' members"])
        let result = try #require(shell.waitForExit(seconds: 30))
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.output.contains("v1 *") && result.output.contains(" alive "), "\(result)")
        // A switchover to the node that leads already: nothing to do, exit 0 (it was exit 1).
        let transfer = try runChild("cluster", ["transfer", "--addr", agent.address.description, "--to", "v1"], timeoutSeconds: 30)
        #expect(transfer.exitCode == 0, "\(transfer)")
        #expect(transfer.output == "v1 already leads: nothing to hand over\n", "\(transfer)")
        agent.child.signal(SIGTERM)
        _ = agent.child.waitForExit(seconds: 20)
        agent = try await AgentProcess.start("v1", seeds: [], dataDir: dataDir, minQuorum: 1)
        #expect(await eventually(timeout: .seconds(10)) { agent.child.output.contains("restored term 1, vote v1, epoch 1 from \(dataDir)") },
                "\(agent.child.output.suffix(1000))")
        #expect(agent.child.output.contains(" info "), "not at the default level: \(agent.child.output.suffix(500))")
    }
}
