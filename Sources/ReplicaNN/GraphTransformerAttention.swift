import Foundation
import ReplicaCore

// Legend: N nodes, H heads, C features per head (queries, keys and values alike), I inputs,
// R rows in a block of queries. The projection is [N, 3·H·C]: queries, then keys, then values,
// head h at columns h·C..<(h+1)·C of each third.

/// Full (global) multi-head attention over every node of the graph, with the graph's edges as an
/// additive bias (a graph Transformer layer, as Graphormer's attention bias restricted to "is an
/// edge"). [N, I] -> [N, H·C] (heads concatenated) or [N, C] (heads averaged)
///
///     q, k, v = x·W                                         [N, H·C] each
///     s_ij = q_i·k_j / √C + β_h · [j -> i is an edge]      per head, for every pair (i, j)
///     out_i = Σ_j softmax_j(s_ij) v_j, heads concatenated (or averaged), + bias
///
/// Every node attends to all N nodes; β_h (one learnt scalar per head) tells neighbours apart.
/// The N×N scores are never stored: forward walks blocks of R query rows (one sgemm for the block's
/// scores, the bias added along the block's edges, a softmax, one sgemm for the values) and keeps
/// each row's log-sum-exp; backward recomputes a block's probabilities from it (the flash-attention
/// recipe), so memory is O(N·H·C + R·N) and time O(N²·H·C) in sgemms plus O(N²·H) exponentials.
///
/// Parameters: `\(name).weight` [I, 3·H·C] (absent when `inputs` is nil and the caller projects),
/// `\(name).edge_bias` [H], `\(name).bias` [H·C] or [C].
public final class GraphTransformerAttention: ProjectingGraphLayer {
    public let weight: ParameterSlot?         // [I, 3·H·C]
    public let edgeBias: ParameterSlot        // β [H]
    public let bias: ParameterSlot?
    public let inputCount: Int?
    public let headCount: Int
    public let outputCount: Int               // C, per head
    public let concatenatesHeads: Bool
    /// Query rows per block: the R×N score block is the only quadratic buffer.
    public var blockRows = 256
    /// β at initialisation. 0 starts from attention spread over all nodes (Graphormer's biases
    /// start near 0); ln N makes a node of in-degree d put about d/(d+1) of it on its neighbours.
    public var initialEdgeBias: Float = 0
    public var mode: Mode = .training          // no dropout inside; the model drops layer inputs
    public var context = RandomContext(seed: 0)
    public let arena: ParameterArena

    struct Cache {
        var graph: CSRGraph
        var input: Tensor?                    // [N, I] when the layer projected it
        var projected: Tensor                 // q | k | v [N, 3·H·C]
        var logSumExp: Tensor                 // [H, N]
    }
    var cache: Cache?

    public init(_ name: String, inputs: Int?, outputs: Int, heads: Int, concatenatesHeads: Bool = true,
                bias: Bool = true, arena: ParameterArena) {
        precondition(heads > 0 && outputs > 0, "GraphTransformerAttention needs heads and outputs > 0, got \(heads), \(outputs)")
        self.arena = arena
        inputCount = inputs
        headCount = heads
        outputCount = outputs
        self.concatenatesHeads = concatenatesHeads
        weight = inputs.map { arena.declare("\(name).weight", shape: [$0, 3 * heads * outputs], decays: true) }
        edgeBias = arena.declare("\(name).edge_bias", shape: [heads], decays: false)
        self.bias = bias ? arena.declare("\(name).bias", shape: [concatenatesHeads ? heads * outputs : outputs], decays: false) : nil
    }

    /// Width of the projection q | k | v, 3·H·C.
    public var projectedCount: Int { 3 * headCount * outputCount }
    /// Width of the output: H·C when concatenating, C when averaging.
    public var resultCount: Int { concatenatesHeads ? headCount * outputCount : outputCount }

    /// Glorot uniform weight, β = `initialEdgeBias`, zero bias.
    public func initialize(using generator: inout SeededGenerator) {
        if let weight, let inputCount {
            let bound = (6 / Float(inputCount + headCount * outputCount)).squareRoot()
            arena.value(weight).fillUniform(bound: bound, using: &generator)
        }
        arena.value(edgeBias).fill(initialEdgeBias)
        if let bias { arena.value(bias).zero() }
    }

    /// Scores of query rows `rows` for `head` into `block` [R, N]: q·kᵀ/√C plus β along edges.
    func scores(_ projected: Tensor, head: Int, rows: Range<Int>, graph: CSRGraph, into block: UnsafeMutablePointer<Float>) {
        let N = projected.rowCount, C = outputCount, HC = headCount * outputCount, width = 3 * HC
        BLAS.sgemm(m: rows.count, n: N, k: C, alpha: 1 / Float(C).squareRoot(),
                   a: projected.data + rows.lowerBound * width + head * C, lda: width,
                   b: projected.data + HC + head * C, ldb: width, transposingB: true, c: block, ldc: N)
        let beta = arena.value(edgeBias)[head]
        for i in rows {
            let row = block + (i - rows.lowerBound) * N
            for e in graph.range(ofRow: i) { row[Int(graph.columnIndices[e])] += beta }
        }
    }

    public func combine(_ projected: Tensor, input: Tensor?, graph: CSRGraph) -> Tensor {
        let N = projected.rowCount, H = headCount, C = outputCount, HC = H * C, width = 3 * HC
        precondition(graph.rowCount == N && graph.columnCount == N,
                     "GraphTransformerAttention: graph is \(graph.rowCount)×\(graph.columnCount) for \(N) nodes")
        let R = max(1, min(blockRows, N))
        let block = Tensor(uninitialized: [R, N])
        let logSumExp = Tensor(uninitialized: [H, N])
        let aggregated = Tensor(uninitialized: [N, HC])
        for head in 0..<H {
            for start in stride(from: 0, to: N, by: R) {
                let rows = start..<min(start + R, N)
                scores(projected, head: head, rows: rows, graph: graph, into: block.data)
                for i in rows {
                    let row = block.data + (i - start) * N
                    let maximum = rowMaximum(row, count: N)
                    for j in 0..<N { row[j] = fastExp(row[j] - maximum) }
                    let sum = rowSum(row, count: N), inverse = 1 / sum
                    for j in 0..<N { row[j] *= inverse }
                    logSumExp[head * N + i] = maximum + log(sum)
                }
                // out[rows, head] = P·v_head
                BLAS.sgemm(m: rows.count, n: C, k: N, a: block.data, lda: N,
                           b: projected.data + 2 * HC + head * C, ldb: width,
                           c: aggregated.data + start * HC + head * C, ldc: HC)
            }
        }
        let output: Tensor
        if concatenatesHeads {
            output = aggregated
            if let bias {
                let b = arena.value(bias).data
                for n in 0..<N { let y = output.data + n * HC; for k in 0..<HC { y[k] += b[k] } }
            }
        } else {
            output = Tensor(uninitialized: [N, C])
            let b = bias.map { arena.value($0).data }, inverseH = 1 / Float(H)
            for n in 0..<N {
                let y = output.data + n * C, a = aggregated.data + n * HC
                if let b { y.update(from: b, count: C) } else { y.update(repeating: 0, count: C) }
                for head in 0..<H { for c in 0..<C { y[c] += inverseH * a[head * C + c] } }
            }
        }
        cache = Cache(graph: graph, input: input, projected: projected, logSumExp: logSumExp)
        return output
    }

    /// Adds the parameter gradients; returns the gradient of x (or of q | k | v after `forward(projected:)`).
    public func backward(_ outputGradient: Tensor) -> Tensor {
        guard let cache else { preconditionFailure("GraphTransformerAttention.backward before forward") }
        let graph = cache.graph, projected = cache.projected
        let N = graph.rowCount, H = headCount, C = outputCount, HC = H * C, width = 3 * HC
        precondition(outputGradient.rowCount == N && outputGradient.columnCount == resultCount,
                     "GraphTransformerAttention.backward expects [\(N), \(resultCount)], got \(outputGradient.shape)")
        if let bias { addColumnSums(outputGradient, into: arena.gradient(bias)) }
        let dAggregated: Tensor                                  // [N, H·C]
        if concatenatesHeads {
            dAggregated = outputGradient
        } else {
            dAggregated = Tensor(uninitialized: [N, HC])
            let inverseH = 1 / Float(H)
            for n in 0..<N {
                let dy = outputGradient.data + n * C, da = dAggregated.data + n * HC
                for head in 0..<H { for c in 0..<C { da[head * C + c] = inverseH * dy[c] } }
            }
        }
        let dProjected = Tensor(zeros: [N, width])               // dq | dk | dv
        let R = max(1, min(blockRows, N))
        let probabilities = Tensor(uninitialized: [R, N]), dScores = Tensor(uninitialized: [R, N])
        let dBeta = arena.gradient(edgeBias), scale = 1 / Float(C).squareRoot()
        for head in 0..<H {
            var betaGradient = 0.0
            for start in stride(from: 0, to: N, by: R) {
                let rows = start..<min(start + R, N), r = rows.count
                let P = probabilities.data, dS = dScores.data
                scores(projected, head: head, rows: rows, graph: graph, into: P)
                for i in rows {
                    let row = P + (i - start) * N, lse = cache.logSumExp[head * N + i]
                    for j in 0..<N { row[j] = fastExp(row[j] - lse) }
                }
                let dOut = dAggregated.data + start * HC + head * C
                // dv_head += Pᵀ·dout ; dP = dout·v_headᵀ
                BLAS.sgemm(m: N, n: C, k: r, a: P, lda: N, transposingA: true, b: dOut, ldb: HC,
                           beta: 1, c: dProjected.data + 2 * HC + head * C, ldc: width)
                BLAS.sgemm(m: r, n: N, k: C, a: dOut, lda: HC, b: projected.data + 2 * HC + head * C, ldb: width,
                           transposingB: true, c: dS, ldc: N)
                // Softmax backward: ds = P ⊙ (dP − Σ_j P·dP) per row.
                for i in 0..<r {
                    let p = P + i * N, g = dS + i * N
                    let inner = rowDot(p, g, count: N)
                    for j in 0..<N { g[j] = p[j] * (g[j] - inner) }
                    for e in graph.range(ofRow: start + i) { betaGradient += Double(g[Int(graph.columnIndices[e])]) }
                }
                // dq_rows = ds·k/√C ; dk += dsᵀ·q_rows/√C
                BLAS.sgemm(m: r, n: C, k: N, alpha: scale, a: dS, lda: N, b: projected.data + HC + head * C, ldb: width,
                           beta: 1, c: dProjected.data + start * width + head * C, ldc: width)
                BLAS.sgemm(m: N, n: C, k: r, alpha: scale, a: dS, lda: N, transposingA: true,
                           b: projected.data + start * width + head * C, ldb: width,
                           beta: 1, c: dProjected.data + HC + head * C, ldc: width)
            }
            dBeta[head] += Float(betaGradient)
        }
        guard let input = cache.input, let weight else { return dProjected }
        gemm(input, transposingA: true, dProjected, into: arena.gradient(weight), beta: 1)
        let inputGradient = Tensor(uninitialized: input.shape)
        gemm(dProjected, arena.value(weight), transposingB: true, into: inputGradient)
        return inputGradient
    }
}
