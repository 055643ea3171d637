import ArgumentParser
import Cluster
import FoundationEssentials
import Glibc

/// `cluster members`: one node's view of the cluster, as a table, a wide table or a JSON document
/// (or its raw status line with `--json`).
///
/// Exit codes: 0 when the node asked knows a primary and counts a quorum; 2 when it does not (the
/// view is still printed, and the reason on stderr); 1 when it cannot be reached; 64 for a bad flag.
struct Members: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a node's view of the cluster's members.",
        discussion: """
            Each member's status is what the node asked knows: alive (linked, heard within the health timeout), \
            suspect (heard within twice the health timeout), failed (not heard for longer), left (removed, kept \
            as a tombstone). Exit status: 0 when the node knows a primary and counts a quorum, 2 when it does not \
            (the view is still printed), 1 when it cannot be reached. --json prints the node's raw status line and \
            exits 0 whenever the node answers, as it always has.
            """)

    enum Output: String, ExpressibleByArgument, CaseIterable { case table, wide, json }

    /// The exit code when the node asked knows no primary or counts no quorum.
    static let noPrimaryOrQuorum: Int32 = 2

    @Option(help: "The node to ask (HOST:PORT; default: $CLUSTER_ADDR, else 127.0.0.1:7001).", transform: HostPort.parse)
    var addr: HostPort?
    @Option(name: .shortAndLong, help: "table, wide (every column) or json (this command's own document, snake_case keys).")
    var output: Output = .table
    @Option(help: ArgumentHelp("Show only members of these statuses (comma-separated: alive, suspect, failed, left).", valueName: "statuses"))
    var status: String?
    @Option(help: ArgumentHelp("Show only these members (comma-separated ids).", valueName: "ids")) var id: String?
    @Flag(help: "Print the node's status_response line as it came (the wire format; kept for scripts written for it).")
    var json = false
    @Flag(help: "Redraw every --interval until interrupted.") var watch = false
    @Option(help: "Redraw interval with --watch.", transform: DurationArgument.parse)
    var interval = DurationArgument(.milliseconds(500), text: "500ms")
    @Option(help: "How long to wait for the node's answer.", transform: DurationArgument.parse)
    var timeout = DurationArgument(.seconds(5), text: "5s")

    var statusFilter: Set<MemberStatus>? {
        status.map { Set(Self.list($0).compactMap(MemberStatus.init(rawValue:))) }
    }

    var idFilter: Set<String>? { id.map { Set(Self.list($0)) } }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
    }

    func validate() throws {
        if let status {
            let names = Self.list(status)
            if names.isEmpty { throw ValidationError("--status names no status (alive, suspect, failed, left)") }
            for name in names where MemberStatus(rawValue: name) == nil {
                throw ValidationError("--status: unknown status '\(name)' (alive, suspect, failed, left)")
            }
        }
        if let id, Self.list(id).isEmpty { throw ValidationError("--id names no member") }
        if json && output != .table { throw ValidationError("--json prints the raw status line: give it or -o, not both") }
    }

    func run() throws {
        let addr = try nodeAddress(self.addr)
        let redraw = watch && isatty(STDOUT_FILENO) == 1
        var outcome: Int32 = 0
        repeat {
            var text: String
            var problem: String?
            do {
                let status = try ClusterClient.status(of: addr, timeout: timeout.duration)
                let view = MembersView(status, statuses: statusFilter, ids: idFilter)
                switch (json, output) {
                case (true, _): text = String(decoding: JSONMessage.statusResponse(status).encodeLine(), as: UTF8.self)
                case (false, .table): text = MembersTable.render(view, wide: false)
                case (false, .wide): text = MembersTable.render(view, wide: true)
                case (false, .json): text = view.jsonDocument()
                }
                // --json is the wire line as before, for the scripts written for it: exit 0
                // whenever the node answers, nothing on stderr.
                problem = json ? nil : view.problem
                outcome = problem == nil ? 0 : Self.noPrimaryOrQuorum
            } catch {
                guard watch else {
                    printError("cluster members: \(error)")
                    throw ExitCode.failure
                }
                text = ""
                problem = "\(error)"
                outcome = ExitCode.failure.rawValue
            }
            if watch {
                // In place on a terminal (cursor home, clear); one view after another otherwise.
                if let problem { text += "cluster members: \(problem)\n" }
                writeOut((redraw ? "\u{1B}[H\u{1B}[2J" : "") + text)
                pause(seconds: Double(interval.duration.nanoseconds) / 1e9)
            } else {
                writeOut(text)
                if let problem { printError("cluster members: \(problem)") }
            }
        } while watch
        if outcome != 0 { throw ExitCode(outcome) }
    }
}

/// One node's view of the members, filtered, with each member's status: what every output of
/// `cluster members` shows.
struct MembersView {
    struct Row {
        var id: String
        var address: String
        var role: String
        var state: String
        var status: MemberStatus
        var voter: Bool
        var incarnation: UInt64
        var term: UInt64
        var epoch: UInt64
        var lsn: UInt64
        var priority: Int
        /// How long ago the node asked last heard it (seconds; nil: never, or the node itself, or left).
        var lastSeenAgo: Double?
        var neverSeen: Bool
        var local: Bool
    }

    let status: StatusResponse
    let rows: [Row]

    init(_ status: StatusResponse, statuses: Set<MemberStatus>? = nil, ids: Set<String>? = nil) {
        self.status = status
        let now = status.time ?? Date()
        let healthTimeout = Duration.milliseconds(Int64(status.healthTimeoutMs ?? 5000))
        let voters = Set(status.configuration?.voters ?? [])
        var rows: [Row] = []
        for member in status.members {
            let local = member.id == status.nodeID
            let never = member.lastSeen.timeIntervalSince1970 < 0
            let ago = max(0, now.timeIntervalSince(member.lastSeen))
            // A node that does not send statuses (an older version): judged here from LastSeen.
            let liveness = status.liveness[member.id] ?? MemberLiveness(
                status: local ? .alive : MemberStatus.judge(
                    linked: true, sinceHeard: never ? nil : .nanoseconds(Int64(ago * 1e9)), healthTimeout: healthTimeout),
                voter: voters.contains(member.id))
            let state: String
            if local {
                state = status.state.description
            } else {
                switch member.role {
                case .primary: state = "leader"
                case .candidate: state = "candidate"
                case .replica: state = "follower"
                }
            }
            rows.append(Row(
                id: member.id, address: member.addr, role: member.role.description, state: state, status: liveness.status,
                voter: liveness.voter, incarnation: liveness.incarnation, term: member.term, epoch: member.epoch,
                lsn: member.lastLSN, priority: member.priority, lastSeenAgo: local || never ? nil : ago, neverSeen: never,
                local: local))
        }
        for id in status.left {
            rows.append(Row(
                id: id, address: "-", role: "-", state: "-", status: .left, voter: voters.contains(id), incarnation: 0,
                term: 0, epoch: 0, lsn: 0, priority: 0, lastSeenAgo: nil, neverSeen: false, local: false))
        }
        self.rows = rows.filter { row in
            (statuses?.contains(row.status) ?? true) && (ids?.contains(row.id) ?? true)
        }
    }

    /// Why the node asked is not fine (the reason for exit code 2), or nil.
    var problem: String? {
        if status.leaderID == nil { return "\(status.nodeID) knows no primary" }
        if status.hasQuorum == false { return "\(status.nodeID) counts no quorum" }
        return nil
    }

    /// The `-o json` document: this command's own, snake_case keys, roles, states and statuses
    /// by name (not the wire line, which `--json` prints).
    func jsonDocument() -> String {
        struct Member: Encodable {
            var id: String, address: String, role: String, state: String, status: String, voter: Bool
            var incarnation: UInt64, term: UInt64, epoch: UInt64, lsn: UInt64, priority: Int
            var lastSeenMsAgo: Int?, local: Bool
            enum CodingKeys: String, CodingKey {
                case id, address, role, state, status, voter, incarnation, term, epoch, lsn, priority, local
                case lastSeenMsAgo = "last_seen_ms_ago"
            }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(id, forKey: .id)
                try c.encode(address, forKey: .address)
                try c.encode(role, forKey: .role)
                try c.encode(state, forKey: .state)
                try c.encode(status, forKey: .status)
                try c.encode(voter, forKey: .voter)
                try c.encode(incarnation, forKey: .incarnation)
                try c.encode(term, forKey: .term)
                try c.encode(epoch, forKey: .epoch)
                try c.encode(lsn, forKey: .lsn)
                try c.encode(priority, forKey: .priority)
                try c.encode(lastSeenMsAgo, forKey: .lastSeenMsAgo)  // null: never, or the node itself
                try c.encode(local, forKey: .local)
            }
        }
        struct Document: Encodable {
            var nodeID: String, state: String, term: UInt64, epoch: UInt64, leaderID: String?, hasQuorum: Bool?
            var voters: [String]?, votersVersion: UInt64?, votersCommitted: Bool?, healthTimeoutMs: UInt64?
            var members: [Member]
            enum CodingKeys: String, CodingKey {
                case nodeID = "node_id", state, term, epoch, leaderID = "leader_id", hasQuorum = "has_quorum", voters
                case votersVersion = "voters_version", votersCommitted = "voters_committed"
                case healthTimeoutMs = "health_timeout_ms", members
            }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(nodeID, forKey: .nodeID)
                try c.encode(state, forKey: .state)
                try c.encode(term, forKey: .term)
                try c.encode(epoch, forKey: .epoch)
                try c.encode(leaderID, forKey: .leaderID)  // null: no primary known
                try c.encode(hasQuorum, forKey: .hasQuorum)
                try c.encode(voters, forKey: .voters)
                try c.encode(votersVersion, forKey: .votersVersion)
                try c.encode(votersCommitted, forKey: .votersCommitted)
                try c.encode(healthTimeoutMs, forKey: .healthTimeoutMs)
                try c.encode(members, forKey: .members)
            }
        }
        let document = Document(
            nodeID: status.nodeID, state: status.state.description, term: status.term, epoch: status.epoch,
            leaderID: status.leaderID, hasQuorum: status.hasQuorum, voters: status.configuration?.voters,
            votersVersion: status.configuration?.version,
            votersCommitted: status.configuration == nil ? nil : status.configurationCommitted,
            healthTimeoutMs: status.healthTimeoutMs,
            members: rows.map { row in
                Member(
                    id: row.id, address: row.address, role: row.role, state: row.state, status: row.status.rawValue,
                    voter: row.voter, incarnation: row.incarnation, term: row.term, epoch: row.epoch, lsn: row.lsn,
                    priority: row.priority, lastSeenMsAgo: row.lastSeenAgo.map { Int(($0 * 1000).rounded()) }, local: row.local)
            })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(document) else { return "{}\n" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// The members table of `cluster members` (and of the demo).
enum MembersTable {
    static func render(_ status: StatusResponse) -> String { render(MembersView(status), wide: false) }

    static func render(_ view: MembersView, wide: Bool) -> String {
        let status = view.status
        var header = ["ID", "ADDRESS", "ROLE", "STATE", "STATUS", "VOTER", "TERM"]
        if wide { header += ["EPOCH", "LSN", "PRIO", "INC"] }
        var rows = [header + ["LAST SEEN"]]
        for row in view.rows {
            var cells = [
                row.id + (row.local ? " *" : ""), row.address, row.role, row.state, row.status.rawValue,
                row.voter ? "yes" : "no", row.status == .left ? "-" : "\(row.term)",
            ]
            if wide {
                cells += row.status == .left ? ["-", "-", "-", "-"]
                    : ["\(row.epoch)", "\(row.lsn)", "\(row.priority)", "\(row.incarnation)"]
            }
            cells.append(row.lastSeenAgo.map { lastSeen($0, zero: false) } ?? (row.neverSeen ? "never" : "-"))
            rows.append(cells)
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        var out = "\(status.nodeID) at term \(status.term), epoch \(status.epoch), leader \(status.leaderID ?? "-")"
            + (status.configuration.map { ", voters v\($0.version)\(status.configurationCommitted ? "" : " (not yet committed)")" } ?? ", no voter configuration yet")
            + (status.hasQuorum == false ? ", no quorum" : "")
            + " (* = the node asked)\n"
        for row in rows {
            out += zip(row, widths).map { $0.padded(to: $1) }.joined(separator: "  ").trimmingWhitespace() + "\n"
        }
        return out
    }

    /// "80 ms ago", "3.2 s ago", "never".
    static func lastSeen(_ seconds: Double, zero: Bool) -> String {
        if zero { return "never" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms ago" }
        if seconds < 120 { return format(seconds, 1) + " s ago" }
        return "\(Int(seconds / 60)) min ago"
    }
}
