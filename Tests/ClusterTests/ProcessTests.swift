import Foundation
import Glibc
import Testing
import UV

/// Runs an executable of this package as a user's shell would: SIGPIPE (and every other signal)
/// at its default disposition and unblocked, whatever the test runner set, stdout and stderr piped
/// and read to the end. Kills it after `timeoutSeconds`. Returns the exit code, or the signal
/// that ended it, and the output.
struct ChildResult: CustomStringConvertible {
    var exitCode: Int32?
    var signal: Int32?
    var output: String
    var description: String {
        "exit \(exitCode.map(String.init) ?? "-") signal \(signal.map(String.init) ?? "-"): \(output.suffix(2000))"
    }
}

/// The folder the package's products are built into (beside the test bundle).
func productsDirectory() -> URL {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = bundle.deletingLastPathComponent()
    // `swift test` runs …/debug/ClusterPackageTests.xctest; the products sit in …/debug.
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("cluster").path), dir.path != "/" {
        dir = dir.deletingLastPathComponent()
    }
    return dir
}

/// A child process of this package's products, started as a user's shell would start it
/// (`UVChildProcess`: SIGPIPE and every other signal at its default disposition and unblocked,
/// whatever the test runner set; stdout and stderr piped into one record read to the end by a
/// thread of its own). Killed (SIGKILL) and reaped when dropped, if still running.
final class ChildProcess: @unchecked Sendable {
    let process: UVChildProcess
    let name: String
    var pid: pid_t { process.pid }

    /// Starts a product of this package.
    convenience init(_ executable: String, _ arguments: [String]) throws {
        try self.init(path: productsDirectory().appendingPathComponent(executable).path, arguments)
    }

    /// Starts the program at `path`.
    init(path: String, _ arguments: [String]) throws {
        name = ([path] + arguments).joined(separator: " ")
        process = try UVChildProcess(path: path, arguments: arguments)
    }

    deinit {
        process.signal(SIGKILL)
        _ = process.waitForEnd(seconds: 30)
    }

    var output: String { String(decoding: process.output, as: UTF8.self) }

    func signal(_ sig: Int32) { process.signal(sig) }

    /// Waits up to `seconds` for the child to end; nil if it is still running then.
    func waitForExit(seconds: Int) -> ChildResult? {
        switch process.waitForEnd(seconds: Double(seconds)) {
        case .exited(let code)?: ChildResult(exitCode: code, signal: nil, output: output)
        case .signalled(let signal)?: ChildResult(exitCode: nil, signal: signal, output: output)
        case nil: nil
        }
    }
}

/// As `runChild`, for a child that runs for long: it waits without holding a thread of Swift's
/// cooperative pool (two on a 2-core machine; a test blocked on a child for tens of seconds
/// would starve every other test of the run meanwhile).
func runChildAwaiting(_ executable: String, _ arguments: [String], timeoutSeconds: Int) async throws -> ChildResult {
    let child = try ChildProcess(executable, arguments)
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(timeoutSeconds)
    while clock.now < deadline {
        if let result = child.waitForExit(seconds: 0) { return result }
        try? await Task.sleep(for: .milliseconds(50))
    }
    child.signal(SIGKILL)
    return child.waitForExit(seconds: 10) ?? ChildResult(exitCode: nil, signal: SIGKILL, output: child.output)
}

/// Runs a product to its end (killed after `timeoutSeconds`) and returns how it ended.
func runChild(_ executable: String, _ arguments: [String], timeoutSeconds: Int) throws -> ChildResult {
    let child = try ChildProcess(executable, arguments)
    if let result = child.waitForExit(seconds: timeoutSeconds) { return result }
    child.signal(SIGKILL)
    return child.waitForExit(seconds: 10) ?? ChildResult(exitCode: nil, signal: SIGKILL, output: child.output)
}

@Suite("Executables as a user runs them", .serialized, .timeLimit(.minutes(2)))
struct ProcessTests {
    @Test("cluster --version prints the version and the wire version, exit 0 (issue 18)")
    func version() throws {
        let result = try runChild("cluster", ["--version"], timeoutSeconds: 30)
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.output.hasPrefix("cluster 0.1.0-dev (wire version "), "\(result)")
    }

    @Test("cluster bench with SIGPIPE at its default survives peers closing mid-write (issue 6 #1)")
    func benchSurvivesSIGPIPE() throws {
        // Many nodes on one loop, stopped together at the end: links close while frames are queued.
        let result = try runChild("cluster", ["bench", "steady", "--nodes", "32", "--interval-ms", "20", "--seconds", "1", "--threads", "1"], timeoutSeconds: 90)
        #expect(result.signal == nil, "\(result)")
        #expect(result.exitCode == 0, "\(result)")
        #expect(result.output.contains("heartbeats"), "\(result)")
    }

    /// The pids of running agents that a `cluster demo` started (their data directories are under
    /// the demo's `cluster-demo-PID`).
    static func demoAgents() -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            // read(2), not FileManager: a /proc file's size reads as 0 (and FoundationEssentials'
            // reader of such files leaks its buffer under AddressSanitizer).
            guard let pid = pid_t(entry), let raw = try? readProcFile("/proc/\(entry)/cmdline") else { return nil }
            let args = raw.split(separator: "\0").map(String.init)
            guard args.contains("agent"), args.contains(where: { $0.contains("cluster-demo-") }) else { return nil }
            return pid
        }
    }

    @Test("cluster demo piped into head dies of SIGPIPE and takes its agents with it")
    func demoPipedIntoHeadLeavesNoAgents() throws {
        let cluster = productsDirectory().appendingPathComponent("cluster").path
        // head exits after the first lines; the demo's next line raises SIGPIPE (default
        // disposition), which ends it before it can stop its agents itself.
        let shell = try ChildProcess(path: "/bin/sh", ["-c", "'\(cluster)' demo --nodes 3 --heartbeat-interval 50ms --election-timeout 500ms | head -c 300"])
        let result = shell.waitForExit(seconds: 60)
        #expect(result?.exitCode == 0, "\(result.map(String.init(describing:)) ?? "still running")")
        // The agents were told (SIGTERM from the kernel when their parent ended): they leave and
        // exit. Polled: nothing to wait on for processes that are not our children.
        var left = Self.demoAgents()
        let deadline = UVLoop.hrtimeNs() + 20_000_000_000
        while !left.isEmpty && UVLoop.hrtimeNs() < deadline {
            usleep(100_000)
            left = Self.demoAgents()
        }
        for pid in left { kill(pid, SIGKILL) }
        #expect(left.isEmpty, "agents left running after the demo died: \(left)")
    }
}

extension ProcessTests {
    /// The libraries an agent must not map: Foundation proper and its ICU and
    /// internationalization parts (FoundationEssentials is allowed).
    static let foundationLibraries = ["libFoundation.so", "FoundationICU", "FoundationInternationalization"]

    /// A /proc file read to its end with read(2) (its size reads as 0, so it is read in chunks).
    static func readProcFile(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("cluster agent maps no libFoundation, FoundationICU or FoundationInternationalization (issue 9, memory)")
    func agentMapsNoFoundation() async throws {
        let dataDir = NSTemporaryDirectory() + "cluster-agent-maps-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let agent = try await AgentProcess.start("m1", seeds: [], dataDir: dataDir, minQuorum: 1)
        let maps = try Self.readProcFile("/proc/\(agent.child.pid)/maps")
        let mapped = Set(maps.split(separator: "\n").compactMap { line -> String? in
            guard let slash = line.firstIndex(of: "/") else { return nil }
            return String(line[slash...])
        })
        #expect(!mapped.isEmpty, "no file mapped in /proc/\(agent.child.pid)/maps")
        let foundation = mapped.filter { path in Self.foundationLibraries.contains { path.contains($0) } }
        #expect(foundation.isEmpty, "the agent maps \(foundation.sorted())")
        agent.child.signal(SIGTERM)
        let result = agent.child.waitForExit(seconds: 20)
        #expect(result?.exitCode == 0, "\(result.map(String.init(describing:)) ?? "still running")")
    }

    @Test("cluster agent lets go of its start-up code pages, and runs on: elected, answering, leaving with exit 0 (issue 9, memory)")
    func agentReleasesStartupCode() async throws {
        let dataDir = NSTemporaryDirectory() + "cluster-agent-release-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let agent = try await AgentProcess.start("r1", seeds: [], dataDir: dataDir, minQuorum: 1, extra: ["--release-startup-code-after", "50ms"])
        var released: Int?
        _ = await eventually(timeout: .seconds(20)) {
            guard let range = agent.child.output.range(of: "let go of ") else { return false }
            released = Int(agent.child.output[range.upperBound...].prefix { $0.isNumber })
            return true
        }
        let kib = try #require(released, "no release logged: \(agent.child.output.suffix(1000))")
        #expect(kib > 0)
        // The code it needs from here on faults back in: it is elected, answers, and leaves cleanly.
        var leader: String?
        #expect(await eventually(timeout: .seconds(20)) {
            guard let status = agent.status(), status.state == .leader else { return false }
            leader = status.nodeID
            return true
        })
        #expect(leader == "r1")
        agent.child.signal(SIGTERM)
        let result = agent.child.waitForExit(seconds: 20)
        #expect(result?.exitCode == 0, "\(result.map(String.init(describing:)) ?? "still running")")
    }
}
