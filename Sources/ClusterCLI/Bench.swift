import ArgumentParser
import Cluster
import Dispatch
import FoundationEssentials
import Glibc
import Histogram
import Logging
import UV

/// `cluster bench …`: loopback benchmarks of real nodes, each printing one JSON line (the keys of
/// `uvmesh`, the plain C yardstick in `../shared/bench`, where they mean the same) or, with
/// `--table`, a readable table; a progress line goes to stderr while it runs.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loopback cluster benchmarks.",
        subcommands: [BenchSteady.self, BenchMesh.self, BenchFailover.self, BenchJoin.self, BenchMembers.self, BenchTags.self, BenchAgents.self, BenchSerf.self, BenchEtcd.self, BenchReport.self],
        defaultSubcommand: BenchSteady.self)
}

/// Options every benchmark shares.
struct BenchOutput: ParsableArguments {
    @Flag(help: "Print a readable table instead of one JSON line.") var table = false
    @Flag(help: "Print one JSON line (the default).") var json = false

    func emit(_ fields: [(String, String)]) {
        if table {
            let width = fields.map(\.0.count).max() ?? 0
            writeOut(fields.map { $0.0.padded(to: width) + "  " + $0.1.filter { $0 != "\"" } }
                .joined(separator: "\n") + "\n")
        } else {
            writeOut("{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}\n")
        }
    }
}

/// Percentiles of nanosecond samples, in microseconds (hdrhistogram-swift, 3 significant digits).
struct LatencySummary {
    var count = 0
    var p50us = 0.0
    var p99us = 0.0
    var maxus = 0.0

    init(_ samplesNs: [UInt64]) {
        guard !samplesNs.isEmpty else { return }
        var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
        for ns in samplesNs { _ = histogram.record(max(1, ns)) }
        count = samplesNs.count
        p50us = Double(histogram.valueAtPercentile(50)) / 1000
        p99us = Double(histogram.valueAtPercentile(99)) / 1000
        maxus = Double(histogram.max) / 1000
    }
}

/// The nearest-rank percentile `p` (0...100) of ascending `sorted` values; 0 when empty.
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))]
}

func progress(_ text: String) {
    try? UVFile.writeAll(fd: STDERR_FILENO, Array(("\r\u{1B}[K" + text).utf8))
}

func progressDone() { try? UVFile.writeAll(fd: STDERR_FILENO, Array("\r\u{1B}[K".utf8)) }

/// N real nodes on 127.0.0.1 in this process, spread over T shared loop threads (node i on loop
/// i mod T; T = 0: a loop of its own per node), every one a member of every other's membership.
final class BenchCluster {
    let ids: [String]
    private(set) var managers: [String: ElectionManager] = [:]
    let loops: [UVLoop]
    let hooks: BenchHooks
    private let make: (String, UVLoop?) throws -> ElectionManager

    init(nodes: Int, threads: Int, heartbeat: Duration, electionTimeout: Duration, hooks: BenchHooks,
         dataRoot: String? = nil, key: ClusterKey? = nil, datagrams: Bool = true) throws {
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        ids = (1...nodes).map { "n\($0)" }
        loops = try (0..<threads).map { try UVLoop(name: "bench-\($0)") }
        self.hooks = hooks
        let ids = self.ids
        let seedValue = UInt64.random(in: 1 ... .max)
        make = { id, loop in
            let membership = ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:0")
            let config = ClusterConfig(
                nodeID: id, nodeAddr: "127.0.0.1:0", seedNodes: ["127.0.0.1:0"],
                electionTimeout: electionTimeout, heartbeatInterval: heartbeat,
                minQuorumSize: ids.count / 2 + 1, enableAutoFailover: true, voteRequestTimeout: electionTimeout)
            var options = NodeOptions(
                dataDirectory: dataRoot.map { "\($0)/\(id)" }, randomSeed: seedValue &+ UInt64(id.hashValue & 0xffff),
                logger: logger, loop: loop)
            options.benchHooks = hooks
            options.datagramHeartbeats = datagrams
            options.bootstrap = .voters(ids)
            if let key { options.keyring = ClusterKeyring(primary: key) }
            let manager = ElectionManager(config: config, membership: membership, options: options)
            try manager.start()
            return manager
        }
        for (i, id) in ids.enumerated() { managers[id] = try make(id, loops.isEmpty ? nil : loops[i % loops.count]) }
        // Each learns the others' bound addresses through its membership, and dials them.
        for id in ids {
            let membership = managers[id]!.membership
            for other in ids where other != id {
                try membership.addNode(NodeInfo(id: other, addr: managers[other]!.listenAddress!.description))
            }
        }
    }

    deinit {
        for manager in managers.values { try? manager.stop() }
        managers.removeAll()
        for loop in loops { loop.shutdown() }
    }

    func manager(_ id: String) -> ElectionManager { managers[id]! }

    /// Starts a stopped node again (on a port of the kernel's choice) and tells the others its
    /// new address, as its announcement to a seed would.
    func restart(_ id: String) throws {
        let manager = managers[id]!
        try manager.start()
        let addr = manager.listenAddress!.description
        for other in ids where other != id { try managers[other]!.membership.updateNodeAddr(id, addr: addr) }
    }

    /// Waits (bounded) until every node of `among` is linked to all others and they agree on one
    /// primary (not `other`), which says it leads; returns it.
    func agreedLeader(among: [String]? = nil, other: String? = nil, linked: Bool = false, timeout: Double = 30,
                      pollSeconds: Double = 0.0005) -> String? {
        let nodes = among ?? ids
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let statuses = nodes.map { managers[$0]!.status }
            if let leader = statuses.first?.leaderID, leader != other, statuses.allSatisfy({ $0.leaderID == leader }),
               managers[leader]?.isLeader == true,
               !linked || nodes.allSatisfy({ managers[$0]!.stats.peersConnected == ids.count - 1 }) {
                return leader
            }
            pause(seconds: pollSeconds)
        }
        return nil
    }
}

/// `cluster bench steady`: a cluster at rest, measured. Every node heartbeats every other at the
/// interval, phases spread, as `uvmesh --interval-ms M` does with plain C.
struct BenchSteady: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "steady", abstract: "A cluster at rest: heartbeats per second, their CPU cost and latency.")

    @Option(help: "Number of nodes.") var nodes = 16
    @Option(help: "Heartbeat interval.", transform: DurationArgument.parse) var interval = DurationArgument(.milliseconds(10), text: "10ms")
    @Option(help: "Heartbeat interval in milliseconds (overrides --interval).") var intervalMs: Int?
    @Option(help: "Seconds measured (after 1 s of warm-up).") var seconds = 5.0
    @Option(help: "Loop threads shared by the nodes (0: one per node).") var threads = 1
    @Flag(help: "Give the nodes a cluster key: every frame is authenticated.") var key = false
    @Flag(inversion: .prefixedNo, help: "Heartbeats as UDP datagrams beside the links (the nodes' default).")
    var datagrams = true
    @OptionGroup var output: BenchOutput

    var heartbeat: Duration { intervalMs.map { .milliseconds($0) } ?? interval.duration }

    func validate() throws {
        guard (2...128).contains(nodes) else { throw ValidationError("--nodes must be 2...128") }
        guard heartbeat >= .milliseconds(1) else { throw ValidationError("--interval must be at least 1ms") }
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard threads >= 0 && threads <= 64 else { throw ValidationError("--threads must be 0...64") }
    }

    func run() throws {
        let intervalMs = Double(heartbeat.nanoseconds) / 1e6
        progress("steady: starting \(nodes) nodes")
        let hooks = BenchHooks()
        let cluster = try BenchCluster(
            nodes: nodes, threads: threads, heartbeat: heartbeat,
            electionTimeout: .milliseconds(max(20 * Int64(intervalMs), 500)), hooks: hooks, key: key ? ClusterKey.generate() : nil,
            datagrams: datagrams)
        guard cluster.agreedLeader(linked: true, pollSeconds: 0.05) != nil else {
            progressDone()
            printError("cluster bench: the cluster did not form within 30 s")
            throw ExitCode.failure
        }
        progress("steady: warming up")
        pause(seconds: 1)
        let managers = cluster.ids.map { cluster.manager($0) }
        func totals() -> (
            received: UInt64, skipped: UInt64, sent: UInt64, rounds: UInt64, linked: UInt64, terms: UInt64, datagrams: UInt64
        ) {
            managers.reduce((0, 0, 0, 0, 0, 0, 0)) { acc, m in
                let s = m.stats
                return (
                    acc.0 + s.heartbeatsReceived, acc.1 + s.heartbeatsSkipped, acc.2 + s.heartbeatsSent,
                    acc.3 + s.heartbeatRounds, acc.4 + s.peerLinksEstablished, max(acc.5, m.currentTerm),
                    acc.6 + s.datagramsReceived)
            }
        }
        let before = totals()
        let countsBefore = hooks.counts
        hooks.setRecording(true)
        let usageBefore = UVResourceUsage.current()!
        let cpuBefore = usageBefore.cpuSeconds
        let wallBefore = UVLoop.hrtimeNs()
        progress("steady: measuring \(format(seconds, 0)) s")
        pause(seconds: seconds)
        let wall = Double(UVLoop.hrtimeNs() - wallBefore) / 1e9
        let usage = UVResourceUsage.current()!
        hooks.setRecording(false)
        let counts = (
            received: hooks.counts.received - countsBefore.received, sent: hooks.counts.sent - countsBefore.sent,
            rounds: hooks.counts.rounds - countsBefore.rounds)
        let after = totals()
        let (roundTrips, latencies) = hooks.samples()
        let leaders = Set(managers.compactMap(\.leaderID))
        let dual = managers.reduce(0) { $0 + $1.stats.dualPrimaryDetected }
        progressDone()

        // Counted by the nodes within the window itself (see `BenchHooks.counts`).
        let received = counts.received
        let cpu = usage.cpuSeconds - cpuBefore
        let rtt = LatencySummary(roundTrips)
        let latency = LatencySummary(latencies)
        let nominal = Double(nodes * (nodes - 1)) * 1000 / intervalMs
        output.emit([
            ("impl", "\"swift-cluster\""), ("mode", "\"steady\""), ("keyed", "\(key)"), ("datagrams", "\(datagrams)"),
            ("nodes", "\(nodes)"),
            ("threads", "\(threads == 0 ? nodes : threads)"), ("seconds", "\(seconds)"), ("interval_ms", format(intervalMs, 0)),
            ("nominal_per_s", format(nominal, 0)),
            ("heartbeats_per_s", format(Double(received) / wall, 0)),
            ("sent_per_s", format(Double(counts.sent) / wall, 0)),
            ("cpu_s", format(cpu, 3)), ("cpu_pct", format(cpu / wall * 100)),
            ("sys_pct", format((usage.systemSeconds - usageBefore.systemSeconds) / wall * 100)),
            ("cpu_us_per_heartbeat", format(received > 0 ? cpu * 1e6 / Double(received) : 0, 2)),
            ("heartbeats_per_cpu_s", format(cpu > 0 ? Double(received) / cpu : 0, 0)),
            ("latency_p50_us", format(latency.p50us)), ("latency_p99_us", format(latency.p99us)),
            ("rtt_p50_us", format(rtt.p50us)), ("rtt_p99_us", format(rtt.p99us)), ("rtt_samples", "\(rtt.count)"),
            ("skipped", "\(after.skipped - before.skipped)"),
            // The share of heartbeats that came by datagram (the rest came on the links).
            ("by_datagram_pct", format(
                after.received > before.received
                    ? Double(after.datagrams - before.datagrams) * 100 / Double(after.received - before.received) : 0)),
            // What explains a count above nominal: rounds (one per node per interval, one in ten
            // answered), links made again, elections.
            ("rounds_per_s", format(Double(counts.rounds) / wall, 0)),
            ("links_made", "\(after.linked - before.linked)"), ("terms", "\(after.terms - before.terms)"),
            ("leaders", "\(leaders.count)"), ("dual_primary", "\(dual)"), ("rss_kb", "\(usage.maxRSSKiB)"),
        ])
        if leaders.count != 1 || dual != 0 { throw ExitCode.failure }
    }
}

/// `cluster bench mesh`: the yardstick's flat-out workload with real nodes and real heartbeat
/// frames: K probes in flight per ordered pair, each answered at once with the receiver's LSN,
/// decoded and applied to the membership; the next goes out when one is answered.
struct BenchMesh: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh", abstract: "Flat out: probes in flight between every pair, round trips per CPU second.")

    @Option(help: "Number of nodes.") var nodes = 8
    @Option(help: "Probes in flight per ordered pair.") var inflight = 16
    @Option(help: "Seconds measured (after 1 s of warm-up).") var seconds = 5.0
    @Option(help: "Loop threads shared by the nodes (0: one per node).") var threads = 1
    @OptionGroup var output: BenchOutput

    func validate() throws {
        guard (2...64).contains(nodes) else { throw ValidationError("--nodes must be 2...64") }
        guard (1...256).contains(inflight) else { throw ValidationError("--inflight must be 1...256") }
        guard seconds > 0 && seconds <= 600 else { throw ValidationError("--seconds must be in (0, 600]") }
        guard threads >= 0 && threads <= 64 else { throw ValidationError("--threads must be 0...64") }
    }

    func run() throws {
        progress("mesh: starting \(nodes) nodes")
        let hooks = BenchHooks(meshInflight: inflight)
        // Heartbeat rounds are rare here: the probes are the load.
        // Probes ride the links (TCP, as the yardstick's frames do): a flat-out stream of
        // datagrams would measure drops in full socket buffers, not the protocol.
        let cluster = try BenchCluster(
            nodes: nodes, threads: threads, heartbeat: .seconds(1), electionTimeout: .seconds(30), hooks: hooks,
            datagrams: false)
        // No election is needed: the probes flow between linked nodes whatever their roles.
        let managers = cluster.ids.map { cluster.manager($0) }
        let formed = Date().addingTimeInterval(30)
        while !managers.allSatisfy({ $0.stats.peersConnected == nodes - 1 }) && Date() < formed { pause(seconds: 0.02) }
        guard managers.allSatisfy({ $0.stats.peersConnected == nodes - 1 }) else {
            progressDone()
            printError("cluster bench: the mesh did not link within 30 s")
            throw ExitCode.failure
        }
        for manager in managers { manager.startMeshProbes() }
        progress("mesh: warming up")
        pause(seconds: 1)
        hooks.setRecording(true)
        let cpuBefore = UVResourceUsage.current()!.cpuSeconds
        let wallBefore = UVLoop.hrtimeNs()
        progress("mesh: measuring \(format(seconds, 0)) s")
        pause(seconds: seconds)
        let wall = Double(UVLoop.hrtimeNs() - wallBefore) / 1e9
        let usage = UVResourceUsage.current()!
        hooks.setRecording(false)
        let (roundTrips, _) = hooks.samples()
        progressDone()
        let cpu = usage.cpuSeconds - cpuBefore
        let rtt = LatencySummary(roundTrips)
        output.emit([
            ("impl", "\"swift-cluster\""), ("mode", "\"mesh\""), ("nodes", "\(nodes)"), ("inflight", "\(inflight)"),
            ("threads", "\(threads == 0 ? nodes : threads)"), ("seconds", "\(seconds)"),
            ("roundtrips_per_s", format(Double(rtt.count) / wall, 0)),
            ("rtt_p50_us", format(rtt.p50us)), ("rtt_p99_us", format(rtt.p99us)),
            ("cpu_s", format(cpu, 3)), ("roundtrips_per_cpu_s", format(cpu > 0 ? Double(rtt.count) / cpu : 0, 0)),
            ("rss_kb", "\(usage.maxRSSKiB)"),
        ])
    }
}

/// `cluster bench failover`: how long a cluster takes to replace its primary, trial after trial.
struct BenchFailover: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover", abstract: "From a primary's fault until every survivor names the same new primary.")

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        /// The primary's sockets close without a goodbye, as a killed process's kernel does.
        case crash
        /// The primary stops answering with its sockets open, as a frozen process or a partition.
        case silent
        /// A graceful stop: the primary hands over, then leaves.
        case leave
    }

    @Option(help: "Number of nodes.") var nodes = 5
    @Option(help: "Trials.") var trials = 50
    @Option(help: "crash, silent or leave.") var mode: Mode = .crash
    @Option(help: "Heartbeat interval.", transform: DurationArgument.parse) var heartbeatInterval = DurationArgument(.milliseconds(20), text: "20ms")
    @Option(help: "Election timeout.", transform: DurationArgument.parse) var electionTimeout = DurationArgument(.milliseconds(200), text: "200ms")
    @Option(help: "Write each trial's time (ms), one per line, to this file.") var samplesFile: String?
    @Flag(inversion: .prefixedNo, help: "Heartbeats as UDP datagrams beside the links (the nodes' default).")
    var datagrams = true
    @OptionGroup var output: BenchOutput

    func validate() throws {
        guard (3...15).contains(nodes) else { throw ValidationError("--nodes must be 3...15") }
        guard (1...10_000).contains(trials) else { throw ValidationError("--trials must be 1...10000") }
        guard heartbeatInterval.duration < electionTimeout.duration else {
            throw ValidationError("--heartbeat-interval must be shorter than --election-timeout")
        }
    }

    func run() throws {
        let root = temporaryDirectory() + "cluster-bench-failover-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let cluster = try BenchCluster(
            nodes: nodes, threads: 1, heartbeat: heartbeatInterval.duration, electionTimeout: electionTimeout.duration,
            hooks: BenchHooks(), dataRoot: root, datagrams: datagrams)
        // Every primary every node reports, by term: two in one term is the failure that matters.
        let primaries = UVLocked([UInt64: Set<String>]())
        for id in cluster.ids {
            cluster.manager(id).addObserver { status in
                if status.state == .leader { _ = primaries.withLock { $0[status.term, default: []].insert(id) } }
            }
        }
        let timeoutMs = Double(electionTimeout.duration.nanoseconds) / 1e6
        var times: [Double] = []
        var failed = 0
        for trial in 1...trials {
            progress("failover \(mode.rawValue): trial \(trial) of \(trials)")
            guard let primary = cluster.agreedLeader(linked: true, timeout: 30) else {
                failed += 1
                continue
            }
            // Let the cluster settle: a heartbeat or two after everyone agrees.
            pause(seconds: 3 * Double(heartbeatInterval.duration.nanoseconds) / 1e9)
            let survivors = cluster.ids.filter { $0 != primary }
            let manager = cluster.manager(primary)
            let start = UVLoop.hrtimeNs()
            let leaving = DispatchSemaphore(value: 0)
            switch mode {
            case .crash: manager.crash()
            case .silent: manager.injectFaults(NetworkFaults(isolated: true))
            case .leave:
                Task {  // measured meanwhile, from here
                    await manager.leave()
                    leaving.signal()
                }
            }
            let next = cluster.agreedLeader(among: survivors, other: primary, timeout: 20 * timeoutMs / 1000)
            let ms = Double(UVLoop.hrtimeNs() - start) / 1e6
            if mode == .leave { leaving.wait() }
            if next != nil { times.append(ms) } else { failed += 1 }
            // Bring the old primary back as a follower for the next trial.
            switch mode {
            case .crash, .leave: try cluster.restart(primary)
            case .silent: manager.injectFaults(NetworkFaults())
            }
        }
        progressDone()
        if let samplesFile {
            try (times.map { format($0, 3) }.joined(separator: "\n") + "\n").write(toFile: samplesFile, atomically: true, encoding: .utf8)
        }
        let sorted = times.sorted()
        func pct(_ p: Double) -> Double { percentile(sorted, p) }
        let dual = primaries.withLock { $0.values.filter { $0.count > 1 }.count }
        output.emit([
            ("impl", "\"swift-cluster\""), ("mode", "\"failover-\(mode.rawValue)\""), ("nodes", "\(nodes)"),
            ("heartbeat_ms", format(Double(heartbeatInterval.duration.nanoseconds) / 1e6, 0)),
            ("election_timeout_ms", format(timeoutMs, 0)),
            ("trials", "\(times.count)"), ("failed_trials", "\(failed)"),
            ("p50_ms", format(pct(50))), ("p99_ms", format(pct(99))), ("max_ms", format(sorted.last ?? 0)),
            ("p50_ratio", format(pct(50) / timeoutMs, 3)), ("p99_ratio", format(pct(99) / timeoutMs, 3)),
            ("dual_primaries", "\(dual)"),
        ])
        if dual > 0 || failed > 0 { throw ExitCode.failure }
    }
}

/// `cluster bench join`: from a new node's first announcement to a seed until every member
/// lists it.
struct BenchJoin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join", abstract: "From a new node's first announcement until every member lists it.")

    @Option(help: "Nodes in the cluster before the joins.") var nodes = 5
    @Option(help: "Joins measured (one new node each).") var trials = 20
    @Option(help: "Heartbeat interval (and discovery's announce interval).", transform: DurationArgument.parse) var heartbeatInterval = DurationArgument(.milliseconds(20), text: "20ms")
    @OptionGroup var output: BenchOutput

    func validate() throws {
        guard (2...64).contains(nodes) else { throw ValidationError("--nodes must be 2...64") }
        guard (1...200).contains(trials) else { throw ValidationError("--trials must be 1...200") }
    }

    func run() throws {
        let heartbeat = heartbeatInterval.duration
        let cluster = try BenchCluster(nodes: nodes, threads: 1, heartbeat: heartbeat, electionTimeout: heartbeat * 10, hooks: BenchHooks())
        guard cluster.agreedLeader(linked: true, timeout: 30) != nil else {
            printError("cluster bench: the cluster did not form within 30 s")
            throw ExitCode.failure
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let seed = cluster.manager(cluster.ids[0]).listenAddress!.description
        // Every member announces to the seed at the heartbeat interval: that is how they learn.
        var discoveries: [NodeDiscovery] = []
        var members = cluster.ids.map { cluster.manager($0) }
        for manager in members {
            let discovery = NodeDiscovery(
                config: manager.config.withSeeds([seed]), membership: manager.membership,
                options: NodeOptions(announceInterval: heartbeat, logger: logger))
            try discovery.start()
            discoveries.append(discovery)
        }
        defer { for d in discoveries { try? d.stop() } }
        var times: [Double] = []
        var joined: [ElectionManager] = []
        defer { for m in joined { try? m.stop() } }
        for trial in 1...trials {
            progress("join: trial \(trial) of \(trials)")
            let id = "j\(trial)"
            let membership = ClusterMembership(localNodeID: id, localAddr: "127.0.0.1:0")
            let config = ClusterConfig(
                nodeID: id, nodeAddr: "127.0.0.1:0", seedNodes: [seed], electionTimeout: heartbeat * 10,
                heartbeatInterval: heartbeat, minQuorumSize: nodes / 2 + 1, enableAutoFailover: true)
            // A member that joins: it does not vote (the cluster's voters change only by consent).
            var joinOptions = NodeOptions(logger: logger)
            joinOptions.bootstrap = .join
            let manager = ElectionManager(config: config, membership: membership, options: joinOptions)
            try manager.start()
            let discovery = NodeDiscovery(
                config: config.withAddress(manager.listenAddress!.description), membership: membership,
                options: NodeOptions(announceInterval: heartbeat, logger: logger))
            let start = UVLoop.hrtimeNs()
            try discovery.start()
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline && !members.allSatisfy({ (try? $0.membership.node(id)) != nil }) {
                pause(seconds: 0.0002)
            }
            if members.allSatisfy({ (try? $0.membership.node(id)) != nil }) {
                times.append(Double(UVLoop.hrtimeNs() - start) / 1e6)
            }
            discoveries.append(discovery)
            joined.append(manager)
            members.append(manager)
        }
        progressDone()
        let sorted = times.sorted()
        func pct(_ p: Double) -> Double { percentile(sorted, p) }
        let heartbeatMs = Double(heartbeat.nanoseconds) / 1e6
        output.emit([
            ("impl", "\"swift-cluster\""), ("mode", "\"join\""), ("nodes", "\(nodes)"), ("heartbeat_ms", format(heartbeatMs, 0)),
            ("trials", "\(times.count)"), ("failed_trials", "\(trials - times.count)"),
            ("p50_ms", format(pct(50))), ("p99_ms", format(pct(99))), ("max_ms", format(sorted.last ?? 0)),
            ("p99_heartbeats", format(pct(99) / heartbeatMs, 2)),
        ])
        if times.count < trials { throw ExitCode.failure }
    }
}

extension ClusterConfig {
    func withSeeds(_ seeds: [String]) -> ClusterConfig {
        var copy = self
        copy.seedNodes = seeds
        return copy
    }

    func withAddress(_ addr: String) -> ClusterConfig {
        var copy = self
        copy.nodeAddr = addr
        return copy
    }
}

/// `cluster bench tags`: what a keyed link's frame tag costs alone: heartbeat frames sealed and
/// opened in a loop on one thread, no network (the steady benchmark's `--key` shows the cost in
/// place).
struct BenchTags: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tags", abstract: "The cost of sealing and opening one heartbeat frame, and one heartbeat datagram, on a keyed link.")

    @Option(help: "Frames sealed and opened.") var frames = 1_000_000
    @Option(help: "Links (sealer and opener pairs) taken in turn: many links' key state does not stay in cache, as on a node with many peers.") var links = 1
    @OptionGroup var output: BenchOutput

    func validate() throws {
        guard (1...100_000_000).contains(frames) else { throw ValidationError("--frames must be 1...100000000") }
        guard (1...65536).contains(links) else { throw ValidationError("--links must be 1...65536") }
    }

    func run() throws {
        let key = ClusterKey.generate()
        let hashes = (0..<links).map { LinkAuth.transcriptHash(Array("bench \($0)".utf8)) }
        var sealers = hashes.map { FrameSealer(key: key, transcriptHash: $0, dialer: true) }
        // Opens what a second sealer with the same keys seals, counter by counter.
        var twins = hashes.map { FrameSealer(key: key, transcriptHash: $0, dialer: true) }
        var openers = hashes.map { FrameOpener(key: key, transcriptHash: $0, peerIsDialer: true) }
        let frame = HeartbeatFrame(seq: 1, epoch: 2, term: 3, lsn: 4, role: .replica, ackSeq: 5, senderTag: 6, probe: false, reply: false)
        var out: [UInt8] = []
        out.reserveCapacity(256)
        var plain: [UInt8] = []
        Wire.encodeHeartbeat(frame, into: &plain)
        // Plain: encode only, the baseline of the loops below.
        let t0 = UVLoop.hrtimeNs()
        for _ in 0..<frames {
            out.removeAll(keepingCapacity: true)
            Wire.encodeHeartbeat(frame, into: &out)
        }
        let t1 = UVLoop.hrtimeNs()
        var link = 0
        for _ in 0..<frames {
            out.removeAll(keepingCapacity: true)
            Wire.encodeHeartbeat(frame, into: &out)
            sealers[link].seal(&out, from: 0)
            link = link + 1 == links ? 0 : link + 1
        }
        let t2 = UVLoop.hrtimeNs()
        var opened = 0
        for _ in 0..<frames {
            out.removeAll(keepingCapacity: true)
            Wire.encodeHeartbeat(frame, into: &out)
            twins[link].seal(&out, from: 0)
            if case .frame = try out.withUnsafeBytes({ raw throws(WireError) in try openers[link].open(RawSpan(_unsafeBytes: raw)) }) { opened += 1 }
            link = link + 1 == links ? 0 : link + 1
        }
        let t3 = UVLoop.hrtimeNs()
        guard opened == frames else { throw ValidationError("only \(opened) of \(frames) frames opened") }
        // Heartbeat datagrams (AES-256-GCM tags, see `DatagramSealer`): plain encode, sealed, opened.
        let datagramSealers = hashes.map { DatagramSealer(key: key, transcriptHash: $0, dialer: true) }
        let datagramTwins = hashes.map { DatagramSealer(key: key, transcriptHash: $0, dialer: true) }
        let datagramOpeners = hashes.map { DatagramOpener(key: key, transcriptHash: $0, peerIsDialer: true) }
        let d0 = UVLoop.hrtimeNs()
        for _ in 0..<frames {
            out.removeAll(keepingCapacity: true)
            HeartbeatDatagram.encode(frame, token: 7, into: &out)
        }
        let d1 = UVLoop.hrtimeNs()
        for _ in 0..<frames {
            out.removeAll(keepingCapacity: true)
            HeartbeatDatagram.encode(frame, token: 7, sealer: datagramSealers[link], into: &out)
            link = link + 1 == links ? 0 : link + 1
        }
        let d2 = UVLoop.hrtimeNs()
        var datagramsOpened = 0
        for _ in 0..<frames {
            out.removeAll(keepingCapacity: true)
            HeartbeatDatagram.encode(frame, token: 7, sealer: datagramTwins[link], into: &out)
            let taken: Bool = out.withUnsafeBytes { raw in
                let span = RawSpan(_unsafeBytes: raw)
                do {
                    try datagramOpeners[link].open(span, header: try HeartbeatDatagram.header(span))
                    return true
                } catch {
                    return false
                }
            }
            if taken { datagramsOpened += 1 }
            link = link + 1 == links ? 0 : link + 1
        }
        let d3 = UVLoop.hrtimeNs()
        guard datagramsOpened == frames else { throw ValidationError("only \(datagramsOpened) of \(frames) datagrams opened") }
        let n = Double(frames)
        let encode = Double(t1 - t0) / n, seal = Double(t2 - t1) / n - encode, open = Double(t3 - t2) / n - encode - seal
        let dEncode = Double(d1 - d0) / n, dSeal = Double(d2 - d1) / n - dEncode, dOpen = Double(d3 - d2) / n - dEncode - dSeal
        output.emit([
            ("impl", "\"swift-cluster\""), ("mode", "\"tags\""), ("frames", "\(frames)"), ("links", "\(links)"), ("frame_bytes", "\(plain.count)"),
            ("encode_ns", format(encode, 1)), ("seal_ns", format(seal, 1)), ("open_ns", format(open, 1)),
            ("tag_ns_per_heartbeat", format(seal + open, 1)),
            ("datagram_seal_ns", format(dSeal, 1)), ("datagram_open_ns", format(dOpen, 1)),
            ("datagram_tag_ns_per_heartbeat", format(dSeal + dOpen, 1)),
        ])
    }
}

/// `cluster bench agents`: what agent processes cost at rest. N `cluster agent` processes (this
/// executable) on 127.0.0.1, as `cluster demo` starts them, in the mesh (every member links with
/// and heartbeats every other) or with `--membership gossip` (the voters link; the others are
/// watched by the gossip). Once they agree on a primary, every agent lists every member alive and
/// each has let go of its start-up code pages (`--release-startup-code-after`), the total CPU of
/// all the agents is read from /proc over `--seconds` (nothing asks them anything meanwhile),
/// then each agent's resident set (`VmRSS`). `cluster bench serf` measures Serf's agents the same
/// way, with the same keys.
struct BenchAgents: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agents", abstract: "CPU and resident memory of agent processes in a loopback cluster at rest, once settled.")

    @Option(help: "Agent processes.") var nodes = 5
    @Option(help: "How long the settled cluster is measured.", transform: DurationArgument.parse)
    var seconds = DurationArgument(.seconds(5), text: "5s")
    @Option(help: "mesh or gossip (the agents' --membership).") var membership: Agent.MembershipLayer = .mesh
    @Option(help: "With gossip: the agents' --probe-interval (1s: Serf's, memberlist's LAN profile; the agent's default is 200ms).")
    var probeInterval = DurationArgument(.seconds(1), text: "1s")
    @Option(help: "Voters: the first K agents (--voters); default: all of 5 or fewer agents, else 3.") var voters: Int?
    @OptionGroup var output: BenchOutput

    func validate() throws {
        guard (1...128).contains(nodes) else { throw ValidationError("--nodes must be 1...128") }
        if let voters, !(1...min(nodes, VoterConfiguration.maxVoters)).contains(voters) {
            throw ValidationError("--voters must be 1...\(min(nodes, VoterConfiguration.maxVoters))")
        }
    }

    func run() throws {
        let root = temporaryDirectory() + "cluster-bench-agents-\(getpid())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let ids = (1...nodes).map { "a\($0)" }
        let voterCount = voters ?? (nodes <= 5 ? nodes : 3)
        var agents: [DemoAgent] = []
        // Every agent also has --exit-with-parent: ended any other way, this takes them with it.
        defer { for agent in agents { agent.stop() } }
        var common = ["--min-quorum", "\(voterCount / 2 + 1)", "--voters", ids.prefix(voterCount).joined(separator: ","),
                      "--membership", membership.rawValue]
        if membership == .gossip { common += ["--probe-interval", probeInterval.text] }
        let started = UVLoop.hrtimeNs()
        for (i, id) in ids.enumerated() {
            progress("agents: starting \(i + 1) of \(nodes)")
            agents.append(try DemoAgent.start(id: id, dataDir: root + "/" + id, seeds: agents.first.map { [$0.address] } ?? [], arguments: common))
        }
        progress("agents: waiting for a primary and every member alive everywhere")
        var leader: String?
        let deadline = started + 180_000_000_000
        while leader == nil, UVLoop.hrtimeNs() < deadline {
            let statuses = agents.compactMap { $0.status() }
            if statuses.count == nodes, let named = statuses.first?.leaderID, statuses.allSatisfy({ $0.leaderID == named }),
               statuses.contains(where: { $0.nodeID == named && $0.state == .leader }),
               statuses.allSatisfy({ status in ids.allSatisfy { $0 == status.nodeID || status.liveness[$0]?.status == .alive } }) {
                leader = named
            } else {
                pause(seconds: 0.2)
            }
        }
        guard let leader else {
            progressDone()
            throw ValidationError("the agents agreed on no primary, or did not all list every member alive, within 180 s")
        }
        let settleMs = Double(UVLoop.hrtimeNs() - started) / 1e6
        progress("agents: waiting for each to let go of its start-up code")
        let marker = Array("let go of ".utf8)
        var released: [Double] = []
        for agent in agents {
            _ = agent.process.waitForOutput(seconds: 20) { $0.firstRange(of: marker) != nil }
            let log = String(decoding: agent.process.output, as: UTF8.self)
            guard let range = log.firstRange(of: "let go of ") else {
                progressDone()
                throw ValidationError("agent \(agent.id) did not let go of its start-up code: \(log.suffix(300))")
            }
            released.append(Double(log[range.upperBound...].prefix { $0.isNumber }) ?? 0)
        }
        progress("agents: settled, warming up")
        pause(seconds: 2)
        progress("agents: measuring \(seconds)")
        let names = Dictionary(uniqueKeysWithValues: agents.map { ($0.process.pid, $0.id) })
        let sample: ProcessesAtRest.Sample
        do {
            sample = try ProcessesAtRest(pids: agents.map(\.process.pid)).measure(seconds: Double(seconds.duration.nanoseconds) / 1e9) { pid in
                let agent = agents.first { $0.process.pid == pid }
                return "agent \(names[pid] ?? "?"): \(agent.map { String(decoding: $0.process.output, as: UTF8.self).suffix(300) } ?? "")"
            }
        } catch {
            progressDone()
            throw error
        }
        // Still one primary, everyone alive everywhere (asked after the window; each agent until
        // it says so, up to 5 s: a status asked of a loaded agent can take longer than its 300 ms).
        var unsettled = agents[...]
        let afterDeadline = UVLoop.hrtimeNs() + 5_000_000_000
        while let agent = unsettled.first, UVLoop.hrtimeNs() < afterDeadline {
            if let status = agent.status(), status.leaderID == leader,
               ids.allSatisfy({ $0 == status.nodeID || status.liveness[$0]?.status == .alive }) {
                unsettled.removeFirst()
            } else {
                pause(seconds: 0.1)
            }
        }
        let settledAfter = unsettled.isEmpty
        if let agent = unsettled.first {
            let status = agent.status()
            let notAlive = status.map { status in
                ids.filter { $0 != status.nodeID && status.liveness[$0]?.status != .alive }
                    .map { "\($0) \(status.liveness[$0]?.status.rawValue ?? "unknown")" }
            } ?? []
            progressDone()
            printError("cluster bench agents: after the window, \(agent.id) "
                + (status.map { "names \($0.leaderID ?? "no primary") (was \(leader)); not alive: \(notAlive.prefix(5).joined(separator: ", "))\(notAlive.count > 5 ? ", …" : "")" }
                    ?? "did not answer"))
        }
        progressDone()
        released.sort()
        output.emit([
            ("impl", "\"swift-cluster\""), ("mode", "\"agents\""), ("membership", "\"\(membership.rawValue)\""),
            ("nodes", "\(nodes)"), ("voters", "\(voterCount)"),
            ("probe_interval_ms", membership == .gossip ? format(Double(probeInterval.duration.nanoseconds) / 1e6, 0) : "null"),
            ("heartbeat_interval_ms", "100"), ("leader", "\"\(leader)\""),
        ] + sample.fields(settleMs: settleMs) + [
            ("released_kb_median", format(percentile(released, 50), 0)), ("settled_after", "\(settledAfter)"),
        ])
        if !settledAfter { throw ExitCode.failure }
    }

    /// `VmRSS` of process `pid` in KiB, from /proc; nil if it cannot be read.
    static func residentKiB(of pid: pid_t) -> Int? {
        guard let bytes = try? UVFile.read(path: "/proc/\(pid)/status") else { return nil }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return Int(line.dropFirst("VmRSS:".count).filter(\.isNumber))
    }
}
