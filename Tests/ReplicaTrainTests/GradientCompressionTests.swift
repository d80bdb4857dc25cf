import Foundation
import Testing
import ReplicaCore
import ReplicaDistributed
import ReplicaTrain
import _ReplicaTestSupport

/// `--grad-compression fp16|bf16` (issue 20) on thread ranks: the reducer's result is exactly the
/// 16-bit sum it promises, training with it stays within the rounding's reach of float32, and a
/// stopped run resumes bit for bit. Under mpirun: CompressionCommandTests.
@Suite struct GradientCompressionTests {
    /// An arena of 10,007 parameters in 5 tensors; rank r's gradients are random from (seed, r).
    static func arena(rank: Int) -> ParameterArena {
        let arena = ParameterArena()
        for (index, count) in [4000, 17, 3000, 2990, 1000].enumerated() { _ = arena.declare("p\(index)", shape: [count], decays: false) }
        arena.allocate()
        var generator = SeededGenerator(seed: 7, UInt64(rank))
        let gradients = arena.allGradients
        for i in 0..<arena.count { gradients[i] = (generator.nextUniform() - 0.5) * Float(1 + rank) * 1e-2 }
        return arena
    }

    /// What the reducer must produce: each rank's bucket rounded (fp16 after × 1/p), summed in
    /// rank order with a float32 addition rounded back each time, widened (fp16: × p).
    static func expected(ranks: Int, format: HalfPrecision) -> [Float] {
        let count = arena(rank: 0).count, p = Float(ranks)
        var total = [UInt16](repeating: 0, count: count)
        for rank in 0..<ranks {
            let gradients = arena(rank: rank).allGradients.scalars
            var halves = [UInt16](repeating: 0, count: count)
            gradients.withUnsafeBufferPointer { g in halves.withUnsafeMutableBufferPointer { format.compress(g, into: $0, scale: format == .fp16 ? 1 / p : 1) } }
            if rank == 0 { total = halves } else {
                halves.withUnsafeBufferPointer { h in total.withUnsafeMutableBufferPointer { format.accumulate(h, into: $0) } }
            }
        }
        var result = [Float](repeating: 0, count: count)
        total.withUnsafeBufferPointer { t in result.withUnsafeMutableBufferPointer { format.decompress(t, into: $0, scale: format == .fp16 ? p : 1) } }
        return result
    }

    @Test(arguments: [(2, HalfPrecision.bf16), (3, .bf16), (2, .fp16), (3, .fp16)])
    func theReducerSumsEachBucketIn16BitsExactlyAsPromised(ranks: Int, format: HalfPrecision) throws {
        let group = ThreadCommunicatorGroup(size: ranks)
        let results = Locked<[Int: [Float]]>([:])
        try group.run { rank in
            let arena = Self.arena(rank: rank)
            // 8 KB buckets: several, cutting tensors; backward reports them in two halves.
            let reducer = GradientReducer(communicator: group.communicator(rank: rank), arena: arena, bucketBytes: 8192, overlap: true)
            reducer.compression = format
            reducer.beginBackward(step: 0)
            try reducer.gradientsReady(downTo: arena.count / 2)
            try reducer.gradientsReady(downTo: 0)
            try reducer.finish()
            results.update { $0[rank] = arena.allGradients.scalars }
        }
        let expected = Self.expected(ranks: ranks, format: format)
        for rank in 0..<ranks { #expect(results.value[rank] == expected, "rank \(rank)") }
        // And it is not the float32 sum (the rounding happened).
        let float32 = (0..<expected.count).map { i in (0..<ranks).reduce(Float(0)) { $0 + Self.arena(rank: $1).allGradients[i] } }
        #expect(expected != float32)
    }

    static func relativeDifference(_ x: [Float], _ y: [Float]) -> Double { ElasticResumeTests.relativeDifference(x, y) }

    /// 20 steps of the test GPT on 2 ranks against float32. The bound: each step's gradient
    /// element carries at most three roundings (both ranks' values and their sum), a relative
    /// error below 3u (u = 2^-9 for bf16, 2^-11 for fp16 as long as values stay normal); Adam
    /// turns a gradient error δ into an update error of about δ, so after 20 steps of learning
    /// rate 3e-3 a parameter is off by at most 20 · 3e-3 · 3u (bf16: 3.5e-4), against parameters
    /// whose RMS is about 0.1: a relative L2 of 3.5e-3 at the very worst. The errors are
    /// independent from element to element and step to step, so the measured figure is far below.
    @Test(arguments: [(HalfPrecision.bf16, 3.5e-3), (.fp16, 1e-3)])
    func trainingWith16BitGradientsStaysWithinTheRoundingsReach(format: HalfPrecision, bound: Double) throws {
        let plain = DataParallelEngineTests.options(batch: 6, steps: 20)
        var compressed = plain
        compressed.gradientCompression = format == .bf16 ? .bf16 : .fp16
        let reference = try DataParallelEngineTests.train(ranks: 2, options: plain)
        let result = try DataParallelEngineTests.train(ranks: 2, options: compressed)
        let difference = Self.relativeDifference(result[0].arena.allValues.scalars, reference[0].arena.allValues.scalars)
        #expect(difference < bound, "\(format): relative L2 \(difference)")
        #expect(difference > 0, "the gradients travelled in 16 bits")
        #expect(result[0].arena.allValues.scalars == result[1].arena.allValues.scalars, "replicas identical")
    }

    @Test func aCompressedRunStoppedAndResumedEndsBitForBit() throws {
        let split = ElasticResumeTests.Split(ranks: 2, batch: 6)
        let tests = ElasticResumeTests()
        var straight = tests.options(split, steps: 16, directory: tests.temporaryDirectory())
        straight.gradientCompression = .bf16
        let reference = try tests.train(split, straight).parameters
        let directory = tests.temporaryDirectory()
        var first = tests.options(split, steps: 16, directory: directory)
        first.gradientCompression = .bf16
        _ = try tests.train(split, first, stopAfter: 7)
        var resumed = tests.options(split, steps: 16, directory: directory, resume: true)
        resumed.gradientCompression = .bf16
        #expect(try tests.train(split, resumed).parameters == reference)
    }

    /// ZeRO-1 with bf16: each bucket's 16-bit reduce-scatter sums every piece as the 16-bit
    /// all-reduce does (ranks in order), so the run equals plain data parallelism with bf16 up to
    /// the global norm's summation order (shard by shard), which moves the clipping factor in its
    /// last bits: within 1e-5, as ZeRO's own tests allow. 3 ranks give unequal pieces; 4 KB
    /// buckets cut tensors; clip 0.05 keeps the clipping active.
    @Test(arguments: [2, 3]) func zeroOneWithCompressionEqualsPlainDataParallelismWithIt(ranks: Int) throws {
        var plain = DataParallelEngineTests.options(batch: 4, steps: 12, bucketBytes: 4096)
        plain.gradientCompression = .bf16
        plain.clip = 0.05
        var sharded = plain
        sharded.zeroStage = 1
        let reference = try DataParallelEngineTests.train(ranks: ranks, options: plain)
        let result = try DataParallelEngineTests.train(ranks: ranks, options: sharded)
        #expect(Self.relativeDifference(result[0].arena.allValues.scalars, reference[0].arena.allValues.scalars) < 1e-5)
        for rank in 1..<ranks { #expect(result[rank].arena.allValues.scalars == result[0].arena.allValues.scalars) }
    }
}
