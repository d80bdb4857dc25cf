import ReplicaCore
import ReplicaNN

/// A graph attention network's shape. Defaults: Veličković et al. 2018's Cora configuration.
public struct GATConfig: Codable, Sendable, Equatable {
    public var featureCount = 1433       // Cora's bag of words
    public var classCount = 7
    public var hidden = 8                // features per head in hidden layers
    public var heads = 8                 // heads in hidden layers (concatenated)
    public var outputHeads = 1           // heads of the output layer (averaged); PubMed: 8
    public var layerCount = 2
    public var inputDropout: Float = 0.6 // on every layer's input
    public var attentionDropout: Float = 0.6
    /// Dropout on the projected features where they are aggregated, as the GAT paper's code does
    /// (its second `in_drop`); PyG's GATConv has none (set 0 to match it).
    public var valueDropout: Float = 0.6
    /// Whether each head of the first layer drops its own copy of the input, as the GAT paper's
    /// code does; false: one mask for all heads, as PyG's GATConv after F.dropout, and a dense
    /// input is unpacked once instead of once a head.
    public var inputDropoutPerHead = true
    public var norm = NormKind.none      // .batch: BatchNorm after each hidden layer
    public init() {}

    enum CodingKeys: String, CodingKey {
        case featureCount = "features", classCount = "classes", hidden, heads, outputHeads = "output_heads"
        case layerCount = "layers", inputDropout = "dropout", attentionDropout = "attention_dropout"
        case valueDropout = "value_dropout", inputDropoutPerHead = "input_dropout_per_head", norm
    }

    /// Checkpoints written before `input_dropout_per_head` existed dropped per head.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        featureCount = try container.decode(Int.self, forKey: .featureCount)
        classCount = try container.decode(Int.self, forKey: .classCount)
        hidden = try container.decode(Int.self, forKey: .hidden)
        heads = try container.decode(Int.self, forKey: .heads)
        outputHeads = try container.decode(Int.self, forKey: .outputHeads)
        layerCount = try container.decode(Int.self, forKey: .layerCount)
        inputDropout = try container.decode(Float.self, forKey: .inputDropout)
        attentionDropout = try container.decode(Float.self, forKey: .attentionDropout)
        valueDropout = try container.decode(Float.self, forKey: .valueDropout)
        inputDropoutPerHead = try container.decodeIfPresent(Bool.self, forKey: .inputDropoutPerHead) ?? true
        norm = try container.decode(NormKind.self, forKey: .norm)
    }
}

/// GAT (Veličković et al. 2018): sparse input projection, GAT layers with ELU between them, the
/// last layer averaging its heads into class logits. features [N, F] (CSR), graph -> logits [N, K]
///
/// Parameter names: `gat.layers.{i}.weight` ([in, heads·hidden]), `.attention_source`,
/// `.attention_target`, `.bias`; BatchNorm `gat.norms.{i}`.
public final class GAT {
    public let config: GATConfig
    public let arena: ParameterArena
    let inputProjection: SparseLinear
    let layers: [GraphAttention]
    let activations: [ELU]
    let norms: [FeatureNormalization]
    let dropouts: [Dropout]           // on the inputs of layers 1...
    var shapes: [Int] = []

    public init(_ config: GATConfig, arena: ParameterArena = ParameterArena()) {
        precondition(config.layerCount >= 1, "GAT needs at least one layer")
        self.config = config
        self.arena = arena
        var layers: [GraphAttention] = []
        var norms: [FeatureNormalization] = []
        var dropouts: [Dropout] = []
        let last = config.layerCount - 1
        let firstOutputs = last == 0 ? config.classCount : config.hidden
        let firstHeads = last == 0 ? config.outputHeads : config.heads
        inputProjection = SparseLinear("gat.layers.0", inputs: config.featureCount, outputs: firstOutputs * firstHeads,
                                       bias: false, arena: arena)
        for index in 0...last {
            let isLast = index == last
            if index > 0 {
                dropouts.append(Dropout(probability: config.inputDropout, tag: 200 + UInt64(index)))
            }
            layers.append(GraphAttention("gat.layers.\(index)", inputs: index == 0 ? nil : config.hidden * config.heads,
                                         outputs: isLast ? config.classCount : config.hidden,
                                         heads: isLast ? config.outputHeads : config.heads, concatenatesHeads: !isLast,
                                         attentionDropout: config.attentionDropout, valueDropout: config.valueDropout,
                                         tag: 100 + UInt64(index), arena: arena))
            if !isLast {
                norms.append(makeNormalization(config.norm, "gat.norms.\(index)", features: config.hidden * config.heads, arena: arena))
            }
        }
        self.layers = layers
        self.norms = norms
        self.dropouts = dropouts
        activations = (0..<last).map { _ in ELU() }
        arena.allocate()
    }

    public var parameterCount: Int { arena.count }

    /// Glorot weights and attention vectors, zero biases (PyG's GATConv), norms 1.
    public func initialize(seed: UInt64) {
        var generator = SeededGenerator(seed: seed, 0x6761_74)
        inputProjection.initializeGlorot(using: &generator)
        for layer in layers { layer.initialize(using: &generator) }
        for norm in norms { norm.initialize() }
    }

    public var mode: Mode = .training {
        didSet {
            for layer in layers { layer.mode = mode }
            for norm in norms { norm.mode = mode }
            for dropout in dropouts { dropout.mode = mode }
        }
    }

    /// Where dropout masks come from: (seed, rank, step).
    /// Where the forward pass marks its layers (`--timeline`), or nil.
    public weak var phases: PhaseMarker?

    public var randomContext = RandomContext(seed: 0) {
        didSet {
            for layer in layers { layer.context = randomContext }
            for dropout in dropouts { dropout.context = randomContext }
        }
    }

    /// Logits [N, K] of every node of `graph` from its features [N, F].
    public func forward(features: CSRMatrix, graph: CSRGraph) -> Tensor {
        forward(features: features, blocks: Array(repeating: graph, count: layers.count))
    }

    /// Logits [n_L, K] of a sampled mini-batch's seeds: layer l propagates over `blocks[l]`
    /// [n_{l+1}, n_l], from the features [n_0, F] of every node the first layer reads.
    public func forward(features: CSRMatrix, blocks: [CSRGraph]) -> Tensor {
        precondition(blocks.count == layers.count, "GAT: \(blocks.count) blocks for \(layers.count) layers")
        // Each head of the first layer drops its own copy of the input, as the GAT paper's code, or all share one.
        var x = inputProjection.forward(features, dropout: config.inputDropout, context: randomContext, tag: 300,
                                        mode: mode, groups: config.inputDropoutPerHead ? layers[0].headCount : 1)
        for (index, layer) in layers.enumerated() {
            if index > 0 { x = dropouts[index - 1].forward(x) }
            x = index == 0 ? layer.forward(projected: x, graph: blocks[0]) : layer.forward(x, graph: blocks[index])
            if index < activations.count {
                x = activations[index].forward(x)
                x = norms[index].forward(x)
            }
            phases?.phaseEnded("forward: layer \(index)")
        }
        return x
    }

    /// Logits [N, K] of every node by layer-wise inference in evaluation mode (PyG's `inference`):
    /// each layer over all nodes, `entriesPerChunk` graph entries at a time, so per-edge tensors
    /// never exceed a chunk. The values of `forward(features:graph:)` in evaluation mode.
    public func layerwiseLogits(features: CSRMatrix, graph: CSRGraph, entriesPerChunk: Int) -> Tensor {
        inEvaluationMode {
            var x = inputProjection.forward(features)
            for (index, layer) in layers.enumerated() {
                x = index == 0 ? layer.inferring(projected: x, graph: graph, entriesPerChunk: entriesPerChunk)
                               : layer.inferring(x, graph: graph, entriesPerChunk: entriesPerChunk)
                if index < activations.count {
                    x = ELU(alpha: activations[index].alpha).forward(x)   // a new one: nothing stays cached
                    x = norms[index].forward(x)
                }
            }
            return x
        }
    }

    /// Adds every parameter's gradient from the logits' gradient [N, K].
    public func backward(_ logitsGradient: Tensor) {
        var gradient = logitsGradient
        for index in stride(from: layers.count - 1, through: 0, by: -1) {
            if index < activations.count {
                gradient = norms[index].backward(gradient)
                gradient = activations[index].backward(gradient)
            }
            gradient = layers[index].backward(gradient)
            if index > 0 { gradient = dropouts[index - 1].backward(gradient) }
        }
        inputProjection.backward(gradient)
    }

    /// BatchNorm layers (empty without --norm batch).
    public var batchNorms: [BatchNorm] { norms.compactMap { $0 as? BatchNorm } }
}
