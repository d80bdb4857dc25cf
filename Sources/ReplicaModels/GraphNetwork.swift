import ReplicaCore
import ReplicaNN

/// A node classifier over a graph, as `GATTask` trains it: GAT, or a `GraphNetwork` (GCN, deep GAT,
/// graph Transformer). features [N, F] (CSR), graph -> logits [N, K]
public protocol NodeClassifier: AnyObject {
    var arena: ParameterArena { get }
    var parameterCount: Int { get }
    /// Message-passing layers: a k-layer model needs the k-hop neighbourhood.
    var layerCount: Int { get }
    var mode: Mode { get set }
    var randomContext: RandomContext { get set }
    /// Where the forward pass marks its layers (`--timeline`), or nil.
    var phases: PhaseMarker? { get set }
    func initialize(seed: UInt64)
    func forward(features: CSRMatrix, graph: CSRGraph) -> Tensor
    /// Logits [n_L, K] of a sampled mini-batch's seeds: layer l propagates over `blocks[l]`
    /// [n_{l+1}, n_l] (its nodes computed first among those it reads), from the features
    /// [n_0, F] of every node the first layer reads. With every block the whole graph, `forward(features:graph:)`.
    func forward(features: CSRMatrix, blocks: [CSRGraph]) -> Tensor
    /// Whether `forward(features:blocks:)` takes blocks smaller than the graph (the graph
    /// Transformer attends over every node, so it does not).
    var acceptsBlocks: Bool { get }
    /// Logits [N, K] of every node by layer-wise inference in evaluation mode (PyG's `inference`):
    /// each layer over all nodes, at most about `entriesPerChunk` graph entries at a time. The
    /// values of `forward(features:graph:)` in evaluation mode.
    func layerwiseLogits(features: CSRMatrix, graph: CSRGraph, entriesPerChunk: Int) -> Tensor
    func backward(_ logitsGradient: Tensor)
    var batchNorms: [BatchNorm] { get }
    /// The graph the layers propagate over, made from the symmetric pattern with self-loops
    /// (GCN: its normalised weights; attention: the pattern itself).
    func propagationGraph(_ pattern: CSRGraph) -> CSRGraph
    /// Whether `propagationGraph` depends on degrees, so an edited graph (DropEdge, rewiring) must
    /// be passed through it again rather than edited after it.
    var normalizesGraph: Bool { get }
    /// Model settings for the run fingerprint and checkpoints ("hidden": "8", ...).
    var configurationFields: [String: String] { get }
    /// The model's configuration, for the checkpoint's `config` (GATConfig, GraphNetworkConfig).
    var encodableConfig: any Encodable { get }
}

extension NodeClassifier {
    /// `body`'s result with the model in evaluation mode; the mode is restored afterwards.
    func inEvaluationMode<Result>(_ body: () -> Result) -> Result {
        let saved = mode
        mode = .evaluation
        defer { mode = saved }
        return body()
    }
}

extension GAT: NodeClassifier {
    public var layerCount: Int { config.layerCount }
    public var acceptsBlocks: Bool { true }
    public func propagationGraph(_ pattern: CSRGraph) -> CSRGraph { pattern }
    public var normalizesGraph: Bool { false }
    public var configurationFields: [String: String] {
        let c = config
        var fields = ["features": "\(c.featureCount)", "classes": "\(c.classCount)", "hidden": "\(c.hidden)", "heads": "\(c.heads)",
                      "output_heads": "\(c.outputHeads)", "layers": "\(c.layerCount)", "dropout": "\(c.inputDropout)",
                      "attention_dropout": "\(c.attentionDropout)", "value_dropout": "\(c.valueDropout)", "norm": c.norm.rawValue]
        // Only when not the default, so the fingerprints of earlier runs stay what they were.
        if !c.inputDropoutPerHead { fields["input_dropout_per_head"] = "false" }
        return fields
    }
    public var encodableConfig: any Encodable { config }
}

/// Which message-passing layer a `GraphNetwork` stacks.
public enum GraphLayerKind: String, Codable, Sendable, CaseIterable {
    case gcn, gat, transformer
}

/// A `GraphNetwork`'s shape. Defaults: Kipf & Welling 2017's GCN on Cora.
public struct GraphNetworkConfig: Codable, Sendable, Equatable {
    public var kind = GraphLayerKind.gcn
    public var featureCount = 1433          // Cora's bag of words
    public var classCount = 7
    public var hidden = 16                  // features per head in hidden layers
    public var heads = 1                    // heads in hidden layers (concatenated); GCN: 1
    public var outputHeads = 1              // heads of the output layer (averaged)
    public var layerCount = 2
    public var dropout: Float = 0.5         // on every layer's input
    public var attentionDropout: Float = 0  // GAT layers only
    public var valueDropout: Float = 0      // GAT layers only
    /// h ← h + layer(h) around every hidden-to-hidden layer (depth ≥ 3).
    public var residual = false
    /// Weight decay on the first layer's weight only, as Kipf's code (`model.layers[0].vars`); else on every weight.
    public var decaysFirstLayerOnly = true
    /// Biases in the layers (Kipf's code has none; GAT and the Transformer have them).
    public var bias = false
    /// Graph-Transformer layers: the edge bias β at initialisation (ln N: mostly local attention at first).
    public var initialEdgeBias: Float = 0
    public init() {}

    enum CodingKeys: String, CodingKey {
        case kind = "model", featureCount = "features", classCount = "classes", hidden, heads
        case outputHeads = "output_heads", layerCount = "layers", dropout, attentionDropout = "attention_dropout"
        case valueDropout = "value_dropout", residual, decaysFirstLayerOnly = "decay_first_layer_only", bias
        case initialEdgeBias = "initial_edge_bias"
    }

    /// The GAT paper's layer settings (8 heads × 8, dropout 0.6) in a `GraphNetwork` of `layers` layers.
    public static func gat(layers: Int) -> GraphNetworkConfig {
        var c = GraphNetworkConfig()
        c.kind = .gat
        c.hidden = 8
        c.heads = 8
        c.layerCount = layers
        c.dropout = 0.6
        c.attentionDropout = 0.6
        c.decaysFirstLayerOnly = false
        c.bias = true
        return c
    }
}

/// Stacked message-passing layers for node classification: GCN (Kipf & Welling 2017), GAT layers
/// or graph-Transformer layers. features [N, F] (CSR), graph -> logits [N, K]
///
///     x_0 = dropout(X)·W_0 (a sparse product), h_1 = act(layer_0(x_0))
///     h_{l+1} = act(layer_l(dropout(h_l))) [+ h_l with `residual`]    hidden layers
///     logits = layer_last(dropout(h_last))                             heads averaged
///
/// act is ReLU (GCN, Transformer) or ELU (GAT). The last hidden representation h_last [N, width]
/// is kept after each forward (`lastHidden`) for smoothness measurements.
/// Parameter names: `net.layers.{i}.weight` ([in, out] as `SparseLinear`/the layer), and the
/// layer's own (`.attention_source`, `.edge_bias`, `.bias`).
public final class GraphNetwork: NodeClassifier {
    public let config: GraphNetworkConfig
    public let arena: ParameterArena
    let inputProjection: SparseLinear
    let layers: [GraphLayer]
    let activations: [Layer]
    let dropouts: [Dropout]                 // on the inputs of layers 1...
    /// The input of the last layer in the last forward (before its dropout). [N, width]
    public private(set) var lastHidden: Tensor?

    public init(_ config: GraphNetworkConfig, arena: ParameterArena = ParameterArena()) {
        precondition(config.layerCount >= 1, "GraphNetwork needs at least one layer")
        precondition(config.kind == .gcn || config.heads >= 1, "GraphNetwork needs heads ≥ 1")
        self.config = config
        self.arena = arena
        let last = config.layerCount - 1
        let heads = config.kind == .gcn ? 1 : config.heads
        let outputHeads = config.kind == .gcn ? 1 : config.outputHeads
        let width = config.hidden * heads
        func layer(_ index: Int) -> GraphLayer {
            let isLast = index == last, name = "net.layers.\(index)"
            let inputs: Int? = index == 0 ? nil : width
            let outputs = isLast ? config.classCount : config.hidden
            let layerHeads = isLast ? outputHeads : heads
            switch config.kind {
            case .gcn:
                return GraphConvolution(name, inputs: inputs, outputs: outputs, bias: config.bias,
                                        decays: index == 0 || !config.decaysFirstLayerOnly, arena: arena)
            case .gat:
                return GraphAttention(name, inputs: inputs, outputs: outputs, heads: layerHeads, concatenatesHeads: !isLast,
                                      bias: config.bias, attentionDropout: config.attentionDropout,
                                      valueDropout: config.valueDropout, tag: 100 + UInt64(index), arena: arena)
            case .transformer:
                let layer = GraphTransformerAttention(name, inputs: inputs, outputs: outputs, heads: layerHeads,
                                                      concatenatesHeads: !isLast, bias: config.bias, arena: arena)
                layer.initialEdgeBias = config.initialEdgeBias
                return layer
            }
        }
        // The first layer's projection is a sparse product declared under the layer's name, first.
        let firstWidth: Int
        switch config.kind {
        case .gcn: firstWidth = last == 0 ? config.classCount : config.hidden
        case .gat: firstWidth = (last == 0 ? config.classCount * outputHeads : width)
        case .transformer: firstWidth = 3 * (last == 0 ? config.classCount * outputHeads : width)
        }
        inputProjection = SparseLinear("net.layers.0", inputs: config.featureCount, outputs: firstWidth, bias: false, arena: arena)
        layers = (0...last).map(layer)
        dropouts = (0..<last).map { Dropout(probability: config.dropout, tag: 201 + UInt64($0)) }
        activations = (0..<last).map { _ in Self.activation(config.kind) }
        arena.allocate()
    }

    public var parameterCount: Int { arena.count }
    public var layerCount: Int { config.layerCount }
    public var batchNorms: [BatchNorm] { [] }

    /// Glorot weights (and attention vectors), zero biases.
    public func initialize(seed: UInt64) {
        var generator = SeededGenerator(seed: seed, 0x6763_6e)
        inputProjection.initializeGlorot(using: &generator)
        for layer in layers { layer.initialize(using: &generator) }
    }

    public var mode: Mode = .training {
        didSet {
            for layer in layers { layer.mode = mode }
            for dropout in dropouts { dropout.mode = mode }
        }
    }

    /// Where the forward pass marks its layers (`--timeline`), or nil.
    public weak var phases: PhaseMarker?

    public var randomContext = RandomContext(seed: 0) {
        didSet {
            for layer in layers { layer.context = randomContext }
            for dropout in dropouts { dropout.context = randomContext }
        }
    }

    public func propagationGraph(_ pattern: CSRGraph) -> CSRGraph {
        config.kind == .gcn ? pattern.gcnNormalized() : pattern
    }

    public var normalizesGraph: Bool { config.kind == .gcn }

    /// Whether hidden layer `index` adds its input to its output.
    func isResidual(_ index: Int) -> Bool { config.residual && index > 0 && index < layers.count - 1 }

    public func forward(features: CSRMatrix, graph: CSRGraph) -> Tensor {
        forward(features: features, blocks: Array(repeating: graph, count: layers.count))
    }

    public var acceptsBlocks: Bool { config.kind != .transformer }

    /// A residual layer adds the first n_{l+1} rows of its input: the nodes it computes.
    public func forward(features: CSRMatrix, blocks: [CSRGraph]) -> Tensor {
        precondition(blocks.count == layers.count, "GraphNetwork: \(blocks.count) blocks for \(layers.count) layers")
        // GAT drops each head's input on its own, as the GAT paper's code; the others once.
        let groups = config.kind == .gat ? (layers.count > 1 ? config.heads : config.outputHeads) : 1
        var x = inputProjection.forward(features, dropout: config.dropout, context: randomContext, tag: 300,
                                        mode: mode, groups: groups)
        let last = layers.count - 1
        lastHidden = nil
        for (index, layer) in layers.enumerated() {
            let input = x                                  // the layer's input before dropout
            if index == last && index > 0 { lastHidden = x }
            x = index == 0 ? layer.forward(projected: x, graph: blocks[0])
                           : layer.forward(dropouts[index - 1].forward(x), graph: blocks[index])
            if index < last {
                x = activations[index].forward(x)
                if isResidual(index) { x = adding(x, input) }
            }
            phases?.phaseEnded("forward: layer \(index)")
        }
        return x
    }

    /// Also keeps `lastHidden`, as `forward` does.
    public func layerwiseLogits(features: CSRMatrix, graph: CSRGraph, entriesPerChunk: Int) -> Tensor {
        inEvaluationMode {
            var x = inputProjection.forward(features)
            let last = layers.count - 1
            lastHidden = nil
            for (index, layer) in layers.enumerated() {
                let input = x
                if index == last && index > 0 { lastHidden = x }
                x = index == 0 ? layer.inferring(projected: x, graph: graph, entriesPerChunk: entriesPerChunk)
                               : layer.inferring(x, graph: graph, entriesPerChunk: entriesPerChunk)
                if index < last {
                    x = Self.activation(config.kind).forward(x)    // a new one: nothing stays cached
                    if isResidual(index) { x = adding(x, input) }
                }
            }
            return x
        }
    }

    /// The activation between layers: ELU for GAT layers, else ReLU.
    static func activation(_ kind: GraphLayerKind) -> Layer { kind == .gat ? ELU() : ReLU() }

    public func backward(_ logitsGradient: Tensor) {
        var gradient = logitsGradient
        for index in stride(from: layers.count - 1, through: 0, by: -1) {
            var skip: Tensor? = nil                        // the residual path's gradient into the layer's input
            if index < activations.count {
                if isResidual(index) { skip = gradient }
                gradient = activations[index].backward(gradient)
            }
            if index > 0 {
                gradient = dropouts[index - 1].backward(layers[index].backward(gradient))
                if let skip { gradient = adding(gradient, skip) }
            } else {
                gradient = layers[0].backward(gradient)
            }
        }
        inputProjection.backward(gradient)
    }

    /// Model settings for the fingerprint and checkpoints.
    public var configurationFields: [String: String] {
        let c = config
        return ["model": c.kind == .gcn ? "gcn" : "graph-\(c.kind.rawValue)", "features": "\(c.featureCount)",
                "classes": "\(c.classCount)", "hidden": "\(c.hidden)", "heads": "\(c.heads)", "output_heads": "\(c.outputHeads)",
                "layers": "\(c.layerCount)", "dropout": "\(c.dropout)", "attention_dropout": "\(c.attentionDropout)",
                "value_dropout": "\(c.valueDropout)", "residual": "\(c.residual)", "bias": "\(c.bias)",
                "initial_edge_bias": "\(c.initialEdgeBias)",
                "decay_first_layer_only": "\(c.decaysFirstLayerOnly)"]
    }

    public var encodableConfig: any Encodable { config }
}

/// a + b, a new tensor of a's shape, over the rows both have: a [n, W] plus the first n rows of
/// b [m ≥ n, W] (a block's output and its input: the nodes computed come first), or a [m, W]
/// with b [n ≤ m, W] added into its first rows (the gradient of that). [n or m, W]
func adding(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.columnCount == b.columnCount, "adding \(a.shape) and \(b.shape)")
    let result = Tensor(uninitialized: a.shape)
    let shared = min(a.count, b.count)
    for i in 0..<shared { result.data[i] = a.data[i] + b.data[i] }
    if shared < a.count { (result.data + shared).update(from: a.data + shared, count: a.count - shared) }
    return result
}
