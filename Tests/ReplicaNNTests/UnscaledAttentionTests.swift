import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// Attention without the 1/√d_k factor (`AttentionKernel.scalesScores = false`).
@Suite struct UnscaledAttentionTests {
    func selfAttention(causal: Bool, scaled: Bool) -> (SelfAttention, ParameterArena) {
        let arena = ParameterArena()
        let attention = SelfAttention("attn", embedding: 8, heads: 2, bias: true, causal: causal, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 21)
        arena.allValues.fillUniform(bound: 0.5, using: &generator)
        attention.kernel.scalesScores = scaled
        return (attention, arena)
    }

    @Test(arguments: [true, false])
    func unscaledGradientsMatchFiniteDifferences(causal: Bool) {
        let (attention, arena) = selfAttention(causal: causal, scaled: false)
        let x = randomTensor([2, 5, 8], seed: 22), r = randomTensor([2, 5, 8], seed: 23)
        let mask: [Bool]? = causal ? nil : [true, true, true, true, true, true, true, true, false, false]
        let results = checkGradients(arena: arena, inputs: [x],
            loss: { dot(attention.forward(x, batch: 2, length: 5, keyMask: mask), r) },
            gradients: { _ = attention.forward(x, batch: 2, length: 5, keyMask: mask); return [attention.backward(r)] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "causal \(causal): \(result)") }
    }

    /// Dropping the factor is the same as multiplying the queries by √d_k, forward and backward.
    @Test func droppingTheFactorEqualsQueriesTimesTheSquareRootOfTheHeadSize() {
        let B = 2, T = 6, NH = 2, hs = 4, width = NH * hs
        let q = randomTensor([B, T, width], seed: 24), k = randomTensor([B, T, width], seed: 25)
        let v = randomTensor([B, T, width], seed: 26), upstream = randomTensor([B, T, width], seed: 27)
        let root = Float(hs).squareRoot()
        let qScaledUp = Tensor(shape: q.shape, values: q.scalars.map { $0 * root })
        func run(_ query: Tensor, scaled: Bool) -> (output: [Float], dq: [Float], dk: [Float]) {
            let kernel = AttentionKernel("a", heads: NH, headSize: hs, scorer: .dot, arena: ParameterArena())
            kernel.scalesScores = scaled
            let output = Tensor(zeros: [B, T, width])
            let dq = Tensor(zeros: [B, T, width]), dk = Tensor(zeros: [B, T, width]), dv = Tensor(zeros: [B, T, width])
            kernel.forward(q: StridedOperand(query.data, rowStride: width), k: StridedOperand(k.data, rowStride: width),
                           v: StridedOperand(v.data, rowStride: width), output: StridedOperand(output.data, rowStride: width),
                           batch: B, queryLength: T, keyLength: T, causal: true, keyMask: nil)
            kernel.backward(outputGradient: StridedOperand(upstream.data, rowStride: width), output: StridedOperand(output.data, rowStride: width),
                            q: StridedOperand(query.data, rowStride: width),
                            k: StridedOperand(k.data, rowStride: width), v: StridedOperand(v.data, rowStride: width),
                            qGradient: StridedOperand(dq.data, rowStride: width), kGradient: StridedOperand(dk.data, rowStride: width),
                            vGradient: StridedOperand(dv.data, rowStride: width))
            return (output.scalars, dq.scalars, dk.scalars)
        }
        let unscaled = run(q, scaled: false)
        let reference = run(qScaledUp, scaled: true)
        #expect(maximumRelativeDifference(unscaled.output, reference.output, floor: 1e-3) < float32SummationTolerance * 10)
        // ∂L/∂K agrees; ∂L/∂Q differs by the chain rule's √d_k (∂(√d·q)/∂q).
        #expect(maximumRelativeDifference(unscaled.dk, reference.dk, floor: 1e-3) < float32SummationTolerance * 10)
        #expect(maximumRelativeDifference(unscaled.dq, reference.dq.map { $0 * root }, floor: 1e-3) < float32SummationTolerance * 10)
        // And the factor does change something: the default kernel gives other outputs.
        let scaled = run(q, scaled: true)
        #expect(maximumRelativeDifference(unscaled.output, scaled.output, floor: 1e-3) > 1e-2)
    }
}
