// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Cluster",
    products: [
        .library(name: "Cluster", targets: ["Cluster"]),
        .executable(name: "cluster", targets: ["ClusterCLI"]),
        .executable(name: "cluster-fuzz", targets: ["ClusterFuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // The agent's --config file and CLUSTER_* variables, layered. No traits: its JSON file
        // provider links full Foundation (JSONSerialization, ICU), which the agent does not map;
        // the file is parsed with FoundationEssentials' decoder instead (docs/operations.md).
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: []),
    ],
    targets: [
        // libuv, found with pkg-config; the header adds a few inline helpers.
        .systemLibrary(
            name: "CLibUV",
            path: "CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
        // The libuv wrapper: loop thread, timers, TCP. Knows nothing of clusters.
        .target(name: "UV", dependencies: ["CLibUV"], swiftSettings: strict),
        // The per-frame MAC of keyed links: BoringSSL's HMAC as swift-crypto builds and links it,
        // reset in place (no allocation per frame). See its header.
        .target(name: "CFrameMAC", path: "Sources/CFrameMAC"),
        // The lock of the cluster logic (a pthread mutex behind an opaque handle). See its header.
        .target(name: "CCoreLock", path: "Sources/CCoreLock"),
        // The pure cluster logic: types, membership, election core, wire codec. No I/O, no clock,
        // and not the libuv layer. Crypto: the cluster key's MACs and key derivation (pure
        // functions, no I/O).
        .target(
            name: "ClusterCore",
            dependencies: ["CFrameMAC", "CCoreLock", .product(name: "Crypto", package: "swift-crypto")], swiftSettings: strict),
        // The node: joins the core and the libuv layer, offers the public API.
        .target(
            name: "Cluster",
            dependencies: [
                "ClusterCore", "UV",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // A deterministic simulator of many election cores.
        .target(name: "ClusterSimulation", dependencies: ["ClusterCore"], swiftSettings: strict),
        // `cluster`: agent, members, transfer, demo, sim, bench.
        .executableTarget(
            name: "ClusterCLI",
            dependencies: [
                "Cluster", "UV", "ClusterSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: strict
        ),
        // A child process for UVTests: a peer closes mid-write while SIGPIPE is at its default.
        .executableTarget(name: "uv-pipe-check", dependencies: ["UV"], path: "Sources/UVPipeCheck", swiftSettings: strict),
        // The README's library program, exactly as the README shows it (a test compares the two):
        // built with everything else, so the README's example always compiles.
        .executableTarget(
            name: "library-example",
            dependencies: [
                "Cluster", .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/LibraryExample", swiftSettings: strict),
        // The libFuzzer target (`make fuzz`): inputs are connections to a real node runtime, and
        // go through the wire decoders too; built plainly, it replays inputs.
        .executableTarget(
            name: "ClusterFuzz",
            dependencies: ["Cluster", "ClusterCore", "UV", .product(name: "Logging", package: "swift-log")],
            path: "Fuzz/Harness", swiftSettings: strict),
        .testTarget(
            name: "ClusterFuzzTests", dependencies: ["ClusterFuzz", "Cluster", "ClusterCore"], path: "Fuzz/Tests",
            swiftSettings: strict),
        .testTarget(name: "UVTests", dependencies: ["UV"], swiftSettings: strict),
        .testTarget(
            name: "ClusterCoreTests", dependencies: ["ClusterCore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict),
        .testTarget(name: "ClusterCLITests", dependencies: ["ClusterCLI"], swiftSettings: strict),
        .testTarget(name: "ClusterSimulationTests", dependencies: ["ClusterSimulation", "ClusterCore"], swiftSettings: strict),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "Cluster", "UV", .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict),
    ]
)
