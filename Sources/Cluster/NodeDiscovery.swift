import ClusterCore
import Dispatch
import Logging
import UV

/// Finds the cluster through seed nodes: the seed's `NodeDiscovery`, made real.
///
/// `start()` announces this node to every seed (other than itself) at once and then every
/// `NodeOptions.announceInterval`, the seed's way: dial, one `node_announcement` JSON line, one
/// `node_list` line back, close. Nodes the answers name that the membership does not know are
/// added to it; an `ElectionManager` on the same membership then links to them and counts them
/// as voters. (So set `minQuorumSize` to a majority of the full intended cluster: see the README.)
/// Any node's listener answers announcements (`ElectionManager` serves them on its port).
///
/// Every method may be called from any thread. The exchanges run on a libuv loop of the
/// discovery's own.
public final class NodeDiscovery: Sendable {
    /// The configuration: `seedNodes` are announced to.
    public let config: ClusterConfig
    /// The membership that announcements and answers update.
    public let membership: ClusterMembership
    let runtime: DiscoveryRuntime

    public init(config: ClusterConfig, membership: ClusterMembership, options: NodeOptions = NodeOptions()) {
        self.config = config
        self.membership = membership
        runtime = DiscoveryRuntime(config: config, membership: membership, options: options)
    }

    deinit {
        runtime.shutdown()
    }

    /// The configured seed addresses (the seed's `GetSeeds`).
    public var seeds: [String] { config.seedNodes }

    /// The seed's `HandleAnnouncement`: registers the announcing node (validated: see
    /// `Discovery.answer`) and returns the members that fit in one JSON line. An invalid
    /// announcement is answered with `success: false` and the reason, as the seed does; it
    /// never throws.
    public func handleAnnouncement(_ announcement: AnnouncementMessage) throws(ClusterError) -> DiscoveryResponse {
        Discovery.answer(announcement, membership: membership, seeds: config.seedNodes)
    }

    /// True when at least one seed other than this node answered an announcement recently
    /// (within three announce intervals).
    public func isHealthy() -> Bool {
        runtime.isHealthy()
    }

    /// Starts announcing. Throws for an invalid configuration or when already started.
    public func start() throws(ClusterError) {
        if config.nodeID.isEmpty { throw .invalidNodeID }
        if config.nodeAddr.isEmpty { throw .invalidNodeAddr }
        for seed in config.seedNodes { _ = try HostPort(parsing: seed) }
        try runtime.start()
    }

    /// Stops announcing (exchanges in flight are closed). `start()` may be called again.
    public func stop() throws(ClusterError) {
        runtime.stop()
    }

    /// Announcements sent, answered and failed so far.
    public var counts: (sent: UInt64, answered: UInt64, failed: UInt64) {
        runtime.sharedCounts.withLock { ($0.sent, $0.answered, $0.failed) }
    }

    /// Announcement rounds made out of turn: a node this one did not know said hello to the
    /// `ElectionManager` on the same membership (see `ClusterMembership.requestAnnouncement`).
    public var earlyRounds: UInt64 {
        runtime.sharedCounts.withLock { $0.early }
    }
}

/// The loop side of `NodeDiscovery`. Its stored properties are touched on the loop thread only,
/// except the `shared*` ones, which are locked.
final class DiscoveryRuntime: @unchecked Sendable {
    struct Counts: Sendable { var sent: UInt64 = 0, answered: UInt64 = 0, failed: UInt64 = 0, early: UInt64 = 0 }

    /// One announcement in flight.
    final class Exchange {
        let seed: String
        var conn: UVTCPConnection?
        var lines = LineSplitter()
        var timer: UVTimer?
        var done = false
        /// The announcement's MAC, which a keyed seed's answer is bound to.
        var requestMAC = ""
        init(seed: String) { self.seed = seed }
    }

    let loop: UVLoop
    /// False when the loop came from `NodeOptions.loop`: its owner shuts it down.
    private let ownsLoop: Bool
    let config: ClusterConfig
    let membership: ClusterMembership
    let logger: Logger
    let intervalNs: UInt64
    let timeoutMs: UInt64
    let clusterName: String
    let keyring: ClusterKeyring?
    /// `NodeOptions.allowUnauthenticatedJSON`: an unsigned answer of a seed without a cluster
    /// name (the seed's Go node) is taken too.
    let allowUnsigned: Bool
    let sharedCounts = UVLocked(Counts())
    /// Seed → when it last answered (hrtime ns).
    let sharedLastAnswer = UVLocked([String: UInt64]())
    private var timer: UVTimer?
    private var exchanges: [String: Exchange] = [:]
    /// The membership's token for this discovery's early announcements (see `announceEarly`).
    private var requestToken: UInt64?
    private var lastEarlyNs: UInt64 = 0
    /// Seeds to announce to again as soon as their open exchange ends (see `announceEarly`).
    private var lateSeeds: Set<String> = []

    init(config: ClusterConfig, membership: ClusterMembership, options: NodeOptions) {
        self.config = config
        self.membership = membership
        var logger = options.logger
        logger[metadataKey: "node"] = "\(config.nodeID)"
        logger[metadataKey: "component"] = "discovery"
        self.logger = logger
        clusterName = options.clusterName
        keyring = options.keyring
        allowUnsigned = options.allowUnauthenticatedJSON
        intervalNs = max(1_000_000, (options.announceInterval ?? Self.defaultAnnounceInterval(config: config, options: options)).nanoseconds)
        timeoutMs = max(1, config.voteRequestTimeout.nanoseconds / 1_000_000)
        (loop, ownsLoop) = options.resolveLoop(name: "discovery-\(config.nodeID)")
    }

    /// The announce interval when `NodeOptions.announceInterval` is nil: 5 × the heartbeat
    /// interval; with the gossip layer on (`NodeOptions.gossip`), 30 s (memberlist's push-pull
    /// interval). There the gossip joins through the same seeds, retries on its own and carries
    /// every member's news; the announcements only back it up. At the mesh's interval each member
    /// decoded a `node_list` of the whole cluster twice a second, half of an idle member's CPU,
    /// and the seed encoded one for every member twice a second, most of its CPU (64 agents:
    /// `cluster bench agents --membership gossip`, docs/figures.md).
    static func defaultAnnounceInterval(config: ClusterConfig, options: NodeOptions) -> Duration {
        options.gossip ? .seconds(30) : config.heartbeatInterval * 5
    }

    /// Runs `body` on the loop and waits for its result; nil once the loop is gone.
    private func sync<T: Sendable>(_ body: @escaping @Sendable (DiscoveryRuntime) -> T) -> T? {
        loop.executeAndWait { body(self) }
    }

    func start() throws(ClusterError) {
        let error: ClusterError?? = sync { rt -> ClusterError? in
            guard rt.timer == nil else { return .invalidState("discovery already started") }
            do {
                let timer = try UVTimer(loop: rt.loop)
                let ms = max(1, rt.intervalNs / 1_000_000)
                // On a fixed schedule (libuv's repeat drifts by the time each tick runs late).
                try timer.startPeriodic(firstTimeoutMs: 0, periodMs: ms) { [unowned rt] in rt.announceToAll() }
                rt.timer = timer
                rt.requestToken = rt.membership.addAnnouncementRequestHandler { [weak rt] in
                    guard let rt else { return }
                    _ = rt.loop.execute { [weak rt] in rt?.announceEarly() }
                }
            } catch {
                return .io("cannot start the announce timer: \(error)")
            }
            return nil
        }
        guard let error else { throw .invalidState("the discovery loop has stopped") }
        if let error { throw error }
    }

    func stop() {
        _ = sync { rt in
            rt.timer?.close()
            rt.timer = nil
            if let token = rt.requestToken { rt.membership.removeAnnouncementRequestHandler(token) }
            rt.requestToken = nil
            for exchange in rt.exchanges.values { rt.finish(exchange, answered: false) }
        }
    }

    func shutdown() {
        stop()
        if ownsLoop { loop.shutdown() }
    }

    func isHealthy() -> Bool {
        let now = UVLoop.hrtimeNs()
        let window = 3 * intervalNs + timeoutMs * 1_000_000
        let own = ownAddresses()
        return sharedLastAnswer.withLock { answers in
            answers.contains { seed, at in !own.contains(seed) && now &- at <= window }
        }
    }

    /// This node's own address, as configured and as actually bound.
    private func ownAddresses() -> Set<String> {
        var own: Set<String> = [config.nodeAddr, membership.localNode.addr]
        for a in Array(own) { if let hp = try? HostPort(parsing: a) { own.insert(hp.description) } }
        return own
    }

    /// An announcement round out of turn (`ClusterMembership.requestAnnouncement`: a node this one
    /// does not know said hello, so a seed has probably just learned of it). At most one per
    /// quarter interval, and never more than one per 500 ms or less than 10 ms apart: knocking
    /// strangers cannot make it hammer the seeds, and a knock that came too early (a seed's own
    /// dial, racing its answer) does not hold back the next for long.
    private func announceEarly() {
        guard timer != nil else { return }
        let now = UVLoop.hrtimeNs()
        guard now &- lastEarlyNs >= min(500_000_000, max(10_000_000, intervalNs / 4)) else { return }
        lastEarlyNs = now
        sharedCounts.withLock { $0.early += 1 }
        // A seed whose exchange is still open may have answered before it learned of the new
        // node: announce to it again as soon as that exchange ends.
        for seed in exchanges.keys { lateSeeds.insert(seed) }
        announceToAll()
    }

    private func announceToAll() {
        let own = ownAddresses()
        for seed in config.seedNodes where exchanges[seed] == nil {
            guard let hp = try? HostPort(parsing: seed), !own.contains(seed), !own.contains(hp.description) else { continue }
            announce(to: seed, at: hp)
        }
    }

    private func announce(to seed: String, at addr: HostPort) {
        let exchange = Exchange(seed: seed)
        exchanges[seed] = exchange
        sharedCounts.withLock { $0.sent += 1 }
        let local = membership.localNode
        var announcement = AnnouncementMessage(
            nodeID: local.id, nodeAddr: local.addr, role: local.role, epoch: membership.epoch, term: local.term,
            priority: local.priority)
        announcement.cluster = clusterName
        if let key = keyring?.primary {
            announcement.nonce = ClusterKey.idString(UInt64.random(in: .min ... .max)) + ClusterKey.idString(UInt64.random(in: .min ... .max))
            announcement.keyID = key.idString
            announcement.mac = LinkAuth.announcementMAC(announcement, key: key)
            exchange.requestMAC = announcement.mac
        }
        do {
            let timer = try UVTimer(loop: loop)
            exchange.timer = timer
            try timer.start(timeoutMs: timeoutMs) { [unowned self, weak exchange] in
                guard let exchange else { return }
                seedFailed(seed, "did not answer within \(timeoutMs) ms")
                finish(exchange, answered: false)
            }
            exchange.conn = try UVTCPConnection.connect(loop: loop, host: addr.host, port: addr.port, timeoutMs: timeoutMs) {
                [unowned self, weak exchange] result in
                guard let exchange, !exchange.done else { return }
                switch result {
                case .failure(let error):
                    seedFailed(seed, "unreachable: \(error)")
                    finish(exchange, answered: false)
                case .success(let conn):
                    do {
                        try conn.startReading(onRead: { [unowned self, weak exchange] bytes in
                            guard let exchange, !exchange.done else { return }
                            do throws(WireError) {
                                try exchange.lines.feed(bytes) { line in
                                    guard !exchange.done else { return }
                                    answered(exchange, line: line)
                                }
                            } catch {
                                logger.warning("seed \(seed) answered badly: \(error)")
                                finish(exchange, answered: false)
                            }
                        }, onEnd: { [unowned self, weak exchange] _ in
                            if let exchange { finish(exchange, answered: false) }
                        })
                        try conn.write(JSONMessage.announcement(announcement).encodeLine())
                    } catch {
                        finish(exchange, answered: false)
                    }
                }
            }
        } catch {
            seedFailed(seed, "cannot announce to it: \(error)")
            finish(exchange, answered: false)
        }
    }

    private func answered(_ exchange: Exchange, line: RawSpan) {
        guard case .nodeList(let response)? = try? JSONMessage.decode(line: line) else {
            seedFailed(exchange.seed, "answered with something other than a node_list")
            finish(exchange, answered: false)
            return
        }
        if let problem = answerProblem(response, exchange) {
            seedFailed(exchange.seed, "gave an answer this node ignores: \(problem)")
            finish(exchange, answered: false)
            return
        }
        guard response.success else {
            seedFailed(exchange.seed, "refused the announcement: \(response.error)")
            finish(exchange, answered: false)
            return
        }
        let added = Discovery.learn(from: response, into: membership)
        if !added.isEmpty { logger.info("learned \(added.joined(separator: ", ")) from seed \(exchange.seed)") }
        sharedLastAnswer.withLock { $0[exchange.seed] = UVLoop.hrtimeNs() }
        finish(exchange, answered: true)
    }

    /// Why a `node_list` is not to be trusted: another cluster's name, or, with a keyring, no
    /// valid MAC bound to this exchange's announcement. With `allowUnauthenticatedJSON`, an
    /// answer with neither a MAC nor a cluster name (what the seed's Go node writes: it cannot
    /// sign, and has no names) is taken, as the seed's exchanges are by this node's listener; a
    /// signed answer is still checked.
    private func answerProblem(_ response: DiscoveryResponse, _ exchange: Exchange) -> String? {
        if allowUnsigned, keyring != nil, response.mac.isEmpty, response.cluster.isEmpty { return nil }
        guard response.cluster == clusterName else {
            return "it is in cluster \"\(response.cluster)\", this node in \"\(clusterName)\""
        }
        guard let keyring else { return nil }
        guard !response.mac.isEmpty else { return "it did not sign its answer (it holds no cluster key)" }
        guard let id = ClusterKey.parseID(response.keyID), let key = keyring.key(id: id) else {
            return "it signed with key \(response.keyID), which is not in this node's keyring"
        }
        guard LinkAuth.macsEqual(LinkAuth.nodeListMAC(response, requestMAC: exchange.requestMAC, key: key), response.mac) else {
            return "its MAC does not match"
        }
        return nil
    }

    /// The last problem reported of each seed: a seed's failure is logged at the default level
    /// once per cause (not at every announce interval), and its recovery once.
    private var seedProblems: [String: String] = [:]

    private func seedFailed(_ seed: String, _ cause: String) {
        guard seedProblems[seed] != cause else {
            logger.debug("seed \(seed) \(cause)")
            return
        }
        seedProblems[seed] = cause
        logger.warning("seed \(seed) \(cause) (said once; announcing to it every \(intervalNs / 1_000_000) ms until it answers)")
    }

    private func finish(_ exchange: Exchange, answered: Bool) {
        guard !exchange.done else { return }
        exchange.done = true
        exchange.timer?.close()
        exchange.timer = nil
        exchange.conn?.close()
        exchange.conn = nil
        if exchanges[exchange.seed] === exchange { exchanges[exchange.seed] = nil }
        sharedCounts.withLock { c in
            if answered { c.answered += 1 } else { c.failed += 1 }
        }
        if answered, seedProblems.removeValue(forKey: exchange.seed) != nil {
            logger.info("seed \(exchange.seed) answers again")
        }
        if lateSeeds.remove(exchange.seed) != nil, timer != nil, exchanges[exchange.seed] == nil,
           let addr = try? HostPort(parsing: exchange.seed) {
            announce(to: exchange.seed, at: addr)
        }
    }
}
