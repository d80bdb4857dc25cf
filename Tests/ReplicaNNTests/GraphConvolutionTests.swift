import Foundation
import Testing
import ReplicaCore
import ReplicaNN
import _ReplicaTestSupport

/// Agreement with the Double dense references: float32 sums of a handful (or N) of terms.
private let denseReferenceTolerance: Float = 1e-4
/// Element-wise central differences of near-zero derivatives: rounding of L ≈ 1 over 2ε = 2e-3.
private let elementAbsoluteTolerance = 1e-3

/// Seven nodes, symmetric, with self-loops; degrees (self-loop included) from 2 to 5.
private func symmetricGraph() -> CSRGraph {
    let edges: [(Int32, Int32)] = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (3, 4), (4, 5), (5, 6), (2, 6)]
    return CSRMatrix.graph(nodeCount: 7, sources: edges.map(\.0), targets: edges.map(\.1), symmetric: true, selfLoops: true)
}

/// The graph as a dense [N][N] matrix of its entry weights (1 for a pattern).
private func dense(_ graph: CSRGraph) -> [[Double]] {
    var a = [[Double]](repeating: [Double](repeating: 0, count: graph.columnCount), count: graph.rowCount)
    for i in 0..<graph.rowCount {
        for e in graph.range(ofRow: i) { a[i][Int(graph.columnIndices[e])] = graph.values.isEmpty ? 1 : Double(graph.values[e]) }
    }
    return a
}

/// Checks every parameter and input element of a tiny layer by central differences.
private func expectElementwiseGradients(arena: ParameterArena, x: Tensor, forward: () -> Tensor, backward: (Tensor) -> Tensor,
                                        r: Tensor) {
    arena.zeroGradients()
    _ = forward()
    let dx = backward(r)
    let epsilon: Float = 1e-3
    func numerical(_ value: UnsafeMutablePointer<Float>) -> Double {
        let saved = value.pointee
        value.pointee = saved + epsilon
        let plus = dot(forward(), r)
        value.pointee = saved - epsilon
        let minus = dot(forward(), r)
        value.pointee = saved
        return (plus - minus) / (2 * Double(epsilon))
    }
    func expectClose(_ analytic: Double, _ numerical: Double, _ what: String) {
        let error = abs(analytic - numerical)
        #expect(error < finiteDifferenceTolerance * max(abs(analytic), abs(numerical)) || error < elementAbsoluteTolerance,
                "\(what): analytic \(analytic), numerical \(numerical)")
    }
    for k in 0..<arena.count { expectClose(Double(arena.gradients.pointer[k]), numerical(arena.values.pointer + k), "parameter \(k)") }
    for k in 0..<x.count { expectClose(Double(dx[k]), numerical(x.data + k), "input \(k)") }
}

@Suite struct GraphConvolutionTests {
    private func layer(inputs: Int?, outputs: Int = 3, bias: Bool, seed: UInt64 = 11) -> (GraphConvolution, ParameterArena) {
        let arena = ParameterArena()
        let layer = GraphConvolution("gcn", inputs: inputs, outputs: outputs, bias: bias, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: seed)
        arena.allValues.fillUniform(bound: 1, using: &generator)
        return (layer, arena)
    }

    @Test func normalisedWeightsAreOneOverTheRootOfBothDegrees() {
        let graph = symmetricGraph(), normalised = graph.gcnNormalized()
        let a = dense(normalised)
        for i in 0..<7 {
            for e in graph.range(ofRow: i) {
                let j = Int(graph.columnIndices[e])
                let expected = 1 / Double(graph.range(ofRow: i).count * graph.range(ofRow: j).count).squareRoot()
                #expect(abs(a[i][j] - expected) < 1e-7)
                #expect(a[i][j] == a[j][i], "D^-1/2 (A+I) D^-1/2 is symmetric")
            }
        }
        // Its largest eigenvalue is 1, with eigenvector √d: Â·√d = √d.
        let root = (0..<7).map { Float(graph.range(ofRow: $0).count).squareRoot() }
        let y = normalised.aggregating(Tensor(shape: [7, 1], values: root))
        #expect(maximumRelativeDifference(y.scalars, root) < 1e-6)
    }

    @Test func transposedAggregationIsTheTransposeOfAggregation() {
        // An asymmetric weighted graph: ⟨Â·h, g⟩ = ⟨h, Âᵀ·g⟩ for random h, g.
        var graph = CSRMatrix.graph(nodeCount: 7, sources: [1, 2, 3, 6, 0], targets: [0, 0, 4, 3, 5], symmetric: false, selfLoops: true)
        var generator = SeededGenerator(seed: 12)
        graph.values = (0..<graph.nonzeroCount).map { _ in generator.nextUniform() }
        let h = randomTensor([7, 4], seed: 13), g = randomTensor([7, 4], seed: 14)
        let left = dot(graph.aggregating(h), g), right = dot(h, graph.aggregatingTransposed(g))
        #expect(abs(left - right) < 1e-5 * max(abs(left), 1))
    }

    @Test(arguments: [true, false])
    func outputIsTheNormalisedGraphTimesTheProjection(bias: Bool) {
        let (layer, arena) = layer(inputs: 5, bias: bias)
        let graph = symmetricGraph().gcnNormalized(), a = dense(graph)
        let x = randomTensor([7, 5], seed: 15)
        let w = arena.value(layer.weight!)
        var expected = [Double](repeating: 0, count: 7 * 3)
        for i in 0..<7 {
            for c in 0..<3 {
                var sum = bias ? Double(arena.value(layer.bias!)[c]) : 0
                for j in 0..<7 { for f in 0..<5 { sum += a[i][j] * Double(x[j * 5 + f]) * Double(w[f * 3 + c]) } }
                expected[i * 3 + c] = sum
            }
        }
        #expect(maximumRelativeDifference(layer.forward(x, graph: graph).scalars, expected.map(Float.init), floor: 1e-3)
                < denseReferenceTolerance)
    }

    @Test(arguments: [true, false])
    func gradientsMatchFiniteDifferences(bias: Bool) {
        let (layer, arena) = layer(inputs: 4, bias: bias)
        let graph = symmetricGraph().gcnNormalized()
        let x = randomTensor([7, 4], seed: 16), r = randomTensor([7, 3], seed: 17)
        expectGradientsMatch(checkGradients(arena: arena, inputs: [x], directions: 5,
            loss: { dot(layer.forward(x, graph: graph), r) },
            gradients: { _ = layer.forward(x, graph: graph); return [layer.backward(r)] }), "bias \(bias)")
        expectElementwiseGradients(arena: arena, x: x, forward: { layer.forward(x, graph: graph) },
                                   backward: { layer.backward($0) }, r: r)
    }

    /// A block [3, 7] (a sampled mini-batch's layer: nodes 0..<3 computed from all 7) with the
    /// whole graph's weights: its rows of the whole output, and gradients for every node read.
    @Test func aBlockComputesItsRowsAndItsGradientsMatchFiniteDifferences() {
        let (layer, arena) = layer(inputs: 4, bias: true)
        let graph = symmetricGraph().gcnNormalized(), block = graph.gatheringRows([0, 1, 2])
        let x = randomTensor([7, 4], seed: 20), r = randomTensor([3, 3], seed: 21)
        #expect(layer.forward(x, graph: block).scalars == Array(layer.forward(x, graph: graph).scalars.prefix(9)))
        expectElementwiseGradients(arena: arena, x: x, forward: { layer.forward(x, graph: block) },
                                   backward: { layer.backward($0) }, r: r)
    }

    @Test func inferenceEqualsTheForward() {
        let (layer, _) = layer(inputs: 4, bias: true)
        let graph = symmetricGraph().gcnNormalized(), x = randomTensor([7, 4], seed: 22)
        #expect(layer.inferring(x, graph: graph, entriesPerChunk: 3).scalars == layer.forward(x, graph: graph).scalars)
    }

    @Test func projectedInputGradientsMatchFiniteDifferencesOnAnAsymmetricGraph() {
        // Subgraphs are not symmetric (their frontier rows keep only self-loops): backward must use Âᵀ.
        let (layer, arena) = layer(inputs: nil, outputs: 4, bias: true)
        #expect(layer.weight == nil)
        let graph = CSRMatrix.graph(nodeCount: 7, sources: [1, 2, 3, 6, 0, 5], targets: [0, 0, 4, 3, 5, 0],
                                    symmetric: false, selfLoops: true).gcnNormalized()
        let h = randomTensor([7, 4], seed: 18), r = randomTensor([7, 4], seed: 19)
        expectElementwiseGradients(arena: arena, x: h, forward: { layer.forward(projected: h, graph: graph) },
                                   backward: { layer.backward($0) }, r: r)
    }
}

@Suite struct GraphTransformerAttentionTests {
    private func layer(inputs: Int?, outputs: Int = 3, heads: Int = 2, concatenates: Bool,
                       seed: UInt64 = 31) -> (GraphTransformerAttention, ParameterArena) {
        let arena = ParameterArena()
        let layer = GraphTransformerAttention("gt", inputs: inputs, outputs: outputs, heads: heads,
                                              concatenatesHeads: concatenates, arena: arena)
        arena.allocate()
        var generator = SeededGenerator(seed: seed)
        arena.allValues.fillUniform(bound: 1, using: &generator)   // the edge biases too
        return (layer, arena)
    }

    /// Full softmax attention with the edge bias, from the definition, in Double.
    private func reference(_ layer: GraphTransformerAttention, arena: ParameterArena, x: Tensor, graph: CSRGraph) -> [Float] {
        let N = x.rowCount, I = x.columnCount, H = layer.headCount, C = layer.outputCount, width = 3 * H * C
        let w = arena.value(layer.weight!), beta = arena.value(layer.edgeBias), a = dense(graph)
        var p = [[Double]](repeating: [Double](repeating: 0, count: width), count: N)
        for n in 0..<N { for k in 0..<width { for f in 0..<I { p[n][k] += Double(x[n * I + f]) * Double(w[f * width + k]) } } }
        var result = [Double](repeating: 0, count: N * layer.resultCount)
        for i in 0..<N {
            for head in 0..<H {
                var s = (0..<N).map { j in
                    (0..<C).reduce(0.0) { $0 + p[i][head * C + $1] * p[j][H * C + head * C + $1] } / Double(C).squareRoot()
                        + (a[i][j] != 0 ? Double(beta[head]) : 0)
                }
                let m = s.max()!
                s = s.map { exp($0 - m) }
                let total = s.reduce(0, +)
                for c in 0..<C {
                    let value = (0..<N).reduce(0.0) { $0 + s[$1] / total * p[$1][2 * H * C + head * C + c] }
                    if layer.concatenatesHeads { result[i * H * C + head * C + c] = value } else { result[i * C + c] += value / Double(H) }
                }
            }
        }
        let b = arena.value(layer.bias!)
        for i in 0..<N { for k in 0..<layer.resultCount { result[i * layer.resultCount + k] += Double(b[k]) } }
        return result.map(Float.init)
    }

    @Test(arguments: [true, false])
    func outputAgreesWithADenseReferenceForAnyBlockSize(concatenates: Bool) {
        let (layer, arena) = layer(inputs: 5, heads: 3, concatenates: concatenates)
        let graph = symmetricGraph(), x = randomTensor([7, 5], seed: 32)
        let expected = reference(layer, arena: arena, x: x, graph: graph)
        for rows in [256, 3, 1] {
            layer.blockRows = rows
            #expect(maximumRelativeDifference(layer.forward(x, graph: graph).scalars, expected, floor: 1e-3) < denseReferenceTolerance,
                    "blocks of \(rows) rows")
        }
    }

    @Test func theEdgeBiasMovesAttentionOntoNeighbours() {
        // With β large, node i's output is (nearly) the mean of its neighbours' values only.
        let (layer, arena) = layer(inputs: 4, outputs: 2, heads: 1, concatenates: true)
        arena.value(layer.edgeBias)[0] = 40
        arena.value(layer.bias!).zero()
        let weight = arena.value(layer.weight!)
        for f in 0..<4 { for k in 0..<4 { weight[f * 6 + k] = 0 } }    // q = k = 0: scores are the bias alone
        let graph = symmetricGraph(), x = randomTensor([7, 4], seed: 33)
        let y = layer.forward(x, graph: graph)
        let v = matmul(x, weight)
        for i in 0..<7 {
            let row = graph.range(ofRow: i).map { Int(graph.columnIndices[$0]) }
            for c in 0..<2 {
                let expected = row.reduce(Float(0)) { $0 + v[$1 * 6 + 4 + c] } / Float(row.count)
                #expect(abs(y[i * 2 + c] - expected) < 1e-4, "node \(i)")
            }
        }
    }

    @Test(arguments: [true, false])
    func gradientsMatchFiniteDifferences(concatenates: Bool) {
        let (layer, arena) = layer(inputs: 4, concatenates: concatenates)
        layer.blockRows = 3                                        // three blocks of query rows
        let graph = symmetricGraph()
        let x = randomTensor([7, 4], seed: 34), r = randomTensor([7, layer.resultCount], seed: 35)
        expectGradientsMatch(checkGradients(arena: arena, inputs: [x], directions: 5,
            loss: { dot(layer.forward(x, graph: graph), r) },
            gradients: { _ = layer.forward(x, graph: graph); return [layer.backward(r)] }), "concatenates \(concatenates)")
    }

    @Test func elementwiseGradientsMatchFiniteDifferencesIncludingTheEdgeBias() {
        let (layer, arena) = layer(inputs: nil, outputs: 2, heads: 2, concatenates: false, seed: 36)
        layer.blockRows = 4
        let graph = symmetricGraph()
        let h = randomTensor([7, layer.projectedCount], seed: 37), r = randomTensor([7, 2], seed: 38)
        expectElementwiseGradients(arena: arena, x: h, forward: { layer.forward(projected: h, graph: graph) },
                                   backward: { layer.backward($0) }, r: r)
        #expect(arena.gradient(layer.edgeBias).scalars.allSatisfy { $0 != 0 }, "the edge bias gets a gradient")
    }
}
