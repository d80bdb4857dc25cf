import Foundation
import ReplicaCore
import ReplicaNN

// Legend: N nodes, F features, D the encoder's width (H heads × C features, concatenated),
// M mask nodes, K kept (unmasked) nodes = N − M.

/// GraphMAE's shape and masking. Defaults: the authors' Cora configuration (THUDM/GraphMAE
/// configs.yml "cora"; Hou et al., KDD 2022).
public struct GraphMAEConfig: Codable, Sendable, Equatable {
    public var featureCount = 1433        // F, Cora's bag of words
    public var hidden = 512               // D, the encoder's width: heads × features per head
    public var heads = 4                  // encoder heads (concatenated): 4 × 128
    public var layerCount = 2             // encoder GAT layers; the decoder is one more
    public var inputDropout: Float = 0.2  // on every layer's input (encoder and decoder), `in_drop`
    public var attentionDropout: Float = 0.1
    public var negativeSlope: Float = 0.2 // of the attention scores' LeakyReLU
    public var maskRate: Float = 0.5      // fraction of nodes masked per draw
    public var replaceRate: Float = 0.05  // fraction of the mask nodes given another node's features
    public var gamma: Float = 3           // the scaled cosine error's exponent (`alpha_l`)
    public init() {}

    enum CodingKeys: String, CodingKey {
        case featureCount = "features", hidden, heads, layerCount = "layers", inputDropout = "dropout"
        case attentionDropout = "attention_dropout", negativeSlope = "negative_slope", maskRate = "mask_rate"
        case replaceRate = "replace_rate", gamma
    }

    /// Features per encoder head, C = D / H.
    public var headFeatures: Int { hidden / heads }
}

/// GraphMAE (Hou et al., KDD 2022): a masked graph autoencoder that reconstructs the features of
/// masked nodes, as the authors' code (THUDM/GraphMAE, graphmae/models/edcoder.py and gat.py).
///
///     x̃ = masked features: token rows zeroed + mask token, noise rows from random nodes
///     enc = encoder(x̃): GAT layers of H heads × C (concatenated), PReLU after each (the last too)
///     h = enc·W_e2dᵀ, then re-mask: h[mask nodes] = 0
///     x̂ = decoder(h): one GAT layer of one head, D -> F, no activation
///     loss = mean over mask nodes of (1 − cos(x̂_i, x_i))^γ
///
/// Dropout p (`in_drop`) acts on every GAT layer's input, decoder included; attention dropout on
/// every layer's coefficients. The first layer projects the sparse features with a `SparseLinear`;
/// the mask token's contribution token·W is one [D] row added to the token rows (so the token
/// itself is not dropped out). The re-masked rows of h are zero, so the encoder-to-decoder
/// product and the decoder's projection run on the K kept rows only.
///
/// Parameter names: `mask_token` [F]; `encoder.layers.{i}.weight` ([in, D]), `.attention_source`,
/// `.attention_target` ([H, C]), `.bias` [D]; `encoder.activations.{i}.weight` [1] (PReLU);
/// `encoder_to_decoder.weight` [D, D] (PyTorch's layout); `decoder.layers.0.weight` [D, F],
/// `.attention_source`, `.attention_target` [1, F], `.bias` [F].
public final class GraphMAE {
    public let config: GraphMAEConfig
    public let arena: ParameterArena
    let maskToken: ParameterSlot                  // [F]
    let inputProjection: SparseLinear             // encoder.layers.0.weight [F, D]
    let encoderLayers: [GraphAttention]
    let activations: [PReLU]
    let dropouts: [Dropout]                       // on the inputs of encoder layers 1...
    let encoderToDecoder: Linear                  // [D, D], no bias
    let decoderDropout: Dropout
    let decoderWeight: ParameterSlot              // [D, F]
    let decoderLayer: GraphAttention              // attends over the projected [N, F]
    public let loss: ScaledCosineError

    /// What `backward` needs beyond the layers' own caches.
    struct Cache {
        var nodeCount: Int
        var tokenNodes: [Int32]
        var keptNodes: [Int32]                    // [K]
        var decoderInput: Tensor                  // h of the kept rows after dropout [K, D]
    }
    var cache: Cache?

    public init(_ config: GraphMAEConfig, arena: ParameterArena = ParameterArena()) {
        precondition(config.layerCount >= 1 && config.heads >= 1 && config.hidden % config.heads == 0,
                     "GraphMAE needs ≥ 1 layer and a width divisible by the heads, got \(config.layerCount), \(config.hidden), \(config.heads)")
        self.config = config
        self.arena = arena
        let F = config.featureCount, D = config.hidden, C = config.headFeatures
        maskToken = arena.declare("mask_token", shape: [F], decays: true)   // the authors' Adam decays it too
        inputProjection = SparseLinear("encoder.layers.0", inputs: F, outputs: D, bias: false, arena: arena)
        var layers: [GraphAttention] = [], activations: [PReLU] = [], dropouts: [Dropout] = []
        for index in 0..<config.layerCount {
            if index > 0 { dropouts.append(Dropout(probability: config.inputDropout, tag: 200 + UInt64(index))) }
            layers.append(GraphAttention("encoder.layers.\(index)", inputs: index == 0 ? nil : D, outputs: C,
                                         heads: config.heads, concatenatesHeads: true, negativeSlope: config.negativeSlope,
                                         attentionDropout: config.attentionDropout, tag: 100 + UInt64(index), arena: arena))
            activations.append(PReLU("encoder.activations.\(index)", arena: arena))
        }
        encoderLayers = layers
        self.activations = activations
        self.dropouts = dropouts
        encoderToDecoder = Linear("encoder_to_decoder", inputs: D, outputs: D, bias: false, arena: arena)
        decoderDropout = Dropout(probability: config.inputDropout, tag: 250)
        decoderWeight = arena.declare("decoder.layers.0.weight", shape: [D, F], decays: true)
        decoderLayer = GraphAttention("decoder.layers.0", inputs: nil, outputs: F, heads: 1, concatenatesHeads: true,
                                      negativeSlope: config.negativeSlope, attentionDropout: config.attentionDropout,
                                      tag: 150, arena: arena)
        loss = ScaledCosineError(gamma: config.gamma)
        arena.allocate()
    }

    public var parameterCount: Int { arena.count }

    /// As the authors' GATConv.reset_parameters: Xavier-normal weights and attention vectors with
    /// ReLU gain √2, zero biases; PReLU slopes 0.25; encoder_to_decoder PyTorch's default
    /// U(−1/√D, 1/√D); a zero mask token.
    public func initialize(seed: UInt64) {
        var generator = SeededGenerator(seed: seed, 0x6d61_65)
        let gain = Float(2).squareRoot()
        func xavierNormal(_ slot: ParameterSlot, fanIn: Int, fanOut: Int) {
            arena.value(slot).fillNormal(standardDeviation: gain * (2 / Float(fanIn + fanOut)).squareRoot(), using: &generator)
        }
        let F = config.featureCount, D = config.hidden, H = config.heads, C = config.headFeatures
        arena.value(maskToken).zero()
        xavierNormal(inputProjection.weight, fanIn: F, fanOut: D)
        for (layer, activation) in zip(encoderLayers, activations) {
            if let weight = layer.weight { xavierNormal(weight, fanIn: D, fanOut: D) }
            // attn_l of shape (1, H, C): fan_in H·C, fan_out C.
            xavierNormal(layer.attentionSource, fanIn: H * C, fanOut: C)
            xavierNormal(layer.attentionTarget, fanIn: H * C, fanOut: C)
            if let bias = layer.bias { arena.value(bias).zero() }
            activation.initialize()
        }
        encoderToDecoder.initializeUniform(using: &generator)
        xavierNormal(decoderWeight, fanIn: D, fanOut: F)
        xavierNormal(decoderLayer.attentionSource, fanIn: F, fanOut: F)
        xavierNormal(decoderLayer.attentionTarget, fanIn: F, fanOut: F)
        if let bias = decoderLayer.bias { arena.value(bias).zero() }
    }

    public var mode: Mode = .training {
        didSet {
            for layer in encoderLayers { layer.mode = mode }
            for dropout in dropouts { dropout.mode = mode }
            decoderLayer.mode = mode
            decoderDropout.mode = mode
        }
    }

    /// Where dropout masks come from: (seed, rank, step).
    /// Where the forward pass marks its encoder layers and decoder (`--timeline`), or nil.
    public weak var phases: PhaseMarker?

    public var randomContext = RandomContext(seed: 0) {
        didSet {
            for layer in encoderLayers { layer.context = randomContext }
            for dropout in dropouts { dropout.context = randomContext }
            decoderLayer.context = randomContext
            decoderDropout.context = randomContext
        }
    }

    /// The encoder's output for every node in evaluation mode (no mask, no dropout): the
    /// embeddings of the linear probe. features [N, F] (CSR), graph [N, N] -> [N, D]
    public func embed(features: CSRMatrix, graph: CSRGraph) -> Tensor {
        let saved = mode
        mode = .evaluation
        defer { mode = saved }
        return encode(inputProjection.forward(features), graph: graph)
    }

    /// Layers after the first's projection: attention, PReLU; then dropout, layer, PReLU... [N, D] -> [N, D]
    func encode(_ projected: Tensor, graph: CSRGraph) -> Tensor {
        var x = projected
        for (index, layer) in encoderLayers.enumerated() {
            if index == 0 {
                x = layer.forward(projected: x, graph: graph)
            } else {
                x = layer.forward(dropouts[index - 1].forward(x), graph: graph)
            }
            x = activations[index].forward(x)
            phases?.phaseEnded("forward: encoder layer \(index)")
        }
        return x
    }

    /// The decoder's reconstruction x̂ of every node's features under `mask`. [N, F]
    ///
    /// `decoderGraph` (default `graph`) is the graph the decoder attends over: the authors' code
    /// gives the encoder the graph after DropEdge and the decoder the whole graph.
    public func reconstruct(features: CSRMatrix, graph: CSRGraph, mask: GraphMAEMask, decoderGraph: CSRGraph? = nil) -> Tensor {
        let N = features.rowCount, D = config.hidden, F = config.featureCount
        precondition(features.columnCount == F, "GraphMAE expects [N, \(F)] features, got [\(N), \(features.columnCount)]")
        precondition(mask.nodeCount == N, "GraphMAE: a mask over \(mask.nodeCount) nodes for \(N) nodes")
        var x = inputProjection.forward(mask.corrupting(features), dropout: config.inputDropout, context: randomContext,
                                        tag: 300, mode: mode)
        if !mask.tokenNodes.isEmpty {
            // Token rows hold 0 + token: their projection is token·W, one row for all of them.
            let tokenRow = Tensor(uninitialized: [1, D])
            gemm(arena.value(maskToken).reshaped([1, F]), arena.value(inputProjection.weight), into: tokenRow)
            for node in mask.tokenNodes {
                let y = x.data + Int(node) * D
                for k in 0..<D { y[k] += tokenRow.data[k] }
            }
        }
        x = encode(x, graph: graph)
        // Re-mask: the mask rows of h are zero, so only the kept rows pass encoder_to_decoder and
        // the decoder's projection; the projected mask rows stay zero.
        let kept = mask.keptNodes
        var h = encoderToDecoder.forward(x.gatheringRows(kept))
        h = decoderDropout.forward(h)
        let projectedKept = Tensor(uninitialized: [kept.count, F])
        gemm(h, arena.value(decoderWeight), into: projectedKept)
        let projected = Tensor(zeros: [N, F])
        projectedKept.scatterRows(kept, into: projected)
        cache = Cache(nodeCount: N, tokenNodes: mask.tokenNodes, keptNodes: kept, decoderInput: h)
        let reconstruction = decoderLayer.forward(projected: projected, graph: decoderGraph ?? graph)
        phases?.phaseEnded("forward: decoder")
        return reconstruction
    }

    /// The pre-training loss: the scaled cosine error of the mask nodes' reconstructions divided
    /// by `normalizer` (the global number of mask nodes).
    public func forward(features: CSRMatrix, graph: CSRGraph, mask: GraphMAEMask, normalizer: Float,
                        decoderGraph: CSRGraph? = nil) -> Double {
        let reconstruction = reconstruct(features: features, graph: graph, mask: mask, decoderGraph: decoderGraph)
        return loss.forward(reconstruction: reconstruction, targets: features, rows: mask.maskNodes, normalizer: normalizer)
    }

    /// Adds every parameter's gradient of the last `forward`'s loss.
    public func backward() {
        backward(reconstructionGradient: loss.backward(), gradientsReady: { _ in })
    }

    /// Adds every parameter's gradient of the last `forward`'s loss; calls `gradientsReady(offset)`
    /// each time every gradient at arena offsets ≥ offset is final.
    public func backward(gradientsReady: (Int) throws -> Void) rethrows {
        try backward(reconstructionGradient: loss.backward(), gradientsReady: gradientsReady)
    }

    /// Adds every parameter's gradient from the gradient of the last reconstruction [N, F].
    public func backward(reconstructionGradient: Tensor) {
        backward(reconstructionGradient: reconstructionGradient, gradientsReady: { _ in })
    }

    /// Adds every parameter's gradient from the gradient of the last reconstruction [N, F]; calls
    /// `gradientsReady(offset)` as `backward(gradientsReady:)` does.
    public func backward(reconstructionGradient: Tensor, gradientsReady: (Int) throws -> Void) rethrows {
        guard let cache else { preconditionFailure("GraphMAE.backward before reconstruct") }
        let N = cache.nodeCount, D = config.hidden
        let dProjected = decoderLayer.backward(reconstructionGradient)                     // [N, F]
        let dProjectedKept = dProjected.gatheringRows(cache.keptNodes)                    // [K, F]
        // dW_dec += hᵀ·dP ; dh = dP·W_decᵀ
        gemm(cache.decoderInput, transposingA: true, dProjectedKept, into: arena.gradient(decoderWeight), beta: 1)
        var dh = Tensor(uninitialized: [cache.keptNodes.count, D])
        gemm(dProjectedKept, arena.value(decoderWeight), transposingB: true, into: dh)
        try gradientsReady(decoderWeight.range.lowerBound)
        dh = decoderDropout.backward(dh)
        let dKept = encoderToDecoder.backward(dh)
        try gradientsReady(encoderToDecoder.weight.range.lowerBound)
        var dx = Tensor(zeros: [N, D])
        dKept.scatterRows(cache.keptNodes, into: dx)
        for index in stride(from: encoderLayers.count - 1, through: 0, by: -1) {
            dx = activations[index].backward(dx)
            dx = encoderLayers[index].backward(dx)
            if index > 0 {
                dx = dropouts[index - 1].backward(dx)
                try gradientsReady(encoderLayers[index].weight!.range.lowerBound)
            }
        }
        inputProjection.backward(dx)
        if !cache.tokenNodes.isEmpty {
            // s = Σ_token rows dY [D]; d token += W·s ; dW += token ⊗ s
            let s = Tensor(zeros: [D, 1])
            for node in cache.tokenNodes {
                let row = dx.data + Int(node) * D
                for k in 0..<D { s.data[k] += row[k] }
            }
            let F = config.featureCount
            gemm(arena.value(inputProjection.weight), s, into: arena.gradient(maskToken).reshaped([F, 1]), beta: 1)
            gemm(arena.value(maskToken).reshaped([F, 1]), s.reshaped([1, D]), into: arena.gradient(inputProjection.weight), beta: 1)
        }
        try gradientsReady(0)
    }
}
