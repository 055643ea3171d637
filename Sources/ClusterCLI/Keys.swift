import ArgumentParser
import Cluster
import FoundationEssentials
import Glibc
import UV

/// `cluster keygen`: prints a new cluster key (base64 of 32 random bytes) and its id.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a new cluster key (base64 of 32 random bytes) for --key-file or CLUSTER_KEY.")

    @Flag(help: "Also print the key's id on standard error.") var showID = false

    func run() throws {
        let key = ClusterKey.generate()
        writeOut(key.base64 + "\n")
        if showID { printError("key id \(key.idString)") }
    }
}

/// `cluster keyring`: looks at or changes a running node's keyring (from the node's host only).
/// A rotation: `install` the new key on every node, `use` it on every node, `remove` the old
/// one on every node.
struct Keyring: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, install, use (make primary) or remove a running node's cluster keys (run it on the node's host).")

    enum Op: String, ExpressibleByArgument, CaseIterable { case list, install, use, remove }

    @Option(help: "The node (HOST:PORT; default: $CLUSTER_ADDR, else 127.0.0.1:7001).", transform: HostPort.parse) var addr: HostPort?
    @Argument(help: "list, install, use or remove.") var op: Op
    @Argument(help: "install: a file holding the key (- for standard input); use, remove: the key id (16 hex digits).")
    var value: String?
    @Option(help: "How long to wait for the answer.", transform: DurationArgument.parse) var timeout = DurationArgument(.seconds(5), text: "5s")

    func validate() throws {
        switch op {
        case .list: if value != nil { throw ValidationError("list takes no argument") }
        case .install: if value == nil { throw ValidationError("install needs a key file (- for standard input)") }
        case .use, .remove:
            guard let value, ClusterKey.parseID(value) != nil else { throw ValidationError("\(op) needs a key id (16 hex digits)") }
        }
    }

    func run() throws {
        let addr = try nodeAddress(self.addr)
        var request = KeyringRequest(op: op.rawValue)
        switch op {
        case .list: break
        case .install:
            let key = try readKey(path: value!)
            request.key = key.base64
        case .use, .remove: request.keyID = value
        }
        let answer: JSONMessage
        do {
            answer = try ClusterClient.request(.keyring(request), to: addr, timeout: timeout.duration)
        } catch {
            printError("cluster keyring: \(error)")
            throw ExitCode.failure
        }
        switch answer {
        case .keyringResponse(let response):
            for id in response.keys { writeOut(id + (id == response.primary ? " (primary)" : "") + "\n") }
            if !response.success {
                printError("cluster keyring: \(response.error ?? "failed")")
                throw ExitCode.failure
            }
        case .error(let reason):
            printError("cluster keyring: \(addr) refused: \(reason)")
            throw ExitCode.failure
        default:
            printError("cluster keyring: unexpected answer \(answer.messageType)")
            throw ExitCode.failure
        }
    }
}

/// Reads a key from a file (`-`: standard input); an error names the file and the cause once.
func readKey(path: String) throws -> ClusterKey {
    let data: [UInt8]
    if path == "-" {
        do {
            data = try UVFile.readAll(fd: STDIN_FILENO)
        } catch {
            throw ValidationError("cannot read the key from standard input: \(error.message)")
        }
    } else {
        var info = stat()
        if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            throw ValidationError("the key file \(path) is a directory")
        }
        let bytes: [UInt8]?
        do {
            bytes = try UVFile.read(path: path, maxBytes: 4096)
        } catch {
            throw ValidationError("cannot read the key file \(path): \(error.message)")
        }
        guard let bytes else { throw ValidationError("the key file \(path) does not exist") }
        data = bytes
    }
    do {
        return try ClusterKey(text: String(decoding: data, as: UTF8.self))
    } catch {
        throw ValidationError("\(path == "-" ? "standard input" : "the key file " + path) holds no cluster key: \(error.reason)")
    }
}

extension ClusterError {
    /// The reason alone, for errors whose description adds a generic prefix ("invalid state: ").
    var reason: String {
        if case .invalidState(let why) = self { return why }
        return description
    }
}
