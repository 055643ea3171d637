/// How nodes started with `--bootstrap-expect N` (or, for agents started as before, with
/// `--min-quorum M` and no voter flag: N = 2M − 1) agree on the first voter configuration, without
/// an operator naming it. Pure: the driver feeds it what its links hear (BOOTSTRAP frames) and the
/// time, and sends what it says.
///
/// The rule:
/// 1. Each node advertises the set of nodes it has *seen*: itself and every linked node that holds
///    no configuration and expects the same N. The set only grows.
/// 2. Once it holds at least N nodes and has not grown for `settle`, the node *locks* the N
///    smallest ids of it, for good, and advertises the lock. A node that hears of a node holding
///    a configuration before it locked never locks: it joins that cluster as a member that does
///    not vote, and is told the configuration by its primary.
/// 3. A node *decides* when it is in the set it locked and every other node of that set has
///    locked (or decided) the very same set: that set is its first configuration.
///
/// Why two decided sets are never different yet overlapping: a node locks at most one set, and
/// a set is decided only when every one of its members locked it. So two different decided sets
/// have no member in common; they are two clusters that never shared a voter (as two clusters
/// started apart are). Views that do not settle (more nodes than N arriving at different times)
/// can leave locks that disagree: then no node decides, and `disagreement` says why; the operator
/// names the voters (`--voters`).
public struct BootstrapAgreement: Sendable {
    public let id: String
    /// The number of voters to bootstrap with.
    public let expect: Int
    /// How long the seen set must stay the same before this node locks (nanoseconds).
    public let settle: UInt64
    /// The nodes seen so far, this one included.
    public private(set) var seen: Set<String>
    /// The set this node locked, sorted (nil: not yet).
    public private(set) var locked: [String]?
    /// A node holding a configuration was heard before this one locked: it joins instead.
    public private(set) var joinsExistingCluster = false
    /// The latest node left out for expecting another N, for the log; nil while all is well.
    public private(set) var problem: String?
    private var lastGrowth: CoreInstant
    private var heard: [String: BootstrapMessage] = [:]

    public init(id: String, expect: Int, settle: UInt64, now: CoreInstant) {
        self.id = id
        self.expect = Swift.max(1, expect)
        self.settle = settle
        self.seen = [id]
        self.lastGrowth = now
    }

    /// What this node tells the nodes it links to.
    public var message: BootstrapMessage {
        BootstrapMessage(expect: expect, configured: false, locked: locked != nil, nodes: locked ?? seen.sorted())
    }

    /// A linked node's BOOTSTRAP. True when ``message`` changed (tell every linked node again).
    public mutating func received(_ message: BootstrapMessage, from peer: String, now: CoreInstant) -> Bool {
        guard peer != id else { return false }
        heard[peer] = message
        if message.configured {
            if locked == nil, !joinsExistingCluster {
                joinsExistingCluster = true
                return true
            }
            return false
        }
        if message.expect == 0 { return false }  // a node that joins, and bootstraps nothing
        guard message.expect == expect else {
            problem = "\(peer) expects to bootstrap with \(message.expect) voters, this node with \(expect): it is left out"
            return false
        }
        guard locked == nil, !joinsExistingCluster, seen.insert(peer).inserted else { return false }
        lastGrowth = now
        return true
    }

    /// When ``tick(now:)`` may lock (nil: it waits for a message, not for time).
    public var nextDeadline: CoreInstant? {
        guard locked == nil, !joinsExistingCluster, seen.count >= expect else { return nil }
        return lastGrowth + settle
    }

    /// Time passed: locks once the seen set is large enough and has settled. True when
    /// ``message`` changed.
    public mutating func tick(now: CoreInstant) -> Bool {
        guard let deadline = nextDeadline, now >= deadline else { return false }
        locked = Array(seen.sorted().prefix(expect))
        return true
    }

    /// The agreed first voters: this node locked a set it belongs to, and every other member of
    /// it locked (or decided) the same set. nil until then.
    public var decision: [String]? {
        guard let locked, locked.contains(id) else { return nil }
        for member in locked where member != id {
            guard let state = heard[member], state.locked || state.configured, state.nodes == locked else { return nil }
        }
        return locked
    }

    /// Why no decision can come: a member of the set this node locked locked (or holds) another.
    public var disagreement: String? {
        guard let locked else { return nil }
        for member in locked where member != id {
            guard let state = heard[member], state.locked || state.configured, state.nodes != locked else { continue }
            return "bootstrap locks disagree: this node locked \(locked.joined(separator: ",")), "
                + "\(member) \(state.configured ? "holds" : "locked") \(state.nodes.joined(separator: ","));"
                + " start the nodes with --voters"
        }
        return nil
    }
}
