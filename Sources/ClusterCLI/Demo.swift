import ArgumentParser
import Cluster
import Dispatch
import Foundation
import Logging
import UV

/// `make run`: a loopback cluster you can watch. N nodes on 127.0.0.1, each knowing only the
/// seed's address (n1), find each other through it, elect a primary; the primary is stopped; the
/// rest elect another. Every change is printed, and a summary at the end.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a loopback cluster, stop its primary, and watch the failover.")

    @Option(help: "Number of nodes.") var nodes = 3
    @Option(help: "Heartbeat interval in milliseconds.") var heartbeatMs = 100
    @Option(help: "Election timeout in milliseconds.") var electionTimeoutMs = 1000
    @Option(help: "Seconds to run after the failover before stopping.") var settleSeconds = 2.0
    @Option(help: "How many primaries to stop, one after another (at most nodes - majority).") var failovers = 1

    func validate() throws {
        guard (1...64).contains(nodes) else { throw ValidationError("--nodes must be 1...64") }
        guard heartbeatMs >= 1, electionTimeoutMs > heartbeatMs else {
            throw ValidationError("--election-timeout-ms must exceed --heartbeat-ms")
        }
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        let start = DispatchTime.now().uptimeNanoseconds
        @Sendable func stamp() -> String { String(format: "[%7.3fs]", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }

        let ids = (1...nodes).map { "n\($0)" }
        let ports = try LoopbackPorts.reserve(nodes)
        let addrs = Dictionary(uniqueKeysWithValues: zip(ids, ports.map { "127.0.0.1:\($0)" }))
        let events = DispatchSemaphore(value: 0)
        let leaders = UVLocked<[UInt64: Set<String>]>([:])
        var managers: [String: ElectionManager] = [:]
        var discoveries: [NodeDiscovery] = []
        var memberships: [ClusterMembership] = []
        let seed = addrs["n1"]!
        print("\(stamp()) starting \(nodes) nodes on 127.0.0.1: " + ids.map { "\($0)=\(addrs[$0]!)" }.joined(separator: " "))
        print("\(stamp()) each knows only the seed n1 (\(seed)); minQuorumSize \(nodes / 2 + 1), a majority of \(nodes)")
        for id in ids {
            let membership = ClusterMembership(localNodeID: id, localAddr: addrs[id]!)
            let config = ClusterConfig(
                nodeID: id, nodeAddr: addrs[id]!, seedNodes: [seed],
                electionTimeout: .milliseconds(electionTimeoutMs), heartbeatInterval: .milliseconds(heartbeatMs),
                minQuorumSize: nodes / 2 + 1, priority: 1, enableAutoFailover: true,
                voteRequestTimeout: .milliseconds(max(electionTimeoutMs / 2, heartbeatMs)))
            let manager = ElectionManager(config: config, membership: membership)
            manager.addObserver { status in
                switch status.state {
                case .leader:
                    _ = leaders.withLock { $0[status.term, default: []].insert(id) }
                    print("\(stamp()) \(id) is PRIMARY (term \(status.term), epoch \(status.epoch))")
                    events.signal()
                case .candidate:
                    print("\(stamp()) \(id) stands for election (term \(status.term))")
                case .follower:
                    print("\(stamp()) \(id) follows \(status.leaderID ?? "nobody yet") (term \(status.term))")
                }
            }
            try manager.start()
            let discovery = NodeDiscovery(config: config, membership: membership, options: NodeOptions(announceInterval: .milliseconds(200)))
            try discovery.start()
            managers[id] = manager
            discoveries.append(discovery)
            memberships.append(membership)
        }
        // Discovery fills the memberships; report once every node knows every other.
        let knowDeadline = DispatchTime.now() + .seconds(10)
        while !memberships.allSatisfy({ $0.nodeCount == nodes }) && DispatchTime.now() < knowDeadline {
            _ = events.wait(timeout: .now() + .milliseconds(20))
        }
        print("\(stamp()) discovery: " + memberships.map { "\($0.localNodeID) knows \($0.nodeCount)" }.joined(separator: ", "))

        func waitForPrimary(excluding gone: Set<String>) -> String? {
            let deadline = DispatchTime.now() + .milliseconds(electionTimeoutMs * 20)
            while true {
                let up = managers.filter { !gone.contains($0.key) }
                let primaries = up.filter { $0.value.isLeader }.map(\.key)
                if primaries.count == 1,
                   up.values.allSatisfy({ $0.leaderID == primaries[0] }) {
                    return primaries[0]
                }
                if events.wait(timeout: min(deadline, .now() + .milliseconds(heartbeatMs))) == .timedOut,
                   DispatchTime.now() >= deadline {
                    return nil
                }
            }
        }

        var gone: Set<String> = []
        guard var primary = waitForPrimary(excluding: gone) else {
            print("\(stamp()) no primary elected in time")
            throw ExitCode.failure
        }
        print("\(stamp()) all \(nodes) nodes agree: \(primary) is primary")
        let failoverCount = min(failovers, nodes - (nodes / 2 + 1))
        var failoverMs: [Double] = []
        for _ in 0..<failoverCount {
            print("\(stamp()) stopping primary \(primary)")
            let stoppedAt = DispatchTime.now().uptimeNanoseconds
            try managers[primary]!.stop()
            gone.insert(primary)
            guard let next = waitForPrimary(excluding: gone) else {
                print("\(stamp()) no new primary in time")
                throw ExitCode.failure
            }
            let ms = Double(DispatchTime.now().uptimeNanoseconds - stoppedAt) / 1e6
            failoverMs.append(ms)
            print("\(stamp()) \(next) took over after \(String(format: "%.0f", ms)) ms")
            primary = next
        }
        Thread.sleep(forTimeInterval: settleSeconds)  // let the watcher see the cluster at rest
        for (id, manager) in managers.sorted(by: { $0.key < $1.key }) where !gone.contains(id) {
            let s = manager.stats
            print("\(stamp()) \(id): \(manager.status), heartbeats sent \(s.heartbeatsSent), received \(s.heartbeatsReceived), last RTT \(String(format: "%.0f", Double(s.lastRoundTripNs) / 1000)) µs")
        }
        for discovery in discoveries { try? discovery.stop() }
        for manager in managers.values { try? manager.stop() }
        let doubles = leaders.withLock { $0.filter { $0.value.count > 1 } }
        print("\(stamp()) summary: \(failoverMs.count) failover(s)\(failoverMs.isEmpty ? "" : " in " + failoverMs.map { String(format: "%.0f ms", $0) }.joined(separator: ", ")); terms with two primaries: \(doubles.isEmpty ? "none" : "\(doubles)")")
        if !doubles.isEmpty { throw ExitCode.failure }
    }
}

