// swift-tools-version:6.0
import PackageDescription

/// Release builds use AVX2 and FMA (every machine this project runs on has them): the
/// elementwise kernels (GELU, LayerNorm, AdamW) run twice as wide as on baseline x86-64.
let hotLoopSettings: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "haswell"], .when(platforms: [.linux], configuration: .release)),
]

/// The loops of ReplicaAVX512: AVX-512 (Skylake-SP's set, which Zen 4 has too) and sixteen lanes a
/// vector, for the processors that gain from it (ProcessorFeatures.usesAVX512Loops decides at run
/// time). Optimised in a debug build too (-O), so that `swift test` runs the loops as a release
/// build does and its bit-for-bit tests compare what ships.
let avx512Settings: [SwiftSetting] = [
    .unsafeFlags(["-O", "-target-cpu", "skylake-avx512", "-Xllvm", "-force-vector-width=16"], .when(platforms: [.linux])),
]

let package = Package(
    name: "Replica",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "replica", targets: ["replica"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: - Public API

        /// The `replica` command line: ArgumentParser commands only.
        .executableTarget(
            name: "replica",
            dependencies: [
                "ReplicaCore",
                "ReplicaDistributed",
                "ReplicaNN",
                "ReplicaData",
                "ReplicaModels",
                "ReplicaTrain",
                "ReplicaStudies",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        /// Tensors, sgemm, seeded RNG, the parameter arena, sparse graphs, safetensors, FNV-1a.
        .target(name: "ReplicaCore", dependencies: ["CBLAS"], swiftSettings: hotLoopSettings),

        /// Layers with explicit forward and backward passes, optimisers, schedules.
        .target(name: "ReplicaNN", dependencies: ["ReplicaCore", "ReplicaMath", "ReplicaAVX512", "CPrefetch"],
                swiftSettings: hotLoopSettings),

        /// The elementary functions of the element-wise kernels (exp, the normal CDF, GELU, dropout's mask), inlinable.
        .target(name: "ReplicaMath", dependencies: ["ReplicaCore"], swiftSettings: hotLoopSettings),

        /// ReplicaMath's loops compiled for AVX-512, called where the processor gains from it.
        .target(name: "ReplicaAVX512", dependencies: ["ReplicaMath"], swiftSettings: avx512Settings),

        /// Data sets, tokenisers (BPE, 13a), BLEU, the sampler. Embeds Tiny Shakespeare, Cora, Multi30k.
        .target(
            name: "ReplicaData",
            dependencies: ["ReplicaCore", "CZlib"],
            resources: [.copy("Resources/tinyshakespeare.txt"), .copy("Resources/cora"), .copy("Resources/multi30k")]
        ),

        /// Models built from ReplicaNN layers: GPT, encoder–decoder, masked LM, CBOW, GAT/GCN, GraphMAE.
        .target(name: "ReplicaModels", dependencies: ["ReplicaNN"], swiftSettings: hotLoopSettings),

        /// The engine: the data-parallel loop, one task per model, checkpoints, metrics, progress.
        .target(name: "ReplicaTrain", dependencies: ["ReplicaModels", "ReplicaData", "ReplicaDistributed"]),

        /// Studies and checkpoint analyses on the engine (which never imports them), statistics, SVG plots.
        .target(
            name: "ReplicaStudies",
            dependencies: ["ReplicaTrain", "ReplicaModels", "ReplicaData", "ReplicaDistributed", "ReplicaNN", "ReplicaCore"]
        ),

        /// Communicator protocol with MPI and in-process implementations.
        .target(name: "ReplicaDistributed", dependencies: ["ReplicaCore", "MPIWrapper"]),

        // MARK: - Implementation details

        /// Open MPI found through pkg-config.
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),

        /// The only code that sees mpi.h: plain-C entry points for what Swift cannot import.
        .target(name: "MPIWrapper", dependencies: ["CMPI"]),

        /// zlib for the gzip-compressed data sets (OGB raw layout, Multi30k).
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),

        /// A cache-line prefetch (one header; nothing to link).
        .systemLibrary(name: "CPrefetch"),

        /// OpenBLAS's CBLAS interface found through pkg-config.
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),

        // MARK: - Tests

        /// Finite differences, tolerances, subprocesses, and fixtures cut from the embedded data sets.
        .target(name: "_ReplicaTestSupport", dependencies: ["ReplicaCore", "ReplicaData", "ReplicaModels"]),
        .testTarget(name: "ReplicaCoreTests", dependencies: ["ReplicaCore", "_ReplicaTestSupport"]),
        .testTarget(name: "ReplicaNNTests", dependencies: ["ReplicaNN", "ReplicaAVX512", "_ReplicaTestSupport"]),
        .testTarget(name: "ReplicaDataTests", dependencies: ["ReplicaData", "_ReplicaTestSupport"]),
        /// The models alone: gradients, shapes, names; no task or trainer.
        .testTarget(name: "ReplicaModelsTests", dependencies: ["ReplicaModels", "_ReplicaTestSupport"]),
        .testTarget(name: "ReplicaTrainTests", dependencies: ["ReplicaTrain", "_ReplicaTestSupport"]),
        /// The studies' measures and statistics.
        .testTarget(name: "ReplicaStudiesTests", dependencies: ["ReplicaStudies", "_ReplicaTestSupport"]),
        .testTarget(
            name: "ReplicaDistributedTests",
            dependencies: ["ReplicaDistributed", "MPIWrapper", "_ReplicaTestSupport"]
        ),
        .testTarget(
            name: "ReplicaIntegrationTests",
            dependencies: ["replica", "ReplicaCore", "_ReplicaTestSupport"]
        ),
    ],
    // Swift 5 mode: the engine shares raw buffers across threads on purpose (MPI progress, tests).
    swiftLanguageModes: [.v5]
)
