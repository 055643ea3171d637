import ArgumentParser
import Cluster

/// `cluster transfer`: a planned switchover. Asks the primary (found through the node at
/// `--addr` if that is not the primary) to hand over to `--to` or to its best voter, and reports
/// when it is done or why it could not be.
struct Transfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hand the primary's leadership over to another node (a planned switchover).")

    @Option(help: "A node of the cluster (HOST:PORT; default: $CLUSTER_ADDR, else 127.0.0.1:7001); the request goes on to the primary. Run it on the primary's host.", transform: HostPort.parse)
    var addr: HostPort?
    @Option(help: "The node to hand over to; default: the most up-to-date voter (LSN, then priority).") var to: String?
    @Option(help: "How long to wait for the answer.", transform: DurationArgument.parse) var timeout = DurationArgument(.seconds(10), text: "10s")

    func run() throws {
        let addr = try nodeAddress(self.addr)
        let (answer, target) = try requestThroughPrimary(
            .transfer(to: to), at: addr, timeout: timeout.duration, command: "cluster transfer"
        ) { answer in
            guard case .transferResponse(let r) = answer, !r.success, r.error == ElectionCore.transferNotLeaderReason else { return nil }
            return r.leaderID
        }
        switch answer {
        case .transferResponse(let response) where response.success:
            writeOut("\(response.leaderID ?? "?") is the primary now (handover took \(format(response.tookMs ?? 0, 0)) ms)\n")
        case .transferResponse(let response) where response.error == ElectionCore.transferToSelfReason && to != nil:
            // What was asked for holds already: not a failure.
            writeOut("\(to!) already leads: nothing to hand over\n")
        case .transferResponse(let response):
            printError("cluster transfer: \(response.error ?? "unknown reason")")
            throw ExitCode.failure
        case .error(let reason):
            printError("cluster transfer: \(target) refused: \(reason)")
            throw ExitCode.failure
        default:
            printError("cluster transfer: \(target) answered with \(answer.messageType)")
            throw ExitCode.failure
        }
    }
}
