import Foundation
import Synchronization
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// The rank's thread pool (`--threads`): every part runs exactly once whatever the timing, a call
/// made inside a part runs on its caller, the pool grows and shrinks, and a matrix product split
/// across threads (by rows or by columns, every transpose, an odd edge) is the product of one
/// thread. The pool is the process's: suites running at the same time may change its size, which
/// changes only who runs the parts.
@Suite(.serialized) struct ComputePoolTests {
    @Test(arguments: [1, 2, 3, 4])
    func everyPartRunsExactlyOnce(threads: Int) {
        ComputePool.setThreadCount(threads)
        defer { ComputePool.setThreadCount(1) }
        for parts in [1, 2, 3, 7, 64] {
            for _ in 0..<300 {
                let counts = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: parts)
                for part in 0..<parts { (counts + part).initialize(to: Atomic(0)) }
                defer { counts.deinitialize(count: parts); counts.deallocate() }
                ComputePool.run(parts: parts) { part in counts[part].wrappingAdd(1, ordering: .relaxed) }
                let seen = (0..<parts).map { counts[$0].load(ordering: .relaxed) }
                #expect(seen == Array(repeating: 1, count: parts), "\(threads) threads, \(parts) parts: \(seen)")
            }
        }
    }

    /// `sum` adds one partial a range, in range order: the ranges cover 0..<count once each.
    @Test(arguments: [1, 2, 3])
    func sumAddsEveryRangeOnce(threads: Int) {
        ComputePool.setThreadCount(threads)
        defer { ComputePool.setThreadCount(1) }
        for count in [0, 1, 7, 100_000] {
            let total = ComputePool.sum(count: count, grain: 1000) { range in range.reduce(0.0) { $0 + Double($1) } }
            #expect(total == Double(count) * Double(count - 1) / 2, "\(threads) threads, count \(count)")
        }
    }

    @Test func aCallInsideAPartRunsOnItsCaller() {
        ComputePool.setThreadCount(2)
        defer { ComputePool.setThreadCount(1) }
        let total = Atomic<Int>(0)
        ComputePool.run(parts: 4) { _ in
            ComputePool.run(parts: 3) { _ in total.wrappingAdd(1, ordering: .relaxed) }
        }
        #expect(total.load(ordering: .relaxed) == 12)
    }

    @Test func rangesCoverTheCountOnceAndSmallWorkStaysWhole() {
        ComputePool.setThreadCount(3)
        defer { ComputePool.setThreadCount(1) }
        for (count, grain) in [(0, 1), (1, 1), (10, 1), (1000, 7), (50, 100)] {
            let covered = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: max(count, 1))
            for i in 0..<max(count, 1) { (covered + i).initialize(to: Atomic(0)) }
            defer { covered.deinitialize(count: max(count, 1)); covered.deallocate() }
            let calls = Atomic<Int>(0)
            ComputePool.forEachRange(count: count, grain: grain) { range in
                calls.wrappingAdd(1, ordering: .relaxed)
                for i in range { covered[i].wrappingAdd(1, ordering: .relaxed) }
            }
            #expect((0..<count).allSatisfy { covered[$0].load(ordering: .relaxed) == 1 }, "count \(count)")
            if count < 2 * grain { #expect(calls.load(ordering: .relaxed) <= 1, "count \(count) grain \(grain): one range") }
        }
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func aSplitProductEqualsTheSingleThreadedOne(transposes: (Bool, Bool)) {
        let (ta, tb) = transposes
        defer { BLAS.setThreadCount(1) }
        // Rows split (m > n), columns split (n > m); 300 and 270 are not multiples of 16.
        for (m, n, k) in [(300, 40, 200), (48, 270, 300)] {
            let a = randomTensor(ta ? [k, m] : [m, k], seed: 7), b = randomTensor(tb ? [n, k] : [k, n], seed: 8)
            let c0 = randomTensor([m, n], seed: 9), c1 = c0.copy(), c2 = c0.copy()
            BLAS.setThreadCount(1)
            gemm(a, transposingA: ta, b, transposingB: tb, into: c1, alpha: 0.5, beta: 2)
            BLAS.setThreadCount(3)
            gemm(a, transposingA: ta, b, transposingB: tb, into: c2, alpha: 0.5, beta: 2)
            // The same kernel sums each element's k products in the same order in both.
            #expect(maximumRelativeDifference(c2.scalars, c1.scalars, floor: 1) < float32SummationTolerance,
                    "m \(m) n \(n) k \(k) transposes \(ta) \(tb)")
            let expected = zip(naiveProduct(a, transposingA: ta, b, transposingB: tb, m: m, n: n, k: k), c0.scalars).map { 0.5 * $0 + 2 * $1 }
            #expect(maximumRelativeDifference(c2.scalars, expected, floor: 1) < float32SummationTolerance)
        }
    }
}
