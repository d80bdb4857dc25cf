import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// Agreement with the Double dense reference: float32 sums of a handful of terms.
private let denseReferenceTolerance: Float = 1e-4
/// Attention rows sum to one up to float32 rounding over a few terms.
private let attentionSumTolerance: Float = 1e-5
/// Element-wise central differences of near-zero derivatives: rounding of L ≈ 1 over 2ε = 2e-3.
private let elementAbsoluteTolerance = 1e-3
/// A subgraph's sgemm blocks rows differently from the whole graph's, so sums may round differently.
private let subgraphTolerance: Float = 1e-5

/// Seven nodes with in-degrees 1 to 6 (self-loops included): node 0 hears from everyone, node 5
/// only from itself.
private func smallGraph() -> CSRGraph {
    let edges: [(Int32, Int32)] = [   // source -> target
        (1, 0), (2, 0), (3, 0), (4, 0), (5, 0),
        (0, 1), (2, 1),
        (1, 2),
        (6, 3),
        (0, 4), (3, 4), (5, 4), (6, 4),
        (4, 6), (2, 6),
    ]
    return CSRMatrix.graph(nodeCount: 7, sources: edges.map(\.0), targets: edges.map(\.1), symmetric: false, selfLoops: true)
}

/// A layer with random parameters (bias included) on a fresh arena.
private func graphAttention(inputs: Int?, outputs: Int = 3, heads: Int = 2, concatenates: Bool, dropout: Float = 0,
                            seed: UInt64 = 21) -> (GraphAttention, ParameterArena) {
    let arena = ParameterArena()
    let layer = GraphAttention("gat", inputs: inputs, outputs: outputs, heads: heads, concatenatesHeads: concatenates,
                               attentionDropout: dropout, tag: 5, context: RandomContext(seed: 9, rank: 0, step: 2),
                               arena: arena)
    arena.allocate()
    var generator = SeededGenerator(seed: seed)
    arena.allValues.fillUniform(bound: 1, using: &generator)
    return (layer, arena)
}

/// GAT computed from its definition with plain loops over a dense adjacency matrix, in Double.
private func denseReference(_ layer: GraphAttention, arena: ParameterArena, x: Tensor, graph: CSRGraph) -> [Float] {
    let N = x.rowCount, I = x.columnCount, H = layer.headCount, C = layer.outputCount
    var adjacent = [[Bool]](repeating: [Bool](repeating: false, count: N), count: N)
    for i in 0..<N { for e in graph.range(ofRow: i) { adjacent[i][Int(graph.columnIndices[e])] = true } }
    let w = arena.value(layer.weight!), aSource = arena.value(layer.attentionSource), aTarget = arena.value(layer.attentionTarget)
    var h = [[Double]](repeating: [Double](repeating: 0, count: H * C), count: N)
    for n in 0..<N { for k in 0..<(H * C) { for f in 0..<I { h[n][k] += Double(x[n * I + f]) * Double(w[f * H * C + k]) } } }
    var result = [Double](repeating: 0, count: N * layer.resultCount)
    for i in 0..<N {
        for head in 0..<H {
            func score(_ n: Int, _ a: Tensor) -> Double { (0..<C).reduce(0) { $0 + Double(a[head * C + $1]) * h[n][head * C + $1] } }
            var logits = [Double](repeating: -.infinity, count: N)
            for j in 0..<N where adjacent[i][j] {
                let z = score(j, aSource) + score(i, aTarget)
                logits[j] = z > 0 ? z : 0.2 * z
            }
            let maximum = logits.max()!
            let weights = logits.map { $0 == -.infinity ? 0 : exp($0 - maximum) }
            let total = weights.reduce(0, +)
            for c in 0..<C {
                let value = (0..<N).reduce(0) { $0 + weights[$1] / total * h[$1][head * C + c] }
                if layer.concatenatesHeads { result[i * H * C + head * C + c] = value } else { result[i * C + c] += value / Double(H) }
            }
        }
    }
    if let bias = layer.bias {
        let b = arena.value(bias)
        for i in 0..<N { for k in 0..<layer.resultCount { result[i * layer.resultCount + k] += Double(b[k]) } }
    }
    return result.map { Float($0) }
}

@Suite struct GraphAttentionTests {
    static let gradientCases: [(Bool, Float)] = [(true, 0), (false, 0), (true, 0.5), (false, 0.5)]

    @Test(arguments: gradientCases)
    func gradientsMatchFiniteDifferences(concatenates: Bool, dropout: Float) {
        let (layer, arena) = graphAttention(inputs: 4, concatenates: concatenates, dropout: dropout)
        let graph = smallGraph()
        let x = randomTensor([7, 4], seed: 22), r = randomTensor([7, layer.resultCount], seed: 23)
        expectGradientsMatch(checkGradients(arena: arena, inputs: [x], directions: 5,
            loss: { dot(layer.forward(x, graph: graph), r) },
            gradients: { _ = layer.forward(x, graph: graph); return [layer.backward(r)] }),
            "concatenates \(concatenates) dropout \(dropout)")
    }

    @Test func projectedInputGradientsMatchFiniteDifferences() {
        let (layer, arena) = graphAttention(inputs: nil, outputs: 4, heads: 3, concatenates: true, dropout: 0.3)
        #expect(layer.weight == nil)
        let graph = smallGraph()
        let h = randomTensor([7, 12], seed: 24), r = randomTensor([7, 12], seed: 25)
        expectGradientsMatch(checkGradients(arena: arena, inputs: [h], directions: 5,
            loss: { dot(layer.forward(projected: h, graph: graph), r) },
            gradients: { _ = layer.forward(projected: h, graph: graph); return [layer.backward(r)] }))
    }

    /// A block [4, 7] (a sampled mini-batch's layer): nodes 0..<4 computed from all 7, row i's own
    /// node in column i. Its input gradient has a row for every node read.
    @Test(arguments: [true, false])
    func gradientsMatchFiniteDifferencesOnABlock(concatenates: Bool) {
        let (layer, arena) = graphAttention(inputs: 4, concatenates: concatenates, dropout: 0.5)
        let block = smallGraph().gatheringRows([0, 1, 2, 3])
        #expect(block.rowCount == 4 && block.columnCount == 7)
        let x = randomTensor([7, 4], seed: 35), r = randomTensor([4, layer.resultCount], seed: 36)
        expectGradientsMatch(checkGradients(arena: arena, inputs: [x], directions: 5,
            loss: { dot(layer.forward(x, graph: block), r) },
            gradients: { _ = layer.forward(x, graph: block); return [layer.backward(r)] }),
            "concatenates \(concatenates)")
    }

    /// A block's rows are the whole graph's rows: the same sums in the same order, so equal bit for bit.
    @Test(arguments: [true, false])
    func aBlockComputesItsRowsOfTheWholeGraph(concatenates: Bool) {
        let (layer, _) = graphAttention(inputs: 5, heads: 3, concatenates: concatenates)
        let graph = smallGraph(), x = randomTensor([7, 5], seed: 37)
        let whole = layer.forward(x, graph: graph).scalars
        let rows = layer.forward(x, graph: graph.gatheringRows([0, 1, 2, 3])).scalars
        #expect(rows == Array(whole.prefix(4 * layer.resultCount)))
    }

    /// Layer-wise inference in chunks of rows computes each row as one pass over all rows does
    /// (the same sums in the same order): equal bit for bit, whatever the chunk.
    @Test(arguments: [1, 4, 9, 1000])
    func chunkedInferenceEqualsTheEvaluationForward(entriesPerChunk: Int) {
        for concatenates in [true, false] {
            let (layer, _) = graphAttention(inputs: 5, heads: 3, concatenates: concatenates, dropout: 0.5)
            layer.mode = .evaluation
            let graph = smallGraph(), x = randomTensor([7, 5], seed: 38)
            #expect(layer.inferring(x, graph: graph, entriesPerChunk: entriesPerChunk).scalars
                    == layer.forward(x, graph: graph).scalars, "concatenates \(concatenates)")
        }
    }

    @Test func elementwiseGradientsMatchFiniteDifferencesOnATinyLayer() {
        // Every parameter and input element on its own, not just random directions.
        let (layer, arena) = graphAttention(inputs: 2, outputs: 2, heads: 2, concatenates: false, dropout: 0.4, seed: 26)
        let graph = smallGraph()
        let x = randomTensor([7, 2], seed: 27), r = randomTensor([7, 2], seed: 28)
        arena.zeroGradients()
        _ = layer.forward(x, graph: graph)
        let dx = layer.backward(r)
        let epsilon: Float = 1e-3
        func numerical(_ value: UnsafeMutablePointer<Float>) -> Double {
            let saved = value.pointee
            value.pointee = saved + epsilon
            let plus = dot(layer.forward(x, graph: graph), r)
            value.pointee = saved - epsilon
            let minus = dot(layer.forward(x, graph: graph), r)
            value.pointee = saved
            return (plus - minus) / (2 * Double(epsilon))
        }
        func expectClose(_ analytic: Double, _ numerical: Double, _ what: String) {
            let error = abs(analytic - numerical)
            #expect(error < finiteDifferenceTolerance * max(abs(analytic), abs(numerical)) || error < elementAbsoluteTolerance,
                    "\(what): analytic \(analytic), numerical \(numerical)")
        }
        for k in 0..<arena.count {
            expectClose(Double(arena.gradients.pointer[k]), numerical(arena.values.pointer + k), "parameter \(k)")
        }
        for k in 0..<x.count { expectClose(Double(dx[k]), numerical(x.data + k), "input \(k)") }
    }

    @Test func attentionOfEachNodeSumsToOneOverItsNeighbours() {
        let (layer, _) = graphAttention(inputs: 4, heads: 3, concatenates: true)
        let graph = smallGraph()
        _ = layer.forward(randomTensor([7, 4], seed: 29), graph: graph)
        let alpha = layer.lastAttention!
        #expect(alpha.shape == [graph.nonzeroCount, 3])
        for i in 0..<7 {
            for head in 0..<3 {
                let total = graph.range(ofRow: i).reduce(Float(0)) { $0 + alpha[$1 * 3 + head] }
                #expect(abs(total - 1) < attentionSumTolerance, "node \(i) head \(head): \(total)")
                #expect(graph.range(ofRow: i).allSatisfy { alpha[$0 * 3 + head] > 0 })
            }
        }
    }

    @Test(arguments: [true, false])
    func outputAgreesWithADenseReference(concatenates: Bool) {
        let (layer, arena) = graphAttention(inputs: 5, outputs: 3, heads: 4, concatenates: concatenates)
        let graph = smallGraph()
        let x = randomTensor([7, 5], seed: 30)
        let y = layer.forward(x, graph: graph)
        #expect(y.shape == [7, layer.resultCount])
        let expected = denseReference(layer, arena: arena, x: x, graph: graph)
        #expect(maximumRelativeDifference(y.scalars, expected, floor: 1e-3) < denseReferenceTolerance)
    }

    @Test func nodesSeeOnlyTheirInNeighbours() {
        let (layer, _) = graphAttention(inputs: 4, concatenates: true)
        let graph = smallGraph()
        let width = layer.resultCount
        let x = randomTensor([7, 4], seed: 31)
        let before = layer.forward(x, graph: graph).copy()
        for f in 0..<4 { x[3 * 4 + f] += 2 }   // node 3 feeds 0, 3 and 4 only
        let after = layer.forward(x, graph: graph)
        for i in 0..<7 {
            let rowBefore = Array(before.scalars[(i * width)..<((i + 1) * width)])
            let rowAfter = Array(after.scalars[(i * width)..<((i + 1) * width)])
            if [0, 3, 4].contains(i) {
                #expect(rowBefore != rowAfter, "node \(i) hears from node 3")
            } else {
                #expect(rowBefore == rowAfter, "node \(i) does not hear from node 3")
            }
        }
    }

    @Test func evaluationModeDropsNoAttention() {
        let (layer, _) = graphAttention(inputs: 4, concatenates: true, dropout: 0.5)
        let (reference, _) = graphAttention(inputs: 4, concatenates: true, dropout: 0)
        let graph = smallGraph(), x = randomTensor([7, 4], seed: 32)
        let training = layer.forward(x, graph: graph).scalars
        layer.mode = .evaluation
        #expect(layer.forward(x, graph: graph).scalars == reference.forward(x, graph: graph).scalars)
        #expect(training != reference.forward(x, graph: graph).scalars)
    }

    @Test func twoLayersOnTheTwoHopSubgraphMatchTheWholeGraphAtTheSeeds() {
        // A layer-wise model on the k-hop subgraph computes the seeds exactly as on the whole graph.
        var generator = SeededGenerator(seed: 33)
        var sources: [Int32] = [], targets: [Int32] = []
        for _ in 0..<120 {
            sources.append(Int32(generator.nextInt(below: 60)))
            targets.append(Int32(generator.nextInt(below: 60)))
        }
        let graph = CSRMatrix.graph(nodeCount: 60, sources: sources, targets: targets, symmetric: true, selfLoops: true)
        let arena = ParameterArena()
        let first = GraphAttention("conv1", inputs: 6, outputs: 4, heads: 2, arena: arena)
        let second = GraphAttention("conv2", inputs: 8, outputs: 3, heads: 1, concatenatesHeads: false, arena: arena)
        arena.allocate()
        first.initialize(using: &generator)
        second.initialize(using: &generator)
        let x = randomTensor([60, 6], seed: 34)
        func model(_ x: Tensor, _ graph: CSRGraph) -> Tensor {
            second.forward(first.forward(x, graph: graph), graph: graph)
        }
        let whole = model(x, graph)
        let seeds: [Int32] = [7, 41, 0]
        let (local, nodes) = graph.subgraph(rows: seeds, hops: 2, fanout: nil, generator: &generator)
        #expect(local.rowCount < 60, "the test needs a proper subgraph")
        let localX = Tensor(zeros: [nodes.count, 6])
        for (v, global) in nodes.enumerated() { for f in 0..<6 { localX[v * 6 + f] = x[Int(global) * 6 + f] } }
        let part = model(localX, local)
        for (v, seed) in seeds.enumerated() {
            let expected = (0..<3).map { whole[Int(seed) * 3 + $0] }, actual = (0..<3).map { part[v * 3 + $0] }
            #expect(maximumRelativeDifference(actual, expected, floor: 1e-3) < subgraphTolerance, "seed \(seed)")
        }
    }
}

/// A sparse matrix with about `density` of its entries stored (a quarter: SparseLinear's dense
/// path), and the same matrix dense.
private func sparseFeatures(rows: Int, columns: Int, pattern: Bool, seed: UInt64, density: Float = 0.25) -> (CSRMatrix, Tensor) {
    var generator = SeededGenerator(seed: seed)
    let dense = Tensor(zeros: [rows, columns])
    var offsets = [0], indices: [Int32] = [], values: [Float] = []
    for r in 0..<rows {
        for c in 0..<columns where generator.nextUniform() < density {
            let value = pattern ? 1 : generator.nextUniform() * 2 - 1
            indices.append(Int32(c))
            values.append(value)
            dense[r * columns + c] = value
        }
        offsets.append(indices.count)
    }
    return (CSRMatrix(rowCount: rows, columnCount: columns, rowOffsets: offsets, columnIndices: indices,
                      values: pattern ? [] : values), dense)
}

@Suite struct SparseLinearTests {
    static let context = RandomContext(seed: 4, rank: 0, step: 7)

    private func layer(bias: Bool) -> (SparseLinear, ParameterArena) {
        let arena = ParameterArena()
        let layer = SparseLinear("conv1", inputs: 9, outputs: 5, bias: bias, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 40)
        arena.allValues.fillUniform(bound: 1, using: &generator)
        return (layer, arena)
    }

    /// (bias, dropout, density): a quarter of the entries stored runs the dense path, a tenth the sparse one.
    static let gradientCases: [(Bool, Float, Float)] = [(true, 0, 0.25), (false, 0, 0.25), (true, 0.6, 0.25), (true, 0.6, 0.1)]

    @Test(arguments: gradientCases)
    func gradientsMatchFiniteDifferences(bias: Bool, dropout: Float, density: Float) {
        let (layer, arena) = layer(bias: bias)
        let (x, _) = sparseFeatures(rows: 6, columns: 9, pattern: false, seed: 41, density: density)
        let r = randomTensor([6, 5], seed: 42)
        func forward() -> Tensor { layer.forward(x, dropout: dropout, context: Self.context, tag: 3, mode: .training) }
        expectGradientsMatch(checkGradients(arena: arena, inputs: [],
            loss: { dot(forward(), r) },
            gradients: { _ = forward(); layer.backward(r); return [] }), "bias \(bias) dropout \(dropout)")
    }

    /// Each block of outputs (an attention head) with its own input dropout mask.
    @Test func perGroupDropoutGradientsMatchFiniteDifferences() {
        let arena = ParameterArena()
        let layer = SparseLinear("conv1", inputs: 9, outputs: 6, bias: false, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: 44)
        arena.allValues.fillUniform(bound: 1, using: &generator)
        let (x, _) = sparseFeatures(rows: 6, columns: 9, pattern: false, seed: 45)
        let r = randomTensor([6, 6], seed: 46)
        func forward() -> Tensor { layer.forward(x, dropout: 0.5, context: Self.context, tag: 3, mode: .training, groups: 3) }
        expectGradientsMatch(checkGradients(arena: arena, inputs: [],
            loss: { dot(forward(), r) },
            gradients: { _ = forward(); layer.backward(r); return [] }), "3 groups")
        // The groups really drop differently: some output block sees an entry another block lost.
        let y = forward()
        let shared = layer.forward(x, dropout: 0.5, context: Self.context, tag: 3, mode: .training)
        #expect(y.scalars != shared.scalars)
    }

    /// A dense input runs through sgemm, a sparse one through axpys, with the same dropout masks:
    /// the same features with columns of zeros appended (a sixth of the entries stored, the sparse
    /// path; the stored entries and so the masks unchanged) give the same outputs and weight
    /// gradients up to the summation order (sgemm's fused multiply-adds against the axpys' separate
    /// rounding: about 1e-7 on outputs near the 1e-3 floor, hence ten times the usual bound).
    @Test(arguments: [(0 as Float, 1), (0.5, 1), (0.5, 4)])
    func denseAndSparsePathsAgree(dropout: Float, groups: Int) {
        let (x, _) = sparseFeatures(rows: 40, columns: 12, pattern: false, seed: 47, density: 0.9)
        let padded = CSRMatrix(rowCount: x.rowCount, columnCount: 72, rowOffsets: x.rowOffsets,
                               columnIndices: x.columnIndices, values: x.values)
        var results: [(output: [Float], gradient: [Float])] = []
        for input in [x, padded] {
            let arena = ParameterArena()
            let layer = SparseLinear("fc", inputs: input.columnCount, outputs: 8, bias: true, arena: arena)
            arena.allocate()
            var generator = SeededGenerator(seed: 48)
            arena.allValues.fillUniform(bound: 1, using: &generator)   // the first 12 weight rows agree
            for o in 0..<8 { arena.value(layer.bias!)[o] = Float(o) / 10 }
            let y = layer.forward(input, dropout: dropout, context: Self.context, tag: 5, mode: .training, groups: groups)
            layer.backward(randomTensor([40, 8], seed: 49))
            results.append((y.scalars, Array(arena.gradient(layer.weight).scalars[0..<(12 * 8)])))
        }
        #expect(maximumRelativeDifference(results[0].output, results[1].output, floor: 1e-3) < float32SummationTolerance * 10)
        #expect(maximumRelativeDifference(results[0].gradient, results[1].gradient, floor: 1e-3) < float32SummationTolerance * 10)
    }

    @Test(arguments: [true, false])
    func outputIsTheDenseProductPlusBias(pattern: Bool) {
        let (layer, arena) = layer(bias: true)
        let (x, dense) = sparseFeatures(rows: 6, columns: 9, pattern: pattern, seed: 43)
        let expected = matmul(dense, arena.value(layer.weight))
        addRowBias(expected, arena.value(layer.bias!))
        #expect(maximumRelativeDifference(layer.forward(x).scalars, expected.scalars, floor: 1e-3) < float32SummationTolerance)
    }

    @Test func inputDropoutScalesKeptNonzerosAndTouchesNothingElse() {
        // With W = identity each output row is the dropped input row itself.
        let arena = ParameterArena()
        let layer = SparseLinear("fc", inputs: 50, outputs: 50, bias: false, arena: arena)
        arena.allocate()
        let w = arena.value(layer.weight)
        for f in 0..<50 { w[f * 50 + f] = 1 }
        let (x, dense) = sparseFeatures(rows: 400, columns: 50, pattern: true, seed: 44)
        let y = layer.forward(x, dropout: 0.6, context: Self.context, tag: 8, mode: .training)
        var kept = 0
        for k in 0..<y.count {
            if dense[k] == 0 { #expect(y[k] == 0) } else if y[k] != 0 { #expect(abs(y[k] - 2.5) < 1e-6); kept += 1 }
        }
        let fraction = Double(kept) / Double(x.nonzeroCount)
        #expect(abs(fraction - 0.4) < 0.03, "kept \(fraction) of \(x.nonzeroCount) nonzeros")
        let again = layer.forward(x, dropout: 0.6, context: Self.context, tag: 8, mode: .training)
        #expect(again.scalars == y.scalars, "same context and tag, same mask")
        let evaluation = layer.forward(x, dropout: 0.6, context: Self.context, tag: 8, mode: .evaluation)
        #expect(evaluation.scalars == dense.scalars)
    }
}

/// m[n, :] += b for every row n.
private func addRowBias(_ m: Tensor, _ b: Tensor) {
    for n in 0..<m.rowCount { for k in 0..<m.columnCount { m[n * m.columnCount + k] += b[k] } }
}
