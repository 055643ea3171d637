import Dispatch
import UV

/// Free TCP ports on 127.0.0.1, for tests and demos that must tell nodes each other's addresses
/// before they start: the ports are taken by binding port 0 (all at once, so they differ) and
/// released again. Another process could take one in between; on a test machine that is rare.
public enum LoopbackPorts {
    public static func reserve(_ count: Int) throws(ClusterError) -> [Int] {
        let loop: UVLoop
        do { loop = try UVLoop(name: "ports") } catch { throw .io("cannot start a loop: \(error)") }
        defer { loop.shutdown() }
        let ports = UVLocked<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            let listeners = (0..<count).compactMap { _ in
                try? UVTCPListener(loop: loop, host: "127.0.0.1", port: 0, onConnection: { $0.close() })
            }
            ports.withLock { $0 = listeners.map(\.port) }
            for l in listeners { l.close() }
            done.signal()
        }
        done.wait()
        let result = ports.withLock { $0 }
        guard result.count == count else { throw .io("could not reserve \(count) loopback ports") }
        return result
    }
}
