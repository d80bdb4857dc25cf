import Foundation
import ReplicaCore

/// How attention scores a query against a key.
public enum AttentionScorer: String, Codable, CaseIterable, Sendable {
    /// qᵀk / √d (Vaswani et al.).
    case dot
    /// vᵀ tanh(q + k) per head, over the already projected q and k (Bahdanau et al.).
    case additive
}

/// Where one operand of attention lives: rows of a [B, T, width] buffer, head h at column `offset + h·headSize`.
public struct StridedOperand {
    public var data: UnsafeMutablePointer<Float>
    /// Floats between consecutive rows (time steps).
    public var rowStride: Int
    /// Column of head 0's first element inside a row.
    public var offset: Int
    /// Floats between consecutive batch entries; nil: rows × rowStride (a dense [B, T, width]
    /// buffer). A key/value cache of [B, capacity, width] holds fewer rows than its stride.
    public var batchStride: Int?
    public init(_ data: UnsafeMutablePointer<Float>, rowStride: Int, offset: Int = 0, batchStride: Int? = nil) {
        self.data = data
        self.rowStride = rowStride
        self.offset = offset
        self.batchStride = batchStride
    }
    @inline(__always)
    func head(batch: Int, rows: Int, head: Int, headSize: Int) -> UnsafeMutablePointer<Float> {
        data + batch * (batchStride ?? rows * rowStride) + offset + head * headSize
    }
}

/// Multi-head attention on projected queries, keys and values, with causal and key-padding masks.
///
/// Q [B, Tq, NH·hs], K and V [B, Tk, NH·hs] are read in place through strides (the columns of a
/// fused qkv projection), so no head is ever copied; every product is an sgemm.
/// B batch, Tq/Tk query/key length, NH heads, hs head size.
public final class AttentionKernel {
    public let headCount: Int
    public let headSize: Int
    public let scorer: AttentionScorer
    /// Whether dot-product scores are divided by √hs (true, Vaswani et al.); false drops the factor
    /// (`replica study attention-scaling`).
    public var scalesScores = true
    /// Additive scorer's vector v per head [NH, hs], if any.
    public let additiveVector: ParameterSlot?
    let arena: ParameterArena
    // Cached by forward.
    var probabilities: Tensor?            // [B, NH, Tq, Tk]
    var tanhValues: Tensor?               // [B, NH, Tq, Tk, hs] for the additive scorer
    var shape = (B: 0, Tq: 0, Tk: 0)
    var causal = false
    var keyMask: [Bool]?

    public init(_ name: String, heads: Int, headSize: Int, scorer: AttentionScorer, arena: ParameterArena) {
        self.arena = arena
        headCount = heads
        self.headSize = headSize
        self.scorer = scorer
        additiveVector = scorer == .additive ? arena.declare("\(name).score_vector", shape: [heads, headSize], decays: false) : nil
    }

    public func initialize(using generator: inout SeededGenerator) {
        if let additiveVector { arena.value(additiveVector).fillUniform(bound: 1 / Float(headSize).squareRoot(), using: &generator) }
    }

    /// Writes softmax(scores)·V into `output` ([B, Tq, NH·hs] through its stride).
    /// `keyMask` [B·Tk]: false marks padding keys, which get no attention. `causal` hides keys after the query.
    public func forward(q: StridedOperand, k: StridedOperand, v: StridedOperand, output: StridedOperand,
                        batch B: Int, queryLength Tq: Int, keyLength Tk: Int, causal: Bool, keyMask: [Bool]?) {
        precondition(keyMask == nil || keyMask!.count == B * Tk, "attention key mask needs \(B * Tk) entries")
        precondition(!causal || Tq == Tk, "causal attention needs equal query and key lengths")
        shape = (B, Tq, Tk)
        self.causal = causal
        self.keyMask = keyMask
        let NH = headCount, hs = headSize
        let probabilities = Tensor(uninitialized: [B, NH, Tq, Tk])
        if scorer == .additive { tanhValues = Tensor(zeros: [B, NH, Tq, Tk, hs]) }
        let scale = scalesScores ? 1 / Float(hs).squareRoot() : 1
        let blocks = queryBlocks(Tq: Tq, Tk: Tk, causal: causal)
        // The (batch, head) pairs are independent: split across the rank's threads.
        ComputePool.forEachRange(count: B * NH, grain: headsPerThread) { pairs in
            for pair in pairs {
                let b = pair / NH, h = pair % NH
                let P = probabilities.data + ((b * NH + h) * Tq) * Tk
                let qh = q.head(batch: b, rows: Tq, head: h, headSize: hs)
                let kh = k.head(batch: b, rows: Tk, head: h, headSize: hs)
                let vh = v.head(batch: b, rows: Tk, head: h, headSize: hs)
                let outH = output.head(batch: b, rows: Tq, head: h, headSize: hs)
                for (rows, keys) in blocks {
                    let Pb = P + rows.lowerBound * Tk
                    switch scorer {
                    case .dot:
                        BLAS.sgemm(m: rows.count, n: keys, k: hs, alpha: scale, a: qh + rows.lowerBound * q.rowStride, lda: q.rowStride,
                                   b: kh, ldb: k.rowStride, transposingB: true, c: Pb, ldc: Tk)
                    case .additive:
                        additiveScores(qh, q.rowStride, kh, k.rowStride, into: P, batch: b, head: h)
                    }
                    for i in rows {
                        maskedSoftmax(P + i * Tk, count: Tk, visible: causal ? i + 1 : Tk, keyMask: keyMask, maskOffset: b * Tk)
                    }
                    BLAS.sgemm(m: rows.count, n: hs, k: keys, a: Pb, lda: Tk, b: vh, ldb: v.rowStride,
                               c: outH + rows.lowerBound * output.rowStride, ldc: output.rowStride)
                }
            }
        }
        self.probabilities = probabilities
    }

    /// Adds the gradients of q, k and v (through their strides) from the output gradient.
    public func backward(outputGradient dOut: StridedOperand, q: StridedOperand, k: StridedOperand, v: StridedOperand,
                         qGradient dq: StridedOperand, kGradient dk: StridedOperand, vGradient dv: StridedOperand) {
        guard let probabilities else { preconditionFailure("AttentionKernel.backward before forward") }
        let (B, Tq, Tk) = shape
        let NH = headCount, hs = headSize
        let scale = scalesScores ? 1 / Float(hs).squareRoot() : 1
        let blocks = queryBlocks(Tq: Tq, Tk: Tk, causal: causal)
        // The (batch, head) pairs write disjoint gradient columns: split across the rank's threads,
        // each range with its own score-gradient buffer.
        ComputePool.forEachRange(count: B * NH, grain: headsPerThread) { pairs in
            let dScores = Tensor(uninitialized: [Tq, Tk])
            for pair in pairs {
                let b = pair / NH, h = pair % NH
                let P = probabilities.data + ((b * NH + h) * Tq) * Tk
                let dOutH = dOut.head(batch: b, rows: Tq, head: h, headSize: hs)
                let vh = v.head(batch: b, rows: Tk, head: h, headSize: hs)
                let qh = q.head(batch: b, rows: Tq, head: h, headSize: hs)
                let kh = k.head(batch: b, rows: Tk, head: h, headSize: hs)
                let dqh = dq.head(batch: b, rows: Tq, head: h, headSize: hs)
                let dkh = dk.head(batch: b, rows: Tk, head: h, headSize: hs)
                let dvh = dv.head(batch: b, rows: Tk, head: h, headSize: hs)
                let dP = dScores.data
                for (rows, keys) in blocks {
                    let Pb = P + rows.lowerBound * Tk, dPb = dP + rows.lowerBound * Tk
                    let dOutB = dOutH + rows.lowerBound * dOut.rowStride
                    // dV += Pᵀ · dOut ; dP = dOut · Vᵀ
                    BLAS.sgemm(m: keys, n: hs, k: rows.count, a: Pb, lda: Tk, transposingA: true, b: dOutB, ldb: dOut.rowStride,
                               beta: 1, c: dvh, ldc: dv.rowStride)
                    BLAS.sgemm(m: rows.count, n: keys, k: hs, a: dOutB, lda: dOut.rowStride, b: vh, ldb: v.rowStride,
                               transposingB: true, c: dPb, ldc: Tk)
                    // Softmax backward in place: dS = P ⊙ (dP − Σ_j dP·P), over the visible keys;
                    // the block's hidden keys get 0 (P is 0 there; the products above left them unset).
                    for i in rows {
                        let p = P + i * Tk, d = dP + i * Tk
                        let visible = causal ? i + 1 : keys
                        softmaxRowBackward(d, output: p, count: visible, inverseTemperature: 1)
                        if visible < keys { (d + visible).update(repeating: 0, count: keys - visible) }
                    }
                    switch scorer {
                    case .dot:
                        // dQ += scale · dS · K ; dK += scale · dSᵀ · Q
                        BLAS.sgemm(m: rows.count, n: hs, k: keys, alpha: scale, a: dPb, lda: Tk, b: kh, ldb: k.rowStride,
                                   beta: 1, c: dqh + rows.lowerBound * dq.rowStride, ldc: dq.rowStride)
                        BLAS.sgemm(m: keys, n: hs, k: rows.count, alpha: scale, a: dPb, lda: Tk, transposingA: true,
                                   b: qh + rows.lowerBound * q.rowStride, ldb: q.rowStride, beta: 1, c: dkh, ldc: dk.rowStride)
                    case .additive:
                        additiveBackward(dP, dq: dqh, dq.rowStride, dk: dkh, dk.rowStride, batch: b, head: h)
                    }
                }
            }
        }
    }

    /// The fewest (batch, head) pairs worth a thread: all of them with the additive scorer, whose
    /// score vector's gradient every pair adds to.
    var headsPerThread: Int { scorer == .dot ? 4 : Int.max }

    /// Query rows in blocks, each with the keys it can see: with the causal mask and the dot
    /// scorer, blocks of 128 queries see only the keys up to their last row, so the products
    /// skip the hidden upper triangle (at T = 1024 they compute 9/16 of the full T×T); otherwise
    /// one block of every query and every key.
    func queryBlocks(Tq: Int, Tk: Int, causal: Bool) -> [(rows: Range<Int>, keys: Int)] {
        guard causal && scorer == .dot && Tq > Self.causalBlockRows else { return [(0..<Tq, Tk)] }
        return stride(from: 0, to: Tq, by: Self.causalBlockRows).map { start in
            let end = min(start + Self.causalBlockRows, Tq)
            return (start..<end, end)
        }
    }

    /// Query rows per block of causal attention.
    static let causalBlockRows = 128

    /// The attention probabilities of the last forward. [B, NH, Tq, Tk]
    public var lastProbabilities: Tensor? { probabilities }

    // MARK: - Masked softmax

    /// Softmax over the first `visible` entries that the key mask allows; the rest become 0.
    func maskedSoftmax(_ row: UnsafeMutablePointer<Float>, count: Int, visible: Int, keyMask: [Bool]?, maskOffset: Int) {
        if keyMask == nil {
            // Every visible key counts: the vectorised softmax of the row.
            softmaxRow(row, into: row, count: visible, inverseTemperature: 1)
            if visible < count { (row + visible).update(repeating: 0, count: count - visible) }
            return
        }
        var maximum = -Float.infinity
        for j in 0..<visible where keyMask?[maskOffset + j] ?? true { maximum = max(maximum, row[j]) }
        guard maximum > -Float.infinity else {
            // Every key hidden (a padding query): no attention at all.
            row.update(repeating: 0, count: count)
            return
        }
        var sum: Float = 0
        for j in 0..<visible {
            if keyMask?[maskOffset + j] ?? true {
                let e = expf(row[j] - maximum)
                row[j] = e
                sum += e
            } else {
                row[j] = 0
            }
        }
        let inverse = 1 / sum
        for j in 0..<visible { row[j] *= inverse }
        if visible < count { (row + visible).update(repeating: 0, count: count - visible) }
    }

    // MARK: - Additive scorer

    /// scores[i, j] = Σ_d v_d · tanh(q_i,d + k_j,d), caching the tanh values.
    func additiveScores(_ qh: UnsafeMutablePointer<Float>, _ qStride: Int, _ kh: UnsafeMutablePointer<Float>, _ kStride: Int,
                        into scores: UnsafeMutablePointer<Float>, batch b: Int, head h: Int) {
        let (_, Tq, Tk) = shape
        let hs = headSize
        let vector = arena.value(additiveVector!).data + h * hs
        let cache = tanhValues!.data + ((b * headCount + h) * Tq) * Tk * hs
        for i in 0..<Tq {
            let qi = qh + i * qStride
            for j in 0..<Tk {
                let kj = kh + j * kStride
                let t = cache + (i * Tk + j) * hs
                var score: Float = 0
                for d in 0..<hs {
                    let value = tanhf(qi[d] + kj[d])
                    t[d] = value
                    score += vector[d] * value
                }
                scores[i * Tk + j] = score
            }
        }
    }

    /// Adds dq, dk and dv (the score vector's gradient) from the score gradient dS [Tq, Tk].
    func additiveBackward(_ dS: UnsafeMutablePointer<Float>, dq: UnsafeMutablePointer<Float>, _ dqStride: Int,
                          dk: UnsafeMutablePointer<Float>, _ dkStride: Int, batch b: Int, head h: Int) {
        let (_, Tq, Tk) = shape
        let hs = headSize
        let vector = arena.value(additiveVector!).data + h * hs
        let dVector = arena.gradient(additiveVector!).data + h * hs
        let cache = tanhValues!.data + ((b * headCount + h) * Tq) * Tk * hs
        for i in 0..<Tq {
            let dqi = dq + i * dqStride
            for j in 0..<Tk {
                let g = dS[i * Tk + j]
                if g == 0 { continue }
                let t = cache + (i * Tk + j) * hs
                let dkj = dk + j * dkStride
                for d in 0..<hs {
                    dVector[d] += g * t[d]
                    let inner = g * vector[d] * (1 - t[d] * t[d])
                    dqi[d] += inner
                    dkj[d] += inner
                }
            }
        }
    }
}
