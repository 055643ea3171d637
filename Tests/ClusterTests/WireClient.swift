import Cluster
import Dispatch
import Foundation
@testable import UV

/// A hand-driven connection to a node, on a loop of its own, for tests that play a peer or a
/// client byte by byte. It records what arrives (bytes, decoded frames or lines) and whether the
/// node closed the connection; tests await conditions on that record, woken by arrivals, never by
/// polling.
final class WireClient: @unchecked Sendable {
    struct Record: Sendable {
        var bytes: [UInt8] = []
        var frames: [WireFrame] = []
        var lines: [String] = []
        var closed = false
        var connected = false
        var connectError: String?
        var written = 0
        var writeErrors: [String] = []
    }

    let loop: UVLoop
    private let record = UVLocked(Record())
    private let waiters = UVLocked<[(id: Int, check: @Sendable (Record) -> Bool, resume: @Sendable () -> Void)]>([])
    private let nextWaiter = UVLocked(0)
    // Loop thread only.
    private var conn: UVTCPConnection?
    private var decoder = FrameDecoder()
    private var splitter = LineSplitter()

    /// Connects to 127.0.0.1:`port`; awaits the connection.
    /// `json`: the node's answers are JSON lines (else binary frames).
    static func connect(port: Int, json: Bool = false) async throws -> WireClient {
        let client = try WireClient(json: json)
        client.loop.execute { [weak client] in
            guard let loop = client?.loop else { return }
            do {
                try UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: port, timeoutMs: 5000) { [weak client] result in
                    switch result {
                    case .success(let conn): client?.connected(conn)
                    case .failure(let error): client?.update { $0.connectError = "\(error)"; $0.closed = true }
                    }
                }
            } catch {
                client?.update { $0.connectError = "\(error)"; $0.closed = true }
            }
        }
        _ = await client.wait(timeout: .seconds(10)) { $0.connected || $0.closed }
        if let error = client.current.connectError { throw ClusterError.io(error) }
        return client
    }

    private let json: Bool

    private init(json: Bool) throws {
        self.json = json
        loop = try UVLoop(name: "wire-client")
    }

    deinit {
        // The last reference may go on the loop thread itself (inside a callback): shut the loop
        // down from elsewhere.
        let loop = self.loop
        DispatchQueue.global().async { loop.shutdown() }
    }

    private func connected(_ conn: UVTCPConnection) {
        self.conn = conn
        // Callbacks hold the client weakly: its last reference is the test's, so that it is
        // never freed (and its loop shut down) on its own loop thread.
        conn.onClose = { [weak self] in self?.update { $0.closed = true } }
        try? conn.startReading(onRead: { [weak self] span in
            guard let self else { return }
            var bytes: [UInt8] = []
            span.withUnsafeBytes { bytes = Array($0) }
            var frames: [WireFrame] = []
            var lines: [String] = []
            if json {
                try? splitter.feed(span) { line in
                    line.withUnsafeBytes { lines.append(String(decoding: $0, as: UTF8.self)) }
                }
            } else {
                try? decoder.feed(span) { frame in frames.append(frame) }
            }
            update {
                $0.bytes += bytes
                $0.frames += frames
                $0.lines += lines
            }
        }, onEnd: { [weak self] _ in
            self?.update { $0.closed = true }
            conn.close()
        })
        update { $0.connected = true }
    }

    var current: Record { record.withLock { $0 } }

    private func update(_ change: (inout Record) -> Void) {
        let snapshot = record.withLock { r -> Record in
            change(&r)
            return r
        }
        let ready = waiters.withLock { list -> [@Sendable () -> Void] in
            var ready: [@Sendable () -> Void] = []
            list.removeAll { w in
                if w.check(snapshot) { ready.append(w.resume); return true }
                return false
            }
            return ready
        }
        for resume in ready { resume() }
    }

    /// Sends bytes (in order with earlier sends).
    func send(_ bytes: [UInt8]) {
        let queued = loop.execute { [weak self] in
            guard let self else { return }
            guard let conn else { update { $0.writeErrors.append("no connection") }; return }
            do { try conn.write(bytes); update { $0.written += bytes.count } } catch { update { $0.writeErrors.append("\(error)") } }
        }
        if !queued { update { $0.writeErrors.append("loop gone") } }
    }

    func send(line: String) { send(Array((line + "\n").utf8)) }

    func sendFrame(_ encode: @escaping @Sendable (inout [UInt8]) throws -> Void) {
        var out: [UInt8] = []
        try? encode(&out)
        send(out)
    }

    func hello(as id: String, addr: String = "127.0.0.1:1") {
        sendFrame { try Wire.encodeHello(HelloMessage(nodeID: id, nodeAddr: addr), into: &$0) }
    }

    func heartbeat(as id: String, seq: UInt64, term: UInt64 = 0, epoch: UInt64 = 0, lsn: UInt64 = 0, role: NodeRole = .replica) {
        let frame = HeartbeatFrame(seq: seq, epoch: epoch, term: term, lsn: lsn, role: role, ackSeq: 0, senderTag: Wire.fnv1a64(id))
        sendFrame { Wire.encodeHeartbeat(frame, into: &$0) }
    }

    /// Stops reading (the node's writes then pile up in the kernel and in its queue).
    func stopReading() {
        loop.execute { [weak self] in guard let self else { return }; conn?.stopReading() }
    }

    func resumeReading() {
        loop.execute { [weak self] in guard let self else { return }; conn?.resumeReading() }
    }

    /// Sets the client's socket buffers (small ones make the node's writes queue early).
    func setBuffers(_ bytes: Int32) {
        loop.execute { [weak self] in
            guard let self else { return }
            try? conn?.setReceiveBufferSize(bytes)
            try? conn?.setSendBufferSize(bytes)
        }
    }

    func close() {
        loop.execute { [weak self] in guard let self else { return }; conn?.close() }
    }

    /// Waits until `condition` holds for the record, or `timeout` passes; returns whether it held.
    func wait(timeout: Duration, _ condition: @escaping @Sendable (Record) -> Bool) async -> Bool {
        let fired = UVLocked(false)
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let resumeOnce: @Sendable (Bool) -> Void = { value in
                let first = fired.withLock { f -> Bool in
                    defer { f = true }
                    return !f
                }
                if first { continuation.resume(returning: value) }
            }
            let id = nextWaiter.withLock { n -> Int in
                n += 1
                return n
            }
            waiters.withLock { $0.append((id, condition, { resumeOnce(true) })) }
            if condition(current) {
                waiters.withLock { $0.removeAll { $0.id == id } }
                resumeOnce(true)
                return
            }
            let nanos = Int(timeout.components.seconds) * 1_000_000_000 + Int(timeout.components.attoseconds / 1_000_000_000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanos)) { [waiters] in
                waiters.withLock { $0.removeAll { $0.id == id } }
                resumeOnce(false)
            }
        }
    }
}

/// A listener that never accepts and whose backlog is full: dials to it hang until their timeout.
final class Blackhole: @unchecked Sendable {
    let loop: UVLoop
    let port: Int

    init() throws {
        let loop = try UVLoop(name: "blackhole")
        self.loop = loop
        port = loop.executeAndWait { () -> Int in
            let stuck = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0, backlog: 1) { _ in }
            stuck.leavesConnectionsPending = true
            // Fill the accept queue; these fillers are never accepted either.
            for _ in 0..<4 {
                _ = try? UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: stuck.port, timeoutMs: 60_000) { _ in }
            }
            return stuck.port
        } ?? 0
    }

    func close() { loop.shutdown() }
}

/// Sends `datagrams` from a socket of its own to 127.0.0.1:`port`; how many the kernel took.
func sendDatagrams(_ datagrams: [[UInt8]], to port: Int) throws -> Int {
    let loop = try UVLoop(name: "datagram-sender")
    defer { loop.shutdown() }
    let sent: Int?? = loop.executeAndWait { () -> Int? in
        do {
            let socket = try UVUDPSocket(loop: loop, host: "127.0.0.1", port: 0)
            defer { socket.close() }
            let to = try UVDatagramTarget(host: "127.0.0.1", port: port)
            var batch = UVDatagramBatch()
            for d in datagrams { batch.append(to: to) { out, _ in out += d } }
            return socket.send(&batch)
        } catch {
            return nil
        }
    }
    return (sent ?? nil) ?? 0
}
