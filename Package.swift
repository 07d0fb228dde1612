// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "swift-ttnmqtt",
    products: [
        .library(name: "TTNCore", targets: ["TTNCore"]),
        .library(name: "TTNMQTT", targets: ["TTNMQTT"]),
        .library(name: "TTNLua", targets: ["TTNLua"]),
        .library(name: "TTNHost", targets: ["TTNHost"]),
        .library(name: "TTNState", targets: ["TTNState"]),
        .library(name: "TTNSinks", targets: ["TTNSinks"]),
        .library(name: "TTNStorageIntegration", targets: ["TTNStorageIntegration"]),
        .library(name: "TTNMonitor", targets: ["TTNMonitor"]),
        .library(name: "TTNNATS", targets: ["TTNNATS"]),
        .library(name: "TTNCluster", targets: ["TTNCluster"]),
        .executable(name: "ttn-host", targets: ["ttn-host"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: ["YAML"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C libraries, found through pkg-config and installed by scripts/setup.
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"]), .brew(["mosquitto"])]
        ),
        .systemLibrary(
            name: "CLua",
            pkgConfig: "lua5.4 lua-5.4 lua54",
            providers: [.apt(["liblua5.4-dev"]), .brew(["lua"])]
        ),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CNATS", pkgConfig: "libnats", providers: [.apt(["libnats-dev"])]),
        // A lock ThreadSanitizer can see (Synchronization.Mutex hands contended locks over out of its sight).
        .target(name: "TTNSync"),
        // Everything that may raise a Lua error (longjmp) lives in C, never in a Swift frame.
        // The one JSON grammar, in C so that the Swift side and the Lua side share it.
        .target(name: "CJSON"),
        .target(name: "CLuaShim", dependencies: ["CLua", "CJSON"], exclude: ["prelude.lua"]),

        // Pure Swift: the models, topics, errors and the JSON engine, shared by every module above.
        .target(name: "TTNCore", dependencies: ["CJSON", "TTNSync"]),
        .target(
            name: "TTNMQTT",
            dependencies: [
                "TTNCore", "CMosquitto", "TTNSync",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        .target(
            name: "TTNLua",
            dependencies: ["TTNCore", "CLua", "CLuaShim", "TTNSync", .product(name: "Logging", package: "swift-log")]
        ),

        // Scripts' persistent key-value state, in SQLite.
        .target(name: "TTNState", dependencies: ["CSQLite", "TTNSync"]),

        // A C-free API over libnats: JetStream streams, pull consumers and key-value buckets.
        .target(name: "TTNNATS", dependencies: ["CNATS", "TTNSync", .product(name: "Logging", package: "swift-log")]),

        // Outputs for ttn.emit: http (async-http-client), mqtt (TTNMQTT's connection) and file.
        .target(
            name: "TTNSinks",
            dependencies: [
                "TTNMQTT", "TTNSync",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Backfill's source: the uplinks TTN's Storage Integration kept (async-http-client).
        .target(
            name: "TTNStorageIntegration",
            dependencies: [
                "TTNCore", "TTNSync", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),

        // Operating the host: the HTTP endpoint for metrics, health and status, and JSON log lines. Knows nothing of TTNHost.
        .target(
            name: "TTNMonitor",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),

        .target(
            name: "TTNHost",
            dependencies: [
                "TTNMQTT", "TTNLua", "TTNState", "TTNSinks", "TTNStorageIntegration", "TTNSync",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // Beyond one machine: ttn-host's ingest and work roles on a NATS JetStream cluster.
        .target(
            name: "TTNCluster",
            dependencies: [
                "TTNCore", "TTNHost", "TTNNATS", "TTNState", "TTNSync", .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "ttn-host",
            dependencies: [
                "TTNHost", "TTNCluster", "TTNMonitor", "TTNState", "TTNSync",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        // Examples are built with the package so they never rot.
        .executableTarget(name: "seed-client", dependencies: ["TTNMQTT"], path: "examples/seed-client"),
        .executableTarget(
            name: "closure-host",
            dependencies: ["TTNHost", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            path: "examples/closure-host"
        ),

        // The measuring side of scripts/bench.
        .executableTarget(
            name: "ttn-bench",
            dependencies: [
                "TTNHost", "TTNLua", "TTNSync", "TTNState", "TTNSinks", "TTNCluster", "TTNNATS", "CMosquitto",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Benchmarks/ttn-bench"
        ),

        // Shared by the test targets: the fuzz tests' seeded generator, mutator and random JSON, and a log capture.
        // Test-only and in no product, so its unsafe flag never reaches a package that depends on this one; -O makes
        // input generation ~10x faster in debug builds, which keeps 100,000 cases per parser affordable.
        .target(
            name: "TestSupport", dependencies: ["TTNSync", "TTNState", .product(name: "Logging", package: "swift-log")],
            path: "Tests/TestSupport", swiftSettings: [.unsafeFlags(["-O"])]
        ),
        .testTarget(name: "TTNCoreTests", dependencies: ["TTNCore", "TestSupport"], path: "Tests/TTNCoreTests"),
        .testTarget(name: "TTNMQTTTests", dependencies: ["TTNMQTT", "TestSupport"], path: "Tests/TTNMQTTTests"),
        // TTNMQTT only for the outlines of checked uplinks that the host hands to TTNLua.
        .testTarget(name: "TTNLuaTests", dependencies: ["TTNLua", "TTNMQTT", "TTNSync", "TestSupport"], path: "Tests/TTNLuaTests"),
        // CSQLite to reach the database behind TTNState's back: a newer schema version, a commit that fails.
        .testTarget(name: "TTNStateTests", dependencies: ["TTNState", "CSQLite", "TestSupport"], path: "Tests/TTNStateTests"),
        .testTarget(name: "TTNSinksTests", dependencies: ["TTNSinks", "TestSupport"], path: "Tests/TTNSinksTests"),
        .testTarget(
            name: "TTNHostTests",
            dependencies: [
                "TTNHost", "TTNSinks", "TTNState", "TTNStorageIntegration", "TestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/TTNHostTests"
        ),
        // AsyncHTTPClient to request the monitoring endpoint over real HTTP, InMemoryLogging to read what it logged.
        .testTarget(
            name: "TTNMonitorTests",
            dependencies: [
                "TTNMonitor",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"), .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/TTNMonitorTests"
        ),
        .testTarget(name: "TTNClusterTests", dependencies: ["TTNCluster", "TTNCore", "TTNNATS"], path: "Tests/TTNClusterTests"),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["TTNMQTT", "TTNHost", "TTNLua", "TTNState", "TTNSinks", "TTNSync", "TTNNATS", "TestSupport"],
            path: "Tests/IntegrationTests"
        ),
    ],
    swiftLanguageModes: [.v6]
)
