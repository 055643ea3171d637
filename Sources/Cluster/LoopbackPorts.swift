import UV

/// Free TCP ports on 127.0.0.1, for tests and demos that must tell nodes each other's addresses
/// before they start: the ports are taken by binding port 0 (all at once, so they differ) and
/// released again. Another process could take one in between; on a test machine that is rare.
public enum LoopbackPorts {
    public static func reserve(_ count: Int) throws(ClusterError) -> [Int] {
        let loop: UVLoop
        do { loop = try UVLoop(name: "ports") } catch { throw .io("cannot start a loop: \(error)") }
        defer { loop.shutdown() }
        let result = loop.executeAndWait { () -> [Int] in
            let listeners = (0..<count).compactMap { _ in
                try? UVTCPListener(loop: loop, host: "127.0.0.1", port: 0, onConnection: { $0.close() })
            }
            defer { for l in listeners { l.close() } }
            return listeners.map(\.port)
        } ?? []
        guard result.count == count else { throw .io("could not reserve \(count) loopback ports") }
        return result
    }
}
