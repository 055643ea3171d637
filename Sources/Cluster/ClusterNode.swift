import ClusterCore
import Logging
import ServiceLifecycle

/// One node as a swift-service-lifecycle `Service`: election and, when the configuration names
/// seeds, discovery. Put it in a `ServiceGroup`; on graceful shutdown (SIGTERM, with the group's
/// signals) it leaves: a primary hands over first (see ``leave()``), then the node says goodbye
/// and stops.
///
///     let node = ClusterNode(config: config, membership: membership, options: options)
///     let group = ServiceGroup(configuration: .init(
///         services: [node], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
///     try await group.run()
public final class ClusterNode: Service, Sendable {
    /// The node's election.
    public let manager: ElectionManager
    /// Its discovery through `config.seedNodes`, if any are named.
    public let discovery: NodeDiscovery?
    private let logger: Logger

    /// A node, not started: `run()` starts it.
    public init(config: ClusterConfig, membership: ClusterMembership, options: NodeOptions = NodeOptions()) {
        manager = ElectionManager(config: config, membership: membership, options: options)
        let seeds = config.seedNodes.filter { $0 != config.nodeAddr }
        discovery = seeds.isEmpty ? nil : NodeDiscovery(config: config, membership: membership, options: options)
        var logger = options.logger
        logger[metadataKey: "node"] = "\(config.nodeID)"
        self.logger = logger
    }

    /// Starts the node and runs it until graceful shutdown or cancellation, then leaves.
    public func run() async throws {
        try manager.start()
        do {
            try discovery?.start()
        } catch {
            try? manager.stop()
            throw error
        }
        try? await gracefulShutdown()  // returns on graceful shutdown; throws on cancellation
        await leave()
    }

    /// Leaves the cluster on purpose: a primary hands over to its best voter first, so that the
    /// cluster does not wait out an election timeout; then discovery and the node stop (each
    /// link gets a goodbye).
    public func leave() async {
        let successor = await manager.leave()
        try? discovery?.stop()
        logger.info("left the cluster\(successor.map { ", handing over to \($0)" } ?? "")")
    }
}
