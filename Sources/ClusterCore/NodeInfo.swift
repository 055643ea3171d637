import Foundation

/// Information about one cluster node. Its JSON form is the seed's Go form (no json tags:
/// keys `ID`, `Addr`, `Role`, `LastSeen`, …), decoded without regard to key case as Go does.
public struct NodeInfo: Sendable, Equatable, Hashable {
    /// Unique node identifier.
    public var id: String
    /// Network address (`host:port`).
    public var addr: String
    /// Current role in the cluster.
    public var role: NodeRole
    /// When the last heartbeat was received (for the local node: now, by definition).
    public var lastSeen: Date
    /// Last heartbeat sequence number.
    public var lastHeartbeatSeq: UInt64
    /// Cluster generation number (fencing token).
    public var epoch: UInt64
    /// Election term.
    public var term: UInt64
    /// Last known log sequence number.
    public var lastLSN: UInt64
    /// Election priority.
    public var priority: Int

    public init(
        id: String,
        addr: String,
        role: NodeRole = .replica,
        lastSeen: Date = Date(),
        lastHeartbeatSeq: UInt64 = 0,
        epoch: UInt64 = 0,
        term: UInt64 = 0,
        lastLSN: UInt64 = 0,
        priority: Int = 1
    ) {
        self.id = id
        self.addr = addr
        self.role = role
        self.lastSeen = lastSeen
        self.lastHeartbeatSeq = lastHeartbeatSeq
        self.epoch = epoch
        self.term = term
        self.lastLSN = lastLSN
        self.priority = priority
    }

    /// True when the last heartbeat is less than `timeout` old.
    public func isHealthy(timeout: Duration) -> Bool {
        isHealthy(timeout: timeout, now: Date())
    }

    /// True when the last heartbeat is less than `timeout` older than `now`.
    public func isHealthy(timeout: Duration, now: Date) -> Bool {
        now.timeIntervalSince(lastSeen) < timeout.seconds
    }
}

extension Duration {
    /// The duration in seconds, as a `Double`.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    /// The duration in whole nanoseconds (clamped at zero and at `UInt64.max`).
    public var nanoseconds: UInt64 {
        let (s, atto) = components
        if s < 0 { return 0 }
        let (hi, overflow) = UInt64(s).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return .max }
        let (sum, o2) = hi.addingReportingOverflow(UInt64(atto / 1_000_000_000))
        return o2 ? .max : sum
    }
}

/// A coding key that matches any string, used to read Go's keys without regard to case.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

extension NodeInfo: Codable {
    private static let keys = ["ID", "Addr", "Role", "LastSeen", "LastHeartbeatSeq", "Epoch", "Term", "LastLSN", "Priority"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        // Go matches keys case-insensitively; an exact match wins over a folded one.
        var byFolded: [String: AnyKey] = [:]
        for key in c.allKeys {
            let folded = key.stringValue.lowercased()
            if byFolded[folded] == nil || Self.keys.contains(key.stringValue) { byFolded[folded] = key }
        }
        func key(_ name: String) -> AnyKey? { byFolded[name.lowercased()] }
        func value<T: Decodable>(_ name: String, _ zero: T) throws -> T {
            guard let k = key(name), try !c.decodeNil(forKey: k) else { return zero }
            return try c.decode(T.self, forKey: k)
        }
        id = try value("ID", "")
        addr = try value("Addr", "")
        let rawRole: Int = try value("Role", 0)
        guard let role = NodeRole(rawValue: rawRole) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "unknown role \(rawRole)"))
        }
        self.role = role
        if let k = key("LastSeen"), try !c.decodeNil(forKey: k) {
            lastSeen = try c.decodeGoTime(forKey: k)
        } else {
            lastSeen = GoTime.zero
        }
        lastHeartbeatSeq = try value("LastHeartbeatSeq", 0)
        epoch = try value("Epoch", 0)
        term = try value("Term", 0)
        lastLSN = try value("LastLSN", 0)
        priority = try value("Priority", 0)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        try c.encode(id, forKey: AnyKey("ID"))
        try c.encode(addr, forKey: AnyKey("Addr"))
        try c.encode(role.rawValue, forKey: AnyKey("Role"))
        try c.encode(GoTime.format(lastSeen), forKey: AnyKey("LastSeen"))
        try c.encode(lastHeartbeatSeq, forKey: AnyKey("LastHeartbeatSeq"))
        try c.encode(epoch, forKey: AnyKey("Epoch"))
        try c.encode(term, forKey: AnyKey("Term"))
        try c.encode(lastLSN, forKey: AnyKey("LastLSN"))
        try c.encode(priority, forKey: AnyKey("Priority"))
    }
}
