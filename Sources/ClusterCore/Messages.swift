import FoundationEssentials

// The seed's four JSON messages. Keys are the seed's json tags; a key that is missing decodes as
// Go's zero value, as Go's decoder leaves it. `error` and `reason` are omitted when empty.

/// Sent to seed nodes to register presence (`"node_announcement"`).
public struct AnnouncementMessage: Sendable, Equatable, Codable {
    public var messageType: String
    public var nodeID: String
    public var nodeAddr: String
    public var role: NodeRole
    public var epoch: UInt64
    public var term: UInt64
    public var priority: Int
    public var timestamp: Date
    /// Added by this project, each omitted from JSON when empty (the seed's form is unchanged):
    /// the announcer's cluster name, and, from a keyed node, a random nonce, the id of the key
    /// and the MAC (`LinkAuth.announcementMAC`).
    public var cluster = ""
    public var nonce = ""
    public var keyID = ""
    public var mac = ""

    public init(
        messageType: String = "node_announcement", nodeID: String, nodeAddr: String, role: NodeRole = .replica,
        epoch: UInt64 = 0, term: UInt64 = 0, priority: Int = 1, timestamp: Date = Date()
    ) {
        self.messageType = messageType
        self.nodeID = nodeID
        self.nodeAddr = nodeAddr
        self.role = role
        self.epoch = epoch
        self.term = term
        self.priority = priority
        self.timestamp = timestamp
    }

    enum CodingKeys: String, CodingKey {
        case messageType = "message_type", nodeID = "node_id", nodeAddr = "node_addr", role, epoch, term, priority, timestamp
        case cluster, nonce, keyID = "key_id", mac
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messageType = try c.decodeIfPresent(String.self, forKey: .messageType) ?? ""
        nodeID = try c.decodeIfPresent(String.self, forKey: .nodeID) ?? ""
        nodeAddr = try c.decodeIfPresent(String.self, forKey: .nodeAddr) ?? ""
        role = try c.decodeIfPresent(NodeRole.self, forKey: .role) ?? .replica
        epoch = try c.decodeIfPresent(UInt64.self, forKey: .epoch) ?? 0
        term = try c.decodeIfPresent(UInt64.self, forKey: .term) ?? 0
        priority = try c.decodeIfPresent(Int.self, forKey: .priority) ?? 0
        timestamp = c.contains(.timestamp) ? try c.decodeGoTime(forKey: .timestamp) : GoTime.zero
        cluster = try c.decodeIfPresent(String.self, forKey: .cluster) ?? ""
        nonce = try c.decodeIfPresent(String.self, forKey: .nonce) ?? ""
        keyID = try c.decodeIfPresent(String.self, forKey: .keyID) ?? ""
        mac = try c.decodeIfPresent(String.self, forKey: .mac) ?? ""
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(messageType, forKey: .messageType)
        try c.encode(nodeID, forKey: .nodeID)
        try c.encode(nodeAddr, forKey: .nodeAddr)
        try c.encode(role, forKey: .role)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(term, forKey: .term)
        try c.encode(priority, forKey: .priority)
        try c.encode(GoTime.format(timestamp), forKey: .timestamp)
        if !cluster.isEmpty { try c.encode(cluster, forKey: .cluster) }
        if !nonce.isEmpty { try c.encode(nonce, forKey: .nonce) }
        if !keyID.isEmpty { try c.encode(keyID, forKey: .keyID) }
        if !mac.isEmpty { try c.encode(mac, forKey: .mac) }
    }
}

/// Returned from seed nodes (`"node_list"`). A seed lists as many members as fit in one JSON
/// line (see `Discovery.nodeList(of:seeds:maxLineBytes:)`); a refusal has no nodes, `success`
/// false and the reason in `error`.
public struct DiscoveryResponse: Sendable, Equatable, Codable {
    public var messageType: String
    public var nodes: [NodeInfo]
    public var success: Bool
    /// Why the request was refused; empty on success (omitted from JSON when empty).
    public var error: String
    /// Added by this project, each omitted when empty: the answering node's cluster name, and,
    /// from a keyed node, the id of its key and the MAC (`LinkAuth.nodeListMAC`).
    public var cluster = ""
    public var keyID = ""
    public var mac = ""

    public init(messageType: String = "node_list", nodes: [NodeInfo] = [], success: Bool = true, error: String = "") {
        self.messageType = messageType
        self.nodes = nodes
        self.success = success
        self.error = error
    }

    enum CodingKeys: String, CodingKey { case messageType = "message_type", nodes, success, error, cluster, keyID = "key_id", mac }

    /// One entry of `nodes`, nil when it does not decode as a `NodeInfo`.
    private struct Entry: Decodable {
        let node: NodeInfo?
        init(from decoder: any Decoder) throws { node = try? NodeInfo(from: decoder) }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messageType = try c.decodeIfPresent(String.self, forKey: .messageType) ?? ""
        // An entry that is not a node this project can hold (an unknown role, a bad time) is
        // left out: the rest of the list is still the seed's answer.
        nodes = try c.decodeIfPresent([Entry].self, forKey: .nodes)?.compactMap(\.node) ?? []
        success = try c.decodeIfPresent(Bool.self, forKey: .success) ?? false
        error = try c.decodeIfPresent(String.self, forKey: .error) ?? ""
        cluster = try c.decodeIfPresent(String.self, forKey: .cluster) ?? ""
        keyID = try c.decodeIfPresent(String.self, forKey: .keyID) ?? ""
        mac = try c.decodeIfPresent(String.self, forKey: .mac) ?? ""
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(messageType, forKey: .messageType)
        try c.encode(nodes, forKey: .nodes)  // Go writes null for a nil slice; we always write a list
        try c.encode(success, forKey: .success)
        if !error.isEmpty { try c.encode(error, forKey: .error) }
        if !cluster.isEmpty { try c.encode(cluster, forKey: .cluster) }
        if !keyID.isEmpty { try c.encode(keyID, forKey: .keyID) }
        if !mac.isEmpty { try c.encode(mac, forKey: .mac) }
    }
}

/// Sent by candidates to request votes (`"vote_request"`).
public struct VoteRequest: Sendable, Equatable, Hashable, Codable {
    public var messageType: String
    public var candidateID: String
    public var term: UInt64
    public var lastLSN: UInt64
    public var epoch: UInt64
    public var priority: Int
    /// Added by this project: a PreVote probe ("could you vote for me at `term`?"), which
    /// changes no state on the voter. JSON key `pre_vote`, omitted when false.
    public var preVote: Bool
    /// Added by this project: the candidate stands because its leader handed leadership over to
    /// it (a `TimeoutNow`), so voters that still hear that leader do not refuse it for that
    /// reason (see `ElectionCore.step(_:now:)`, "Leadership transfer"). Ignored on a PreVote.
    /// JSON key `transfer`, omitted when false.
    public var transfer: Bool
    /// Added by this project: the identity of the newest voter configuration the candidate has
    /// stored. A voter refuses a candidate whose configuration is behind its own (as Raft refuses
    /// a candidate whose log is behind), so that a committed configuration is never lost. JSON keys
    /// `config_term` and `config_version`, omitted when 0 (a seed's node has none).
    public var configuration: ConfigurationID

    public init(
        messageType: String = "vote_request", candidateID: String, term: UInt64, lastLSN: UInt64 = 0,
        epoch: UInt64 = 0, priority: Int = 1, preVote: Bool = false, transfer: Bool = false,
        configuration: ConfigurationID = .none
    ) {
        self.messageType = messageType
        self.candidateID = candidateID
        self.term = term
        self.lastLSN = lastLSN
        self.epoch = epoch
        self.priority = priority
        self.preVote = preVote
        self.transfer = transfer
        self.configuration = configuration
    }

    enum CodingKeys: String, CodingKey {
        case messageType = "message_type", candidateID = "candidate_id", term, lastLSN = "last_lsn", epoch, priority
        case preVote = "pre_vote", transfer, configTerm = "config_term", configVersion = "config_version"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messageType = try c.decodeIfPresent(String.self, forKey: .messageType) ?? ""
        candidateID = try c.decodeIfPresent(String.self, forKey: .candidateID) ?? ""
        term = try c.decodeIfPresent(UInt64.self, forKey: .term) ?? 0
        lastLSN = try c.decodeIfPresent(UInt64.self, forKey: .lastLSN) ?? 0
        epoch = try c.decodeIfPresent(UInt64.self, forKey: .epoch) ?? 0
        priority = try c.decodeIfPresent(Int.self, forKey: .priority) ?? 0
        preVote = try c.decodeIfPresent(Bool.self, forKey: .preVote) ?? false
        transfer = try c.decodeIfPresent(Bool.self, forKey: .transfer) ?? false
        configuration = ConfigurationID(
            term: try c.decodeIfPresent(UInt64.self, forKey: .configTerm) ?? 0,
            version: try c.decodeIfPresent(UInt64.self, forKey: .configVersion) ?? 0)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(messageType, forKey: .messageType)
        try c.encode(candidateID, forKey: .candidateID)
        try c.encode(term, forKey: .term)
        try c.encode(lastLSN, forKey: .lastLSN)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(priority, forKey: .priority)
        if preVote { try c.encode(true, forKey: .preVote) }
        if transfer { try c.encode(true, forKey: .transfer) }
        if configuration.term != 0 { try c.encode(configuration.term, forKey: .configTerm) }
        if configuration.version != 0 { try c.encode(configuration.version, forKey: .configVersion) }
    }
}

/// The answer to a vote request (`"vote_response"`).
public struct VoteResponse: Sendable, Equatable, Hashable, Codable {
    public var messageType: String
    public var voterID: String
    public var term: UInt64
    public var voteGranted: Bool
    /// Why the vote was refused; empty when granted (omitted from JSON when empty).
    public var reason: String
    /// Added by this project: the answer to a PreVote probe (`pre_vote`, omitted when false).
    public var preVote: Bool
    /// Added by this project: the voter's epoch, so a winner can pick an epoch above every
    /// voter's (`epoch`, omitted when 0).
    public var epoch: UInt64
    /// Added by this project: the voter's configuration when it answered (`config_term`,
    /// `config_version`, omitted when 0). A candidate counts no grant from a voter whose
    /// configuration is newer than its own: an honest voter refuses such a candidate, so the
    /// grant answered another request (forged in the candidate's name).
    public var configuration: ConfigurationID

    public init(
        messageType: String = "vote_response", voterID: String, term: UInt64, voteGranted: Bool,
        reason: String = "", preVote: Bool = false, epoch: UInt64 = 0, configuration: ConfigurationID = .none
    ) {
        self.messageType = messageType
        self.voterID = voterID
        self.term = term
        self.voteGranted = voteGranted
        self.reason = reason
        self.preVote = preVote
        self.epoch = epoch
        self.configuration = configuration
    }

    enum CodingKeys: String, CodingKey {
        case messageType = "message_type", voterID = "voter_id", term, voteGranted = "vote_granted", reason
        case preVote = "pre_vote", epoch, configTerm = "config_term", configVersion = "config_version"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messageType = try c.decodeIfPresent(String.self, forKey: .messageType) ?? ""
        voterID = try c.decodeIfPresent(String.self, forKey: .voterID) ?? ""
        term = try c.decodeIfPresent(UInt64.self, forKey: .term) ?? 0
        voteGranted = try c.decodeIfPresent(Bool.self, forKey: .voteGranted) ?? false
        reason = try c.decodeIfPresent(String.self, forKey: .reason) ?? ""
        preVote = try c.decodeIfPresent(Bool.self, forKey: .preVote) ?? false
        epoch = try c.decodeIfPresent(UInt64.self, forKey: .epoch) ?? 0
        configuration = ConfigurationID(
            term: try c.decodeIfPresent(UInt64.self, forKey: .configTerm) ?? 0,
            version: try c.decodeIfPresent(UInt64.self, forKey: .configVersion) ?? 0)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(messageType, forKey: .messageType)
        try c.encode(voterID, forKey: .voterID)
        try c.encode(term, forKey: .term)
        try c.encode(voteGranted, forKey: .voteGranted)
        if !reason.isEmpty { try c.encode(reason, forKey: .reason) }
        if preVote { try c.encode(true, forKey: .preVote) }
        if epoch != 0 { try c.encode(epoch, forKey: .epoch) }
        if configuration.term != 0 { try c.encode(configuration.term, forKey: .configTerm) }
        if configuration.version != 0 { try c.encode(configuration.version, forKey: .configVersion) }
    }
}
