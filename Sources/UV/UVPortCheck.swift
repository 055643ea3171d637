import CLibUV
import Glibc

/// Whether a port can be bound right now, for a program that must be given explicit ports (a
/// benchmark starting another project's agents, say); this project's own listeners bind port 0.
///
/// Ownership: each socket is opened and closed within `canBind`; the address is a local value
/// whose pointer lives only for the `bind` call.
public enum UVPortCheck {
    /// True when `host:port` can be bound both as a TCP and as a UDP socket (then both are closed
    /// at once, so the answer can be stale by the time the port is used: pick ports outside the
    /// kernel's ephemeral range and never the same one twice). No SO_REUSEADDR: a port still in
    /// TIME_WAIT counts as taken.
    public static func canBind(host: String, port: Int) -> Bool {
        guard port > 0, var address = try? makeSocketAddress(host: host, port: port, operation: "bind") else { return false }
        let family = Int32(address.ss_family)
        let length = socklen_t(family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        for type in [Int32(SOCK_STREAM.rawValue), Int32(SOCK_DGRAM.rawValue)] {
            let fd = socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return false }
            let bound = bind(fd, clibuv_sockaddr(&address), length) == 0
            close(fd)
            guard bound else { return false }
        }
        return true
    }
}
