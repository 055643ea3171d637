import ArgumentParser
import Configuration
import FoundationEssentials
import Glibc

/// The agent's settings from a JSON file (`--config FILE`, or `CLUSTER_CONFIG`) and from
/// `CLUSTER_*` environment variables, read through swift-configuration and turned into the
/// flags they stand for, placed before the command line's own: flags over the file over the
/// environment (the last of a repeated option wins).
///
/// A file's keys are the agent's long option names without the dashes in front
/// (`{"id": "n1", "listen": "127.0.0.1:7001", "seeds": ["127.0.0.1:7002"], "auto-failover": false}`);
/// a variable's name is `CLUSTER_` and the option's name in capitals, `-` as `_`
/// (`CLUSTER_DATA_DIR=/var/lib/cluster`). `CLUSTER_KEY` stays the key itself (not a key file).
enum AgentConfig {
    enum Kind { case value, list, flag, invertible }

    /// Every agent option a file or the environment may set.
    static let options: [(name: String, kind: Kind)] = [
        ("id", .value), ("listen", .value), ("seeds", .list), ("priority", .value), ("data-dir", .value),
        ("heartbeat-interval", .value), ("election-timeout", .value), ("min-quorum", .value), ("voters", .list),
        ("bootstrap-expect", .value), ("voters-target", .value), ("autopilot-stabilization", .value),
        ("autopilot-dead-after", .value), ("max-unlinked-members", .value), ("unlinked-member-expiry", .value),
        ("auto-failover", .invertible), ("log-level", .value), ("log-format", .value), ("metrics", .value),
        ("cluster-name", .value), ("key-file", .value), ("allow-unauthenticated-json", .flag),
        ("datagram-heartbeats", .invertible), ("release-startup-code", .invertible),
        ("release-startup-code-after", .value),
    ]

    struct Problem: Error, CustomStringConvertible {
        let description: String
    }

    /// `arguments` (after `cluster`, starting with `agent`) with the file's and the environment's
    /// settings put in front of the command line's own.
    static func expand(_ arguments: [String], environment: [String: String]) async throws(Problem) -> [String] {
        var file: String?
        for (i, argument) in arguments.enumerated() {
            if argument == "--config", i + 1 < arguments.count { file = arguments[i + 1] }
            if argument.hasPrefix("--config=") { file = String(argument.dropFirst("--config=".count)) }
        }
        if file == nil, let path = environment["CLUSTER_CONFIG"], !path.isEmpty { file = path }
        var fileFlags: [String] = []
        if let file { fileFlags = try await flags(fromFile: file) }
        let environmentFlags = flags(
            from: ConfigReader(provider: KeyMappingProvider(
                upstream: EnvironmentVariablesProvider(environmentVariables: environment),
                keyMapper: { $0.prepending(["cluster"]) })),
            only: nil, source: { "CLUSTER_" + $0.uppercased().replacing("-", with: "_") })
        if let bad = environmentFlags.unreadable { throw Problem(description: bad) }
        return [arguments[0]] + environmentFlags.flags + fileFlags + arguments.dropFirst()
    }

    /// One setting's value in a JSON file: a string, a whole number, true or false, or a list of
    /// strings (anything else is refused, naming the key).
    struct Setting: Decodable {
        let value: ConfigContent

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let text = try? c.decode(String.self) {
                value = .string(text)
            } else if let flag = try? c.decode(Bool.self) {
                value = .bool(flag)
            } else if let number = try? c.decode(Int.self) {
                value = .int(number)
            } else if let list = try? c.decode([String].self) {
                value = .stringArray(list)
            } else {
                let key = decoder.codingPath.last?.stringValue ?? "?"
                throw Problem(description: "\"\(key)\" must be a string, a whole number, true or false, or a list of strings")
            }
        }
    }

    /// The flags a JSON file stands for; an unknown key, a value of the wrong kind or a file that
    /// cannot be read is an error naming the file and the cause. (Parsed here with
    /// FoundationEssentials: swift-configuration's JSON provider needs full Foundation.)
    static func flags(fromFile path: String) async throws(Problem) -> [String] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw Problem(description: "--config \(path): \(String(cString: strerror(errno)))")
        }
        let isDirectory = info.st_mode & S_IFMT == S_IFDIR
        guard !isDirectory, let data = FileManager.default.contents(atPath: path) else {
            throw Problem(description: "--config \(path): \(isDirectory ? "a directory" : "cannot be read")")
        }
        let settings: [String: Setting]
        do {
            settings = try JSONDecoder().decode([String: Setting].self, from: data)
        } catch let problem as Problem {
            throw Problem(description: "--config \(path): \(problem)")
        } catch {
            throw Problem(description: "--config \(path): not a JSON object of settings")
        }
        let known = Set(options.map(\.name))
        if let unknown = settings.keys.sorted().first(where: { !known.contains($0) }) {
            throw Problem(description: "--config \(path): unknown setting \"\(unknown)\" (the settings are the agent's option names, e.g. \"data-dir\")")
        }
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, setting) in settings { values[AbsoluteConfigKey([key])] = ConfigValue(setting.value, isSecret: false) }
        let reader = ConfigReader(provider: InMemoryProvider(name: path, values: values))
        let result = flags(from: reader, only: Set(settings.keys), source: { "\"\($0)\"" })
        if let bad = result.unreadable {
            throw Problem(description: "--config \(path): \(bad)")
        }
        return result.flags
    }

    /// The flags for the settings `reader` holds (of `only`, when given); `unreadable` names the
    /// first setting present in a form its option does not take.
    static func flags(
        from reader: ConfigReader, only: Set<String>?, source: (String) -> String
    ) -> (flags: [String], unreadable: String?) {
        var flags: [String] = []
        var unreadable: String?
        for (name, kind) in options where only?.contains(name) ?? true {
            let key = ConfigKey(name)
            switch kind {
            case .value:
                if let text = reader.string(forKey: key) ?? reader.int(forKey: key).map(String.init) {
                    flags += ["--\(name)", text]
                } else if only != nil {
                    unreadable = unreadable ?? "\(source(name)) must be a string or a whole number"
                }
            case .list:
                if let list = reader.stringArray(forKey: key) ?? reader.string(forKey: key).map({ [$0] }) {
                    flags += ["--\(name)", list.joined(separator: ",")]
                } else if only != nil {
                    unreadable = unreadable ?? "\(source(name)) must be a list of strings or a comma-separated string"
                }
            case .flag, .invertible:
                if let on = reader.bool(forKey: key) {
                    if on {
                        flags.append("--\(name)")
                    } else if kind == .invertible {
                        flags.append("--no-\(name)")
                    }
                } else if only != nil || reader.string(forKey: key) != nil {
                    // A file's key or a variable that is set, neither true nor false.
                    unreadable = unreadable ?? "\(source(name)) must be true or false"
                }
            }
        }
        return (flags, unreadable)
    }
}
