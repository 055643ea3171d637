import ArgumentParser
import Cluster

/// `cluster force-leave`: removes a member that is gone (Serf's force-leave), and its vote first
/// if it had one (through the primary, with the voters' consent).
struct ForceLeave: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "force-leave",
        abstract: "Remove a member that is gone, and its vote if it had one.",
        discussion: """
            The node at --addr removes ID from its membership and tells every peer it is linked to; none of them \
            redials it, and seeds' reports do not bring it back (its own announcement does, if it returns). A \
            member still linked and alive is refused: stop it first. A voter loses its vote first, through the \
            primary, as `cluster voters remove ID` would. Run it on the node's host: a node takes this from its \
            own host only.
            """)

    @Option(help: "A node of the cluster (HOST:PORT; default: $CLUSTER_ADDR, else 127.0.0.1:7001).", transform: HostPort.parse) var addr: HostPort?
    @Option(help: "How long to wait for each answer.", transform: DurationArgument.parse) var timeout = DurationArgument(.seconds(10), text: "10s")
    @Argument(help: "The member to remove.") var node: String

    func validate() throws {
        if let problem = NodeInfo.idProblem(node) { throw ValidationError("\(node): \(problem)") }
    }

    func run() throws {
        let addr = try nodeAddress(self.addr)
        let status: StatusResponse
        do {
            status = try ClusterClient.status(of: addr, timeout: timeout.duration)
        } catch {
            printError("cluster force-leave: \(error)")
            throw ExitCode.failure
        }
        if status.configuration?.voters.contains(node) == true {
            let (answer, target) = try requestThroughPrimary(
                .voters(VotersRequest(op: "remove", nodeID: node)), at: addr, timeout: timeout.duration,
                command: "cluster force-leave"
            ) { answer in
                guard case .votersResponse(let r) = answer, !r.success, r.error == ElectionCore.changeNotLeaderReason else { return nil }
                return r.leaderID
            }
            guard case .votersResponse(let response) = answer, response.success else {
                let reason: String
                switch answer {
                case .votersResponse(let response): reason = response.error ?? "unknown reason"
                case .error(let why): reason = "\(target) refused: \(why)"
                default: reason = "\(target) answered with \(answer.messageType)"
                }
                printError("cluster force-leave: removing \(node)'s vote: \(reason)")
                throw ExitCode.failure
            }
            writeOut("removed \(node)'s vote: voters \(response.voters.joined(separator: ", "))\n")
        }
        let answer: JSONMessage
        do {
            answer = try ClusterClient.request(.forceLeave(nodeID: node), to: addr, timeout: timeout.duration)
        } catch {
            printError("cluster force-leave: \(error)")
            throw ExitCode.failure
        }
        switch answer {
        case .forceLeaveResponse(let response) where response.success:
            writeOut("\(node) left the cluster: removed at \(addr), \(response.peersTold) peer(s) told\n")
        case .forceLeaveResponse(let response):
            printError("cluster force-leave: \(response.error ?? "unknown reason")")
            throw ExitCode.failure
        case .error(let reason):
            printError("cluster force-leave: \(addr) refused: \(reason)")
            throw ExitCode.failure
        default:
            printError("cluster force-leave: \(addr) answered with \(answer.messageType)")
            throw ExitCode.failure
        }
    }
}
