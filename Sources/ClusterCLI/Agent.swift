import ArgumentParser
import Cluster
import CoreMetrics
import FoundationEssentials
import Glibc
import UV
import Logging
import Prometheus
import ServiceLifecycle

/// `cluster agent`: one node (election and discovery) running until SIGINT or SIGTERM; then it
/// leaves gracefully (a primary hands over first) and exits 0.
struct Agent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one cluster node until SIGINT or SIGTERM, then leave gracefully.",
        discussion: """
            Settings come from the command line, a JSON file (--config, or CLUSTER_CONFIG) and CLUSTER_* \
            environment variables, in that order of precedence. A file's keys are the option names \
            ({"id": "n1", "listen": "127.0.0.1:7001", "seeds": ["127.0.0.1:7002"], "auto-failover": false}); a \
            variable is CLUSTER_ and the option's name in capitals with '_' for '-' (CLUSTER_DATA_DIR). \
            CLUSTER_KEY holds the cluster key itself. See docs/operations.md.
            """)

    @Option(help: ArgumentHelp("A JSON file of settings (keys: the option names); the command line's flags win over it.", valueName: "file"))
    var config: String?

    @Option(help: "This node's id (letters, digits, '-', '_', '.').") var id: String
    @Option(help: "Address to listen on and to be reached at (HOST:PORT; port 0: a free port, logged and announced).", transform: HostPort.parse)
    var listen: HostPort
    @Option(help: "Seed addresses, comma-separated (HOST:PORT,…); none: this node is the first.") var seeds: String = ""
    @Option(help: "Election priority: a higher priority stands sooner and wins ties.") var priority = 1
    @Option(help: "Directory for the durable election state (term, vote, epoch).") var dataDir: String?
    @Option(help: "Interval between heartbeats.", transform: DurationArgument.parse) var heartbeatInterval = DurationArgument(.milliseconds(100), text: "100ms")
    @Option(help: "Time without a primary before an election.", transform: DurationArgument.parse) var electionTimeout = DurationArgument(.seconds(1), text: "1s")
    @Option(help: "Floor on the votes an election needs (set it to a majority of the full cluster).") var minQuorum: Int?
    @Option(help: ArgumentHelp(
        "The first voters, comma-separated ids (etcd's --initial-cluster): for a node whose data directory holds no voter configuration.",
        valueName: "ids"))
    var voters: String?
    @Option(help: ArgumentHelp(
        "Bootstrap the first voters with the first N nodes that link and agree (Consul's -bootstrap-expect). Default with neither flag: 2 × --min-quorum − 1 when that is 3 or more.",
        valueName: "n"))
    var bootstrapExpect: Int?
    @Option(help: ArgumentHelp(
        "Autopilot: as primary, keep this many voters, promoting members linked for --autopilot-stabilization and replacing voters down for --autopilot-dead-after.",
        valueName: "n"))
    var votersTarget: Int?
    @Option(help: "How long a member must have been linked before autopilot makes it a voter.", transform: DurationArgument.parse)
    var autopilotStabilization = DurationArgument(.seconds(10), text: "10s")
    @Option(help: "How long a voter must have been unreachable before autopilot replaces it.", transform: DurationArgument.parse)
    var autopilotDeadAfter = DurationArgument(.seconds(30), text: "30s")
    @Option(help: ArgumentHelp(
        "The most members learned from announcements, seeds and peers that have not linked with this node yet; beyond, announcements are refused until some link or expire.",
        valueName: "n"))
    var maxUnlinkedMembers = 256
    @Option(help: "A member learned from the network that has not linked within this long is forgotten (voters excepted).", transform: DurationArgument.parse)
    var unlinkedMemberExpiry = DurationArgument(.seconds(120), text: "2m")
    @Flag(inversion: .prefixedNo, help: "Elect a new primary when the primary is lost.") var autoFailover = true
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel: Logger.Level = .info
    @Option(help: "text or json.") var logFormat: LogFormat = .text
    @Option(help: "Serve Prometheus metrics at GET /metrics on this address (HOST:PORT); the node's own port serves them too.", transform: HostPort.parse)
    var metrics: HostPort?
    @Option(help: "The cluster's name: nodes of another name are refused (default: none).") var clusterName = ""
    @Option(help: "A file holding the cluster key (`cluster keygen`); or set CLUSTER_KEY. Without one, links are not authenticated.")
    var keyFile: String?
    @Flag(help: "UNSAFE: with a key, still accept the seed's unsigned JSON announcements, votes and heartbeats (mixed clusters).")
    var allowUnauthenticatedJSON = false
    @Flag(inversion: .prefixedNo, help: "Send heartbeats as UDP datagrams beside the TCP links (on the links when datagrams do not arrive).")
    var datagramHeartbeats = true
    @Option(help: "How members watch each other: gossip (each probes one other per --probe-interval; links and heartbeats among the voters only) or mesh (every member links with and heartbeats every other).")
    var membership: MembershipLayer = .mesh
    @Option(help: "With --membership gossip: how often each member probes one other.")
    var probeInterval = DurationArgument(.milliseconds(200), text: "200ms")
    @Flag(inversion: .prefixedNo, help: "Once started, let go of the code pages only start-up ran (a smaller resident set; the pages stay in the page cache).")
    var releaseStartupCode = true
    @Option(help: "How long after start the start-up code pages are let go.", transform: DurationArgument.parse)
    var releaseStartupCodeAfter = DurationArgument(.seconds(3), text: "3s")
    @Flag(help: ArgumentHelp("Leave (as on SIGTERM) when the process that started this one ends (`cluster demo` starts its agents so).", visibility: .hidden))
    var exitWithParent = false

    enum LogFormat: String, ExpressibleByArgument, CaseIterable { case text, json }
    enum MembershipLayer: String, ExpressibleByArgument, CaseIterable { case gossip, mesh }

    var voterList: [String]? {
        voters.map { $0.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty } }
    }

    /// Where the first voters come from: `--voters`, `--bootstrap-expect`, or, for an agent
    /// started as before either existed, 2M − 1 nodes for `--min-quorum M` ≥ 2; with M = 1, a
    /// node that names no seed is the cluster's one voter, and one that names seeds joins.
    var bootstrap: NodeOptions.Bootstrap {
        if let list = voterList { return .voters(list) }
        if let bootstrapExpect { return .expect(bootstrapExpect) }
        let quorum = minQuorum ?? ClusterConfig.default.minQuorumSize
        if quorum >= 2 { return .expect(2 * quorum - 1) }
        return seedList.isEmpty ? .voters([id]) : .join
    }

    var seedList: [String] {
        seeds.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
    }

    func validate() throws {
        for seed in seedList {
            // A seed is dialled: a numeric address (or localhost) and a port; names are not resolved.
            if let problem = NodeInfo.addrProblem(seed) { throw ValidationError("--seeds: \(problem)") }
        }
        if let problem = NodeInfo.idProblem(id) { throw ValidationError("--id: \(problem)") }
        guard heartbeatInterval.duration < electionTimeout.duration else {
            throw ValidationError("--heartbeat-interval (\(heartbeatInterval)) must be shorter than --election-timeout (\(electionTimeout))")
        }
        if let minQuorum, minQuorum < 1 { throw ValidationError("--min-quorum must be at least 1") }
        if maxUnlinkedMembers < 1 { throw ValidationError("--max-unlinked-members must be at least 1") }
        if voters != nil, bootstrapExpect != nil { throw ValidationError("--voters and --bootstrap-expect are alternatives: give one") }
        if let list = voterList {
            if list.isEmpty { throw ValidationError("--voters names no node") }
            if list.count > VoterConfiguration.maxVoters { throw ValidationError("--voters names more than \(VoterConfiguration.maxVoters) nodes") }
            for voter in list {
                if let problem = NodeInfo.idProblem(voter) { throw ValidationError("--voters: '\(voter)': \(problem)") }
            }
        }
        if let votersTarget, !(1...VoterConfiguration.maxVoters).contains(votersTarget) {
            throw ValidationError("--voters-target must be 1...\(VoterConfiguration.maxVoters)")
        }
        if let bootstrapExpect, !(1...VoterConfiguration.maxVoters).contains(bootstrapExpect) {
            throw ValidationError("--bootstrap-expect must be 1...\(VoterConfiguration.maxVoters)")
        }
        if !(1...1000).contains(priority) { throw ValidationError("--priority must be 1...1000") }
        if clusterName.utf8.count > 255 { throw ValidationError("--cluster-name is longer than 255 bytes") }
        // A key file that cannot be read is a bad flag, said before anything starts.
        _ = try clusterKey()
    }

    /// The key from --key-file, else from CLUSTER_KEY; nil: none.
    func clusterKey() throws -> ClusterKey? {
        if let keyFile { return try readKey(path: keyFile) }
        guard let text = ProcessInfo.processInfo.environment["CLUSTER_KEY"], !text.isEmpty else { return nil }
        do {
            return try ClusterKey(text: text)
        } catch {
            throw ValidationError("CLUSTER_KEY holds no cluster key: \(error.reason)")
        }
    }

    func run() async throws {
        // Before anything else: a parent that ended already (or as this started) means no agent.
        if exitWithParent && !UVProcess.signalWhenParentExits(SIGTERM) {
            printError("cluster agent: the process that started this one has ended")
            throw ExitCode.failure
        }
        let format = logFormat
        let level = logLevel
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                return JSONLogHandler(label: label, level: level)
            }
        }
        let logger = Logger(label: "cluster")
        // A service starts with the soft descriptor limit it inherits (systemd: 1024), far below
        // what the node's connection cap needs; the hard limit is what may be asked for.
        do {
            let (before, after) = try UVProcess.raiseDescriptorLimit()
            if after > before {
                logger.info("descriptor limit raised from \(before) to \(after)")
            } else {
                logger.info("descriptor limit \(after)")
            }
        } catch {
            logger.warning("cannot raise the descriptor limit: \(error)")
        }
        let registry = PrometheusCollectorRegistry()
        let config = ClusterConfig(
            // A first node, named by no seed list, is its own seed (the seed's rule: auto-failover
            // needs seeds); it announces to no one and is announced to.
            nodeID: id, nodeAddr: listen.description, seedNodes: seedList.isEmpty ? [listen.description] : seedList,
            electionTimeout: electionTimeout.duration, heartbeatInterval: heartbeatInterval.duration,
            minQuorumSize: minQuorum ?? ClusterConfig.default.minQuorumSize, priority: priority,
            enableAutoFailover: autoFailover, voteRequestTimeout: electionTimeout.duration)
        do {
            try config.validate()
        } catch {
            throw ValidationError("\(error)")
        }
        var options = NodeOptions(dataDirectory: dataDir, logger: logger)
        options.clusterName = clusterName
        if let key = try clusterKey() {
            options.keyring = ClusterKeyring(primary: key)
            logger.info("cluster key \(key.idString)\(clusterName.isEmpty ? "" : ", cluster \(clusterName)")")
        }
        options.allowUnauthenticatedJSON = allowUnauthenticatedJSON
        options.datagramHeartbeats = datagramHeartbeats
        options.gossip = membership == .gossip
        options.gossipProbeInterval = probeInterval.duration
        options.bootstrap = bootstrap
        options.votersTarget = votersTarget
        options.autopilotStabilization = autopilotStabilization.duration
        options.autopilotDeadVoterGrace = autopilotDeadAfter.duration
        options.maxUnlinkedMembers = maxUnlinkedMembers
        options.unlinkedMemberExpiry = unlinkedMemberExpiry.duration
        var factory = PrometheusMetricsFactory(registry: registry)
        // Round trips and fsyncs on one host take microseconds to milliseconds.
        let fine: [Duration] = [50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000].map { .microseconds($0) }
        factory.durationHistogramBuckets["cluster_probe_rtt_seconds"] = fine
        factory.durationHistogramBuckets["cluster_persist_duration_seconds"] = fine
        options.metricsFactory = factory
        options.metricsExporter = { registry.emitToBuffer() }
        let membership = ClusterMembership(localNodeID: id, localAddr: listen.description)
        let node = ClusterNode(config: config, membership: membership, options: options)
        var endpoint: MetricsEndpoint?
        if let metrics {
            endpoint = try MetricsEndpoint(address: metrics, exporter: { registry.emitToBuffer() })
            logger.info("metrics at http://\(endpoint!.boundAddress)/metrics")
        }
        defer { endpoint?.stop() }
        // A timed action, not a synchronisation: by then the node has joined and the first
        // election is over, and what runs from then on faults its pages back in.
        let releaseAfter = releaseStartupCodeAfter.duration
        let releaser = releaseStartupCode ? Task {
            try? await Task.sleep(for: releaseAfter)
            guard !Task.isCancelled else { return }
            do {
                let kib = try UVProcess.releaseCodePages()
                logger.info("let go of \(kib) KiB of resident code pages that start-up ran")
            } catch {
                logger.warning("cannot let go of start-up code pages: \(error)")
            }
        } : nil
        defer { releaser?.cancel() }
        let group = ServiceGroup(services: [node], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch let error as ClusterError {
            printError("cluster agent: \(error)")
            throw ExitCode.failure
        }
    }
}

/// Log lines as JSON objects, one per line, on standard error: `time`, `level`, `label`,
/// `message`, and the metadata's keys.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var object: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { object[key] = "\(value)" }
        object["time"] = Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        object["level"] = event.level.rawValue
        object["label"] = label
        object["message"] = "\(event.message)"
        if let error = event.error { object["error"] = "\(error)" }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard var bytes = try? encoder.encode(object) else { return }
        bytes.append(UInt8(ascii: "\n"))
        try? UVFile.writeAll(fd: STDERR_FILENO, Array(bytes))
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
