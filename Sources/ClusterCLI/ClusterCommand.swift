import ArgumentParser
import Cluster
import FoundationEssentials
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

    /// Runs the command; a bad flag gets a one-line reason on stderr (`cluster SUBCOMMAND: …`, the
    /// prefix of every error the command prints) and exit code 64 (EX_USAGE), help and every
    /// other outcome are ArgumentParser's.
    static func main() async {
        do {
            var arguments = Array(CommandLine.arguments.dropFirst())
            if arguments.first == "agent" {
                do {
                    arguments = try await AgentConfig.expand(arguments, environment: ProcessInfo.processInfo.environment)
                } catch {
                    printError("cluster agent: \(error)")
                    Glibc.exit(ExitCode.validationFailure.rawValue)
                }
            }
            var command = try parseAsRoot(arguments)
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            if let error = error as? ClusterError {
                // What a subcommand did not catch itself (a metrics address in use): its cause, once.
                printError("\(errorPrefix(CommandLine.arguments)): \(error)")
                Glibc.exit(ExitCode.failure.rawValue)
            }
            if exitCode(for: error) == .validationFailure {
                printError("\(errorPrefix(CommandLine.arguments)): \(message(for: error)) (see --help)")
                Glibc.exit(ExitCode.validationFailure.rawValue)
            }
            exit(withError: error)
        }
    }

    /// `cluster SUBCOMMAND` when the first argument names a subcommand, else `cluster`.
    static func errorPrefix(_ arguments: [String]) -> String {
        guard arguments.count > 1,
              let sub = configuration.subcommands.first(where: { $0._commandName == arguments[1] })
        else { return "cluster" }
        return "cluster \(sub._commandName)"
    }
}

/// The port `cluster members`, `force-leave`, `voters`, `transfer` and `keyring` ask at when
/// neither `--addr` nor `CLUSTER_ADDR` names one (the first node of the README's cluster).
let defaultNodePort = 7001

/// The node a command asks: `--addr`, else `CLUSTER_ADDR`, else 127.0.0.1 and the default port.
func nodeAddress(_ flag: HostPort?) throws -> HostPort {
    if let flag { return flag }
    if let text = getenv("CLUSTER_ADDR").map({ String(cString: $0) }), !text.isEmpty {
        do {
            return try HostPort.parse(text)
        } catch {
            throw ValidationError("CLUSTER_ADDR: \(error)")
        }
    }
    return HostPort(host: "127.0.0.1", port: defaultNodePort)
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

    /// `argument` as a duration, or an error that says what is wrong with it.
    static func parse(_ argument: String) throws -> DurationArgument {
        if let duration = DurationArgument(argument: argument) { return duration }
        let number = argument.prefix { $0.isNumber || $0 == "." || $0 == "-" || $0 == "+" }
        let unit = argument.dropFirst(number.count)
        if argument.isEmpty { throw ValidationError("an empty duration") }
        if unit.isEmpty {
            throw ValidationError("a duration needs a unit: ns, us, ms, s, m or h (e.g. \(argument)s or \(argument)ms)")
        }
        guard ["ns", "us", "µs", "ms", "s", "m", "h"].contains(String(unit)) else {
            throw ValidationError("unknown unit '\(unit)': use ns, us, ms, s, m or h (e.g. 250ms, 1.5s)")
        }
        guard let value = Double(number), value.isFinite else { throw ValidationError("'\(number)' is not a number") }
        guard value > 0 else { throw ValidationError("a duration must be more than 0") }
        throw ValidationError("a duration must be at most 24h")
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

    /// `argument` as HOST:PORT, or an error that says what is wrong with it.
    static func parse(_ argument: String) throws -> HostPort {
        if let parsed = try? HostPort(parsing: argument) { return parsed }
        let example = "expected HOST:PORT, e.g. 127.0.0.1:\(defaultNodePort)"
        if argument.isEmpty { throw ValidationError("an empty address: \(example)") }
        if !argument.hasPrefix("["), argument.filter({ $0 == ":" }).count > 1 {
            throw ValidationError("an IPv6 address goes in brackets: [::1]:\(defaultNodePort)")
        }
        guard let colon = argument.lastIndex(of: ":") else { throw ValidationError("no port: \(example)") }
        let host = argument[..<colon]
        let port = argument[argument.index(after: colon)...]
        if host.isEmpty || host == "[]" { throw ValidationError("no host: \(example)") }
        if port.isEmpty { throw ValidationError("no port after ':': \(example)") }
        if argument.hasPrefix("["), !host.hasSuffix("]") { throw ValidationError("no ']' after the IPv6 address: \(example)") }
        throw ValidationError("the port '\(port)' is not a number 0...65535")
    }
}
