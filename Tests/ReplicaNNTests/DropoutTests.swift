import Testing
import ReplicaCore
import ReplicaNN
import ReplicaAVX512
import _ReplicaTestSupport

/// Kept fraction of 200 000 elements: its standard deviation is √(p(1 − p)/n) ≈ 0.001 at p = 0.3.
private let keptFractionTolerance = 0.005

/// Which elements a dropout layer keeps at its current context: forward on ones.
private func keptElements(_ layer: Dropout, count: Int) -> [Bool] {
    layer.forward(Tensor(shape: [count], values: [Float](repeating: 1, count: count))).scalars.map { $0 != 0 }
}

@Suite struct DropoutTests {
    @Test func sameSeedRankStepAndTagGiveTheSameMask() {
        let context = RandomContext(seed: 7, rank: 1, step: 3)
        let a = Dropout(probability: 0.5, tag: 4, context: context)
        let b = Dropout(probability: 0.5, tag: 4, context: context)
        let first = keptElements(a, count: 1000)
        #expect(first == keptElements(b, count: 1000))
        #expect(first == keptElements(a, count: 1000))        // no hidden generator state
    }

    @Test func noTwoStepAndMicroStepPairsShareAStream() {
        // `--grad-accum` takes any count: the pairs of 3 steps × 200 micro-steps are all distinct streams.
        var firstWords = Set<UInt64>()
        for step in 0..<3 {
            for micro in 0..<200 {
                var generator = RandomContext(seed: 7, rank: 1, step: step, micro: micro).generator(layer: 4)
                firstWords.insert(generator.next())
            }
        }
        #expect(firstWords.count == 600)
    }

    @Test func anotherStepRankSeedOrTagGivesAnotherMask() {
        let base = RandomContext(seed: 7, rank: 1, step: 3)
        let reference = keptElements(Dropout(probability: 0.5, tag: 4, context: base), count: 1000)
        let variants = [
            Dropout(probability: 0.5, tag: 4, context: RandomContext(seed: 7, rank: 1, step: 4)),
            Dropout(probability: 0.5, tag: 4, context: RandomContext(seed: 7, rank: 2, step: 3)),
            Dropout(probability: 0.5, tag: 4, context: RandomContext(seed: 8, rank: 1, step: 3)),
            Dropout(probability: 0.5, tag: 5, context: base),
            Dropout(probability: 0.5, tag: 4, context: RandomContext(seed: 7, rank: 1, step: 3, micro: 1)),
        ]
        for layer in variants {
            let mask = keptElements(layer, count: 1000)
            let agreeing = zip(mask, reference).filter { $0 == $1 }.count
            #expect(agreeing > 400 && agreeing < 600, "masks agree on \(agreeing) of 1000 (independent: ~500)")
        }
    }

    @Test func advancingTheContextStepChangesTheMask() {
        let layer = Dropout(probability: 0.5, tag: 1, context: RandomContext(seed: 1))
        let first = keptElements(layer, count: 256)
        layer.context.step += 1
        #expect(keptElements(layer, count: 256) != first)
    }

    @Test(arguments: [0.1, 0.3, 0.5] as [Float])
    func keptFractionIsNearOneMinusP(probability: Float) {
        let layer = Dropout(probability: probability, tag: 9, context: RandomContext(seed: 42, rank: 0, step: 11))
        let count = 200_000
        let kept = keptElements(layer, count: count).filter { $0 }.count
        let fraction = Double(kept) / Double(count)
        #expect(abs(fraction - (1 - Double(probability))) < keptFractionTolerance, "kept \(fraction)")
    }

    /// The mask's AVX-512 loop (where the processor has it) gives the scalar loop's result bit for
    /// bit, on a range that starts and ends off a vector's boundary, with keys whose high bits are
    /// set and every threshold's extremes: the same integer hash on each lane. ReplicaAVX512 is
    /// optimised and vectorised in a debug build too (Package.swift), so this compares the
    /// sixteen-lane code that ships.
    @Test(.enabled(if: ProcessorFeatures.avx512, "the processor has no AVX-512"))
    func maskAVX512LoopEqualsTheAVX2LoopBitForBit() {
        let n = 5_003, range = 7..<(n - 3)
        let source = UnsafeMutablePointer<Float>.allocate(capacity: n)
        let a = UnsafeMutablePointer<Float>.allocate(capacity: n), b = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { [source, a, b].forEach { $0.deallocate() } }
        for i in 0..<n { source[i] = Float(i % 97) - 48.5 }
        for key: UInt64 in [0, 0x9E37_79B9_7F4A_7C15, .max] {
            for threshold: UInt64 in [0, 429_496_730, 0xFFFF_FFFF] {
                a.initialize(repeating: 7, count: n); b.initialize(repeating: 7, count: n)
                applyDropoutMask(key: key, threshold: threshold, scale: 1.25, to: source, into: a, range: range)
                applyDropoutMaskAVX512(key: key, threshold: threshold, scale: 1.25, to: source, into: b, range: range)
                #expect((0..<n).allSatisfy { a[$0].bitPattern == b[$0].bitPattern }, "key \(key), threshold \(threshold)")
                #expect(b[0] == 7 && b[n - 1] == 7, "outside the range untouched")
            }
        }
    }

    @Test func keptElementsAreScaledByOneOverOneMinusP() {
        let layer = Dropout(probability: 0.25, tag: 2, context: RandomContext(seed: 3))
        let x = randomTensor([16, 8], seed: 5)
        let y = layer.forward(x)
        var kept = 0
        for i in 0..<x.count where y[i] != 0 {
            #expect(y[i] == x[i] * (1 / 0.75))
            kept += 1
        }
        #expect(kept > 0 && kept < x.count)
    }

    @Test func maskDependsOnTheElementIndexNotTheShape() {
        let context = RandomContext(seed: 5, rank: 0, step: 2)
        let flat = Dropout(probability: 0.5, tag: 3, context: context).forward(Tensor(shape: [24], values: [Float](repeating: 1, count: 24)))
        let matrix = Dropout(probability: 0.5, tag: 3, context: context).forward(Tensor(shape: [4, 6], values: [Float](repeating: 1, count: 24)))
        #expect(flat.scalars == matrix.scalars)
    }

    @Test func evaluationModeAndZeroProbabilityAreTheIdentity() {
        let x = randomTensor([5, 7], seed: 6), g = randomTensor([5, 7], seed: 7)
        let layers = [Dropout(probability: 0.5, tag: 1, mode: .evaluation), Dropout(probability: 0, tag: 1)]
        for layer in layers {
            let y = layer.forward(x)
            #expect(y.scalars == x.scalars)
            #expect(y.data == x.data, "the identity returns its argument, no copy on the hot path")
            #expect(layer.backward(g).scalars == g.scalars)
        }
    }

    @Test func gradientsMatchFiniteDifferences() {
        let layer = Dropout(probability: 0.3, tag: 8, context: RandomContext(seed: 2, rank: 1, step: 5))
        let x = randomTensor([6, 10], seed: 1), r = randomTensor([6, 10], seed: 2)
        let results = checkGradients(arena: nil, inputs: [x],
            loss: { dot(layer.forward(x), r) },
            gradients: { _ = layer.forward(x); return [layer.backward(r)] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(result)") }
    }

    @Test func backwardUsesTheForwardsMaskEvenAfterTheStepAdvances() {
        let context = RandomContext(seed: 9)
        let mask = keptElements(Dropout(probability: 0.5, tag: 6, context: context), count: 64)
        let layer = Dropout(probability: 0.5, tag: 6, context: context)
        _ = layer.forward(randomTensor([64], seed: 3))
        layer.context.step += 1
        let dx = layer.backward(Tensor(shape: [64], values: [Float](repeating: 1, count: 64)))
        #expect(dx.scalars == mask.map { $0 ? 2 : 0 })
    }
}
