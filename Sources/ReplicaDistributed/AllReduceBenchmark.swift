import ReplicaCore

/// Times in-place float32 sums through the `Communicator` and, in the same run, through the
/// C wrapper directly: what `replica bench allreduce` reports.
public enum AllReduceBenchmark {
    public struct Result: Sendable {
        public let bytes: Int
        public let iterations: Int
        /// Seconds per all-reduce through the Swift communicator (slowest rank).
        public let seconds: Double
        /// Seconds per all-reduce through the C wrapper called directly (slowest rank).
        public let rawSeconds: Double
        public let ranks: Int

        /// nccl-tests' bus bandwidth in GB/s (1e9 bytes): bytes/t × 2(p−1)/p.
        public var busBandwidth: Double { AllReduceBenchmark.busBandwidth(bytes: bytes, seconds: seconds, ranks: ranks) }
        public var rawBusBandwidth: Double { AllReduceBenchmark.busBandwidth(bytes: bytes, seconds: rawSeconds, ranks: ranks) }
    }

    public static func busBandwidth(bytes: Int, seconds: Double, ranks: Int) -> Double {
        guard seconds > 0 else { return 0 }
        return Double(bytes) / seconds * 2 * Double(ranks - 1) / Double(ranks) / 1e9
    }

    /// Iterations that keep each size near a tenth of a second on shared memory; the same on every rank.
    public static func defaultIterations(bytes: Int) -> Int {
        max(5, min(500, (64 << 20) / max(bytes, 1) * 5))
    }

    /// Alternates `rounds` timed blocks of Swift-layer and raw calls (so drift hits both alike)
    /// and keeps each one's fastest block.
    public static func run(
        bytes: Int, iterations: Int, rounds: Int = 5, communicator: MPICommunicator
    ) throws -> Result {
        let count = bytes / MemoryLayout<Float>.stride
        // Zeros stay zero under repeated sums, so no overflow changes the work.
        let tensor = Tensor(zeros: [count])
        let buffer = tensor.buffer
        for _ in 0..<2 {
            try communicator.allReduce(buffer, .sum)
            _ = RawMPIBaseline.allReduceSeconds(buffer, iterations: 1)
        }
        var best = Double.infinity
        var bestRaw = Double.infinity
        for _ in 0..<rounds {
            try communicator.barrier()
            let start = MPIEnvironment.wallTime
            for _ in 0..<iterations { try communicator.allReduce(buffer, .sum) }
            best = min(best, (MPIEnvironment.wallTime - start) / Double(iterations))
            try communicator.barrier()
            bestRaw = min(bestRaw, RawMPIBaseline.allReduceSeconds(buffer, iterations: iterations) / Double(iterations))
        }
        var slowest = [best, bestRaw]
        try communicator.allReduceMaximum(&slowest)
        return Result(bytes: bytes, iterations: iterations, seconds: slowest[0], rawSeconds: slowest[1],
                      ranks: communicator.size)
    }
}
