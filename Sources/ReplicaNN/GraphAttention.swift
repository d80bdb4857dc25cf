import ReplicaCore

// Legend: N nodes computed (the graph's rows), S nodes read (its columns; S = N for a whole
// graph), E edges (entries of the graph), H heads, C outputs per head, I inputs.
// Edge e in row i has source j = graph.columnIndices[e]: node i attends to its in-neighbour j.
// Per-edge tensors are [E, H] (PyG's alpha layout), node scores [S, 2H], features [S, H·C]
// with head h at columns h·C..<(h+1)·C.

/// Graph attention (Veličković et al. 2018; PyG's GATConv). [N, I] -> [N, H·C] or [N, C]
///
///     h = x·W                                         [N, H·C]
///     e_ij = LeakyReLU(a_srcᵀ h_j + a_dstᵀ h_i)       per head, for each edge j -> i
///     α_ij = softmax_j(e_ij) over row i, then dropout (training mode)
///     out_i = Σ_j α_ij h_j, heads concatenated (or averaged), + bias
///
/// Parameters: `\(name).weight` [I, H·C] (the transpose of PyG's `lin.weight`; absent when
/// `inputs` is nil and the caller projects, say with a `SparseLinear` of the same name),
/// `\(name).attention_source` and `\(name).attention_target` [H, C] (PyG's att_src, att_dst),
/// `\(name).bias` [H·C] when concatenating, else [C]. Nodes with no incoming edge get the bias
/// alone; add self-loops (`CSRMatrix.graph(…, selfLoops: true)`) as GATConv does.
///
/// Edge work costs O(E·H·C) (scores, softmax, aggregation); node work is sgemms: the projection
/// and the node scores h·[a_src | a_dst] (a block-diagonal [H·C, 2H] matrix, O(N·H·C·2H)).
/// No N×N matrix exists. The graph may be rectangular, [N, S]: a block of a sampled mini-batch
/// (see `combine`); the output then has a row per graph row. `inferring(projected:graph:entriesPerChunk:)`
/// computes evaluation outputs a chunk of rows at a time.
/// Attention dropout follows `Dropout`'s rule on the index e·H + h, keyed by `context` and
/// `tag`, so a forward at the same context draws the same mask; advance `context.step` for a new one.
public final class GraphAttention {
    public let weight: ParameterSlot?             // [I, H·C], nil when the input comes projected
    public let attentionSource: ParameterSlot     // [H, C]
    public let attentionTarget: ParameterSlot     // [H, C]
    public let bias: ParameterSlot?               // [H·C] concatenating, [C] averaging
    public let inputCount: Int?
    public let headCount: Int
    public let outputCount: Int                   // C, per head
    public let concatenatesHeads: Bool
    public let negativeSlope: Float
    /// Dropout probability on the attention coefficients (GAT on Cora: 0.6).
    public let attentionDropout: Float
    /// Dropout probability on the projected features h where they are aggregated (not where they
    /// are scored), per head: the original GAT code's second `in_drop` on `seq_fts`. 0 in PyG.
    public let valueDropout: Float
    /// Distinguishes this layer's attention masks from other dropout masks.
    public let tag: UInt64
    public var mode: Mode
    public var context: RandomContext
    public let arena: ParameterArena

    /// What `backward` needs; tensors are fresh per forward.
    struct Cache {
        var graph: CSRGraph
        var input: Tensor?                        // [S, I] when the layer projected it
        var projected: Tensor                     // h [S, H·C]
        var scoreMatrix: Tensor                   // block-diagonal [a_src | a_dst] [H·C, 2H]
        var nodeScores: Tensor                    // [a_srcᵀ h_n | a_dstᵀ h_n] [S, 2H]
        var attention: Tensor                     // α [E, H]
        var droppedAttention: Tensor              // α after dropout [E, H] (α itself when inactive)
        var values: Tensor                        // h after value dropout [S, H·C] (h itself when inactive)
        var valueKey: UInt64?                     // the value dropout mask's key, when active
    }
    var cache: Cache?

    /// `inputs` nil: no weight; call `forward(projected:graph:)` with h = x·W computed elsewhere.
    public init(_ name: String, inputs: Int?, outputs: Int, heads: Int, concatenatesHeads: Bool = true,
                bias: Bool = true, negativeSlope: Float = 0.2, attentionDropout: Float = 0, valueDropout: Float = 0,
                tag: UInt64 = 0,
                context: RandomContext = RandomContext(seed: 0), mode: Mode = .training, arena: ParameterArena) {
        precondition(heads > 0 && outputs > 0, "GraphAttention needs heads and outputs > 0, got \(heads), \(outputs)")
        precondition(attentionDropout >= 0 && attentionDropout < 1,
                     "GraphAttention attention dropout must be in [0, 1), got \(attentionDropout)")
        self.arena = arena
        inputCount = inputs
        headCount = heads
        outputCount = outputs
        self.concatenatesHeads = concatenatesHeads
        self.negativeSlope = negativeSlope
        precondition(valueDropout >= 0 && valueDropout < 1, "GraphAttention value dropout must be in [0, 1), got \(valueDropout)")
        self.attentionDropout = attentionDropout
        self.valueDropout = valueDropout
        self.tag = tag
        self.context = context
        self.mode = mode
        weight = inputs.map { arena.declare("\(name).weight", shape: [$0, heads * outputs], decays: true) }
        attentionSource = arena.declare("\(name).attention_source", shape: [heads, outputs], decays: true)
        attentionTarget = arena.declare("\(name).attention_target", shape: [heads, outputs], decays: true)
        self.bias = bias
            ? arena.declare("\(name).bias", shape: [concatenatesHeads ? heads * outputs : outputs], decays: false)
            : nil
    }

    /// Width of the projected features, H·C.
    public var projectedCount: Int { headCount * outputCount }
    /// Width of the output: H·C when concatenating, C when averaging.
    public var resultCount: Int { concatenatesHeads ? projectedCount : outputCount }

    /// PyG's reset_parameters: Glorot uniform weight and attention vectors, zero bias.
    public func initialize(using generator: inout SeededGenerator) {
        if let weight, let inputCount {
            arena.value(weight).fillUniform(bound: (6 / Float(inputCount + projectedCount)).squareRoot(), using: &generator)
        }
        let attentionBound = (6 / Float(headCount + outputCount)).squareRoot()
        arena.value(attentionSource).fillUniform(bound: attentionBound, using: &generator)
        arena.value(attentionTarget).fillUniform(bound: attentionBound, using: &generator)
        if let bias { arena.value(bias).zero() }
    }

    /// The attention coefficients α of the last forward, before dropout. [E, H]
    public var lastAttention: Tensor? { cache?.attention }

    /// The block-diagonal matrix that turns h [N, H·C] into node scores [N, 2H] in one sgemm:
    /// column head holds a_src[head] in rows head·C..<(head+1)·C, column H + head holds a_dst[head].
    func scoreMatrix() -> Tensor {
        let H = headCount, C = outputCount
        let matrix = Tensor(zeros: [projectedCount, 2 * H])
        let aSource = arena.value(attentionSource).data, aTarget = arena.value(attentionTarget).data
        for head in 0..<H {
            for c in 0..<C {
                matrix[(head * C + c) * 2 * H + head] = aSource[head * C + c]
                matrix[(head * C + c) * 2 * H + H + head] = aTarget[head * C + c]
            }
        }
        return matrix
    }

    /// Attends over `graph`'s rows: [S, H·C] -> [N, H·C] or [N, C], with graph [N, S], N ≤ S.
    ///
    /// The graph may be a block of a sampled mini-batch (DGL's message-flow graph): its N rows are
    /// the nodes computed, its S columns the nodes read, and row i's own node is column i (the
    /// nodes computed come first among those read), so its target score is source node i's.
    public func combine(_ projected: Tensor, input: Tensor?, graph: CSRGraph) -> Tensor {
        let S = projected.rowCount, N = graph.rowCount, H = headCount, HC = projectedCount
        precondition(graph.columnCount == S && N <= S,
                     "GraphAttention: graph is \(graph.rowCount)×\(graph.columnCount) for \(S) source nodes (needs \(S) columns and at most \(S) rows)")
        let E = graph.nonzeroCount
        // The aggregated features: h, or h with value dropout (by `Dropout`'s rule on index n·H·C + k).
        let valueKey: UInt64? = mode == .training && valueDropout > 0 ? maskKey(context: context, tag: tag ^ 0x7661_6c75) : nil
        let values: Tensor
        if let valueKey {
            values = Tensor(uninitialized: projected.shape)
            let threshold = keepThreshold(probability: valueDropout), scale = 1 / (1 - valueDropout)
            for k in 0..<projected.count {
                values.data[k] = isKept(k, key: valueKey, threshold: threshold) ? projected.data[k] * scale : 0
            }
        } else {
            values = projected
        }

        // Node scores [a_srcᵀ h_n | a_dstᵀ h_n] per head: one sgemm with the block-diagonal matrix.
        let matrix = scoreMatrix()
        let nodeScores = Tensor(uninitialized: [S, 2 * H])
        gemm(projected, matrix, into: nodeScores)

        let attention = Tensor(uninitialized: [E, H])
        let dropping = mode == .training && attentionDropout > 0
        let droppedAttention = dropping ? Tensor(uninitialized: [E, H]) : attention
        let aggregated = Tensor(zeros: [N, HC])
        attend(rows: 0..<N, of: graph, nodeScores: nodeScores.data, values: values.data, attention: attention.data,
               dropped: droppedAttention.data, dropoutKey: dropping ? maskKey(context: context, tag: tag) : nil,
               into: aggregated.data)
        let output = concatenatesHeads ? aggregated : Tensor(uninitialized: [N, outputCount])
        finish(aggregated.data, rowCount: N, into: output.data)
        cache = Cache(graph: graph, input: input, projected: projected, scoreMatrix: matrix, nodeScores: nodeScores,
                      attention: attention, droppedAttention: droppedAttention, values: values, valueKey: valueKey)
        return output
    }

    /// The layer's output in evaluation mode, rows in chunks of about `entriesPerChunk` graph
    /// entries, caching nothing: the same values as `combine` in evaluation mode, with per-edge
    /// tensors [chunk entries, H] instead of [E, H]. [S, H·C] -> [N, H·C] or [N, C], graph [N, S]
    public func inferring(projected: Tensor, graph: CSRGraph, entriesPerChunk: Int) -> Tensor {
        let S = projected.rowCount, N = graph.rowCount, H = headCount, HC = projectedCount
        precondition(graph.columnCount == S && N <= S,
                     "GraphAttention: graph is \(graph.rowCount)×\(graph.columnCount) for \(S) source nodes (needs \(S) columns and at most \(S) rows)")
        let nodeScores = Tensor(uninitialized: [S, 2 * H])
        gemm(projected, scoreMatrix(), into: nodeScores)
        let chunks = graph.rowChunks(entriesPerChunk: entriesPerChunk)
        let largest = chunks.map { graph.rowOffsets[$0.upperBound] - graph.rowOffsets[$0.lowerBound] }.max() ?? 0
        let widest = chunks.map(\.count).max() ?? 0
        let attention = Tensor(uninitialized: [largest, H])       // [chunk entries, H]
        let aggregated = Tensor(uninitialized: [widest, HC])      // [chunk rows, H·C]
        let output = Tensor(uninitialized: [N, resultCount])
        for rows in chunks {
            aggregated.data.update(repeating: 0, count: rows.count * HC)
            attend(rows: rows, of: graph, nodeScores: nodeScores.data, values: projected.data, attention: attention.data,
                   dropped: attention.data, dropoutKey: nil, into: aggregated.data)
            finish(aggregated.data, rowCount: rows.count, into: output.data + rows.lowerBound * resultCount)
        }
        return output
    }

    /// Attention of rows `rows` of `graph` over their entries, aggregated into `aggregated` (row i
    /// at (i − rows.lowerBound)·H·C, added to what is there).
    ///
    /// Edge scores minus their row's maximum (per head), exponentiated in one flat pass; then per
    /// row: normalise (a softmax over the row's edges for every head), drop (with a `dropoutKey`,
    /// by `Dropout`'s rule on index e·H + head) and aggregate out_i,head = Σ_e α̃_e,head · h_j,head.
    /// `attention` and `dropped` (the same buffer without dropout) hold the rows' entries from the
    /// first one on: entry e at (e − first)·H. Node scores [S, 2H], values h [S, H·C].
    private func attend(rows: Range<Int>, of graph: CSRGraph, nodeScores scores: UnsafePointer<Float>,
                        values h: UnsafePointer<Float>, attention alpha: UnsafeMutablePointer<Float>,
                        dropped: UnsafeMutablePointer<Float>, dropoutKey: UInt64?, into aggregated: UnsafeMutablePointer<Float>) {
        let H = headCount, C = outputCount, HC = projectedCount
        let threshold = keepThreshold(probability: attentionDropout), keptScale = 1 / (1 - attentionDropout)
        let scratch = Tensor(uninitialized: [H])                  // row maximum, then 1 / row sum
        let m = scratch.data
        let slope = negativeSlope
        graph.rowOffsets.withUnsafeBufferPointer { offsets in
            graph.columnIndices.withUnsafeBufferPointer { columns in
                let first = offsets[rows.lowerBound]
                for i in rows {
                    let row = offsets[i]..<offsets[i + 1]
                    if row.isEmpty { continue }
                    m.update(repeating: -.infinity, count: H)
                    let target = scores + i * 2 * H + H
                    for e in row {
                        let source = scores + Int(columns[e]) * 2 * H, score = alpha + (e - first) * H
                        for head in 0..<H {
                            let z = source[head] + target[head]
                            let leaky = z > 0 ? z : slope * z
                            score[head] = leaky
                            m[head] = Swift.max(m[head], leaky)
                        }
                    }
                    for e in row {
                        let score = alpha + (e - first) * H
                        for head in 0..<H { score[head] -= m[head] }
                    }
                }
                for k in 0..<((offsets[rows.upperBound] - first) * H) { alpha[k] = fastExp(alpha[k]) }
                for i in rows {
                    let row = offsets[i]..<offsets[i + 1]
                    if row.isEmpty { continue }
                    m.update(repeating: 0, count: H)
                    for e in row {
                        let score = alpha + (e - first) * H
                        for head in 0..<H { m[head] += score[head] }
                    }
                    for head in 0..<H { m[head] = 1 / m[head] }
                    for e in row {
                        let score = alpha + (e - first) * H
                        for head in 0..<H { score[head] *= m[head] }
                    }
                    if let dropoutKey {
                        for k in (row.lowerBound * H)..<(row.upperBound * H) {
                            let scaled = alpha[k - first * H] * keptScale         // a select, not a branch
                            dropped[k - first * H] = isKept(k, key: dropoutKey, threshold: threshold) ? scaled : 0
                        }
                    }
                    let out = aggregated + (i - rows.lowerBound) * HC
                    for e in row {
                        let features = h + Int(columns[e]) * HC, coefficients = dropped + (e - first) * H
                        for head in 0..<H {
                            addScaled(coefficients[head], features + head * C, into: out + head * C, count: C)
                        }
                    }
                }
            }
        }
    }

    /// The output rows from the aggregated ones [rows, H·C]: heads concatenated (`output` may be
    /// `aggregated` itself) or averaged, plus the bias. -> [rows, H·C] or [rows, C]
    private func finish(_ aggregated: UnsafeMutablePointer<Float>, rowCount: Int, into output: UnsafeMutablePointer<Float>) {
        let H = headCount, C = outputCount, HC = projectedCount
        if concatenatesHeads {
            if let bias {
                let b = arena.value(bias).data
                for n in 0..<rowCount {
                    let a = aggregated + n * HC, y = output + n * HC
                    for k in 0..<HC { y[k] = a[k] + b[k] }
                }
            } else if output != aggregated {
                output.update(from: aggregated, count: rowCount * HC)
            }
        } else {
            let b = bias.map { arena.value($0).data }
            let inverseH = 1 / Float(H)
            for n in 0..<rowCount {
                let y = output + n * C, a = aggregated + n * HC
                if let b { y.update(from: b, count: C) } else { y.update(repeating: 0, count: C) }
                for head in 0..<H { addScaled(inverseH, a + head * C, into: y, count: C) }
            }
        }
    }

    /// Adds the parameter gradients; returns the gradient of the last forward's input:
    /// x [S, I] after `forward(_:graph:)`, h [S, H·C] after `forward(projected:graph:)`.
    public func backward(_ outputGradient: Tensor) -> Tensor {
        guard let cache else { preconditionFailure("GraphAttention.backward before forward") }
        let graph = cache.graph
        let N = graph.rowCount, S = graph.columnCount, H = headCount, C = outputCount, HC = projectedCount
        precondition(outputGradient.rowCount == N && outputGradient.columnCount == resultCount,
                     "GraphAttention.backward expects a gradient of [\(N), \(resultCount)], got \(outputGradient.shape)")
        if let bias { addColumnSums(outputGradient, into: arena.gradient(bias)) }

        // d(aggregated) [N, H·C]: the output gradient itself, or spread over the heads.
        let dAggregated: Tensor
        if concatenatesHeads {
            dAggregated = outputGradient
        } else {
            dAggregated = Tensor(uninitialized: [N, HC])
            let inverseH = 1 / Float(H)
            for n in 0..<N {
                let dy = outputGradient.data + n * C, da = dAggregated.data + n * HC
                for head in 0..<H {
                    let dah = da + head * C
                    for c in 0..<C { dah[c] = inverseH * dy[c] }
                }
            }
        }

        let h = cache.values.data, dOut = dAggregated.data
        let alpha = cache.attention.data, dropped = cache.droppedAttention.data, scores = cache.nodeScores.data
        let dProjected = Tensor(zeros: [S, HC])                    // dh
        // The aggregation's gradient lands on the dropped values first, when value dropout is on.
        let dValues = cache.valueKey == nil ? dProjected : Tensor(zeros: [S, HC])
        let dNodeScores = Tensor(zeros: [S, 2 * H])                // [d source score | d target score]
        let dv = dValues.data, dScores = dNodeScores.data
        let slope = negativeSlope
        let edgeTerms = Tensor(uninitialized: [graph.nonzeroCount, H])   // α̃·dα̃ per edge
        let projection = Tensor(uninitialized: [H])                      // Σ_row α̃·dα̃
        graph.rowOffsets.withUnsafeBufferPointer { offsets in
            graph.columnIndices.withUnsafeBufferPointer { columns in
                let terms = edgeTerms.data, p = projection.data
                for i in 0..<N {
                    let row = offsets[i]..<offsets[i + 1]
                    if row.isEmpty { continue }
                    p.update(repeating: 0, count: H)
                    let dOutI = dOut + i * HC
                    // Aggregation backward: dα̃_e = ⟨dout_i, h_j⟩, dh_j += α̃_e · dout_i (per head).
                    for e in row {
                        let j = Int(columns[e])
                        let features = h + j * HC, dFeatures = dv + j * HC, term = terms + e * H
                        for head in 0..<H {
                            let a = dropped[e * H + head], g = dOutI + head * C
                            let dAlpha = innerProduct(g, features + head * C, count: C)
                            addScaled(a, g, into: dFeatures + head * C, count: C)
                            term[head] = a * dAlpha
                        }
                        for head in 0..<H { p[head] += term[head] }
                    }
                    // Dropout and softmax backward together: with α̃ = m·α/(1−p), the score gradient
                    // α ⊙ (dα − ⟨α, dα⟩) for dα = m·dα̃/(1−p) is α̃·dα̃ − α·Σ_row α̃·dα̃ (no mask needed).
                    // Then LeakyReLU backward, and the score splits into its source and target parts.
                    let target = scores + i * 2 * H + H, dTarget = dScores + i * 2 * H + H
                    for e in row {
                        let j = Int(columns[e])
                        let source = scores + j * 2 * H, dSource = dScores + j * 2 * H
                        let term = terms + e * H, a = alpha + e * H
                        for head in 0..<H {
                            let dScore = term[head] - a[head] * p[head]
                            let z = source[head] + target[head]
                            let dz = z > 0 ? dScore : slope * dScore
                            dSource[head] += dz
                            dTarget[head] += dz
                        }
                    }
                }
            }
        }

        let dh = dProjected.data
        if let valueKey = cache.valueKey {
            // Through the value dropout: dh = mask ⊙ dv / (1 − p).
            let threshold = keepThreshold(probability: valueDropout), scale = 1 / (1 - valueDropout)
            for k in 0..<(S * HC) { dh[k] = isKept(k, key: valueKey, threshold: threshold) ? dv[k] * scale : 0 }
        }
        // Node scores backward: dh += dS·Bᵀ ; dB = hᵀ·dS, whose diagonal blocks are da_src and da_dst.
        BLAS.sgemm(m: S, n: HC, k: 2 * H, a: dScores, lda: 2 * H, b: cache.scoreMatrix.data, ldb: 2 * H,
                   transposingB: true, beta: 1, c: dh, ldc: HC)
        let dMatrix = Tensor(uninitialized: [HC, 2 * H])
        BLAS.sgemm(m: HC, n: 2 * H, k: S, a: cache.projected.data, lda: HC, transposingA: true, b: dScores, ldb: 2 * H,
                   c: dMatrix.data, ldc: 2 * H)
        let daSource = arena.gradient(attentionSource).data, daTarget = arena.gradient(attentionTarget).data
        for head in 0..<H {
            for c in 0..<C {
                daSource[head * C + c] += dMatrix[(head * C + c) * 2 * H + head]
                daTarget[head * C + c] += dMatrix[(head * C + c) * 2 * H + H + head]
            }
        }

        guard let input = cache.input, let weight else { return dProjected }
        // dW += xᵀ·dh ; dx = dh·Wᵀ
        gemm(input, transposingA: true, dProjected, into: arena.gradient(weight), beta: 1)
        let inputGradient = Tensor(uninitialized: input.shape)
        gemm(dProjected, arena.value(weight), transposingB: true, into: inputGradient)
        return inputGradient
    }
}

// MARK: - Short-row kernels

// A head's C features are short rows (8 in GAT's hidden layer on Cora, 7 in its output layer),
// below the trip count at which the loop vectoriser's interleaved body starts, so these go eight
// and then four lanes at a time by hand.

@inline(__always)
private func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self) }

/// y += a·x. [count]
@inline(__always)
private func addScaled(_ a: Float, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
    var c = 0
    while c + 8 <= count {
        UnsafeMutableRawPointer(y + c).storeBytes(of: load8(y + c) + SIMD8(repeating: a) * load8(x + c), as: SIMD8<Float>.self)
        c += 8
    }
    if c + 4 <= count {
        UnsafeMutableRawPointer(y + c).storeBytes(of: load4(y + c) + SIMD4(repeating: a) * load4(x + c), as: SIMD4<Float>.self)
        c += 4
    }
    while c < count { y[c] += a * x[c]; c += 1 }
}

/// Σ x·y. [count]
@inline(__always)
private func innerProduct(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Float {
    var lanes = SIMD8<Float>()
    var c = 0
    while c + 8 <= count { lanes += load8(x + c) * load8(y + c); c += 8 }
    var sum = lanes.sum()
    if c + 4 <= count { sum += (load4(x + c) * load4(y + c)).sum(); c += 4 }
    while c < count { sum += x[c] * y[c]; c += 1 }
    return sum
}
