import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaDistributed

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: sgemm GFLOP/s, all-reduce bus bandwidth, and the training step.",
        subcommands: [BenchGEMM.self, BenchAllReduce.self, BenchStep.self]
    )
}

struct BenchGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "sgemm GFLOP/s (C = A·B, float32, row-major) through OpenBLAS.",
        discussion: "Example: replica bench gemm --sizes 1024,512x768x1024 --threads 1 --json"
    )

    @Option(help: "Comma-separated sizes: N for N×N×N, or MxNxK.")
    var sizes = "256,512,1024,2048"

    @Option(help: "Timed calls per size (the median is reported).")
    var iters = 10

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard iters >= 1 else { throw ValidationError("--iters \(iters) must be at least 1.") }
        _ = try SizeOption.matrixShapes(sizes)
    }

    func run() throws {
        let shapes = try SizeOption.matrixShapes(sizes)
        let context = try Runtime(runtime)
        context.log("sgemm, \(context.threads) thread(s), \(BLAS.configuration)")
        context.log(columns(["m", "n", "k", "ms/call", "GFLOP/s"], widths: [6, 6, 6, 10, 9]))
        var rows: [JSONValue] = []
        let start = Date()
        for shape in shapes {
            let result = GEMMBenchmark.run(m: shape.m, n: shape.n, k: shape.k, iterations: iters)
            context.log(String(format: "%6d %6d %6d %10.3f %9.1f", result.m, result.n, result.k, result.seconds * 1e3, result.gflops))
            rows.append(.object(["m": .integer(result.m), "n": .integer(result.n), "k": .integer(result.k),
                                 "seconds": .number(result.seconds), "gflops": .number(result.gflops)]))
        }
        context.emit(summary: [
            "task": .string("bench gemm"), "ranks": .integer(context.communicator.size), "steps": .integer(iters),
            "seconds": .number(Date().timeIntervalSince(start)), "param_count": .integer(0),
            "threads": .integer(context.threads), "blas": .string(BLAS.configuration), "results": .array(rows),
        ])
    }
}

struct BenchAllReduce: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract: "In-place float32 all-reduce: time per call and bus bandwidth, through Replica and through MPI directly.",
        discussion: """
        busbw = bytes / time × 2(p−1)/p in GB/s (nccl-tests' convention); raw_mpi_busbw_gbps is the same figure for the C wrapper called with no Swift layer around it. Example:
          mpirun -np 2 replica bench allreduce --sizes 4K,1M,64M --json
        """
    )

    @Option(help: "Comma-separated message sizes in bytes, with K/M/G suffixes.")
    var sizes = "4K,16K,64K,256K,1M,4M,16M,64M"

    @Option(help: "Calls per timed block (default: more for small messages).")
    var iters: Int?

    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        if let iters, iters < 1 { throw ValidationError("--iters \(iters) must be at least 1.") }
        _ = try SizeOption.bytes(sizes, multipleOf: MemoryLayout<Float>.stride)
    }

    func run() throws {
        let byteSizes = try SizeOption.bytes(sizes, multipleOf: MemoryLayout<Float>.stride)
        let context = try Runtime(runtime, requireMPI: true)
        guard let communicator = context.communicator as? MPICommunicator else { return }
        context.log("all-reduce (float32 sum, in place), \(communicator.size) rank(s)")
        context.log(columns(["bytes", "iters", "us/call", "busbw GB/s", "raw GB/s", "ratio"], widths: [10, 6, 11, 12, 12, 6]))
        var rows: [JSONValue] = []
        let start = Date()
        for bytes in byteSizes {
            let iterations = iters ?? AllReduceBenchmark.defaultIterations(bytes: bytes)
            let result = try AllReduceBenchmark.run(bytes: bytes, iterations: iterations, communicator: communicator)
            let ratio = result.rawBusBandwidth > 0 ? result.busBandwidth / result.rawBusBandwidth : 1
            context.log(String(format: "%10d %6d %11.1f %12.3f %12.3f %6.3f", bytes, iterations, result.seconds * 1e6,
                               result.busBandwidth, result.rawBusBandwidth, ratio))
            rows.append(.object(["bytes": .integer(bytes), "seconds": .number(result.seconds),
                                 "busbw_gbps": .number(result.busBandwidth),
                                 "raw_mpi_busbw_gbps": .number(result.rawBusBandwidth),
                                 "raw_seconds": .number(result.rawSeconds), "iters": .integer(iterations)]))
        }
        context.emit(summary: [
            "task": .string("bench allreduce"), "ranks": .integer(communicator.size),
            "steps": .integer(byteSizes.count), "seconds": .number(Date().timeIntervalSince(start)),
            "param_count": .integer(0), "results": .array(rows),
        ])
    }
}

/// Right-aligned column headings.
func columns(_ titles: [String], widths: [Int]) -> String {
    zip(titles, widths).map { String(repeating: " ", count: max(0, $1 - $0.count)) + $0 }.joined(separator: " ")
}
