import CLibUV

/// A libuv failure: the operation that failed, libuv's error code, its name (`uv_err_name`)
/// and its message (`uv_strerror`).
public struct UVError: Error, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// libuv's (negative) error code.
    public let code: Int32
    /// libuv's name for the code, e.g. `ECONNREFUSED`.
    public let name: String
    /// libuv's message for the code, e.g. `connection refused`.
    public let message: String
    /// What was being done, e.g. `connect to 127.0.0.1:1`.
    public let operation: String

    /// Wraps a libuv error code.
    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
        name = String(cString: uv_err_name(code))
        message = String(cString: uv_strerror(code))
    }

    public var description: String { "\(operation): \(name) (\(message))" }

    /// The failure without the operation (`ECONNREFUSED (connection refused)`), for a message
    /// that names the operation and its address itself.
    public var cause: String { "\(name) (\(message))" }

    /// `error`'s cause when it is a libuv failure, else its description.
    public static func cause(of error: any Error) -> String {
        (error as? UVError)?.cause ?? "\(error)"
    }

    /// Throws when a libuv call returned a negative status.
    @inline(__always)
    static func check(_ status: Int32, _ operation: @autoclosure () -> String) throws(UVError) {
        if status < 0 { throw UVError(code: status, operation: operation()) }
    }

    public static let eof = UV_EOF.rawValue
    public static let timedOut = UV_ETIMEDOUT.rawValue
    public static let canceled = UV_ECANCELED.rawValue
    public static let connectionRefused = UV_ECONNREFUSED.rawValue
    public static let connectionReset = UV_ECONNRESET.rawValue
    public static let invalidArgument = UV_EINVAL.rawValue
    public static let notConnected = UV_ENOTCONN.rawValue
    public static let brokenPipe = UV_EPIPE.rawValue
    /// The process (EMFILE) or the system (ENFILE) has no descriptor left.
    public static let tooManyOpenFiles = UV_EMFILE.rawValue
    public static let fileTableFull = UV_ENFILE.rawValue

    /// True for EMFILE and ENFILE: out of descriptors.
    public var isOutOfDescriptors: Bool { code == Self.tooManyOpenFiles || code == Self.fileTableFull }
}
