import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

func expectGradientsMatch(_ results: [GradientCheckResult], _ comment: Comment? = nil) {
    for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(comment?.description ?? "") \(result)") }
}

@Suite struct LayerNormTests {
    @Test(arguments: [true, false])
    func gradientsMatchFiniteDifferences(bias: Bool) {
        let arena = ParameterArena()
        let layer = LayerNorm("ln", features: 6, bias: bias, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 99)
        arena.allValues.fillUniform(bound: 1, using: &generator)  // γ, β away from 1 and 0
        let x = randomTensor([5, 6], seed: 2), r = randomTensor([5, 6], seed: 3)
        expectGradientsMatch(checkGradients(arena: arena, inputs: [x],
            loss: { dot(layer.forward(x), r) }, gradients: { _ = layer.forward(x); return [layer.backward(r)] }))
    }

    /// A pre-norm block's skip connection added in the backward pass itself: the same as adding it
    /// after, to one rounding (one multiply-add instead of a product and a sum).
    @Test func backwardAddingAResidualEqualsAddingItAfter() {
        let arena = ParameterArena()
        let layer = LayerNorm("ln", features: 20, arena: arena)    // two 8-wide chunks and 4 more
        arena.allocate()
        var generator = SeededGenerator(seed: 7)
        arena.allValues.fillUniform(bound: 1, using: &generator)
        let x = randomTensor([4, 20], seed: 5), g = randomTensor([4, 20], seed: 6), skip = randomTensor([4, 20], seed: 8)
        _ = layer.forward(x)
        let separate = layer.backward(g)
        add(skip, into: separate)
        let fused = layer.backward(g, adding: skip)
        // The two ways round p = rstd·(…) and p + r differently, each by half an ulp of values of
        // order 1; where p and r cancel a relative comparison would magnify that, so the floor is 1.
        #expect(maximumRelativeDifference(fused.scalars, separate.scalars, floor: 1) < 1e-6)
        #expect(fused.scalars != layer.backward(g).scalars)      // the residual is there
    }

    @Test func rowsComeOutWithZeroMeanAndUnitVariance() {
        let arena = ParameterArena()
        let layer = LayerNorm("ln", features: 8, arena: arena)
        arena.allocate()
        layer.initialize()
        let y = layer.forward(randomTensor([3, 8], seed: 4))
        for row in 0..<3 {
            let values = (0..<8).map { Double(y[row * 8 + $0]) }
            let mean = values.reduce(0, +) / 8
            #expect(abs(mean) < 1e-5)
            #expect(abs(values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 8 - 1) < 1e-3)
        }
    }
}

@Suite struct EmbeddingTests {
    @Test func gradientsMatchFiniteDifferences() {
        let arena = ParameterArena()
        let table = Embedding("wte", count: 7, dimension: 4, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 1)
        table.initialize(standardDeviation: 1, using: &generator)
        let ids: [Int32] = [3, 0, 3, 6, 1, 3]   // repeated ids accumulate
        let r = randomTensor([2, 3, 4], seed: 5)
        expectGradientsMatch(checkGradients(arena: arena, inputs: [],
            loss: { dot(table.forward(ids, shape: [2, 3]), r) },
            gradients: { _ = table.forward(ids, shape: [2, 3]); table.backward(r); return [] }))
    }
}

@Suite struct CrossEntropyTests {
    @Test(arguments: [Float(0), 0.1])
    func gradientsMatchFiniteDifferences(smoothing: Float) {
        let loss = CrossEntropy(labelSmoothing: smoothing, ignoreIndex: -1)
        let logits = randomTensor([5, 7], seed: 6)
        let targets: [Int32] = [1, -1, 6, 0, 3]
        expectGradientsMatch(checkGradients(arena: nil, inputs: [logits],
            loss: { loss.forward(logits: logits, targets: targets, normalizer: 4) },
            gradients: { _ = loss.forward(logits: logits, targets: targets, normalizer: 4); return [loss.backward()] }))
    }

    @Test func uniformLogitsCostLogV() {
        let loss = CrossEntropy()
        let value = loss.forward(logits: Tensor(zeros: [2, 10]), targets: [3, 9], normalizer: 2)
        #expect(abs(value - log(10.0)) < 1e-6)
    }

    @Test func ignoredRowsContributeNothing() {
        let loss = CrossEntropy(ignoreIndex: -100)
        let logits = randomTensor([3, 4], seed: 7)
        let all = loss.forward(logits: logits, targets: [1, 2, 3], normalizer: 1)
        let first = loss.forward(logits: logits, targets: [1, -100, -100], normalizer: 1)
        let gradient = loss.backward()
        #expect(first < all)
        #expect((4..<12).allSatisfy { gradient[$0] == 0 })
        #expect(loss.countedRows([1, -100, 2]) == 2)
    }

    @Test func labelSmoothingMatchesItsDefinition() {
        // q = (1−ε)·onehot + ε/V; loss = −Σ q log p.
        let loss = CrossEntropy(labelSmoothing: 0.2)
        let logits = Tensor(shape: [1, 3], values: [1, 2, 3])
        let value = loss.forward(logits: logits, targets: [0], normalizer: 1)
        let z = [1.0, 2, 3], logSum = log(z.map { exp($0) }.reduce(0, +))
        let q = [0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]
        let expected = zip(q, z).map { -$0 * ($1 - logSum) }.reduce(0, +)
        #expect(abs(value - expected) < 1e-5)
    }
}

@Suite struct AttentionTests {
    func selfAttention(_ scorer: AttentionScorer, causal: Bool) -> (SelfAttention, ParameterArena) {
        let arena = ParameterArena()
        let attention = SelfAttention("attn", embedding: 8, heads: 2, bias: true, causal: causal, scorer: scorer, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 11)
        arena.allValues.fillUniform(bound: 0.5, using: &generator)
        return (attention, arena)
    }

    static let cases: [(AttentionScorer, Bool, Bool)] = [
        (.dot, true, false), (.dot, false, true), (.dot, true, true), (.additive, true, false), (.additive, false, true),
    ]

    @Test(arguments: cases)
    func selfAttentionGradientsMatchFiniteDifferences(scorer: AttentionScorer, causal: Bool, padded: Bool) {
        let (attention, arena) = selfAttention(scorer, causal: causal)
        let x = randomTensor([2, 5, 8], seed: 12), r = randomTensor([2, 5, 8], seed: 13)
        // Batch 1 has two padding positions at the end.
        let mask: [Bool]? = padded ? [true, true, true, true, true, true, true, true, false, false] : nil
        expectGradientsMatch(checkGradients(arena: arena, inputs: [x],
            loss: { dot(attention.forward(x, batch: 2, length: 5, keyMask: mask), r) },
            gradients: { _ = attention.forward(x, batch: 2, length: 5, keyMask: mask); return [attention.backward(r)] }),
            "\(scorer) causal \(causal) padded \(padded)")
    }

    @Test(arguments: [AttentionScorer.dot, .additive])
    func crossAttentionGradientsMatchFiniteDifferences(scorer: AttentionScorer) {
        let arena = ParameterArena()
        let attention = CrossAttention("cross", embedding: 8, heads: 2, bias: false, scorer: scorer, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 14)
        arena.allValues.fillUniform(bound: 0.5, using: &generator)
        let x = randomTensor([2, 3, 8], seed: 15), memory = randomTensor([2, 4, 8], seed: 16), r = randomTensor([2, 3, 8], seed: 17)
        let mask = [true, true, true, false, true, true, true, true]
        expectGradientsMatch(checkGradients(arena: arena, inputs: [x, memory],
            loss: { dot(attention.forward(x, memory: memory, batch: 2, queryLength: 3, keyLength: 4, memoryMask: mask), r) },
            gradients: {
                _ = attention.forward(x, memory: memory, batch: 2, queryLength: 3, keyLength: 4, memoryMask: mask)
                let (dx, dMemory) = attention.backward(r)
                return [dx, dMemory]
            }))
    }

    @Test(arguments: [AttentionScorer.dot, .additive])
    func causalMaskHidesTheFuture(scorer: AttentionScorer) {
        let (attention, _) = selfAttention(scorer, causal: true)
        let x = randomTensor([1, 6, 8], seed: 18)
        let before = attention.forward(x, batch: 1, length: 6).copy()
        for j in 0..<8 { x[4 * 8 + j] += 1 }   // change token 4
        let after = attention.forward(x, batch: 1, length: 6)
        #expect(Array(before.scalars[0..<32]) == Array(after.scalars[0..<32]), "outputs at t < 4 must not change")
        #expect(Array(before.scalars[32..<40]) != Array(after.scalars[32..<40]))
    }

    @Test func paddingKeysGetNoAttention() {
        let (attention, _) = selfAttention(.dot, causal: false)
        let x = randomTensor([1, 4, 8], seed: 19)
        let mask = [true, true, false, false]
        let before = attention.forward(x, batch: 1, length: 4, keyMask: mask).copy()
        let probabilities = attention.kernel.lastProbabilities!
        for row in 0..<(2 * 4) { #expect(probabilities[row * 4 + 2] == 0 && probabilities[row * 4 + 3] == 0) }
        for j in 0..<8 { x[3 * 8 + j] += 5 }   // change a padding position
        let after = attention.forward(x, batch: 1, length: 4, keyMask: mask)
        #expect(Array(before.scalars[0..<24]) == Array(after.scalars[0..<24]))
    }
}
