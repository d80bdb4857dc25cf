import ReplicaData
import ReplicaModels

// The memory of the graph tasks (`train gat`, `train gat --model gcn`, `train graphmae`), one
// rank, full batch or sampled mini-batches: N nodes, E stored graph entries, F features with Z
// stored nonzeros, K classes. The rule of the count is MemoryCounting.swift's.

/// The sizes of a node-property graph that a graph model's memory grows with.
public struct GraphSize: Sendable, Equatable {
    /// N.
    public var nodes: Int
    /// E: stored entries of the graph the layers propagate over (the symmetric graph with self-loops).
    public var entries: Int
    /// F, the features of a node.
    public var features: Int
    /// Z, the stored nonzeros of the [N, F] feature matrix.
    public var featureNonzeros: Int

    public init(nodes: Int, entries: Int, features: Int, featureNonzeros: Int) {
        self.nodes = nodes
        self.entries = entries
        self.features = features
        self.featureNonzeros = featureNonzeros
    }

    /// `dataset`'s sizes without building its graph: 2·edges + nodes entries, an upper bound (the
    /// symmetric graph stores an edge listed in both directions once).
    public init(_ dataset: NodePropertyDataset) {
        self.init(nodes: dataset.nodeCount, entries: 2 * dataset.edgeCount + dataset.nodeCount,
                  features: dataset.featureCount, featureNonzeros: dataset.features.nonzeroCount)
    }

    var n: Double { Double(nodes) }
    var e: Double { Double(entries) }

    /// A copy of the features as a CSR matrix: Int32 columns and float values (2 per nonzero), Int row offsets (2 per node).
    var featureCopy: Double { 2 * Double(featureNonzeros) + 2 * n }

    /// What a graph task builds from the data set besides the model: the row-normalised feature
    /// values (Z), the symmetric graph's Int32 columns and Int row offsets (E + 2N), and, when a
    /// rank trains on a k-hop subgraph (several ranks, `--fanout` or micro-steps), that subgraph
    /// and its gathered features, at most the whole graph's size again.
    func taskCopies(subgraph: Bool) -> Double {
        let whole = Double(featureNonzeros) + e + 2 * n
        return subgraph ? whole + featureCopy + e + 2 * n : whole
    }

    /// A bound on a sampled mini-batch of `batch` seeds over `fanout` (one count per hop from the
    /// seeds; nil: every neighbour, so the whole graph): n_0 = batch, n_{h+1} = min(N, n_h·(1 + f_h))
    /// nodes, the largest block's entries (min(E, n_h·(1 + f_h)) for hop h), and the nodes'
    /// share of the feature nonzeros. Every layer's block is counted at this size.
    public func sampled(batch: Int, fanout: [Int]?, layers: Int) -> GraphSize {
        guard let fanout else { return self }
        var reached = Double(batch), entries = 0.0
        for hop in 0..<layers {
            let width = 1 + Double(hop < fanout.count ? fanout[hop] : 0)
            entries = max(entries, min(e, reached * width))
            reached = min(n, reached * width)
        }
        let share = n > 0 ? reached / n : 1
        return GraphSize(nodes: saturatingCount(reached), entries: saturatingCount(entries), features: features,
                         featureNonzeros: saturatingCount((Double(featureNonzeros) * share).rounded(.up)))
    }

    /// Floats of layer-wise inference over the whole graph (`layerwiseLogits`), for layers whose
    /// widest input, projection or output is `width` with `heads` heads: a layer's input, its
    /// projection and its output [N, width] each, the node scores [N, 2·heads], the per-edge
    /// tensor of one chunk (`entriesPerChunk` × heads), and the logits with their softmax [N, K] twice.
    func layerwiseInference(width: Double, heads: Double, classes: Double, entriesPerChunk: Int) -> Double {
        3 * n * width + 2 * n * heads + min(e, Double(entriesPerChunk)) * heads + 2 * n * classes
    }

    /// What a mini-batch run holds besides a step on its sampled graph: the whole graph's copies
    /// (`taskCopies`), the sampler's id map (N Int32) and layer-wise inference.
    func miniBatchExtras(width: Double, heads: Double, classes: Double) -> Double {
        taskCopies(subgraph: false) + n + layerwiseInference(width: width, heads: heads, classes: classes,
                                                             entriesPerChunk: GATTask.entriesPerChunk)
    }

    /// Floats a `GraphAttention` layer keeps from a training forward: its input when it projects
    /// one of `inputs` features, h [N, H·C], h after value dropout, the node scores [N, 2H], α
    /// [E, H] and α after attention dropout.
    func attentionCache(inputs: Double, heads H: Double, width HC: Double, valueDropout: Bool, attentionDropout: Bool) -> Double {
        n * inputs + n * HC * (valueDropout ? 2 : 1) + 2 * n * H + e * H * (attentionDropout ? 2 : 1)
    }

    /// Floats `GraphAttention.backward` allocates: d(aggregated) when the heads are averaged, dh,
    /// d(values) with value dropout, the node scores' gradient, the edge terms [E, H] and the input gradient.
    func attentionBackward(inputs: Double, heads H: Double, width HC: Double, averages: Bool, valueDropout: Bool) -> Double {
        n * HC * ((averages ? 1 : 0) + 1 + (valueDropout ? 1 : 0)) + 2 * n * H + e * H + n * inputs
    }
}

/// Bytes of the activations of a `train gat` rank: `step` on the whole graph (or, several ranks,
/// `--fanout` or micro-steps, on a k-hop subgraph: its second argument), or with `batchSize` on
/// `GraphSize.sampled` blocks, plus `miniBatchExtras` for layers at most `width` wide with
/// `heads` heads.
private func nodeClassificationActivations(graph: GraphSize, options: TrainingOptions, fanout: [Int]?, batchSize: Int?, ranks: Int,
                                           layers: Int, width: Double, heads: Double, classes: Int,
                                           step: (GraphSize, Bool) -> Int) -> Int {
    guard let batchSize else { return step(graph, ranks > 1 || fanout != nil || options.gradientAccumulation > 1) }
    return step(graph.sampled(batch: batchSize, fanout: fanout, layers: layers), false)
        + float32Bytes(graph.miniBatchExtras(width: width, heads: heads, classes: Double(classes)))
}

/// Model states of a graph task, what its activations need, and what to lower.
private func graphEstimate(parameters: Int, buffers: Int, activations: Int, options: TrainingOptions, ranks: Int,
                           advice: String) -> (estimate: MemoryEstimate, advice: String) {
    (MemoryEstimate.dataParallel(parameterCount: parameters, bufferCount: buffers, activations: activations,
                                 ranks: ranks, options: options), advice)
}

extension GATConfig {
    /// Parameters of the GAT of this shape (`GAT(self).arena.count`): the sparse input projection
    /// F × (the first layer's heads × features); per layer its weight (not the first's), the two
    /// attention vectors (2·H·C) and the bias (H·C concatenating, C averaging); the weights of
    /// the norms after the hidden layers (LayerNorm C, BatchNorm 2C).
    public var parameterCount: Int {
        let L = Double(layerCount), W = Double(hidden) * Double(heads), K = Double(classCount), Ho = Double(outputHeads)
        let firstWidth = layerCount == 1 ? K * Ho : W
        let normWeights: Double = norm == .batch ? 2 * W : norm == .layer ? W : 0
        let hiddenLayers = (L - 1) * (3 * W + normWeights) + max(L - 2, 0) * W * W
        let lastLayer = (layerCount > 1 ? W * Ho * K : 0) + 2 * Ho * K + K
        return saturatingCount(Double(featureCount) * firstWidth + hiddenLayers + lastLayer)
    }

    /// BatchNorm running statistics (2C after each hidden layer with `norm` batch).
    public var bufferCount: Int {
        norm == .batch ? saturatingCount(2 * Double(hidden) * Double(heads) * Double(layerCount - 1)) : 0
    }

    /// Bytes of a training step on the whole of `graph`, float32. Per hidden layer (W = heads ×
    /// hidden): the `GraphAttention` caches (input N·W after the first, h and h after value
    /// dropout N·W each, node scores 2·N·H, α and α after attention dropout E·H each), the ELU's
    /// input N·W and a norm's N·W; the output layer's the same at its heads × classes, and the
    /// logits and their softmax, which backward turns into their gradient (2·N·K); the input
    /// projection's copy of the kept feature entries when one dropout mask serves every head; the
    /// largest layer's backward buffers; one layer more; and the task's copies of the features and
    /// graph (`GraphSize`).
    /// `subgraph`: a rank trains on a k-hop subgraph (several ranks, `--fanout` or micro-steps),
    /// at most the whole graph.
    public func activationBytes(graph g: GraphSize, subgraph: Bool = false) -> Int {
        let L = Double(layerCount), N = g.n, H = Double(heads), W = Double(hidden) * H
        let K = Double(classCount), Ho = Double(outputHeads)
        let values = valueDropout > 0, dropsAttention = attentionDropout > 0
        let firstHeads = layerCount == 1 ? outputHeads : heads
        let projectionCopy = inputDropout > 0 && firstHeads == 1 ? g.featureCopy : 0
        let normCache = norm == .none ? 0 : N * W
        func hiddenLayer(first: Bool) -> Double {
            g.attentionCache(inputs: first ? 0 : W, heads: H, width: W, valueDropout: values, attentionDropout: dropsAttention)
                + N * W + normCache
        }
        let lastLayer = g.attentionCache(inputs: layerCount > 1 ? W : 0, heads: Ho, width: Ho * K, valueDropout: values,
                                         attentionDropout: dropsAttention) + N * K
        let kept = projectionCopy + (layerCount > 1 ? hiddenLayer(first: true) : 0) + max(L - 2, 0) * hiddenLayer(first: false)
            + lastLayer + N * K
        // Backward of a hidden layer also holds the gradient arriving and the ELU's (or norm's) gradient.
        let hiddenBackward = layerCount > 1
            ? g.attentionBackward(inputs: layerCount > 2 ? W : 0, heads: H, width: W, averages: false, valueDropout: values) + 2 * N * W
            : 0
        let lastBackward = g.attentionBackward(inputs: layerCount > 1 ? W : 0, heads: Ho, width: Ho * K, averages: true,
                                               valueDropout: values)
        let largestLayer = max(layerCount > 1 ? hiddenLayer(first: layerCount == 2) : 0, lastLayer)
        return float32Bytes(kept + max(hiddenBackward, lastBackward) + largestLayer + g.taskCopies(subgraph: subgraph))
    }

    /// A `train gat` rank's memory on `graph` with these options (its feature and class counts
    /// set from the data), and what to lower when it does not fit. The buffers include the copy
    /// of the parameters kept for the selected (best validation) epoch. With `batchSize` (sampled
    /// mini-batches), a step on `GraphSize.sampled` plus `miniBatchExtras`.
    public func memoryEstimate(graph: GraphSize, options: TrainingOptions, fanout: [Int]?, batchSize: Int? = nil,
                               ranks: Int) -> (estimate: MemoryEstimate, advice: String) {
        let widest = max(Double(hidden) * Double(heads), Double(outputHeads) * Double(classCount))
        let activations = nodeClassificationActivations(
            graph: graph, options: options, fanout: fanout, batchSize: batchSize, ranks: ranks, layers: layerCount, width: widest,
            heads: Double(max(heads, outputHeads)), classes: classCount) { activationBytes(graph: $0, subgraph: $1) }
        return graphEstimate(parameters: parameterCount, buffers: bufferCount + parameterCount,
                             activations: activations, options: options, ranks: ranks,
                             advice: "lower --hidden (\(hidden)), --heads (\(heads)), --output-heads (\(outputHeads)) or --layers (\(layerCount))\(batchSize == nil ? "" : ", --batch-size or --fanout"), or use a smaller graph")
    }
}

extension GraphNetworkConfig {
    /// Heads of the hidden layers and of the output layer (GCN: one).
    var layerHeads: (hidden: Double, output: Double) {
        kind == .gcn ? (1, 1) : (Double(heads), Double(outputHeads))
    }

    /// Parameters of the `GraphNetwork` of this shape (`GraphNetwork(self).arena.count`): the
    /// sparse input projection F × the first layer's projected width; per layer its weight (not
    /// the first's: GCN [in, out], GAT [in, H·C], Transformer [in, 3·H·C]), GAT's attention
    /// vectors 2·H·C, the Transformer's edge bias H, and the bias when asked.
    public var parameterCount: Int {
        let L = Double(layerCount), (H, Ho) = layerHeads, C = Double(hidden), W = C * H, K = Double(classCount)
        let single = layerCount == 1
        let lastInputs = single ? 0 : W
        let firstWidth: Double, hiddenLayer: Double, lastLayer: Double, hiddenWeight: Double
        switch kind {
        case .gcn:
            firstWidth = single ? K : C
            hiddenWeight = W * C
            hiddenLayer = bias ? C : 0
            lastLayer = lastInputs * K + (bias ? K : 0)
        case .gat:
            firstWidth = single ? K * Ho : W
            hiddenWeight = W * W
            hiddenLayer = 2 * W + (bias ? W : 0)
            lastLayer = lastInputs * Ho * K + 2 * Ho * K + (bias ? K : 0)
        case .transformer:
            firstWidth = 3 * (single ? K * Ho : W)
            hiddenWeight = W * 3 * W
            hiddenLayer = H + (bias ? W : 0)
            lastLayer = lastInputs * 3 * Ho * K + Ho + (bias ? K : 0)
        }
        return saturatingCount(Double(featureCount) * firstWidth + (L - 1) * hiddenLayer + max(L - 2, 0) * hiddenWeight + lastLayer)
    }

    /// Bytes of a training step on the whole of `graph`, float32, as `GATConfig.activationBytes`
    /// counts them for this network's layers: GCN keeps each layer's input (after the first) and
    /// the ReLU's output, N·W each, and the normalised edge weights (E); GAT layers as GAT's;
    /// Transformer layers q | k | v (3·N·H·C), the log-sum-exp (H·N) and, in backward, two
    /// blocks of 256 query rows × N. Also the last hidden representation kept for smoothness
    /// measurements (N·W, a tensor of its own when dropout follows it; after a ReLU, the ReLU's
    /// output, already counted).
    public func activationBytes(graph g: GraphSize, subgraph: Bool = false) -> Int {
        let L = Double(layerCount), N = g.n, (H, Ho) = layerHeads, W = Double(hidden) * H, K = Double(classCount)
        let groups = kind == .gat ? (layerCount > 1 ? heads : outputHeads) : 1
        let projectionCopy = dropout > 0 && groups == 1 ? g.featureCopy : 0
        let values = valueDropout > 0, dropsAttention = attentionDropout > 0
        let block = min(256, N) * N
        /// What a layer keeps and what its backward allocates: `inputs` its cached input's width,
        /// heads × `width` its projection, `outputs` its output's width.
        func layer(inputs: Double, heads: Double, width: Double, outputs: Double, last: Bool) -> (kept: Double, backward: Double) {
            // A hidden layer's output is the activation's cached input (ELU) or output (ReLU); the
            // output layer's, the logits.
            let output = N * outputs
            let arriving = last ? 0 : 2 * N * outputs            // the gradient arriving and the activation's
            switch kind {
            case .gcn:
                return (N * inputs + output, N * width + N * inputs + arriving)
            case .gat:
                return (g.attentionCache(inputs: inputs, heads: heads, width: width, valueDropout: values, attentionDropout: dropsAttention) + output,
                        g.attentionBackward(inputs: inputs, heads: heads, width: width, averages: last, valueDropout: values) + arriving)
            case .transformer:
                return (N * inputs + 3 * N * width + heads * N + output,
                        (last ? N * width : 0) + 3 * N * width + 2 * block + N * inputs + arriving)
            }
        }
        let first = layer(inputs: 0, heads: H, width: W, outputs: W, last: false)
        let middle = layer(inputs: W, heads: H, width: W, outputs: W, last: false)
        let last = layer(inputs: layerCount > 1 ? W : 0, heads: Ho, width: Ho * K, outputs: K, last: true)
        var kept = projectionCopy + last.kept + N * K                 // + the logits' softmax, then gradient
        if layerCount > 1 { kept += first.kept + max(L - 2, 0) * middle.kept }
        if layerCount > 1 && dropout > 0 && kind == .gat { kept += N * W }   // lastHidden (the ReLU's output otherwise)
        if kind == .gcn { kept += g.e }                               // D^-1/2 Â D^-1/2's weights
        let backward = max(layerCount > 1 ? max(first.backward, layerCount > 2 ? middle.backward : 0) : 0, last.backward)
        let largestLayer = max(layerCount > 1 ? max(first.kept, middle.kept) : 0, last.kept)
        return float32Bytes(kept + backward + largestLayer + g.taskCopies(subgraph: subgraph))
    }

    /// A `train gat --model gcn` rank's memory on `graph` with these options (feature and class
    /// counts set from the data), and what to lower. The buffers are the copy of the parameters
    /// kept for the selected (best validation) epoch. With `batchSize`, as `GATConfig`'s.
    public func memoryEstimate(graph: GraphSize, options: TrainingOptions, fanout: [Int]?, batchSize: Int? = nil,
                               ranks: Int) -> (estimate: MemoryEstimate, advice: String) {
        let (H, Ho) = layerHeads, widest = max(Double(hidden) * H, Ho * Double(classCount))
        let activations = nodeClassificationActivations(
            graph: graph, options: options, fanout: fanout, batchSize: batchSize, ranks: ranks, layers: layerCount, width: widest,
            heads: max(H, Ho), classes: classCount) { activationBytes(graph: $0, subgraph: $1) }
        let heads = kind == .gcn ? "" : ", --heads (\(self.heads))"
        return graphEstimate(parameters: parameterCount, buffers: parameterCount,
                             activations: activations, options: options, ranks: ranks,
                             advice: "lower --hidden (\(hidden))\(heads) or --layers (\(layerCount))\(batchSize == nil ? "" : ", --batch-size or --fanout"), or use a smaller graph")
    }
}

extension GraphMAEConfig {
    /// Parameters of the GraphMAE of this shape (`GraphMAE(self).arena.count`): the mask token F;
    /// the encoder's sparse projection F·D, per layer its weight D² (not the first's), attention
    /// vectors 2D, bias D and PReLU slope; encoder_to_decoder D²; the decoder's weight D·F,
    /// attention vectors 2F and bias F.
    public var parameterCount: Int {
        let F = Double(featureCount), D = Double(hidden), L = Double(layerCount)
        return saturatingCount(F + F * D + L * (3 * D + 1) + (L - 1) * D * D + D * D + D * F + 3 * F)
    }

    /// Bytes of a pre-training step on the whole of `graph`, float32, with M = mask rate × N mask
    /// nodes and K = N − M kept ones. Per encoder layer: its input (after the first) N·D, h N·D,
    /// node scores 2·N·H, α and α after attention dropout E·H each, the PReLU's input N·D; the
    /// input projection's copy of the kept entries of the corrupted features; the kept rows
    /// through encoder_to_decoder and its dropout (2·K·D); the decoder's h [N, F], node scores,
    /// α twice [E] and reconstruction [N, F]. Backward holds the reconstruction's gradient, dh
    /// [N, F] and its kept rows [K, F], K·D twice and, in the encoder, 4·N·D and E·H. One layer
    /// more, the masks, and the task's copies of the features and graph.
    public func activationBytes(graph g: GraphSize) -> Int {
        let N = g.n, E = g.e, F = Double(featureCount), D = Double(hidden), H = Double(heads), L = Double(layerCount)
        let M = (Double(maskRate) * N).rounded(.down), K = N - M
        let dropsAttention = attentionDropout > 0
        func encoderLayer(first: Bool) -> Double {
            g.attentionCache(inputs: first ? 0 : D, heads: H, width: D, valueDropout: false, attentionDropout: dropsAttention) + N * D
        }
        let decoder = 2 * N * F + 2 * N + E * (dropsAttention ? 2 : 1)
        let kept = (inputDropout > 0 ? g.featureCopy : 0) + encoderLayer(first: true) + (L - 1) * encoderLayer(first: false)
            + 2 * K * D + decoder
        let backward = 2 * N * F + K * F + 2 * K * D + 4 * N * D + E * H + 2 * N * H
        let masks = 3 * N                                              // mask, kept and token node lists
        return float32Bytes(kept + backward + max(encoderLayer(first: layerCount == 1), decoder) + masks + g.taskCopies(subgraph: false))
    }

    /// A `train graphmae` rank's memory on `graph` (the feature count set from the data) with
    /// these options, and what to lower when it does not fit.
    public func memoryEstimate(graph: GraphSize, options: TrainingOptions, ranks: Int) -> (estimate: MemoryEstimate, advice: String) {
        graphEstimate(parameters: parameterCount, buffers: 0, activations: activationBytes(graph: graph), options: options, ranks: ranks,
                      advice: "lower --hidden (\(hidden)), --heads (\(heads)) or --layers (\(layerCount)), or use a smaller graph")
    }
}
