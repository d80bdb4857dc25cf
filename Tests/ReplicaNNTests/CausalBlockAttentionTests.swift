import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// Causal dot-product attention longer than one block of queries (128) computes each block
/// against the keys it can see only; it must equal attention over the whole T×T square.
@Suite struct CausalBlockAttentionTests {
    /// softmax(q·kᵀ/√hs, causal)·v and its gradients for one head, in Double, over the full square.
    static func reference(q: [Double], k: [Double], v: [Double], dOut: [Double], T: Int, hs: Int)
        -> (out: [Double], dq: [Double], dk: [Double], dv: [Double]) {
        let scale = 1 / Double(hs).squareRoot()
        var P = [Double](repeating: 0, count: T * T)
        var out = [Double](repeating: 0, count: T * hs)
        for i in 0..<T {
            var scores = (0...i).map { j in (0..<hs).reduce(0.0) { $0 + q[i * hs + $1] * k[j * hs + $1] } * scale }
            let top = scores.max()!
            scores = scores.map { exp($0 - top) }
            let sum = scores.reduce(0, +)
            for j in 0...i { P[i * T + j] = scores[j] / sum }
            for d in 0..<hs { out[i * hs + d] = (0...i).reduce(0.0) { $0 + P[i * T + $1] * v[$1 * hs + d] } }
        }
        var dq = [Double](repeating: 0, count: T * hs), dk = dq, dv = dq
        for i in 0..<T {
            let dP = (0...i).map { j in (0..<hs).reduce(0.0) { $0 + dOut[i * hs + $1] * v[j * hs + $1] } }
            let dot = (0...i).reduce(0.0) { $0 + dP[$1] * P[i * T + $1] }
            for j in 0...i {
                let dS = P[i * T + j] * (dP[j] - dot) * scale
                for d in 0..<hs {
                    dq[i * hs + d] += dS * k[j * hs + d]
                    dk[j * hs + d] += dS * q[i * hs + d]
                    dv[j * hs + d] += P[i * T + j] * dOut[i * hs + d]
                }
            }
        }
        return (out, dq, dk, dv)
    }

    /// 300 queries: blocks of 128, 128 and 44; one head of 8 in a tensor of 2 heads.
    @Test func blocksOfQueriesEqualTheFullSquareForwardAndBackward() {
        let T = 300, NH = 2, hs = 8, width = NH * hs
        let q = randomTensor([T, width], seed: 31), k = randomTensor([T, width], seed: 32)
        let v = randomTensor([T, width], seed: 33), upstream = randomTensor([T, width], seed: 34)
        let kernel = AttentionKernel("a", heads: NH, headSize: hs, scorer: .dot, arena: ParameterArena())
        let output = Tensor(zeros: [T, width])
        let dq = Tensor(zeros: [T, width]), dk = Tensor(zeros: [T, width]), dv = Tensor(zeros: [T, width])
        func operand(_ t: Tensor) -> StridedOperand { StridedOperand(t.data, rowStride: width) }
        kernel.forward(q: operand(q), k: operand(k), v: operand(v), output: operand(output),
                       batch: 1, queryLength: T, keyLength: T, causal: true, keyMask: nil)
        kernel.backward(outputGradient: operand(upstream), q: operand(q), k: operand(k), v: operand(v),
                        qGradient: operand(dq), kGradient: operand(dk), vGradient: operand(dv))
        for h in 0..<NH {
            func head(_ t: Tensor) -> [Double] { (0..<T).flatMap { i in (0..<hs).map { Double(t[i * width + h * hs + $0]) } } }
            let expected = Self.reference(q: head(q), k: head(k), v: head(v), dOut: head(upstream), T: T, hs: hs)
            for (got, want) in [(head(output), expected.out), (head(dq), expected.dq), (head(dk), expected.dk), (head(dv), expected.dv)] {
                #expect(maximumRelativeDifference(got.map(Float.init), want.map(Float.init), floor: 1e-3) < float32SummationTolerance * 10)
            }
        }
        // The hidden upper triangle is exactly zero in the cached probabilities.
        let P = kernel.lastProbabilities!
        #expect((0..<T).allSatisfy { i in ((i + 1)..<T).allSatisfy { P[i * T + $0] == 0 } })
    }

    @Test func gradientsOfALongCausalSelfAttentionMatchFiniteDifferences() {
        let arena = ParameterArena()
        let attention = SelfAttention("attn", embedding: 4, heads: 2, bias: false, causal: true, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 35)
        arena.allValues.fillUniform(bound: 0.5, using: &generator)
        let T = 140
        let x = randomTensor([1, T, 4], seed: 36), r = randomTensor([1, T, 4], seed: 37)
        let results = checkGradients(arena: arena, inputs: [x],
            loss: { dot(attention.forward(x, batch: 1, length: T), r) },
            gradients: { _ = attention.forward(x, batch: 1, length: T); return [attention.backward(r)] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(result)") }
    }
}
