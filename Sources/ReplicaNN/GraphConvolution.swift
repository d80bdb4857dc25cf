import ReplicaCore

// Legend: N nodes computed (the graph's rows), S nodes read (its columns; S = N for a whole
// graph), E stored edges (entries of the graph), I inputs, O outputs.
// Edge e in row i has source j = graph.columnIndices[e] and weight Â_ij = graph.values[e]
// (1 for a pattern graph without values): node i aggregates Σ_j Â_ij h_j.

/// A message-passing layer as graph models stack it: GCN, GAT and graph-Transformer layers.
///
/// A layer either projects its own input (`forward(_:graph:)`, x [N, I]) or takes a projection
/// computed elsewhere (`forward(projected:graph:)`, [N, projectedCount]), for instance a
/// `SparseLinear` over sparse node features; `backward` then returns that projection's gradient.
///
/// The graph is [N, S]: the whole graph (N = S), or a block of a sampled mini-batch whose N rows
/// are the nodes computed and whose S ≥ N columns are the nodes read, the nodes computed first
/// (row i's own node is column i). Inputs have S rows, outputs N.
public protocol GraphLayer: AnyObject {
    /// Width of the projected input the layer aggregates.
    var projectedCount: Int { get }
    /// Width of the output.
    var resultCount: Int { get }
    var mode: Mode { get set }
    var context: RandomContext { get set }
    func initialize(using generator: inout SeededGenerator)
    func forward(_ x: Tensor, graph: CSRGraph) -> Tensor
    func forward(projected: Tensor, graph: CSRGraph) -> Tensor
    func backward(_ outputGradient: Tensor) -> Tensor
    /// The evaluation-mode output, computed a chunk of rows at a time (at most about
    /// `entriesPerChunk` graph entries each) and caching nothing: layer-wise inference.
    /// [S, I] -> [N, resultCount]
    func inferring(_ x: Tensor, graph: CSRGraph, entriesPerChunk: Int) -> Tensor
    /// `inferring` on features already projected. [S, projectedCount] -> [N, resultCount]
    func inferring(projected: Tensor, graph: CSRGraph, entriesPerChunk: Int) -> Tensor
}

/// What the three graph layers share: an optional input projection h = x·W, then a layer-specific
/// combination over the graph (`combine`), which caches `input` for the weight's gradient.
public protocol ProjectingGraphLayer: GraphLayer {
    var weight: ParameterSlot? { get }
    var inputCount: Int? { get }
    var arena: ParameterArena { get }
    func combine(_ projected: Tensor, input: Tensor?, graph: CSRGraph) -> Tensor
}

extension ProjectingGraphLayer {
    /// Projects with the layer's weight, then combines. [S, I] -> [N, resultCount]
    public func forward(_ x: Tensor, graph: CSRGraph) -> Tensor {
        combine(projecting(x), input: x, graph: graph)
    }

    /// h = x·W with the layer's weight. [S, I] -> [S, projectedCount]
    func projecting(_ x: Tensor) -> Tensor {
        guard let weight, let inputCount else {
            preconditionFailure("\(Self.self) was built without a weight; use forward(projected:graph:)")
        }
        precondition(x.rank == 2 && x.columnCount == inputCount, "\(Self.self) expects [N, \(inputCount)], got \(x.shape)")
        let projected = Tensor(uninitialized: [x.rowCount, projectedCount])
        gemm(x, arena.value(weight), into: projected)
        return projected
    }

    /// Projects with the layer's weight, then `inferring(projected:graph:entriesPerChunk:)`. [S, I] -> [N, resultCount]
    public func inferring(_ x: Tensor, graph: CSRGraph, entriesPerChunk: Int) -> Tensor {
        inferring(projected: projecting(x), graph: graph, entriesPerChunk: entriesPerChunk)
    }

    /// By default the whole graph at once, through `combine` (which caches what it always does):
    /// a layer without per-edge tensors has nothing to chunk.
    public func inferring(projected: Tensor, graph: CSRGraph, entriesPerChunk: Int) -> Tensor {
        forward(projected: projected, graph: graph)
    }

    /// Combines features already projected (h = x·W). [N, projectedCount] -> [N, resultCount]
    public func forward(projected: Tensor, graph: CSRGraph) -> Tensor {
        precondition(projected.rank == 2 && projected.columnCount == projectedCount,
                     "\(Self.self) expects projected [N, \(projectedCount)], got \(projected.shape)")
        return combine(projected, input: nil, graph: graph)
    }
}

extension GraphAttention: ProjectingGraphLayer {}

extension CSRMatrix {
    /// Kipf & Welling's propagation matrix D^-1/2 Â D^-1/2 on this pattern: every entry (i, j)
    /// gets 1/√(d_i d_j), d_v the number of entries in row v (its in-degree, self-loop included;
    /// build the graph with `selfLoops: true` for Â = A + I). On a symmetric graph this is the
    /// symmetric normalisation; on any graph a row's weights depend only on degrees. [N, N]
    public func gcnNormalized() -> CSRGraph {
        precondition(rowCount == columnCount, "gcnNormalized needs a square graph, got \(rowCount)×\(columnCount)")
        let inverseRoot = (0..<rowCount).map { v -> Float in
            let degree = rowOffsets[v + 1] - rowOffsets[v]
            return degree > 0 ? 1 / Float(degree).squareRoot() : 0
        }
        var weights = [Float](repeating: 0, count: nonzeroCount)
        for i in 0..<rowCount {
            for e in range(ofRow: i) { weights[e] = inverseRoot[i] * inverseRoot[Int(columnIndices[e])] }
        }
        return CSRMatrix(rowCount: rowCount, columnCount: columnCount, rowOffsets: rowOffsets,
                         columnIndices: columnIndices, values: weights)
    }

    /// Â·h: row i is Σ_e Â_e h_{j(e)} (pattern entries weigh 1). [N, S] × [S, W] -> [N, W], O(E·W)
    public func aggregating(_ h: Tensor) -> Tensor {
        precondition(h.rank == 2 && h.rowCount == columnCount, "aggregating: \(h.shape) for a \(rowCount)×\(columnCount) graph")
        return accumulating(h, outputRows: rowCount, transposed: false)
    }

    /// Âᵀ·g: row j is Σ over entries (i, j) of Â_ij g_i — the gradient of `aggregating`. [N, W] -> [S, W]
    public func aggregatingTransposed(_ g: Tensor) -> Tensor {
        precondition(g.rank == 2 && g.rowCount == rowCount, "aggregatingTransposed: \(g.shape) for \(rowCount) rows")
        return accumulating(g, outputRows: columnCount, transposed: true)
    }

    /// For every entry (i, j): output row i += Â_ij · x row j, or (transposed) output row j += Â_ij · x row i.
    private func accumulating(_ x: Tensor, outputRows: Int, transposed: Bool) -> Tensor {
        let W = x.columnCount
        let output = Tensor(zeros: [outputRows, W])
        let hasValues = !values.isEmpty
        rowOffsets.withUnsafeBufferPointer { offsets in
            columnIndices.withUnsafeBufferPointer { columns in
                values.withUnsafeBufferPointer { weights in
                    for i in 0..<rowCount {
                        for e in offsets[i]..<offsets[i + 1] {
                            let j = Int(columns[e]), a = hasValues ? weights[e] : 1
                            let source = x.data + (transposed ? i : j) * W, target = output.data + (transposed ? j : i) * W
                            for k in 0..<W { target[k] += a * source[k] }
                        }
                    }
                }
            }
        }
        return output
    }
}

/// Graph convolution (Kipf & Welling 2017): out = Â·(x·W) + b, with Â the graph's entry weights
/// (`gcnNormalized()` gives D^-1/2 (A+I) D^-1/2). [N, I] -> [N, O]
///
/// Parameters: `\(name).weight` [I, O] (absent when `inputs` is nil: the caller projects, say with
/// a `SparseLinear` of the same name), `\(name).bias` [O] when asked (Kipf's code has none).
/// `decays` says whether weight decay applies to the weight: Kipf's code decays the first
/// layer's only. Cost: one sgemm and O(E·O) for the aggregation, each way.
public final class GraphConvolution: ProjectingGraphLayer {
    public let weight: ParameterSlot?     // [I, O]
    public let bias: ParameterSlot?       // [O]
    public let inputCount: Int?
    public let outputCount: Int
    public var mode: Mode = .training     // no randomness or mode-dependent behaviour inside
    public var context = RandomContext(seed: 0)
    public let arena: ParameterArena

    struct Cache {
        var graph: CSRGraph
        var input: Tensor?                // x [S, I] when the layer projected it
    }
    var cache: Cache?

    public init(_ name: String, inputs: Int?, outputs: Int, bias: Bool = false, decays: Bool = true, arena: ParameterArena) {
        precondition(outputs > 0 && (inputs ?? 1) > 0, "GraphConvolution needs positive widths, got \(inputs ?? -1) -> \(outputs)")
        self.arena = arena
        inputCount = inputs
        outputCount = outputs
        weight = inputs.map { arena.declare("\(name).weight", shape: [$0, outputs], decays: decays) }
        self.bias = bias ? arena.declare("\(name).bias", shape: [outputs], decays: false) : nil
    }

    public var projectedCount: Int { outputCount }
    public var resultCount: Int { outputCount }

    /// Glorot uniform weight (Kipf's `glorot`), zero bias.
    public func initialize(using generator: inout SeededGenerator) {
        if let weight, let inputCount {
            arena.value(weight).fillUniform(bound: (6 / Float(inputCount + outputCount)).squareRoot(), using: &generator)
        }
        if let bias { arena.value(bias).zero() }
    }

    /// Â·h + b, caching what backward needs. [S, O] -> [N, O], graph [N, S]
    public func combine(_ h: Tensor, input: Tensor?, graph: CSRGraph) -> Tensor {
        let output = inferring(projected: h, graph: graph, entriesPerChunk: .max)
        cache = Cache(graph: graph, input: input)
        return output
    }

    /// Â·h + b without caching: the aggregation keeps no per-edge tensor, so one pass over all
    /// rows, whatever `entriesPerChunk`. [S, O] -> [N, O], graph [N, S]
    public func inferring(projected h: Tensor, graph: CSRGraph, entriesPerChunk: Int) -> Tensor {
        precondition(graph.columnCount == h.rowCount,
                     "GraphConvolution: graph is \(graph.rowCount)×\(graph.columnCount) for \(h.rowCount) source nodes")
        let output = graph.aggregating(h)
        if let bias { addRowVector(arena.value(bias), into: output) }
        return output
    }

    /// Adds the parameter gradients; returns the gradient of x (or of h after `forward(projected:)`).
    public func backward(_ outputGradient: Tensor) -> Tensor {
        guard let cache else { preconditionFailure("GraphConvolution.backward before forward") }
        precondition(outputGradient.rowCount == cache.graph.rowCount && outputGradient.columnCount == outputCount,
                     "GraphConvolution.backward expects [\(cache.graph.rowCount), \(outputCount)], got \(outputGradient.shape)")
        if let bias { addColumnSums(outputGradient, into: arena.gradient(bias)) }
        let dProjected = cache.graph.aggregatingTransposed(outputGradient)    // dh = Âᵀ·dout
        guard let input = cache.input, let weight else { return dProjected }
        gemm(input, transposingA: true, dProjected, into: arena.gradient(weight), beta: 1)   // dW += xᵀ·dh
        let inputGradient = Tensor(uninitialized: input.shape)
        gemm(dProjected, arena.value(weight), transposingB: true, into: inputGradient)       // dx = dh·Wᵀ
        return inputGradient
    }
}
