import ArgumentParser
import Cluster

/// `cluster voters`: the voter set, and changes to it through the primary (found through the node
/// at `--addr`), answered once committed or with the reason.
struct Voters: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the voters, or add or remove one (through the primary, with the voters' consent).",
        discussion: """
            list: the voter configuration the node at --addr holds. add ID: make a running member a voter. \
            remove ID: make a voter a member that does not vote.

            A change goes to the primary (found through --addr) and is answered once a majority of the new voters \
            stored it. Run it on the primary's host: a node takes voter changes from its own host only.
            """)

    @Option(help: "A node of the cluster (HOST:PORT; default: $CLUSTER_ADDR, else 127.0.0.1:7001).", transform: HostPort.parse) var addr: HostPort?
    @Option(help: "How long to wait for the answer.", transform: DurationArgument.parse) var timeout = DurationArgument(.seconds(10), text: "10s")
    @Argument(help: "list, add or remove.") var op: String = "list"
    @Argument(help: "The node to add or remove.") var node: String?

    func validate() throws {
        switch op {
        case "list": if node != nil { throw ValidationError("list takes no node id") }
        case "add", "remove": if node == nil { throw ValidationError("\(op) needs the node's id") }
        default: throw ValidationError("unknown operation '\(op)' (list, add, remove)")
        }
    }

    func run() throws {
        let addr = try nodeAddress(self.addr)
        let (answer, target) = try requestThroughPrimary(
            .voters(VotersRequest(op: op, nodeID: node)), at: addr, timeout: timeout.duration, command: "cluster voters"
        ) { answer in
            guard case .votersResponse(let r) = answer, !r.success, r.error == ElectionCore.changeNotLeaderReason else { return nil }
            return r.leaderID
        }
        switch answer {
        case .votersResponse(let response) where response.success:
            if op != "list" {
                writeOut("\(op == "add" ? "added" : "removed") \(node ?? "") (took \(format(response.tookMs ?? 0, 0)) ms)\n")
            }
            let state = response.committed ? "committed" : "not yet committed"
            writeOut("voters: \(response.voters.joined(separator: ", ")) (configuration v\(response.configVersion), term \(response.configTerm), \(state))\n")
        case .votersResponse(let response):
            printError("cluster voters: \(response.error ?? "unknown reason")")
            throw ExitCode.failure
        case .error(let reason):
            printError("cluster voters: \(target) refused: \(reason)")
            throw ExitCode.failure
        default:
            printError("cluster voters: \(target) answered with \(answer.messageType)")
            throw ExitCode.failure
        }
    }
}
