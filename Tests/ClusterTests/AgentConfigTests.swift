import Cluster
import Foundation
import Glibc
import Testing

/// The agent's settings from a JSON file and CLUSTER_* variables: flags over the file over the
/// environment (issue 18).
@Suite("cluster agent --config and CLUSTER_* variables", .serialized, .timeLimit(.minutes(2)))
struct AgentConfigTests {
    @Test("flags win over the file, the file over the environment, and a setting only the environment gives applies")
    func precedence() async throws {
        let root = NSTemporaryDirectory() + "cluster-config-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let file = root + "/agent.json"
        let settings = """
            {"id": "fromfile", "listen": "127.0.0.1:0", "data-dir": "\(root)/data", "min-quorum": 1,
             "priority": 3, "heartbeat-interval": "50ms", "seeds": [], "auto-failover": true}
            """
        try Data(settings.utf8).write(to: URL(fileURLWithPath: file))
        let cluster = productsDirectory().appendingPathComponent("cluster").path
        // The environment names another id and priority (the file wins) and the election
        // timeout (only it does); the command line names the priority (it wins).
        let child = try ChildProcess(path: "/bin/sh", [
            "-c", #"CLUSTER_ID=fromenv CLUSTER_PRIORITY=5 CLUSTER_ELECTION_TIMEOUT=700ms exec "$0" "$@""#,
            cluster, "agent", "--config", file, "--priority", "9",
        ])
        var address: HostPort?
        _ = await eventually(timeout: .seconds(20)) {
            if let range = child.output.range(of: "listening on ") {
                address = try? HostPort(parsing: String(child.output[range.upperBound...].prefix { !$0.isWhitespace }))
            }
            return address != nil || child.waitForExit(seconds: 0) != nil
        }
        let addr = try #require(address, "the agent did not start: \(child.output.suffix(1000))")
        var status: StatusResponse?
        #expect(await eventually(timeout: .seconds(20)) {
            status = try? ClusterClient.status(of: addr, timeout: .milliseconds(300))
            return status?.state == .leader
        })
        #expect(status?.nodeID == "fromfile")
        #expect(status?.members.first { $0.id == "fromfile" }?.priority == 9)
        #expect(status?.healthTimeoutMs == 700)
        #expect(FileManager.default.fileExists(atPath: root + "/data"))
        child.signal(SIGTERM)
        let result = child.waitForExit(seconds: 20)
        #expect(result?.exitCode == 0, "\(result.map(String.init(describing:)) ?? "still running")")
    }
}
