import CLibUV
import Glibc

/// Small file operations on libuv's `uv_fs_*`, enough to keep a little state durable. The
/// synchronous ones run on the calling thread (no callback); `writeAtomically(path:bytes:on:
/// completion:)` runs on libuv's thread pool and reports to the loop.
///
/// Ownership: each synchronous call allocates one `uv_fs_t`, cleans it up with
/// `uv_fs_req_cleanup` after every operation and frees it before returning.
public enum UVFile {
    /// Replaces the file at `path` with `bytes`, durably: write a temporary file beside it,
    /// `fsync` it, `rename` it over `path`, then `fsync` the directory so the rename itself
    /// survives a crash. A reader sees the old content or the new, never a mix. Runs on the
    /// calling thread: on a loop thread it stalls the loop for two fsyncs.
    public static func writeAtomically(path: String, bytes: [UInt8]) throws(UVError) {
        try writeAtomically(path: path, bytes: bytes, beforeSync: nil)
    }

    /// Does what `writeAtomically(path:bytes:)` does, on libuv's thread pool, so that the loop
    /// thread goes on with its other callbacks meanwhile. `completion` runs exactly once, on the
    /// loop thread: with nil once the new content is durable, or with the error (the file then
    /// holds its old content or the new). When the loop shuts down before the write has started,
    /// the write is not done and `completion` gets `ECANCELED`; a write already under way is
    /// finished first (shutdown waits for it) and reports its outcome. Call it on the loop
    /// thread.
    ///
    /// Ownership: the thread-pool request belongs to `UVLoop.runInThreadPool`; the pool thread
    /// holds its own reference to `bytes` (an immutable value) and allocates and frees its own
    /// `uv_fs_t`, as the synchronous call does.
    public static func writeAtomically(path: String, bytes: [UInt8], on loop: UVLoop, completion: @escaping (UVError?) -> Void) {
        writeAtomically(path: path, bytes: bytes, on: loop, beforeSync: nil, completion: completion)
    }

    /// `writeAtomically(path:bytes:on:completion:)` with a test hook: `beforeSync` runs on the
    /// pool thread after the bytes are written and before the first fsync.
    package static func writeAtomically(
        path: String, bytes: [UInt8], on loop: UVLoop, beforeSync: (@Sendable () -> Void)?,
        completion: @escaping (UVError?) -> Void
    ) {
        onThreadPool(of: loop, writing: path, completion: completion) { () throws(UVError) in
            try writeAtomically(path: path, bytes: bytes, beforeSync: beforeSync)
        }
    }

    /// Runs `work` (a write of `path`) on `loop`'s thread pool; `completion` gets its outcome on
    /// the loop thread (`ECANCELED` when the loop shut down before it started).
    private static func onThreadPool(
        of loop: UVLoop, writing path: String, completion: @escaping (UVError?) -> Void,
        _ work: @escaping @Sendable () throws(UVError) -> Void
    ) {
        loop.runInThreadPool({ () -> Result<Void, UVError> in
            do throws(UVError) {
                try work()
                return .success(())
            } catch {
                return .failure(error)
            }
        }, completion: { outcome in
            switch outcome {
            case .success?: completion(nil)
            case .failure(let error)?: completion(error)
            case nil: completion(UVError(code: UVError.canceled, operation: "write \(path) (loop is shutting down)"))
            }
        })
    }

    /// One `uv_fs_t` for a run of synchronous calls, cleaned up after each and freed by `free()`.
    private struct Request {
        let req = UnsafeMutablePointer<uv_fs_t>.allocate(capacity: 1)

        func free() { req.deallocate() }

        /// Runs one `uv_fs_*` call; its status, or the error named `what`. `inspect` reads the
        /// request (a stat's buffer) before the cleanup.
        @discardableResult
        func run(_ what: String, inspect: (UnsafeMutablePointer<uv_fs_t>) -> Void = { _ in }, _ call: (UnsafeMutablePointer<uv_fs_t>) -> Int32) throws(UVError) -> Int32 {
            let status = call(req)
            defer { uv_fs_req_cleanup(req) }
            try UVError.check(status, what)
            inspect(req)
            return status
        }

        /// Writes all of `bytes` at `offset` of `fd`.
        func write(_ bytes: [UInt8], to fd: Int32, at offset: Int, _ what: String) throws(UVError) {
            var written = 0
            while written < bytes.count {
                let count = try run(what) { req in
                    bytes.withUnsafeBytes { raw -> Int32 in
                        var buf = uv_buf_init(
                            UnsafeMutablePointer(mutating: raw.baseAddress!.advanced(by: written).assumingMemoryBound(to: CChar.self)),
                            UInt32(raw.count - written))
                        return uv_fs_write(nil, req, fd, &buf, 1, Int64(offset + written), nil)
                    }
                }
                if count == 0 { throw UVError(code: UV_EIO.rawValue, operation: "\(what): no progress") }
                written += Int(count)
            }
        }

        /// `fsync` of the directory holding `path` (a new entry in it survives a crash).
        func syncDirectory(of path: String) throws(UVError) {
            let dir = directory(of: path)
            let dirfd = try run("open \(dir)") { uv_fs_open(nil, $0, dir, O_RDONLY | O_DIRECTORY, 0, nil) }
            defer { _ = try? run("close \(dir)") { uv_fs_close(nil, $0, dirfd, nil) } }
            try run("fsync \(dir)") { uv_fs_fsync(nil, $0, dirfd, nil) }
        }
    }

    static func writeAtomically(path: String, bytes: [UInt8], beforeSync: (@Sendable () -> Void)?) throws(UVError) {
        let temp = path + ".tmp"
        let request = Request()
        defer { request.free() }
        let fd = try request.run("open \(temp)") { uv_fs_open(nil, $0, temp, O_WRONLY | O_CREAT | O_TRUNC, 0o600, nil) }
        var closed = false
        defer { if !closed { _ = try? request.run("close") { uv_fs_close(nil, $0, fd, nil) } } }
        try request.write(bytes, to: fd, at: 0, "write \(temp)")
        beforeSync?()
        try request.run("fsync \(temp)") { uv_fs_fsync(nil, $0, fd, nil) }
        closed = true
        try request.run("close \(temp)") { uv_fs_close(nil, $0, fd, nil) }
        try request.run("rename \(temp) to \(path)") { uv_fs_rename(nil, $0, temp, path, nil) }
        try request.syncDirectory(of: path)
    }

    /// Writes `bytes` at `offset` of the file at `path` and makes them durable (`fdatasync`), in
    /// place: no temporary file, no rename. A file that does not exist yet (or is shorter) is
    /// first extended to `size` bytes of zeros, and then, once, made durable with its directory
    /// entry (`fsync` of the file and of the directory). On libuv's thread pool; `completion` runs
    /// on the loop thread. `beforeSync` (tests): runs on the pool thread before the sync.
    package static func writeInPlace(
        path: String, offset: Int, bytes: [UInt8], size: Int, on loop: UVLoop, beforeSync: (@Sendable () -> Void)?,
        completion: @escaping (UVError?) -> Void
    ) {
        onThreadPool(of: loop, writing: path, completion: completion) { () throws(UVError) in
            try writeInPlace(path: path, offset: offset, bytes: bytes, size: size, beforeSync: beforeSync)
        }
    }

    /// The synchronous `writeInPlace` (the pool thread's part; tests).
    package static func writeInPlace(path: String, offset: Int, bytes: [UInt8], size: Int, beforeSync: (@Sendable () -> Void)?) throws(UVError) {
        let request = Request()
        defer { request.free() }
        let fd = try request.run("open \(path)") { uv_fs_open(nil, $0, path, O_RDWR | O_CREAT, 0o600, nil) }
        var closed = false
        defer { if !closed { _ = try? request.run("close") { uv_fs_close(nil, $0, fd, nil) } } }
        var fileSize: UInt64 = 0
        try request.run("fstat \(path)", inspect: { fileSize = $0.pointee.statbuf.st_size }) { uv_fs_fstat(nil, $0, fd, nil) }
        let created = fileSize < UInt64(size)
        if created { try request.run("ftruncate \(path)") { uv_fs_ftruncate(nil, $0, fd, Int64(size), nil) } }
        try request.write(bytes, to: fd, at: offset, "write \(path)")
        beforeSync?()
        if created {
            try request.run("fsync \(path)") { uv_fs_fsync(nil, $0, fd, nil) }
        } else {
            try request.run("fdatasync \(path)") { uv_fs_fdatasync(nil, $0, fd, nil) }
        }
        closed = true
        try request.run("close \(path)") { uv_fs_close(nil, $0, fd, nil) }
        if created { try request.syncDirectory(of: path) }
    }

    /// The whole content of the file at `path`, or nil when there is no such file.
    public static func read(path: String, maxBytes: Int = 1 << 20) throws(UVError) -> [UInt8]? {
        let req = UnsafeMutablePointer<uv_fs_t>.allocate(capacity: 1)
        defer { req.deallocate() }
        let fd = uv_fs_open(nil, req, path, O_RDONLY, 0, nil)
        uv_fs_req_cleanup(req)
        if fd == UV_ENOENT.rawValue { return nil }
        try UVError.check(fd, "open \(path)")
        defer {
            _ = uv_fs_close(nil, req, fd, nil)
            uv_fs_req_cleanup(req)
        }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { raw -> Int32 in
                var buf = uv_buf_init(raw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(raw.count))
                let n = uv_fs_read(nil, req, fd, &buf, 1, Int64(out.count), nil)
                uv_fs_req_cleanup(req)
                return n
            }
            try UVError.check(n, "read \(path)")
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<Int(n)])
            if out.count > maxBytes { throw UVError(code: UV_EFBIG.rawValue, operation: "read \(path): over \(maxBytes) bytes") }
        }
    }

    /// Writes all of `bytes` to the open descriptor `fd` (standard output is 1) on the calling
    /// thread, unbuffered, going on after short writes and interruptions.
    public static func writeAll(fd: Int32, _ bytes: [UInt8]) throws(UVError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                throw UVError(code: -errno, operation: "write to descriptor \(fd)")
            }
            offset += n
        }
    }

    /// Reads the open descriptor `fd` (standard input is 0) to its end on the calling thread.
    public static func readAll(fd: Int32, maxBytes: Int = 1 << 20) throws(UVError) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = Glibc.read(fd, &chunk, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw UVError(code: -errno, operation: "read descriptor \(fd)")
            }
            if n == 0 { return out }
            out += chunk[0..<n]
            if out.count > maxBytes { throw UVError(code: UV_EFBIG.rawValue, operation: "read descriptor \(fd): over \(maxBytes) bytes") }
        }
    }

    /// Creates the directory at `path` (and its missing parents); an existing one is fine.
    public static func makeDirectories(path: String) throws(UVError) {
        let req = UnsafeMutablePointer<uv_fs_t>.allocate(capacity: 1)
        defer { req.deallocate() }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") {
            prefix += part
            let status = uv_fs_mkdir(nil, req, prefix, 0o700, nil)
            uv_fs_req_cleanup(req)
            if status < 0 && status != UV_EEXIST.rawValue { throw UVError(code: status, operation: "mkdir \(prefix)") }
            prefix += "/"
        }
    }

    /// Removes the file at `path`; a missing file is fine.
    public static func remove(path: String) throws(UVError) {
        let req = UnsafeMutablePointer<uv_fs_t>.allocate(capacity: 1)
        defer { req.deallocate() }
        let status = uv_fs_unlink(nil, req, path, nil)
        uv_fs_req_cleanup(req)
        if status < 0 && status != UV_ENOENT.rawValue { throw UVError(code: status, operation: "unlink \(path)") }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}
