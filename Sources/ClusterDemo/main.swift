import Dispatch
import UV

// Smoke run of the libuv layer: a loop on its own thread, a timer, and a loopback echo.
// (A later step turns `make run` into a loopback cluster.)

func log(_ text: String) { print("[\(Double(UVLoop.hrtimeNs() / 1_000_000) / 1000)s] \(text)") }

let loop = try UVLoop(name: "demo")
// Two things must finish: the timer's three ticks and the echo.
let finished = DispatchSemaphore(value: 0)
let message = "hello over loopback"

loop.execute {
    let timer = try! UVTimer(loop: loop)
    var ticks = 0
    try! timer.start(timeoutMs: 0, repeatMs: 100) {
        ticks += 1
        log("timer tick \(ticks)")
        if ticks == 3 {
            timer.close()
            finished.signal()
        }
    }
    let listener = try! UVTCPListener(loop: loop, host: "127.0.0.1", port: 0) { conn in
        log("server: accepted \(conn.peerAddress.map { "\($0)" } ?? "?")")
        try! conn.startReading(onRead: { bytes in
            bytes.withUnsafeBytes { log("server: read \($0.count) bytes, echoing") }
            try? conn.write(bytes)
        }, onEnd: { _ in
            log("server: peer half-closed; closing")
            conn.shutdown { _ in conn.close() }
        })
    }
    log("listening on \(listener.boundAddress)")
    try! UVTCPConnection.connect(loop: loop, host: "127.0.0.1", port: listener.port, timeoutMs: 2000) { result in
        switch result {
        case .failure(let error):
            log("client: \(error)")
            listener.close()
            finished.signal()
        case .success(let client):
            log("client: connected from \(client.localAddress.map { "\($0)" } ?? "?")")
            var echoed = ""
            try! client.startReading(onRead: { bytes in
                bytes.withUnsafeBytes { echoed += String(decoding: $0, as: UTF8.self) }
            }, onEnd: { _ in
                log("client: echo came back: \"\(echoed)\" (\(echoed == message ? "matches" : "DIFFERS"))")
                client.close()
                listener.close()
                finished.signal()
            })
            try! client.write(message)
            client.shutdown()
        }
    }
}

// Wait for both (bounded), then shut the loop down and report.
for _ in 0..<2 where finished.wait(timeout: .now() + 5) == .timedOut {
    log("timed out waiting for the smoke run")
}
loop.shutdown()
log("loop closed, uv_loop_close returned \(loop.closeStatus)")
