import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// Dot-product attention runs in tiles of 128 queries × 256 keys with an online softmax: causal
/// attention longer than a tile computes each query tile against the keys it can see only, and
/// keys spread over several tiles, some of them padding, are joined by rescaling. Both must equal
/// attention over the whole square, computed in Double.
@Suite struct CausalBlockAttentionTests {
    /// softmax(q·kᵀ/√hs)·v and its gradients for one head, in Double, over the full Tq × Tk square:
    /// query i sees key j when `keyMask[j]` and, if causal, j ≤ i; a query that sees none gets 0.
    static func reference(q: [Double], k: [Double], v: [Double], dOut: [Double], Tq: Int, Tk: Int, hs: Int,
                          causal: Bool, keyMask: [Bool]? = nil) -> (out: [Double], dq: [Double], dk: [Double], dv: [Double]) {
        let scale = 1 / Double(hs).squareRoot()
        func keys(_ i: Int) -> [Int] { (0..<(causal ? i + 1 : Tk)).filter { keyMask?[$0] ?? true } }
        var P = [Double](repeating: 0, count: Tq * Tk)
        var out = [Double](repeating: 0, count: Tq * hs)
        for i in 0..<Tq {
            let visible = keys(i)
            guard !visible.isEmpty else { continue }
            var scores = visible.map { j in (0..<hs).reduce(0.0) { $0 + q[i * hs + $1] * k[j * hs + $1] } * scale }
            let top = scores.max()!
            scores = scores.map { exp($0 - top) }
            let sum = scores.reduce(0, +)
            for (index, j) in visible.enumerated() { P[i * Tk + j] = scores[index] / sum }
            for d in 0..<hs { out[i * hs + d] = visible.reduce(0.0) { $0 + P[i * Tk + $1] * v[$1 * hs + d] } }
        }
        var dq = [Double](repeating: 0, count: Tq * hs), dk = [Double](repeating: 0, count: Tk * hs), dv = dk
        for i in 0..<Tq {
            let visible = keys(i)
            let dP = visible.map { j in (0..<hs).reduce(0.0) { $0 + dOut[i * hs + $1] * v[j * hs + $1] } }
            let dot = zip(visible, dP).reduce(0.0) { $0 + $1.1 * P[i * Tk + $1.0] }
            for (index, j) in visible.enumerated() {
                let dS = P[i * Tk + j] * (dP[index] - dot) * scale
                for d in 0..<hs {
                    dq[i * hs + d] += dS * k[j * hs + d]
                    dk[j * hs + d] += dS * q[i * hs + d]
                    dv[j * hs + d] += P[i * Tk + j] * dOut[i * hs + d]
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
        // NaN in the gradients' buffers: the kernel writes them, it does not add to them.
        let dq = Tensor(zeros: [T, width]), dk = Tensor(zeros: [T, width]), dv = Tensor(zeros: [T, width])
        for gradient in [dq, dk, dv] { gradient.fill(.nan) }
        func operand(_ t: Tensor) -> StridedOperand { StridedOperand(t.data, rowStride: width) }
        kernel.forward(q: operand(q), k: operand(k), v: operand(v), output: operand(output),
                       batch: 1, queryLength: T, keyLength: T, causal: true, keyMask: nil)
        kernel.backward(outputGradient: operand(upstream), output: operand(output), q: operand(q), k: operand(k), v: operand(v),
                        qGradient: operand(dq), kGradient: operand(dk), vGradient: operand(dv))
        for h in 0..<NH {
            func head(_ t: Tensor) -> [Double] { (0..<T).flatMap { i in (0..<hs).map { Double(t[i * width + h * hs + $0]) } } }
            let expected = Self.reference(q: head(q), k: head(k), v: head(v), dOut: head(upstream), Tq: T, Tk: T, hs: hs, causal: true)
            for (got, want) in [(head(output), expected.out), (head(dq), expected.dq), (head(dk), expected.dk), (head(dv), expected.dv)] {
                #expect(maximumRelativeDifference(got.map(Float.init), want.map(Float.init), floor: 1e-3) < float32SummationTolerance * 10)
            }
        }
        // The hidden upper triangle is exactly zero in the probabilities, and each row's visible
        // part sums to 1 (recomputed tile by tile from the scores and the log-sum-exp).
        let P = kernel.lastProbabilities!
        #expect((0..<T).allSatisfy { i in ((i + 1)..<T).allSatisfy { P[i * T + $0] == 0 } })
        #expect((0..<T).allSatisfy { i in abs((0...i).reduce(0.0) { $0 + Double(P[i * T + $1]) } - 1) < 1e-5 })
    }

    /// Cross-attention of two sentences whose first has its last sixth of keys as padding and whose
    /// second is padding only (its queries see nothing and get 0 and no gradient): over 600 keys
    /// (tiles of 256, 256 and 88, one of them half hidden; 130 queries, two tiles), and over 200
    /// keys and 20 queries, where a (batch, head) is one tile and its probabilities are kept.
    @Test(arguments: [(130, 600), (20, 200)])
    func keyTilesWithPaddingEqualTheFullSoftmax(Tq: Int, Tk: Int) {
        let B = 2, NH = 2, hs = 8, width = NH * hs
        let q = randomTensor([B, Tq, width], seed: 41), k = randomTensor([B, Tk, width], seed: 42)
        let v = randomTensor([B, Tk, width], seed: 43), upstream = randomTensor([B, Tq, width], seed: 44)
        // Large scores, so the running maximum changes between tiles and the rescaling matters.
        for i in 0..<q.count { q[i] *= 4 }
        let keyMask = (0..<Tk).map { $0 < Tk * 5 / 6 } + [Bool](repeating: false, count: Tk)
        let kernel = AttentionKernel("a", heads: NH, headSize: hs, scorer: .dot, arena: ParameterArena())
        let output = Tensor(zeros: [B, Tq, width])
        let dq = Tensor(zeros: [B, Tq, width]), dk = Tensor(zeros: [B, Tk, width]), dv = Tensor(zeros: [B, Tk, width])
        for gradient in [dq, dk, dv] { gradient.fill(.nan) }     // written, not added to
        func operand(_ t: Tensor) -> StridedOperand { StridedOperand(t.data, rowStride: width) }
        kernel.forward(q: operand(q), k: operand(k), v: operand(v), output: operand(output),
                       batch: B, queryLength: Tq, keyLength: Tk, causal: false, keyMask: keyMask)
        kernel.backward(outputGradient: operand(upstream), output: operand(output), q: operand(q), k: operand(k), v: operand(v),
                        qGradient: operand(dq), kGradient: operand(dk), vGradient: operand(dv))
        for b in 0..<B {
            for h in 0..<NH {
                func head(_ t: Tensor, rows: Int) -> [Double] {
                    (0..<rows).flatMap { i in (0..<hs).map { Double(t[(b * rows + i) * width + h * hs + $0]) } }
                }
                let expected = Self.reference(q: head(q, rows: Tq), k: head(k, rows: Tk), v: head(v, rows: Tk),
                                              dOut: head(upstream, rows: Tq), Tq: Tq, Tk: Tk, hs: hs, causal: false,
                                              keyMask: Array(keyMask[(b * Tk)..<((b + 1) * Tk)]))
                for (got, want) in [(head(output, rows: Tq), expected.out), (head(dq, rows: Tq), expected.dq),
                                    (head(dk, rows: Tk), expected.dk), (head(dv, rows: Tk), expected.dv)] {
                    #expect(maximumRelativeDifference(got.map(Float.init), want.map(Float.init), floor: 1e-3) < float32SummationTolerance * 10)
                }
            }
        }
        #expect(output.scalars[(Tq * width)...].allSatisfy { $0 == 0 } && dk.scalars[(Tk * width)...].allSatisfy { $0 == 0 })
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
