import ClusterCore
import CoreMetrics

/// A node's figures, recorded through swift-metrics: the seed's (elections won and lost, election
/// duration, role, term, epoch, nodes total and healthy, has-quorum) and the runtime's
/// (heartbeats sent, received and skipped, links up, dual-primary detections, transfers,
/// persistence latency, probe round trip). Names follow Prometheus conventions; every metric has
/// the dimension `node` (several nodes may share a process). The application chooses the
/// backend (`MetricsSystem.bootstrap`, or `NodeOptions.metricsFactory`); without one nothing is
/// recorded. Loop thread only.
///
/// Counters that move with every heartbeat are not touched on the heartbeat path: the runtime's
/// own counters are added to them once a second (`report`), with the gauges.
final class NodeMetrics {
    private let electionsWon: Counter
    private let electionsLost: Counter
    private let electionDuration: Timer
    private let role: Gauge
    private let term: Gauge
    private let epoch: Gauge
    private let nodesTotal: Gauge
    private let nodesHealthy: Gauge
    private let hasQuorum: Gauge
    private let linksUp: Gauge
    private let heartbeatsSent: Counter
    private let heartbeatsReceived: Counter
    private let heartbeatsSkipped: Counter
    private let datagramsSent: Counter
    private let datagramsReceived: Counter
    private let datagramsRejected: Counter
    private let dualPrimaries: Counter
    private let loopStalls: Counter
    private let transfersSucceeded: Counter
    private let transfersFailed: Counter
    private let persistDuration: Timer
    private let probeRoundTrip: Timer
    private let gossipMembers: [Gauge]
    private let gossipSent: Counter
    private let gossipReceived: Counter
    private let gossipRejected: Counter
    private var reported = NodeStats()
    private var candidateSinceNs: UInt64?

    init(nodeID: String, factory: any MetricsFactory) {
        let node = [("node", nodeID)]
        func counter(_ label: String, _ extra: [(String, String)] = []) -> Counter {
            Counter(label: label, dimensions: node + extra, factory: factory)
        }
        func gauge(_ label: String) -> Gauge { Gauge(label: label, dimensions: node, factory: factory) }
        func timer(_ label: String) -> Timer { Timer(label: label, dimensions: node, factory: factory) }
        electionsWon = counter("cluster_elections_total", [("result", "won")])
        electionsLost = counter("cluster_elections_total", [("result", "lost")])
        electionDuration = timer("cluster_election_duration_seconds")
        role = gauge("cluster_role")
        term = gauge("cluster_term")
        epoch = gauge("cluster_epoch")
        nodesTotal = gauge("cluster_nodes_total")
        nodesHealthy = gauge("cluster_nodes_healthy")
        hasQuorum = gauge("cluster_has_quorum")
        linksUp = gauge("cluster_links_up")
        heartbeatsSent = counter("cluster_heartbeats_sent_total")
        heartbeatsReceived = counter("cluster_heartbeats_received_total")
        heartbeatsSkipped = counter("cluster_heartbeats_skipped_total")
        datagramsSent = counter("cluster_heartbeat_datagrams_total", [("outcome", "sent")])
        datagramsReceived = counter("cluster_heartbeat_datagrams_total", [("outcome", "received")])
        datagramsRejected = counter("cluster_heartbeat_datagrams_total", [("outcome", "rejected")])
        dualPrimaries = counter("cluster_dual_primary_detections_total")
        loopStalls = counter("cluster_loop_stalls_total")
        transfersSucceeded = counter("cluster_transfers_total", [("result", "succeeded")])
        transfersFailed = counter("cluster_transfers_total", [("result", "failed")])
        persistDuration = timer("cluster_persist_duration_seconds")
        probeRoundTrip = timer("cluster_probe_rtt_seconds")
        gossipMembers = ["alive", "suspect", "failed", "left"].map {
            Gauge(label: "cluster_gossip_members", dimensions: node + [("state", $0)], factory: factory)
        }
        gossipSent = counter("cluster_gossip_datagrams_total", [("outcome", "sent")])
        gossipReceived = counter("cluster_gossip_datagrams_total", [("outcome", "received")])
        gossipRejected = counter("cluster_gossip_datagrams_total", [("outcome", "rejected")])
    }

    /// The state changed: a candidacy starts the election clock; leadership or its loss ends it.
    func stateChanged(to state: ElectionState, nowNs: UInt64) {
        switch state {
        case .candidate:
            if candidateSinceNs == nil { candidateSinceNs = nowNs }
        case .leader:
            if let since = candidateSinceNs { electionDuration.recordNanoseconds(Int64(clamping: nowNs &- since)) }
            candidateSinceNs = nil
            electionsWon.increment()
        case .follower:
            if let since = candidateSinceNs {
                electionDuration.recordNanoseconds(Int64(clamping: nowNs &- since))
                electionsLost.increment()
            }
            candidateSinceNs = nil
        }
    }

    func dualPrimaryDetected() { dualPrimaries.increment() }

    func transferEnded(succeeded: Bool) {
        (succeeded ? transfersSucceeded : transfersFailed).increment()
    }

    func persisted(tookNs: UInt64) { persistDuration.recordNanoseconds(Int64(clamping: tookNs)) }

    func roundTrip(_ ns: UInt64) { probeRoundTrip.recordNanoseconds(Int64(clamping: ns)) }

    /// Once a second: what the counters gained since the last report, and the gauges.
    func report(
        stats: NodeStats, role: NodeRole, term: UInt64, epoch: UInt64, nodes: Int, healthy: Int, quorum: Bool
    ) {
        heartbeatsSent.increment(by: Int64(clamping: stats.heartbeatsSent &- reported.heartbeatsSent))
        heartbeatsReceived.increment(by: Int64(clamping: stats.heartbeatsReceived &- reported.heartbeatsReceived))
        heartbeatsSkipped.increment(by: Int64(clamping: stats.heartbeatsSkipped &- reported.heartbeatsSkipped))
        datagramsSent.increment(by: Int64(clamping: stats.datagramsSent &- reported.datagramsSent))
        datagramsReceived.increment(by: Int64(clamping: stats.datagramsReceived &- reported.datagramsReceived))
        datagramsRejected.increment(by: Int64(clamping: stats.datagramsRejected &- reported.datagramsRejected))
        loopStalls.increment(by: Int64(clamping: stats.loopStalls &- reported.loopStalls))
        gossipSent.increment(by: Int64(clamping: stats.gossipDatagramsSent &- reported.gossipDatagramsSent))
        gossipReceived.increment(by: Int64(clamping: stats.gossipDatagramsReceived &- reported.gossipDatagramsReceived))
        gossipRejected.increment(by: Int64(clamping: stats.gossipDatagramsRejected &- reported.gossipDatagramsRejected))
        for (gauge, count) in zip(gossipMembers, [stats.gossipMembersAlive, stats.gossipMembersSuspect, stats.gossipMembersFailed, stats.gossipMembersLeft]) {
            gauge.record(count)
        }
        reported = stats
        self.role.record(Int64(role.rawValue))
        self.term.record(Int64(clamping: term))
        self.epoch.record(Int64(clamping: epoch))
        nodesTotal.record(nodes)
        nodesHealthy.record(healthy)
        hasQuorum.record(quorum ? 1 : 0)
        linksUp.record(stats.peersConnected)
    }
}
