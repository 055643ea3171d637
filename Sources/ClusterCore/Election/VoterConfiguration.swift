// The voter configuration: which members vote, changed only through the primary and only with
// the consent of the current voters (Raft's single-server membership changes, thesis §4.1, with
// the 2015 correction that a leader first commits an entry of its own term). This project has no
// replicated log; the configuration is the only replicated state, so each node keeps the newest
// configuration it has stored, and configurations are ordered as Raft orders logs: by the term of
// the primary that made them, then by version.

/// Where a configuration stands in the order of configurations: the term of the primary that
/// made it (0: a bootstrap configuration), then its version. Two configurations with the same
/// identity are the same configuration (one primary per term makes each version at most once).
public struct ConfigurationID: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var term: UInt64
    public var version: UInt64

    public init(term: UInt64, version: UInt64) {
        self.term = term
        self.version = version
    }

    /// No configuration (a node that was never bootstrapped and never told one).
    public static let none = ConfigurationID(term: 0, version: 0)

    public static func < (a: ConfigurationID, b: ConfigurationID) -> Bool {
        (a.term, a.version) < (b.term, b.version)
    }

    public var description: String { "v\(version)/t\(term)" }
}

/// The members whose votes count, with the identity of the change that made them.
public struct VoterConfiguration: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The voters, sorted, without repeats.
    public private(set) var voters: [String]
    /// Counts changes: 1 for a bootstrap configuration, one more for each configuration a primary
    /// makes (on its election, and for each change of voter). 0: no configuration.
    public var version: UInt64
    /// The term of the primary that made it; 0 for a bootstrap configuration.
    public var term: UInt64

    public init(voters: some Sequence<String>, version: UInt64, term: UInt64) {
        self.voters = Array(Set(voters)).sorted()
        self.version = version
        self.term = term
    }

    /// The most voters a configuration may hold (a CONFIG frame of that many ids fits in a frame;
    /// real clusters run 3, 5 or 7).
    public static let maxVoters = 64

    /// No configuration: the node votes for no one and never stands until it is told one.
    public static let none = VoterConfiguration(voters: [], version: 0, term: 0)

    /// The first configuration of a cluster (`--voters`, or what bootstrap agreed on).
    public static func bootstrap(_ voters: some Sequence<String>) -> VoterConfiguration {
        VoterConfiguration(voters: voters, version: 1, term: 0)
    }

    public var id: ConfigurationID { ConfigurationID(term: term, version: version) }
    public var isNone: Bool { version == 0 }

    public func contains(_ node: String) -> Bool { voters.contains(node) }

    /// A majority of the voters.
    public var majority: Int { voters.count / 2 + 1 }

    /// The configuration a primary of `term` makes from this one with `voters`.
    public func next(voters: some Sequence<String>, term: UInt64) -> VoterConfiguration {
        VoterConfiguration(voters: voters, version: version + 1, term: term)
    }

    public var description: String { "\(id) [\(voters.joined(separator: ","))]" }

    enum CodingKeys: String, CodingKey { case voters, version, term }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            voters: try c.decodeIfPresent([String].self, forKey: .voters) ?? [],
            version: try c.decodeIfPresent(UInt64.self, forKey: .version) ?? 0,
            term: try c.decodeIfPresent(UInt64.self, forKey: .term) ?? 0)
    }
}

/// One change of the voter set, asked of the primary (``ElectionEvent/changeVoters(_:)``).
public enum VoterChange: Sendable, Hashable, CustomStringConvertible {
    /// Make a member a voter (a new member, or a member that is not a voter: a promotion).
    case add(String)
    /// Make a voter a member that does not vote (a demotion; `force-leave` removes the member too).
    case remove(String)

    public var node: String {
        switch self {
        case .add(let id), .remove(let id): return id
        }
    }

    public var description: String {
        switch self {
        case .add(let id): return "add voter \(id)"
        case .remove(let id): return "remove voter \(id)"
        }
    }
}

/// A primary tells a voter (or a member) the configuration it holds (frame CONFIG). The receiver
/// stores it if it is newer than its own, and acknowledges once it is durable.
public struct ConfigurationMessage: Sendable, Hashable {
    /// The primary that sends it.
    public var from: String
    /// The primary's term.
    public var term: UInt64
    public var configuration: VoterConfiguration
    /// The primary knows it committed: a majority of its voters stored it.
    public var committed: Bool

    public init(from: String, term: UInt64, configuration: VoterConfiguration, committed: Bool) {
        self.from = from
        self.term = term
        self.configuration = configuration
        self.committed = committed
    }
}

/// A node tells the primary which configuration it has stored (frame CONFIG_ACK), once that
/// configuration is durable.
public struct ConfigurationAck: Sendable, Hashable {
    public var from: String
    /// The sender's term.
    public var term: UInt64
    /// The configuration it has stored.
    public var configuration: ConfigurationID

    public init(from: String, term: UInt64, configuration: ConfigurationID) {
        self.from = from
        self.term = term
        self.configuration = configuration
    }
}
