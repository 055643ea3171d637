import ClusterCore
import Logging
import UV

/// The one HTTP request a node understands, `GET /metrics`, answered with the application's
/// exporter (Prometheus text format) and the connection closed: enough for a scraper, and no
/// more. Used on a node's own port (a connection whose first bytes are `GET `) and by
/// ``MetricsEndpoint``.
enum MetricsHTTP {
    /// The longest request head read; a longer one is answered 431 and closed.
    static let maxHeadBytes = 8192

    /// What to do with the head bytes received so far: wait for more, or answer (and close).
    enum Step: Equatable {
        case needMore
        case respond([UInt8])
    }

    /// Looks at the request head received so far (`buffer`).
    static func step(_ buffer: [UInt8], exporter: (@Sendable () -> [UInt8])?) -> Step {
        guard let end = headEnd(buffer) else {
            return buffer.count > maxHeadBytes ? .respond(response(431, "request head too large\n")) : .needMore
        }
        let requestLine = buffer[..<end].split(separator: UInt8(ascii: "\r"), maxSplits: 1).first ?? []
        let parts = requestLine.split(separator: UInt8(ascii: " "))
        guard parts.count == 3, parts[2].starts(with: Array("HTTP/1.".utf8)) else {
            return .respond(response(400, "bad request\n"))
        }
        guard parts[0].elementsEqual("GET".utf8) else { return .respond(response(405, "only GET\n")) }
        let target = parts[1].split(separator: UInt8(ascii: "?"), maxSplits: 1, omittingEmptySubsequences: false).first ?? []
        guard target.elementsEqual("/metrics".utf8) else { return .respond(response(404, "not found: try /metrics\n")) }
        guard let exporter else { return .respond(response(404, "this node exports no metrics\n")) }
        return .respond(response(200, exporter(), contentType: "text/plain; version=0.0.4; charset=utf-8"))
    }

    private static func headEnd(_ buffer: [UInt8]) -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4)
        where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }

    private static func response(_ status: Int, _ body: String) -> [UInt8] {
        response(status, Array(body.utf8), contentType: "text/plain; charset=utf-8")
    }

    private static func response(_ status: Int, _ body: [UInt8], contentType: String) -> [UInt8] {
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 431: "Request Header Fields Too Large"][status] ?? "Error"
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + body
    }
}

/// Serves `GET /metrics` on an address of its own (the agent's `--metrics HOST:PORT`), on a
/// loop of its own. Each request is answered with `exporter()` and its connection closed.
public final class MetricsEndpoint: @unchecked Sendable {
    private let loop: UVLoop
    /// Keeps the listener (touched on the loop thread only) until the loop shuts down.
    private var holder: ListenerHolder?
    /// The address it listens on (the kernel's port when 0 was asked for).
    public let boundAddress: HostPort

    /// Connections open at once at most; more are closed at once (a scraper needs one).
    public static let maxConnections = 64

    /// Listens on `address`. Throws when it cannot bind.
    public init(address: HostPort, exporter: @escaping @Sendable () -> [UInt8]) throws(ClusterError) {
        do {
            loop = try UVLoop(name: "metrics")
        } catch {
            throw .io("cannot start the metrics loop: \(error)")
        }
        let loop = self.loop
        // The listener lives on the loop thread; only its address comes back.
        let holder = ListenerHolder()
        let bound: Result<HostPort, UVError>? = loop.executeAndWait { () -> Result<HostPort, UVError> in
            do throws(UVError) {
                let listener = try UVTCPListener(loop: loop, host: address.host, port: address.port) { conn in
                    guard holder.open < MetricsEndpoint.maxConnections else { return conn.close() }
                    holder.open += 1
                    MetricsEndpoint.serve(conn, exporter: exporter) { holder.open -= 1 }
                }
                holder.listener = listener
                return .success(HostPort(host: listener.boundAddress.host, port: listener.port))
            } catch {
                return .failure(error)
            }
        }
        switch bound {
        case .success(let addr)?:
            self.holder = holder
            boundAddress = addr
        case .failure(let error)?:
            loop.shutdown()
            throw .io("cannot listen for metrics on \(address): \(UVError.cause(of: error))")
        case nil:
            loop.shutdown()
            throw .io("the metrics loop stopped")
        }
    }

    deinit {
        loop.shutdown()  // closes the listener and any connection still open
    }

    /// Stops listening.
    public func stop() {
        loop.shutdown()
    }

    /// A connection that has not sent a whole request by then is closed.
    static let requestTimeoutMs: UInt64 = 10_000

    private final class ListenerHolder: @unchecked Sendable {
        var listener: UVTCPListener?  // loop thread only
        var open = 0  // loop thread only: connections being served
    }

    private static func serve(_ conn: UVTCPConnection, exporter: @escaping @Sendable () -> [UInt8], closed: @escaping () -> Void) {
        var head: [UInt8] = []
        let timer = try? UVTimer(loop: conn.loop)
        try? timer?.start(timeoutMs: requestTimeoutMs) { [weak conn] in conn?.close() }
        conn.onClose = {
            timer?.close()
            closed()
        }
        do {
            try conn.startReading(onRead: { [unowned conn] bytes in
                bytes.withUnsafeBytes { head += $0 }
                switch MetricsHTTP.step(head, exporter: exporter) {
                case .needMore: return
                case .respond(let response):
                    conn.stopReading()
                    try? conn.write(response)
                    conn.closeAfterFlush(timeoutMs: 2000)
                }
            }, onEnd: { [unowned conn] _ in conn.close() })
        } catch {
            conn.close()
        }
    }
}
