import ArgumentParser
import Cluster
import Dispatch
import Foundation
import Logging
import UV

/// `make bench`: a cluster at rest, measured. N real nodes on 127.0.0.1, spread over T shared
/// loop threads (node i on loop i mod T; T = 0: a loop of its own per node), every node
/// heartbeating every other every M ms, as `uvmesh --interval-ms M --threads T` does with plain C.
/// Prints one JSON line: heartbeats per second, the CPU they cost, the RSS.
struct BenchSteady: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "steady", abstract: "Measure a loopback cluster at rest: heartbeats per second and their CPU cost.")

    @Option(help: "Number of nodes.") var nodes = 16
    @Option(help: "Heartbeat interval in milliseconds.") var intervalMs = 10
    @Option(help: "Seconds measured (after 1 s of warm-up).") var seconds = 5.0
    @Option(help: "Loop threads shared by the nodes (0: one per node).") var threads = 1
    @Flag(help: "Give the nodes a cluster key: every frame is authenticated.") var key = false

    func validate() throws {
        guard (2...128).contains(nodes) else { throw ValidationError("--nodes must be 2...128") }
        guard intervalMs >= 1 else { throw ValidationError("--interval-ms must be at least 1") }
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard threads >= 0 && threads <= 64 else { throw ValidationError("--threads must be 0...64") }
    }

    func run() throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let ids = (1...nodes).map { "n\($0)" }
        let ports = try LoopbackPorts.reserve(nodes)
        let addrs = Dictionary(uniqueKeysWithValues: zip(ids, ports.map { "127.0.0.1:\($0)" }))
        let electionMs = max(20 * intervalMs, 500)
        let benchKey = ClusterKey.generate()
        let loops = try (0..<threads).map { try UVLoop(name: "bench-\($0)") }
        defer { for loop in loops { loop.shutdown() } }
        var managers: [ElectionManager] = []
        for (i, id) in ids.enumerated() {
            let membership = ClusterMembership(localNodeID: id, localAddr: addrs[id]!)
            for other in ids where other != id { try membership.addNode(NodeInfo(id: other, addr: addrs[other]!)) }
            let config = ClusterConfig(
                nodeID: id, nodeAddr: addrs[id]!, seedNodes: ids.filter { $0 != id }.map { addrs[$0]! },
                electionTimeout: .milliseconds(electionMs), heartbeatInterval: .milliseconds(intervalMs),
                minQuorumSize: nodes / 2 + 1, enableAutoFailover: true, voteRequestTimeout: .milliseconds(electionMs / 2))
            var options = NodeOptions(logger: logger, loop: loops.isEmpty ? nil : loops[i % loops.count])
            if key { options.keyring = ClusterKeyring(primary: benchKey) }
            let manager = ElectionManager(config: config, membership: membership, options: options)
            try manager.start()
            managers.append(manager)
        }
        // Wait (bounded) until every link is up and one primary is known to all.
        let setupDeadline = DispatchTime.now() + .seconds(30)
        while true {
            let allLinked = managers.allSatisfy { $0.stats.peersConnected == nodes - 1 }
            let leaders = Set(managers.compactMap(\.leaderID))
            if allLinked && leaders.count == 1 { break }
            guard DispatchTime.now() < setupDeadline else {
                FileHandle.standardError.write(Data("cluster bench: the cluster did not form within 30 s\n".utf8))
                throw ExitCode.failure
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        Thread.sleep(forTimeInterval: 1)  // warm-up
        func totals() -> (received: UInt64, skipped: UInt64, sent: UInt64) {
            managers.reduce((0, 0, 0)) { acc, m in
                let s = m.stats
                return (acc.0 + s.heartbeatsReceived, acc.1 + s.heartbeatsSkipped, acc.2 + s.heartbeatsSent)
            }
        }
        let before = totals()
        let cpuBefore = UVResourceUsage.current()!.cpuSeconds
        let wallBefore = UVLoop.hrtimeNs()
        Thread.sleep(forTimeInterval: seconds)
        let wall = Double(UVLoop.hrtimeNs() - wallBefore) / 1e9
        let usage = UVResourceUsage.current()!
        let after = totals()
        let rtts = managers.map { Double($0.stats.lastRoundTripNs) / 1000 }.filter { $0 > 0 }.sorted()
        let leaders = Set(managers.compactMap(\.leaderID))
        let dual = managers.reduce(0) { $0 + $1.stats.dualPrimaryDetected }
        for m in managers { try? m.stop() }

        let received = after.received - before.received
        let cpu = usage.cpuSeconds - cpuBefore
        let perSecond = Double(received) / wall
        let nominal = Double(nodes * (nodes - 1)) * 1000 / Double(intervalMs)
        let line: [(String, String)] = [
            ("impl", "\"swift-cluster\""), ("keyed", "\(key)"), ("nodes", "\(nodes)"), ("threads", "\(threads == 0 ? nodes : threads)"),
            ("seconds", "\(seconds)"), ("interval_ms", "\(intervalMs)"),
            ("nominal_per_s", String(format: "%.0f", nominal)),
            ("heartbeats_per_s", String(format: "%.0f", perSecond)),
            ("sent_per_s", String(format: "%.0f", Double(after.sent - before.sent) / wall)),
            ("cpu_s", String(format: "%.3f", cpu)),
            ("cpu_pct", String(format: "%.1f", cpu / wall * 100)),
            ("cpu_us_per_heartbeat", String(format: "%.2f", received > 0 ? cpu * 1e6 / Double(received) : 0)),
            ("heartbeats_per_cpu_s", String(format: "%.0f", cpu > 0 ? Double(received) / cpu : 0)),
            ("probe_rtt_p50_us", String(format: "%.1f", rtts.isEmpty ? 0 : rtts[rtts.count / 2])),
            ("skipped", "\(after.skipped - before.skipped)"),
            ("leaders", "\(leaders.count)"), ("dual_primary", "\(dual)"),
            ("rss_kb", "\(usage.maxRSSKiB)"),
        ]
        print("{" + line.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}")
        if leaders.count != 1 || dual != 0 { throw ExitCode.failure }
    }
}
