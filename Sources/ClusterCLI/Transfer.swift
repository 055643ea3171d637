import ArgumentParser
import Cluster

/// `cluster transfer`: a planned switchover. Asks the primary (found through the node at
/// `--addr` if that is not the primary) to hand over to `--to` or to its best voter, and reports
/// when it is done or why it could not be.
struct Transfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hand the primary's leadership over to another node (a planned switchover).")

    @Option(help: "A node of the cluster (HOST:PORT); the request goes on to the primary. Run it on the primary's host.")
    var addr: HostPort
    @Option(help: "The node to hand over to; default: the most up-to-date voter (LSN, then priority).") var to: String?
    @Option(help: "How long to wait for the answer.") var timeout = DurationArgument(.seconds(10), text: "10s")

    func run() throws {
        var target = addr
        for attempt in 0..<2 {
            let answer: JSONMessage
            do {
                answer = try ClusterClient.request(.transfer(to: to), to: target, timeout: timeout.duration)
            } catch {
                printError("cluster transfer: \(error)")
                throw ExitCode.failure
            }
            switch answer {
            case .transferResponse(let response) where response.success:
                writeOut("\(response.leaderID ?? "?") is the primary now (handover took \(format(response.tookMs ?? 0, 0)) ms)\n")
                return
            case .transferResponse(let response):
                let reason = response.error ?? "unknown reason"
                // Not the primary: ask the one it names, once.
                if attempt == 0, reason == ElectionCore.transferNotLeaderReason, let leader = response.leaderID,
                   let status = try? ClusterClient.status(of: target, timeout: timeout.duration),
                   let member = status.members.first(where: { $0.id == leader }),
                   let leaderAddr = try? HostPort(parsing: member.addr) {
                    writeOut("\(target) is not the primary; asking \(leader) at \(leaderAddr)\n")
                    target = leaderAddr
                    continue
                }
                printError("cluster transfer: \(reason)")
                throw ExitCode.failure
            case .error(let reason):
                printError("cluster transfer: \(target) refused: \(reason)")
                throw ExitCode.failure
            default:
                printError("cluster transfer: \(target) answered with \(answer.messageType)")
                throw ExitCode.failure
            }
        }
        printError("cluster transfer: no primary found")
        throw ExitCode.failure
    }
}
