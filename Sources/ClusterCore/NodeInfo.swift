import FoundationEssentials

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

// MARK: - Checks for nodes that come from outside

extension NodeInfo {
    /// The longest part of a refused address quoted back in a reason.
    private static let quotedAddrLimit = 64

    /// Why `id` cannot name a node that joins through discovery, or nil when it can: 1...255
    /// bytes of UTF-8 (what a HELLO carries, see PROTOCOL.md), without whitespace, control or
    /// format characters (so that an id is one visible word in logs and status lines).
    package static func idProblem(_ id: String) -> String? {
        if id.isEmpty { return ClusterError.invalidNodeID.description }
        let n = id.utf8.count
        if n > Wire.maxIDBytes { return "node ID is \(n) bytes, more than \(Wire.maxIDBytes)" }
        for scalar in id.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control, .format, .spaceSeparator, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse:
                return "node ID contains U+\(String(scalar.value, radix: 16, uppercase: true)): no whitespace, control or format characters"
            default:
                continue
            }
        }
        return nil
    }

    /// Why `addr` cannot be the address of a node that joins through discovery, or nil when it
    /// can: at most 255 bytes, `host:port` as `HostPort(parsing:)` reads it (so `localhost` is
    /// 127.0.0.1), the host a numeric IPv4 (dotted quad) or IPv6 address (in brackets, a zone
    /// after `%` allowed), the port 1...65535: what a node can dial.
    package static func addrProblem(_ addr: String) -> String? {
        if addr.isEmpty { return ClusterError.invalidNodeAddr.description }
        let quoted = addr.count > quotedAddrLimit ? String(addr.prefix(quotedAddrLimit)) + "…" : addr
        let n = addr.utf8.count
        if n > Wire.maxAddrBytes { return "node address is \(n) bytes, more than \(Wire.maxAddrBytes)" }
        guard let hp = try? HostPort(parsing: addr) else { return "invalid address \"\(quoted)\": expected host:port" }
        guard hp.port >= 1 else { return "invalid address \"\(quoted)\": port 0 cannot be dialled" }
        guard isNumericIPv4(hp.host[...]) || isNumericIPv6(hp.host[...]) else {
            return "invalid address \"\(quoted)\": the host must be a numeric IPv4 or IPv6 address"
        }
        return nil
    }

    /// True for a dotted quad: four decimal numbers 0...255 without leading zeros (libuv's rule).
    package static func isNumericIPv4(_ s: Substring) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        for p in parts {
            guard (1...3).contains(p.utf8.count), p.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
            if p.utf8.count > 1 && p.utf8.first == 0x30 { return false }
            guard let v = Int(p), v <= 255 else { return false }
        }
        return true
    }

    /// True for an IPv6 address: eight groups of 1...4 hex digits, or fewer with one `::`, the
    /// last two groups possibly written as a dotted quad; a zone (`%eth0`) may follow.
    package static func isNumericIPv6(_ s: Substring) -> Bool {
        var text = s
        if let percent = text.firstIndex(of: "%") {
            guard text.index(after: percent) < text.endIndex else { return false }
            text = text[..<percent]
        }
        /// The number of 16-bit groups in `part` (a dotted quad last counts two), nil if invalid.
        func groups(_ part: Substring, quadAllowed: Bool) -> Int? {
            if part.isEmpty { return 0 }
            let fields = part.split(separator: ":", omittingEmptySubsequences: false)
            var count = 0
            for (k, field) in fields.enumerated() {
                if quadAllowed && k == fields.count - 1 && field.contains(".") {
                    guard isNumericIPv4(field) else { return nil }
                    count += 2
                } else {
                    guard (1...4).contains(field.utf8.count), field.allSatisfy({ $0.isHexDigit && $0.isASCII }) else { return nil }
                    count += 1
                }
            }
            return count
        }
        guard let gap = text.firstRange(of: "::") else {
            return groups(text, quadAllowed: true) == 8
        }
        let head = text[..<gap.lowerBound]
        let tail = text[gap.upperBound...]
        guard !tail.contains("::"), let h = groups(head, quadAllowed: false), let t = groups(tail, quadAllowed: true) else {
            return false
        }
        return h + t <= 7
    }

    /// An upper bound of the bytes this node takes in a JSON line (`JSONMessage.encodeLine`),
    /// without the comma between two nodes. Exact but for the escapes of `"`, `\`, `/` and control
    /// characters, counted at their longest, and `LastSeen`, counted at 30 bytes for years
    /// 1...9999.
    package var jsonSizeBound: Int {
        var n = Self.fixedJSONBytes + Self.escapedSizeBound(id) + Self.escapedSizeBound(addr)
        n += Self.digits(UInt64(role.rawValue)) + Self.digits(lastHeartbeatSeq) + Self.digits(epoch) + Self.digits(term)
        n += Self.digits(lastLSN) + (priority < 0 ? 1 : 0) + Self.digits(priority.magnitude)
        let t = lastSeen.timeIntervalSince1970
        n += t >= -62_135_596_800 && t < 253_402_300_800 ? 30 : GoTime.format(lastSeen).utf8.count
        return n
    }

    /// `{"Addr":"","Epoch":,"ID":"","LastHeartbeatSeq":,"LastLSN":,"LastSeen":"","Priority":,"Role":,"Term":}`:
    /// braces, 8 commas, the quotes of 3 strings, and 9 keys with their quotes and colons.
    private static let fixedJSONBytes = 2 + 8 + 6
        + ["ID", "Addr", "Role", "LastSeen", "LastHeartbeatSeq", "Epoch", "Term", "LastLSN", "Priority"].reduce(0) { $0 + $1.utf8.count + 3 }

    private static func escapedSizeBound(_ s: String) -> Int {
        s.utf8.reduce(0) { n, b in n + (b < 0x20 ? 6 : (b == 0x22 || b == 0x5C || b == 0x2F) ? 2 : 1) }
    }

    private static func digits(_ v: UInt64) -> Int {
        var v = v
        var n = 1
        while v >= 10 {
            v /= 10
            n += 1
        }
        return n
    }

    private static func digits(_ v: UInt) -> Int { digits(UInt64(v)) }
}
