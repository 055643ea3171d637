import ArgumentParser
import Cluster
import FoundationEssentials
import Glibc

/// `cluster members`: one node's view of the cluster, as a table (or its JSON status).
struct Members: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a node's view of the cluster's members.")

    @Option(help: "The node to ask (HOST:PORT).") var addr: HostPort
    @Flag(help: "Print the node's status_response line as it came.") var json = false
    @Flag(help: "Redraw the table every --interval until interrupted.") var watch = false
    @Option(help: "Redraw interval with --watch.") var interval = DurationArgument(.milliseconds(500), text: "500ms")
    @Option(help: "How long to wait for the node's answer.") var timeout = DurationArgument(.seconds(5), text: "5s")

    func run() throws {
        let redraw = watch && isatty(STDOUT_FILENO) == 1
        repeat {
            let output: String
            do {
                let status = try ClusterClient.status(of: addr, timeout: timeout.duration)
                output = json ? String(decoding: JSONMessage.statusResponse(status).encodeLine(), as: UTF8.self)
                    : MembersTable.render(status)
            } catch {
                guard watch else {
                    printError("cluster members: \(error)")
                    throw ExitCode.failure
                }
                output = "cluster members: \(error)\n"
            }
            // In place on a terminal (cursor home, clear); one table after another otherwise.
            writeOut((redraw ? "\u{1B}[H\u{1B}[2J" : "") + output)
            if watch { pause(seconds: Double(interval.duration.nanoseconds) / 1e9) }
        } while watch
    }
}

/// The members table of `cluster members` (and of the demo).
enum MembersTable {
    static func render(_ status: StatusResponse) -> String {
        let now = status.time ?? Date()
        let healthTimeout = Double(status.healthTimeoutMs ?? 5000) / 1000
        var rows = [["ID", "ADDRESS", "ROLE", "STATE", "VOTES", "TERM", "EPOCH", "LSN", "PRIO", "HEALTHY", "LAST SEEN"]]
        let voters = status.configuration.map { Set($0.voters) }
        for member in status.members {
            let local = member.id == status.nodeID
            let ago = max(0, now.timeIntervalSince(member.lastSeen))
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
            rows.append([
                member.id + (local ? " *" : ""), member.addr, member.role.description, state,
                voters.map { $0.contains(member.id) ? "yes" : "no" } ?? "-", "\(member.term)",
                "\(member.epoch)", "\(member.lastLSN)", "\(member.priority)",
                local || ago < healthTimeout ? "yes" : "no",
                local ? "-" : lastSeen(ago, zero: member.lastSeen.timeIntervalSince1970 < 0),
            ])
        }
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        var out = "\(status.nodeID) at term \(status.term), epoch \(status.epoch), leader \(status.leaderID ?? "-")"
            + (status.configuration.map { ", voters v\($0.version)\(status.configurationCommitted ? "" : " (not yet committed)")" } ?? ", no voter configuration yet")
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
