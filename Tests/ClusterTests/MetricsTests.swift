import Cluster
import Foundation
import Prometheus
import Testing

@Suite("Metrics and the node's HTTP door", .timeLimit(.minutes(1)))
struct MetricsTests {
    /// A node whose metrics go to a registry of its own, served on its port.
    func meteredNode(_ id: String = "m1") throws -> (ElectionManager, PrometheusCollectorRegistry) {
        let registry = PrometheusCollectorRegistry()
        var options = NodeOptions(logger: quietLogger)
        options.metricsFactory = PrometheusMetricsFactory(registry: registry)
        options.metricsExporter = { registry.emitToBuffer() }
        let (node, _) = try soloNode(id, options: options)
        return (node, registry)
    }

    @Test("the seed's metrics and the runtime's are recorded under Prometheus names, per node")
    func electionMetrics() async throws {
        let (node, registry) = try meteredNode()
        defer { try? node.stop() }
        try node.startElection()  // alone (minQuorumSize 1): it wins
        #expect(await eventually(timeout: .seconds(5)) { node.isLeader })
        // Gauges are refreshed once a second.
        #expect(await eventually(timeout: .seconds(10)) { registry.emitToString().contains(#"cluster_role{node="m1"} 2"#) })
        let text = registry.emitToString()
        for expected in [
            #"cluster_elections_total{node="m1",result="won"} 1"#, #"cluster_term{node="m1"} 1"#,
            #"cluster_epoch{node="m1"} 1"#, #"cluster_nodes_total{node="m1"} 1"#, #"cluster_has_quorum{node="m1"} 1"#,
            #"cluster_election_duration_seconds_count{node="m1"} 1"#, "cluster_heartbeats_sent_total",
            "cluster_links_up", "cluster_dual_primary_detections_total", "cluster_transfers_total",
            #"cluster_heartbeat_datagrams_total{node="m1",outcome="rejected"} 0"#,
        ] {
            #expect(text.contains(expected), "missing \(expected)")
        }
    }

    @Test("GET /metrics on the node's own port answers the exporter's text; other requests get 404")
    func metricsOnTheNodePort() async throws {
        let (node, _) = try meteredNode("m2")
        defer { try? node.stop() }
        let port = node.listenAddress!.port
        let (reply, closed) = try exchange(port: port, send: Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8), lines: 0)
        #expect(closed)
        #expect(reply.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(reply.prefix(200))")
        #expect(reply.contains("text/plain; version=0.0.4"))
        #expect(reply.contains(#"cluster_term{node="m2"}"#))
        let (post, _) = try exchange(port: port, send: Array("GET /x HTTP/1.1\r\n\r\n".utf8), lines: 0)
        #expect(post.hasPrefix("HTTP/1.1 404"))
        // The node still answers its own protocol.
        #expect(try ClusterClient.status(of: HostPort(host: "127.0.0.1", port: port)).nodeID == "m2")
    }

    @Test("a MetricsEndpoint serves GET /metrics on an address of its own")
    func endpoint() throws {
        let endpoint = try MetricsEndpoint(address: HostPort(host: "127.0.0.1", port: 0)) { Array("up 1\n".utf8) }
        defer { endpoint.stop() }
        let (reply, closed) = try exchange(port: endpoint.boundAddress.port, send: Array("GET /metrics HTTP/1.0\r\n\r\n".utf8), lines: 0)
        #expect(closed)
        #expect(reply.hasPrefix("HTTP/1.1 200 OK") && reply.hasSuffix("\r\n\r\nup 1\n"), "\(reply)")
        let (bad, _) = try exchange(port: endpoint.boundAddress.port, send: Array("POST /metrics HTTP/1.1\r\n\r\n".utf8), lines: 0)
        #expect(bad.hasPrefix("HTTP/1.1 405"))
    }

    @Test("statusUpdates yields the status now, then every change, and ends when cancelled")
    func statusUpdates() async throws {
        let (node, _) = try soloNode("s1")
        defer { try? node.stop() }
        let updates = node.statusUpdates()
        let reader = Task {
            var seen: [ElectionStatus] = []
            for await status in updates {
                seen.append(status)
                if status.state == .leader { break }
            }
            return seen
        }
        try node.startElection()
        let seen = await reader.value
        #expect(seen.first == ElectionStatus(state: .follower, term: 0, leaderID: nil, epoch: 0))
        #expect(seen.last?.state == .leader && seen.last?.term == 1)
    }
}
