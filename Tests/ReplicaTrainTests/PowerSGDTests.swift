import Foundation
import Testing
import ReplicaCore
import ReplicaDistributed
@testable import ReplicaTrain
import _ReplicaTestSupport

/// `--grad-compression powersgd` (issue 20) on thread ranks: the reducer computes exactly the
/// algorithm (against a plain Double reference of it), the checkpoint keeps its state so that a
/// stopped run resumes bit for bit, another rank count shares the error feedback, and a failed
/// write still runs every collective. Under mpirun: CompressionCommandTests.
@Suite struct PowerSGDTests {
    /// Four parameters: two matrices PowerSGD compresses at rank 2, a vector and a matrix too
    /// small for it ((6 + 5)·2 floats are not under half of its 30).
    static let shapes: [(String, [Int])] = [("w0", [24, 20]), ("v", [7]), ("small", [6, 5]), ("w1", [30, 16])]

    static func arena() -> ParameterArena {
        let arena = ParameterArena()
        for (name, shape) in shapes { arena.declare(name, shape: shape, decays: false) }
        arena.allocate()
        return arena
    }

    /// Rank `rank`'s gradients at `step`: uniform in ±(1 + rank)·1e-2, from (seed, rank, step).
    static func gradients(rank: Int, step: Int, count: Int) -> [Float] {
        var generator = SeededGenerator(seed: 11, UInt64(rank), UInt64(step))
        return (0..<count).map { _ in (generator.nextUniform() - 0.5) * Float(1 + rank) * 2e-2 }
    }

    /// The algorithm written out in Double for one matrix (n×m, row-major) over all ranks:
    /// returns the approximation and updates the ranks' errors and the shared Q (m×r).
    static func referenceStep(_ gradients: [[Double]], errors: inout [[Double]], q: inout [Double], n: Int, m: Int, r: Int) -> [Double] {
        let ranks = gradients.count
        let corrected = (0..<ranks).map { rank in zip(gradients[rank], errors[rank]).map { $0 + $1 } }
        var p = [Double](repeating: 0, count: n * r)
        for rank in 0..<ranks {
            for i in 0..<n { for k in 0..<r { for j in 0..<m { p[i * r + k] += corrected[rank][i * m + j] * q[j * r + k] } } }
        }
        for k in 0..<r {
            for j in 0..<k {
                let dot = (0..<n).reduce(0.0) { $0 + p[$1 * r + k] * p[$1 * r + j] }
                for i in 0..<n { p[i * r + k] -= dot * p[i * r + j] }
            }
            let norm = (0..<n).reduce(0.0) { $0 + p[$1 * r + k] * p[$1 * r + k] }.squareRoot()
            for i in 0..<n { p[i * r + k] /= norm }
        }
        q = [Double](repeating: 0, count: m * r)
        for rank in 0..<ranks {
            for j in 0..<m { for k in 0..<r { for i in 0..<n { q[j * r + k] += corrected[rank][i * m + j] * p[i * r + k] } } }
        }
        var approximation = [Double](repeating: 0, count: n * m)
        for i in 0..<n { for j in 0..<m { approximation[i * m + j] = (0..<r).reduce(0.0) { $0 + p[i * r + $1] * q[j * r + $1] } } }
        for rank in 0..<ranks { errors[rank] = zip(corrected[rank], approximation).map { $0 - $1 / Double(ranks) } }
        return approximation
    }

    /// Three steps through the reducer (500-float buckets: each matrix alone, the vector and the
    /// small matrix together; backward reports in two halves) against the reference. The bound:
    /// the reducer works in float32 (u = 6e-8): each value passes four products of at most 30
    /// terms (30u each at worst) and a Gram-Schmidt of two columns, which multiplies that by
    /// the condition number of P (below 10 for these random matrices), and three steps carry it
    /// on through the error and Q: 3 · 4 · 30u · 10 ≈ 2e-5 of the largest value; 1e-4 leaves margin.
    @Test(arguments: [2, 3]) func theReducerComputesPowerSGDAsTheReferenceDoes(ranks: Int) throws {
        let steps = 3, rank = 2
        let group = ThreadCommunicatorGroup(size: ranks)
        let results = Locked<[Int: [[Float]]]>([:])
        let initialQ = Locked<[String: [Float]]>([:])
        try group.run { me in
            let arena = Self.arena()
            let reducer = GradientReducer(communicator: group.communicator(rank: me), arena: arena, bucketBytes: 2000, overlap: true)
            let powerSGD = PowerSGD(communicator: group.communicator(rank: me), arena: arena, buckets: reducer.buckets, rank: rank, startStep: 0, seed: 5)
            reducer.powerSGD = powerSGD
            if me == 0 {
                for matrix in powerSGD.buckets.flatMap(\.matrices) {
                    initialQ.update { $0[matrix.name] = Array(UnsafeBufferPointer(start: powerSGD.qs.pointer + matrix.q, count: matrix.columns * matrix.rank)) }
                }
            }
            var perStep: [[Float]] = []
            for step in 0..<steps {
                let values = Self.gradients(rank: me, step: step, count: arena.count)
                for (i, value) in values.enumerated() { arena.allGradients[i] = value }
                reducer.beginBackward(step: step)
                try reducer.gradientsReady(downTo: arena.count / 2)
                try reducer.gradientsReady(downTo: 0)
                try reducer.finish()
                perStep.append(arena.allGradients.scalars)
            }
            results.update { $0[me] = perStep }
        }
        let arena = Self.arena()
        #expect(Set(initialQ.value.keys) == ["w0", "w1"], "the matrices compressed")
        var errors: [String: [[Double]]] = [:], qs = initialQ.value.mapValues { $0.map(Double.init) }
        for step in 0..<steps {
            let all = (0..<ranks).map { Self.gradients(rank: $0, step: step, count: arena.count).map(Double.init) }
            for slot in arena.slots {
                let received = results.value[0]![step][slot.range].map(Double.init)
                for other in 1..<ranks { #expect(results.value[other]![step][slot.range] == results.value[0]![step][slot.range], "rank \(other) differs from rank 0") }
                let exactSum = slot.range.map { i in all.reduce(0.0) { $0 + $1[i] } }
                let expected: [Double]
                if qs[slot.name] != nil {
                    var e = errors[slot.name] ?? Array(repeating: Array(repeating: 0, count: slot.range.count), count: ranks)
                    expected = Self.referenceStep(all.map { Array($0[slot.range]) }, errors: &e, q: &qs[slot.name]!, n: slot.shape[0], m: slot.shape[1], r: rank)
                    errors[slot.name] = e
                    let compressionError = zip(received, exactSum).map { abs($0 - $1) }.max()!
                    #expect(compressionError > 1e-3 * exactSum.map(abs).max()!, "\(slot.name) was compressed, not summed")
                } else {
                    expected = exactSum
                }
                let scale = expected.map(abs).max()!
                let difference = zip(received, expected).map { abs($0 - $1) }.max()!
                #expect(difference <= 1e-4 * scale, "step \(step) \(slot.name): off by \(difference) of \(scale)")
            }
        }
    }

    /// Before `--powersgd-start-step` nothing is compressed: a run whose start lies beyond its
    /// steps equals uncompressed training bit for bit; from step 3 on it does not.
    @Test func beforeItsStartStepPowerSGDSendsEverythingAsItIs() throws {
        let plain = DataParallelEngineTests.options(batch: 4, steps: 8)
        var late = plain
        late.gradientCompression = .powersgd
        late.powerSGDStartStep = 8
        var early = late
        early.powerSGDStartStep = 3
        let reference = try DataParallelEngineTests.train(ranks: 2, options: plain)[0].arena.allValues.scalars
        #expect(try DataParallelEngineTests.train(ranks: 2, options: late)[0].arena.allValues.scalars == reference)
        let compressed = try DataParallelEngineTests.train(ranks: 2, options: early)
        #expect(compressed[0].arena.allValues.scalars != reference)
        #expect(compressed[1].arena.allValues.scalars == compressed[0].arena.allValues.scalars, "replicas identical")
    }

    /// Stopped at step 7 (a checkpoint with every rank's error and the warm start) and resumed:
    /// the same parameters as the straight run, bit for bit; with ZeRO-1 too.
    @Test(arguments: [0, 1]) func aPowerSGDRunStoppedAndResumedEndsBitForBit(zero: Int) throws {
        let split = ElasticResumeTests.Split(ranks: 2, batch: 6)
        let tests = ElasticResumeTests()
        func options(_ directory: URL, resume: Bool = false) -> TrainingOptions {
            var options = tests.options(split, steps: 16, directory: directory, resume: resume)
            options.gradientCompression = .powersgd
            options.powerSGDStartStep = 2
            options.zeroStage = zero
            return options
        }
        let reference = try tests.train(split, options(tests.temporaryDirectory())).parameters
        let directory = tests.temporaryDirectory()
        _ = try tests.train(split, options(directory), stopAfter: 7)
        let saved = try SafeTensors.read(from: try #require(Checkpoint.newest(in: directory)).appendingPathComponent(Checkpoint.compressionFile))
        #expect(saved.order.filter { $0.hasPrefix("powersgd.error.") } == ["powersgd.error.0", "powersgd.error.1"])
        #expect(saved.order.contains("powersgd.q.transformer.h.0.mlp.c_fc.weight"))
        #expect(try tests.train(split, options(directory, resume: true)).parameters == reference)
    }

    /// The state saved by 2 ranks, restored on 3: the Qs as they were, and every rank's error
    /// the saved errors' sum over 3, so that the three still sum to what the two did (within a
    /// float32 rounding of the division and the sum).
    @Test func anotherRankCountSharesTheErrorFeedback() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("powersgd-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let savedQ = Locked<[Float]>([]), savedErrors = Locked<[Int: [Float]]>([:])
        let two = ThreadCommunicatorGroup(size: 2)
        try two.run { me in
            let arena = Self.arena()
            let powerSGD = PowerSGD(communicator: two.communicator(rank: me), arena: arena, buckets: arena.buckets(maxBytes: 2000), rank: 2, startStep: 0, seed: 5)
            let errors = Self.gradients(rank: me, step: 9, count: arena.count)
            for matrix in powerSGD.buckets.flatMap(\.matrices) { (powerSGD.errors.pointer + matrix.range.lowerBound).update(from: Array(errors[matrix.range]), count: matrix.range.count) }
            savedErrors.update { $0[me] = Array(UnsafeBufferPointer(start: powerSGD.errors.pointer, count: arena.count)) }
            if me == 0 { savedQ.update { $0 = Array(UnsafeBufferPointer(start: powerSGD.qs.pointer, count: powerSGD.qs.count)) } }
            let stream = powerSGD.checkpointStream()
            if me == 0 {
                try SafeTensors.write(streaming: stream.entries, to: url, produce: stream.produce)
            } else {
                try stream.finish()
            }
        }
        let restored = Locked<[Int: [Float]]>([:]), restoredQ = Locked<[Int: [Float]]>([:])
        let three = ThreadCommunicatorGroup(size: 3)
        try three.run { me in
            let arena = Self.arena()
            let powerSGD = PowerSGD(communicator: three.communicator(rank: me), arena: arena, buckets: arena.buckets(maxBytes: 2000), rank: 2, startStep: 0, seed: 99)
            let note = try powerSGD.restore(from: url)
            #expect(note?.contains("2 ranks is shared among 3") == true)
            restored.update { $0[me] = Array(UnsafeBufferPointer(start: powerSGD.errors.pointer, count: arena.count)) }
            restoredQ.update { $0[me] = Array(UnsafeBufferPointer(start: powerSGD.qs.pointer, count: powerSGD.qs.count)) }
        }
        for me in 0..<3 { #expect(restoredQ.value[me] == savedQ.value, "rank \(me)'s Q") }
        let count = Self.arena().count
        for i in 0..<count {
            let before = Double(savedErrors.value[0]![i]) + Double(savedErrors.value[1]![i])
            let after = (0..<3).reduce(0.0) { $0 + Double(restored.value[$1]![i]) }
            #expect(abs(after - before) <= 1e-6 * max(abs(before), 1e-3), "element \(i): \(after) against \(before)")
        }
        #expect(restored.value[0]![Self.arena().slot(named: "v")!.range].allSatisfy { $0 == 0 }, "no error outside the compressed matrices")
    }

    /// Rank 0's file write fails in the middle of rank 1's error buffer: rank 0's `finish()` runs
    /// the broadcasts it had not reached, so rank 1 (which streams everything) is not left waiting.
    @Test func aFailedWriteStillRunsEveryCollective() throws {
        struct Full: Error {}
        let group = ThreadCommunicatorGroup(size: 2)
        try group.run { me in
            let arena = ParameterArena()
            arena.declare("big", shape: [PowerSGD.checkpointChunk / 512 + 1, 1024], decays: false)
            arena.allocate()
            let powerSGD = PowerSGD(communicator: group.communicator(rank: me), arena: arena, buckets: arena.buckets(maxBytes: 1 << 30), rank: 4, startStep: 0, seed: 1)
            let stream = powerSGD.checkpointStream()
            #expect(stream.entries.map(\.name) == ["powersgd.q.big", "powersgd.error.0", "powersgd.error.1"])
            guard me == 0 else { return try stream.finish() }
            var written = 0
            #expect(throws: Full.self) {
                do {
                    for index in stream.entries.indices {
                        try stream.produce(index) { bytes in
                            written += bytes.count
                            if written > 12 << 20 { throw Full() }
                        }
                    }
                } catch {
                    try stream.finish()
                    throw error
                }
            }
        }
    }
}
