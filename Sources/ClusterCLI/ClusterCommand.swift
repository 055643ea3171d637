import ArgumentParser
import Cluster
import Glibc

/// This build's version (no release yet: the CHANGELOG's "Unreleased").
let clusterVersion = "0.1.0-dev"

/// `cluster`: run a node, look at a cluster, hand leadership over, and the demo, simulator and
/// benchmarks, in one command family.
@main
struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Cluster membership and leader election on libuv.",
        version: "cluster \(clusterVersion) (wire version \(Wire.version))",
        subcommands: [Agent.self, Members.self, Transfer.self, Voters.self, ForceLeave.self, Keygen.self, Keyring.self, Demo.self, Sim.self, Bench.self])

    /// Runs the command; a bad flag gets a one-line reason on stderr and exit code 64 (EX_USAGE),
    /// help and every other outcome are ArgumentParser's.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError("cluster: \(message(for: error)) (see --help)")
                Glibc.exit(ExitCode.validationFailure.rawValue)
            }
            exit(withError: error)
        }
    }
}

/// A duration on the command line: `250ms`, `1s`, `1.5s`, `2m`, `500us`.
struct DurationArgument: ExpressibleByArgument, Sendable, CustomStringConvertible {
    let duration: Duration
    let text: String

    init(_ duration: Duration, text: String) {
        self.duration = duration
        self.text = text
    }

    init?(argument: String) {
        let units: [(String, Double)] = [("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("s", 1), ("m", 60), ("h", 3600)]
        guard let (suffix, scale) = units.first(where: { argument.hasSuffix($0.0) }),
              let value = Double(argument.dropLast(suffix.count)), value.isFinite, value > 0, value * scale <= 86_400
        else { return nil }
        duration = .nanoseconds(Int64((value * scale * 1e9).rounded()))
        text = argument
    }

    var description: String { text }
    var defaultValueDescription: String { text }
    static var defaultCompletionKind: CompletionKind { .default }
}

extension HostPort: ExpressibleByArgument {
    public init?(argument: String) {
        guard let parsed = try? HostPort(parsing: argument) else { return nil }
        self = parsed
    }
}
