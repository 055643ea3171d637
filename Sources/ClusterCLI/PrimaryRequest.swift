import ArgumentParser
import Cluster

/// Sends `request` to the node at `address`; when its answer is a refusal because it is not the
/// primary (`primaryNamed` returns the primary it names), asks that primary once, found in the
/// node's status. Returns the last answer. A connection error prints `command: error` and exits 1.
func requestThroughPrimary(
    _ request: JSONMessage, at address: HostPort, timeout: Duration, command: String,
    primaryNamed: (JSONMessage) -> String?
) throws -> (answer: JSONMessage, from: HostPort) {
    var target = address
    for attempt in 0..<2 {
        let answer: JSONMessage
        do {
            answer = try ClusterClient.request(request, to: target, timeout: timeout)
        } catch {
            printError("\(command): \(error)")
            throw ExitCode.failure
        }
        guard attempt == 0, let leader = primaryNamed(answer),
              let status = try? ClusterClient.status(of: target, timeout: timeout),
              let member = status.members.first(where: { $0.id == leader }),
              let leaderAddr = try? HostPort(parsing: member.addr)
        else { return (answer, target) }
        writeOut("\(target) is not the primary; asking \(leader) at \(leaderAddr)\n")
        target = leaderAddr
    }
    printError("\(command): no primary found")
    throw ExitCode.failure
}
