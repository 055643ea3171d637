/// libFuzzer's entry: one input is one connection (see `feedConnection`). A broken expectation
/// traps, so libFuzzer keeps the input as a crash. `data` is libFuzzer's buffer of `size` bytes,
/// borrowed for this call only.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let problems = feedConnection(UnsafeRawBufferPointer(start: data, count: size))
    if !problems.isEmpty { fatalError(problems.joined(separator: "\n")) }
    return 0
}

#if CLUSTER_FUZZ
/// libFuzzer's driver (in libclang_rt.fuzzer, linked by `-sanitize=fuzzer`): reads the fuzzer's
/// flags from `argv` and runs `callback` on each input. `argc` and `argv` point at the caller's
/// copies of the process arguments, valid for the whole call.
@_extern(c, "LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt
#endif
