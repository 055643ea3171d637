/// Configuration of one cluster node. Defaults are the seed's `DefaultClusterConfig()`.
public struct ClusterConfig: Sendable, Equatable {
    /// Unique identifier of this node.
    public var nodeID: String
    /// Address other nodes reach this node at (`host:port`).
    public var nodeAddr: String
    /// Seed node addresses for bootstrapping.
    public var seedNodes: [String]
    /// Time without hearing a primary before a follower starts an election (default 5 s).
    public var electionTimeout: Duration
    /// Interval between heartbeats (default 1 s).
    public var heartbeatInterval: Duration
    /// Floor on the votes an election needs. The votes needed are
    /// `max(minQuorumSize, voters / 2 + 1)`: this project never accepts fewer than a majority.
    /// Set it to a majority of the full intended cluster so that a node which has learned only
    /// part of the cluster cannot win with a majority of what it knows.
    public var minQuorumSize: Int
    /// Election priority: a higher priority waits less before standing (higher wins ties).
    public var priority: Int
    /// Start elections by timer when the primary is lost (default false).
    public var enableAutoFailover: Bool
    /// Quorum-based writes (default false); carried for the application, unused by elections.
    public var enableQuorumWrites: Bool
    /// Time a candidate waits for vote responses (default 2 s).
    public var voteRequestTimeout: Duration
    /// Consecutive failed elections before a candidate backs off (default 3).
    public var maxElectionRetries: Int

    public init(
        nodeID: String = "",
        nodeAddr: String = "",
        seedNodes: [String] = [],
        electionTimeout: Duration = .seconds(5),
        heartbeatInterval: Duration = .seconds(1),
        minQuorumSize: Int = 2,
        priority: Int = 1,
        enableAutoFailover: Bool = false,
        enableQuorumWrites: Bool = false,
        voteRequestTimeout: Duration = .seconds(2),
        maxElectionRetries: Int = 3
    ) {
        self.nodeID = nodeID
        self.nodeAddr = nodeAddr
        self.seedNodes = seedNodes
        self.electionTimeout = electionTimeout
        self.heartbeatInterval = heartbeatInterval
        self.minQuorumSize = minQuorumSize
        self.priority = priority
        self.enableAutoFailover = enableAutoFailover
        self.enableQuorumWrites = enableQuorumWrites
        self.voteRequestTimeout = voteRequestTimeout
        self.maxElectionRetries = maxElectionRetries
    }

    /// The seed's `DefaultClusterConfig()`.
    public static var `default`: ClusterConfig { ClusterConfig() }

    /// The seed's checks, in the seed's order, then this project's own.
    public func validate() throws(ClusterError) {
        if nodeID.isEmpty { throw .invalidNodeID }
        if nodeAddr.isEmpty { throw .invalidNodeAddr }
        if electionTimeout < heartbeatInterval { throw .electionTimeoutTooSmall }
        if minQuorumSize < 1 { throw .invalidQuorumSize }
        if enableAutoFailover && seedNodes.isEmpty { throw .noSeedNodes }
        // Added checks: the id must fit the wire's hello (1...255 UTF-8 bytes); every address
        // must be host:port.
        if nodeID.utf8.count > 255 { throw .invalidState("node ID longer than 255 bytes") }
        _ = try HostPort(parsing: nodeAddr)
        for seed in seedNodes { _ = try HostPort(parsing: seed) }
        if heartbeatInterval <= .zero { throw .invalidState("heartbeat interval must be positive") }
        if voteRequestTimeout <= .zero { throw .invalidState("vote request timeout must be positive") }
        if maxElectionRetries < 0 { throw .invalidState("max election retries cannot be negative") }
    }
}

/// A parsed `host:port` (IPv6 hosts in brackets: `[::1]:7000`).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`; the port must be a number in 0...65535.
    public init(parsing text: String) throws(ClusterError) {
        var hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .invalidAddress(text) }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .invalidAddress(text) }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .invalidAddress(text) }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") { throw .invalidAddress(text) }
        }
        if hostPart.isEmpty { throw .invalidAddress(text) }
        guard !portPart.isEmpty, portPart.count <= 5, portPart.allSatisfy({ $0.isASCII && $0.isNumber }),
              let port = Int(portPart), port <= 65535
        else { throw .invalidAddress(text) }
        hostPart = hostPart == "localhost" ? "127.0.0.1" : hostPart
        self.host = String(hostPart)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
