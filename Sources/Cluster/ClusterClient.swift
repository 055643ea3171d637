import ClusterCore
import UV

/// A client of a node's JSON-lines service (PROTOCOL.md): one request, one answer, over a
/// connection of its own. What `cluster members` and `cluster transfer` use; scripts and tests
/// may too.
public enum ClusterClient {
    /// Sends `message` to the node at `address` and returns the first line it answers with,
    /// decoded. Waits at most `timeout` in all (connecting included). Blocks the calling thread:
    /// call it off any event loop.
    public static func request(_ message: JSONMessage, to address: HostPort, timeout: Duration) throws(ClusterError) -> JSONMessage {
        let loop: UVLoop
        do {
            loop = try UVLoop(name: "cluster-client")
        } catch {
            throw .io("cannot start a loop: \(error)")
        }
        defer { loop.shutdown() }
        let outcome = UVLocked<Result<JSONMessage, ClusterError>?>(nil)
        let done = UVSemaphore()
        let timeoutMs = max(1, timeout.nanoseconds / 1_000_000)
        let started = loop.execute {
            Exchange(loop: loop, message: message, address: address, timeoutMs: timeoutMs) { result in
                outcome.withLock { $0 = result }
                done.signal()
            }.begin()
        }
        guard started else { throw .io("the client's loop stopped") }
        done.wait()
        switch outcome.withLock({ $0 }) {
        case .success(let answer)?: return answer
        case .failure(let error)?: throw error
        case nil: throw .io("no answer from \(address)")
        }
    }

    /// The node's `status` (state, term, leader, members).
    public static func status(of address: HostPort, timeout: Duration = .seconds(5)) throws(ClusterError) -> StatusResponse {
        let answer = try request(.status, to: address, timeout: timeout)
        switch answer {
        case .statusResponse(let status): return status
        case .error(let reason): throw .io("\(address) refused: \(reason)")
        default: throw .io("\(address) answered a status request with \(String(describing: answer).prefix(80))")
        }
    }

    /// One request on the loop thread: connect, write the line, read the first answer line.
    /// Loop thread only; `finish` runs once.
    private final class Exchange {
        let loop: UVLoop
        let line: [UInt8]
        let address: HostPort
        let timeoutMs: UInt64
        var finish: ((Result<JSONMessage, ClusterError>) -> Void)?
        var conn: UVTCPConnection?
        var timer: UVTimer?
        var lines = LineSplitter()

        init(loop: UVLoop, message: JSONMessage, address: HostPort, timeoutMs: UInt64,
             finish: @escaping (Result<JSONMessage, ClusterError>) -> Void) {
            self.loop = loop
            line = message.encodeLine()
            self.address = address
            self.timeoutMs = timeoutMs
            self.finish = finish
        }

        func begin() {
            do {
                let timer = try UVTimer(loop: loop)
                self.timer = timer
                try timer.start(timeoutMs: timeoutMs) { [self] in
                    end(.failure(.io("no answer from \(address) within \(timeoutMs) ms")))
                }
                _ = try UVTCPConnection.connect(loop: loop, host: address.host, port: address.port, timeoutMs: timeoutMs) { [self] result in
                    switch result {
                    case .failure(let error): end(.failure(.io("cannot connect to \(address): \(UVError.cause(of: error))")))
                    case .success(let conn): connected(conn)
                    }
                }
            } catch {
                end(.failure(.io("cannot connect to \(address): \(UVError.cause(of: error))")))
            }
        }

        private func connected(_ conn: UVTCPConnection) {
            guard finish != nil else { return conn.close() }
            self.conn = conn
            do {
                try conn.startReading(onRead: { [self] bytes in
                    do throws(WireError) {
                        try lines.feed(bytes) { line in
                            guard finish != nil else { return }
                            do throws(WireError) {
                                end(.success(try JSONMessage.decode(line: line)))
                            } catch {
                                end(.failure(.io("\(address) answered badly: \(error)")))
                            }
                        }
                    } catch {
                        end(.failure(.io("\(address) answered badly: \(error)")))
                    }
                }, onEnd: { [self] _ in end(.failure(.io("\(address) closed the connection without answering"))) })
                try conn.write(line)
            } catch {
                end(.failure(.io("cannot talk to \(address): \(error)")))
            }
        }

        /// Reports once, and closes the handles (which releases the closures holding `self`).
        private func end(_ result: Result<JSONMessage, ClusterError>) {
            guard let finish else { return }
            self.finish = nil
            timer?.close()
            timer = nil
            conn?.close()
            conn = nil
            finish(result)
        }
    }
}
