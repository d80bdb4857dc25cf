import Foundation
import ReplicaCore
import ReplicaNN

/// How a Transformer encoder learns where a token is.
public enum PositionKind: String, Codable, Sendable, CaseIterable {
    /// A trained table [maximum length, C] (BERT).
    case learned
    /// Fixed sin/cos of the position (Vaswani et al.), nothing to train.
    case sinusoidal
}

/// A masked language model's shape. Defaults: a small encoder that learns Multi30k's English
/// captions in a few minutes on one core (BERT-mini: d 256, 4 layers, 4 heads, FFN 1024).
public struct MaskedLanguageModelConfig: Codable, Sendable, Equatable {
    public var vocabularySize = 4000     // English BPE of Multi30k; BERT: 30522 WordPieces
    public var embedding = 128           // BERT-base: 768
    public var heads = 4                 // BERT-base: 12
    public var layers = 4                // BERT-base: 12
    public var feedForward = 512         // BERT-base: 3072
    public var dropout: Float = 0.1
    public var maximumLength = 64        // tokens a sentence, <s> and </s> included; BERT: 512
    public var norm = NormKind.layer
    public var scorer = AttentionScorer.dot
    public var positions = PositionKind.learned
    public init() {}

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocab_size", embedding, heads, layers, feedForward = "feed_forward", dropout
        case maximumLength = "max_length", norm, scorer = "attention", positions
    }

    /// The encoder layers' shape (the layers of the encoder–decoder Transformer).
    var encoderLayerConfig: TransformerConfig {
        var config = TransformerConfig()
        config.vocabularySize = vocabularySize
        config.embedding = embedding
        config.heads = heads
        config.encoderLayers = layers
        config.decoderLayers = 0
        config.feedForward = feedForward
        config.dropout = dropout
        config.maximumLength = maximumLength
        config.norm = norm
        config.scorer = scorer
        return config
    }
}

/// A BERT-style masked language model: a pre-norm Transformer encoder (the encoder layers of
/// `Seq2SeqTransformer`) over token plus position embeddings, a final norm, and an output layer
/// tied to the token embedding with its own bias (BERT's `cls.predictions`, without the extra
/// dense transform). Logits are computed only at the rows asked for — the masked positions — so
/// the V-wide output layer costs 15% of what it would over every token.
///
/// B sentences, T padded length, C embedding, V vocabulary, P predicted rows.
/// Names: `embedding.weight` [V, C], `position_embedding.weight` [maximum length, C] (learned
/// positions only), `encoder.layers.{i}.self_attn.qkv.weight`, `.self_attn.out`, `.norm1`, `.ff1`,
/// `.ff2`, `.norm2`; `encoder.norm`; `lm_head.bias` [V].
public final class MaskedLanguageModel {
    public let config: MaskedLanguageModelConfig
    public let arena: ParameterArena
    let tokenEmbedding: Embedding
    let positionEmbedding: Embedding?
    let layers: [EncoderLayer]
    let finalNorm: FeatureNormalization
    let outputBias: ParameterSlot
    let embeddingDropout: Dropout
    /// Arena offset where each layer's parameters begin, and where the final norm's do.
    let layerOffsets: [Int]
    let finalNormOffset: Int
    var ids: [Int32] = []
    var shape = (B: 0, T: 0)
    var rows: [Int32] = []
    var predictedHidden: Tensor?         // [P, C], the final norm's output at the predicted rows

    public init(_ config: MaskedLanguageModelConfig, arena: ParameterArena = ParameterArena()) {
        self.config = config
        self.arena = arena
        let C = config.embedding
        tokenEmbedding = Embedding("embedding", count: config.vocabularySize, dimension: C, arena: arena)
        positionEmbedding = config.positions == .learned
            ? Embedding("position_embedding", count: config.maximumLength, dimension: C, arena: arena) : nil
        embeddingDropout = Dropout(probability: config.dropout, tag: 1)
        let layerConfig = config.encoderLayerConfig
        var offsets: [Int] = []
        layers = (0..<config.layers).map {
            offsets.append(arena.count)
            return EncoderLayer("encoder.layers.\($0)", index: $0, config: layerConfig, arena: arena)
        }
        layerOffsets = offsets
        finalNormOffset = arena.count
        finalNorm = makeNormalization(config.norm, "encoder.norm", features: C, arena: arena)
        outputBias = arena.declare("lm_head.bias", shape: [config.vocabularySize], decays: false)
        arena.allocate()
    }

    public var parameterCount: Int { arena.count }

    /// The token embedding's name in the arena and in `model.safetensors`.
    public static let tokenEmbeddingName = "embedding.weight"

    /// Token and learned position tables N(0, C^−½) (scaled by √C in forward), Xavier-uniform
    /// projections, norms 1, output bias 0.
    public func initialize(seed: UInt64) {
        var generator = SeededGenerator(seed: seed, 0x6d6c_6d00)   // "mlm"
        let deviation = 1 / Float(config.embedding).squareRoot()
        tokenEmbedding.initialize(standardDeviation: deviation, using: &generator)
        positionEmbedding?.initialize(standardDeviation: deviation, using: &generator)
        for layer in layers { layer.initialize(using: &generator) }
        finalNorm.initialize()
        arena.value(outputBias).zero()
    }

    /// Training (dropout, batch statistics) or evaluation.
    public var mode: Mode = .training {
        didSet {
            for layer in layers { layer.setMode(mode) }
            finalNorm.mode = mode
            embeddingDropout.mode = mode
        }
    }

    /// Where dropout masks come from: (seed, rank, step).
    /// Where the forward pass marks its layers (`--timeline`), or nil.
    public weak var phases: PhaseMarker?

    public var randomContext = RandomContext(seed: 0) {
        didSet {
            embeddingDropout.context = randomContext
            for layer in layers { layer.setContext(randomContext) }
        }
    }

    /// Logits [P, V] at the flat rows `rows` (indices into [B·T]) of the input ids [B·T], whose
    /// `mask` is true at real tokens and false at padding (keys at padding are never attended to).
    public func forward(_ ids: [Int32], mask: [Bool], batch B: Int, length T: Int, predicting rows: [Int32]) -> Tensor {
        precondition(ids.count == B * T && mask.count == B * T, "MaskedLanguageModel expects \(B)×\(T) ids and mask")
        precondition(T <= config.maximumLength, "sequence of \(T) exceeds the maximum length \(config.maximumLength)")
        self.ids = ids
        self.rows = rows
        shape = (B, T)
        var x = embeddingDropout.forward(embed(ids, length: T))
        phases?.phaseEnded("forward: embeddings")
        for (index, layer) in layers.enumerated() {
            x = layer.forward(x, batch: B, length: T, mask: mask)
            phases?.phaseEnded("forward: layer \(index)")
        }
        (finalNorm as? BatchNorm)?.rowMask = mask
        let hidden = finalNorm.forward(x).gatheringRows(rows)
        predictedHidden = hidden
        let V = config.vocabularySize
        let logits = Tensor(uninitialized: [rows.count, V])
        gemm(hidden, arena.value(tokenEmbedding.weight), transposingB: true, into: logits)
        addRowVector(arena.value(outputBias), into: logits)
        phases?.phaseEnded("forward: final norm and logits")
        return logits
    }

    /// Adds every parameter's gradient from the logits' gradient [P, V] of the last forward.
    ///
    /// Calls `gradientsReady(offset)` each time every gradient at arena offsets ≥ offset is final,
    /// so all-reduce buckets can start while the rest of backward runs.
    public func backward(_ logitsGradient: Tensor, gradientsReady: (Int) throws -> Void = { _ in }) rethrows {
        guard let hidden = predictedHidden else { preconditionFailure("MaskedLanguageModel.backward before forward") }
        let C = config.embedding, V = config.vocabularySize, P = rows.count
        precondition(logitsGradient.shape == [P, V], "MaskedLanguageModel.backward expects [\(P), \(V)], got \(logitsGradient.shape)")
        // Scatter the predicted rows' gradient back into [B·T, C]; every other row's is 0.
        var dx = Tensor(zeros: [shape.B * shape.T, C])
        if P > 0 {
            let weight = tokenEmbedding.weight
            let biasGradient = arena.gradient(outputBias).data
            for row in 0..<P {
                let g = logitsGradient.data + row * V
                for v in 0..<V { biasGradient[v] += g[v] }
            }
            // Tied output: d E += dlogitsᵀ · h ; dh = dlogits · E
            gemm(logitsGradient, transposingA: true, hidden, into: arena.gradient(weight), beta: 1)
            let dHidden = Tensor(uninitialized: [P, C])
            gemm(logitsGradient, arena.value(weight), into: dHidden)
            dHidden.scatterRows(rows, into: dx)
        }
        dx = finalNorm.backward(dx)
        try gradientsReady(finalNormOffset)
        for (layer, offset) in zip(layers, layerOffsets).reversed() {
            dx = layer.backward(dx)
            try gradientsReady(offset)
        }
        embedBackward(embeddingDropout.backward(dx))
        try gradientsReady(0)
    }

    /// √C · (E[id] + P[position]) with learned positions, √C · E[id] + PE(position) with
    /// sinusoidal ones. ids [B·T] -> [B·T, C]
    func embed(_ ids: [Int32], length T: Int) -> Tensor {
        let C = config.embedding
        let x = Tensor(uninitialized: [ids.count, C])
        let table = arena.value(tokenEmbedding.weight).data
        let positions = positionEmbedding.map { arena.value($0.weight).data }
        let scale = Float(C).squareRoot()
        for (row, id) in ids.enumerated() {
            precondition(id >= 0 && Int(id) < config.vocabularySize, "token id \(id) outside the vocabulary")
            let position = row % T
            let source = table + Int(id) * C, target = x.data + row * C
            if let positions {
                let p = positions + position * C
                for j in 0..<C { target[j] = scale * (source[j] + p[j]) }
            } else {
                let p = sinusoids.data + position * C
                for j in 0..<C { target[j] = scale * source[j] + p[j] }
            }
        }
        return x
    }

    /// PE(p, j) for every position and feature, [maximum length, C], computed once.
    lazy var sinusoids: Tensor = {
        let C = config.embedding
        let table = Tensor(uninitialized: [config.maximumLength, C])
        for position in 0..<config.maximumLength {
            for j in 0..<C { table.data[position * C + j] = Seq2SeqTransformer.positionalEncoding(position, j, C) }
        }
        return table
    }()

    func embedBackward(_ gradient: Tensor) {
        let C = config.embedding, T = shape.T
        let table = arena.gradient(tokenEmbedding.weight).data
        let positions = positionEmbedding.map { arena.gradient($0.weight).data }
        let scale = Float(C).squareRoot()
        for (row, id) in ids.enumerated() {
            let source = gradient.data + row * C
            let target = table + Int(id) * C
            for j in 0..<C { target[j] += scale * source[j] }
            if let positions {
                let p = positions + (row % T) * C
                for j in 0..<C { p[j] += scale * source[j] }
            }
        }
    }

    /// BatchNorm layers (none with layer norm).
    public var batchNorms: [BatchNorm] {
        ([finalNorm] + layers.flatMap { [$0.norm1, $0.norm2] }).compactMap { $0 as? BatchNorm }
    }
}
