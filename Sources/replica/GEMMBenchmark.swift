import Foundation
import ReplicaCore

/// Times sgemm on random matrices: what `replica bench gemm` reports.
enum GEMMBenchmark {
    public struct Result: Sendable {
        public let m, n, k: Int
        public let iterations: Int
        /// Median seconds per call.
        public let seconds: Double
        /// The fastest call's seconds.
        public let fastestSeconds: Double
        /// GFLOP/s of the median call.
        public var gflops: Double { flops / seconds / 1e9 }
        /// GFLOP/s of the fastest call.
        public var peakGFLOPs: Double { flops / fastestSeconds / 1e9 }
        var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
    }

    /// Median time of `iterations` calls C = A·B after two warm-up calls.
    public static func run(m: Int, n: Int, k: Int, iterations: Int, seed: UInt64 = 0) -> Result {
        var generator = SeededGenerator(seed: seed, 0x6765_6d6d)
        let a = Tensor(zeros: [m, k]), b = Tensor(zeros: [k, n]), c = Tensor(zeros: [m, n])
        a.fillUniform(bound: 1, using: &generator)
        b.fillUniform(bound: 1, using: &generator)
        for _ in 0..<2 { gemm(a, b, into: c) }
        var times: [Double] = []
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            gemm(a, b, into: c)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        times.sort()
        return Result(m: m, n: n, k: k, iterations: iterations, seconds: times[times.count / 2], fastestSeconds: times[0])
    }

    /// GFLOP/s of one BLAS thread on a 1024³ product, its fastest of `iterations` calls: the peak
    /// that model FLOPs utilisation divides by, per thread. The fastest, not the median: on a
    /// shared machine other load only slows a call down, and the median of five varied from 80 to
    /// 106 GFLOP/s between runs (OpenBLAS's Haswell kernels on this Zen 4). BLAS runs on one
    /// thread for the measurement and on `threads` again after it.
    public static func singleThreadGFLOPs(iterations: Int = 10, restoringThreads threads: Int) -> Double {
        BLAS.setThreadCount(1)
        defer { BLAS.setThreadCount(threads) }
        return run(m: 1024, n: 1024, k: 1024, iterations: iterations).peakGFLOPs
    }
}
