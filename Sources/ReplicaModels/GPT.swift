import Foundation
import ReplicaCore
import ReplicaNN

/// A GPT's shape. Defaults: nanoGPT's CPU "baby" Shakespeare configuration.
public struct GPTConfig: Codable, Sendable, Equatable {
    public var layerCount = 4        // GPT-2 small: 12
    public var headCount = 4         // GPT-2 small: 12
    public var embedding = 128       // GPT-2 small: 768
    public var blockSize = 64        // GPT-2: 1024
    public var vocabularySize = 65   // Tiny Shakespeare's characters; GPT-2: 50257
    public var dropout: Float = 0
    public var norm = NormKind.layer

    public init() {}

    enum CodingKeys: String, CodingKey {
        case layerCount = "layers", headCount = "heads", embedding, blockSize = "block_size"
        case vocabularySize = "vocab_size", dropout, norm
    }
}

/// Named GPT sizes (`--preset`): the model's shape; the vocabulary comes from the data.
public enum GPTPreset: String, Sendable, CaseIterable {
    /// nanoGPT's CPU Shakespeare configuration: 4 layers, 4 heads, 128 wide, block 64 (0.8 M parameters).
    case baby
    /// GPT-2 small (Radford et al. 2019): 12 layers, 12 heads, 768 wide, block 1024; 85 M parameters
    /// with a character vocabulary (124 M with GPT-2's 50,257 tokens).
    case gpt2Small = "gpt2-small"

    public var config: GPTConfig {
        var config = GPTConfig()
        if self == .gpt2Small {
            (config.layerCount, config.headCount, config.embedding, config.blockSize) = (12, 12, 768, 1024)
        }
        return config
    }
}

/// Which normalisation a Transformer block uses.
public enum NormKind: String, Codable, Sendable, CaseIterable {
    case layer, batch, none
}

/// A pre-norm decoder-only Transformer with nanoGPT's parameter names and PyTorch layouts
/// (bias-free, tied token embedding and output head). ids [B, T] -> logits [B·T, V]
///
/// B batch, T time (≤ block size), C embedding, V vocabulary.
public final class GPT {
    public let config: GPTConfig
    public let arena: ParameterArena
    let tokenEmbedding: Embedding        // transformer.wte [V, C]
    let positionEmbedding: Embedding     // transformer.wpe [block, C]
    let blocks: [TransformerBlock]
    let finalNorm: FeatureNormalization  // transformer.ln_f
    let embeddingDropout: Dropout
    /// Arena offset where ln_f's parameters begin.
    let finalNormOffset: Int
    var finalHidden: Tensor?             // [B·T, C]
    var shape = (B: 0, T: 0)

    public init(_ config: GPTConfig, arena: ParameterArena = ParameterArena()) {
        self.config = config
        self.arena = arena
        let C = config.embedding
        tokenEmbedding = Embedding("transformer.wte", count: config.vocabularySize, dimension: C, arena: arena)
        positionEmbedding = Embedding("transformer.wpe", count: config.blockSize, dimension: C, arena: arena)
        embeddingDropout = Dropout(probability: config.dropout, tag: 1)
        blocks = (0..<config.layerCount).map {
            TransformerBlock("transformer.h.\($0)", index: $0, config: config, arena: arena)
        }
        finalNormOffset = arena.count
        finalNorm = makeNormalization(config.norm, "transformer.ln_f", features: C, arena: arena)
        arena.allocate()
    }

    public var parameterCount: Int { arena.count }

    /// Each block's self-attention, first block first (to inspect queries and keys, or to drop 1/√hs).
    public var attentionLayers: [SelfAttention] { blocks.map(\.attention) }

    /// GPT-2's initialisation: N(0, 0.02²) everywhere, residual projections N(0, (0.02/√(2L))²), norms 1.
    public func initialize(seed: UInt64) {
        var generator = SeededGenerator(seed: seed, 0x696e_6974)
        tokenEmbedding.initialize(standardDeviation: 0.02, using: &generator)
        positionEmbedding.initialize(standardDeviation: 0.02, using: &generator)
        let projectionScale = 1 / (2 * Float(config.layerCount)).squareRoot()
        for block in blocks { block.initialize(projectionScale: projectionScale, using: &generator) }
        finalNorm.initialize()
    }

    /// Training (dropout, batch statistics) or evaluation.
    public var mode: Mode = .training {
        didSet {
            embeddingDropout.mode = mode
            finalNorm.mode = mode
            for block in blocks { block.mode = mode }
        }
    }

    /// Where the forward pass marks its blocks (`--timeline`), or nil.
    public weak var phases: PhaseMarker?

    /// Where dropout masks come from: (seed, rank, step).
    public var randomContext = RandomContext(seed: 0) {
        didSet {
            embeddingDropout.context = randomContext
            for block in blocks { block.setRandomContext(randomContext) }
        }
    }

    /// Logits [B·T, V] for `ids` [B·T].
    public func forward(_ ids: [Int32], batch B: Int, length T: Int) -> Tensor {
        precondition(T <= config.blockSize, "sequence of \(T) exceeds the block size \(config.blockSize)")
        precondition(ids.count == B * T, "GPT expects \(B)×\(T) ids, got \(ids.count)")
        shape = (B, T)
        var x = tokenEmbedding.forward(ids, shape: [B * T])
        let positions = positionEmbedding.forward((0..<(B * T)).map { Int32($0 % T) }, shape: [B * T])
        add(positions, into: x)
        x = embeddingDropout.forward(x)
        phases?.phaseEnded("forward: embeddings")
        for (index, block) in blocks.enumerated() {
            x = block.forward(x, batch: B, length: T)
            phases?.phaseEnded("forward: block \(index)")
        }
        let hidden = finalNorm.forward(x)
        finalHidden = hidden
        let logits = Tensor(uninitialized: [B * T, config.vocabularySize])
        gemm(hidden, arena.value(tokenEmbedding.weight), transposingB: true, into: logits)
        phases?.phaseEnded("forward: final norm and logits")
        return logits
    }

    /// Adds every parameter's gradient from the logits' gradient [B·T, V].
    ///
    /// Calls `gradientsReady(offset)` each time every gradient at arena offsets ≥ offset is final,
    /// so all-reduce buckets can start while the rest of backward runs.
    public func backward(_ logitsGradient: Tensor, gradientsReady: (Int) throws -> Void = { _ in }) rethrows {
        guard let hidden = finalHidden else { preconditionFailure("GPT.backward before forward") }
        let wte = tokenEmbedding.weight
        // Tied head: d wte += dlogitsᵀ · h ; dh = dlogits · wte
        gemm(logitsGradient, transposingA: true, hidden, into: arena.gradient(wte), beta: 1)
        var dx = Tensor(uninitialized: hidden.shape)
        gemm(logitsGradient, arena.value(wte), into: dx)
        dx = finalNorm.backward(dx)
        try gradientsReady(finalNormOffset)
        for block in blocks.reversed() {
            dx = try block.backward(dx, gradientsReady: gradientsReady)
        }
        dx = embeddingDropout.backward(dx)
        positionEmbedding.backward(dx)
        tokenEmbedding.backward(dx)
        try gradientsReady(0)
    }

    /// The running statistics of every BatchNorm (empty with layer norm).
    public var batchNorms: [BatchNorm] {
        ([finalNorm] + blocks.flatMap { [$0.norm1, $0.norm2] }).compactMap { $0 as? BatchNorm }
    }
}

/// One pre-norm block: x + attn(norm₁(x)), then x + mlp(norm₂(x)). [B·T, C] -> [B·T, C]
final class TransformerBlock {
    let norm1: FeatureNormalization     // ln_1
    let attention: SelfAttention        // attn.c_attn, attn.c_proj
    let norm2: FeatureNormalization     // ln_2
    let expand: Linear                  // mlp.c_fc   C -> 4C
    let activation = GELU()
    let contract: Linear                // mlp.c_proj 4C -> C
    let attentionDropout: Dropout
    let mlpDropout: Dropout
    /// Arena offsets where the block's parameters begin (ln_1), and ln_2's, c_fc's and mlp.c_proj's.
    let offset, norm2Offset, expandOffset, contractOffset: Int
    var shape = (B: 0, T: 0)

    init(_ name: String, index: Int, config: GPTConfig, arena: ParameterArena) {
        let C = config.embedding
        offset = arena.count
        norm1 = makeNormalization(config.norm, "\(name).ln_1", features: C, arena: arena)
        attention = SelfAttention("\(name).attn", embedding: C, heads: config.headCount, bias: false, causal: true, arena: arena)
        norm2Offset = arena.count
        norm2 = makeNormalization(config.norm, "\(name).ln_2", features: C, arena: arena)
        expandOffset = arena.count
        expand = Linear("\(name).mlp.c_fc", inputs: C, outputs: 4 * C, bias: false, arena: arena)
        contractOffset = arena.count
        contract = Linear("\(name).mlp.c_proj", inputs: 4 * C, outputs: C, bias: false, arena: arena)
        attentionDropout = Dropout(probability: config.dropout, tag: UInt64(100 + 2 * index))
        mlpDropout = Dropout(probability: config.dropout, tag: UInt64(101 + 2 * index))
    }

    func initialize(projectionScale: Float, using generator: inout SeededGenerator) {
        norm1.initialize()
        attention.initialize(standardDeviation: 0.02, projectionScale: projectionScale, using: &generator)
        norm2.initialize()
        expand.initialize(standardDeviation: 0.02, using: &generator)
        contract.initialize(standardDeviation: 0.02 * projectionScale, using: &generator)
    }

    var mode: Mode = .training {
        didSet {
            norm1.mode = mode
            norm2.mode = mode
            attentionDropout.mode = mode
            mlpDropout.mode = mode
        }
    }

    func setRandomContext(_ context: RandomContext) {
        attentionDropout.context = context
        mlpDropout.context = context
    }

    func forward(_ x: Tensor, batch B: Int, length T: Int) -> Tensor {
        shape = (B, T)
        // Without dropout each residual is added in its branch's last product (β = 1); with
        // dropout, after it. An inactive dropout still runs, as the identity, for its backward.
        let inAttention = attentionDropout.isActive ? nil : x
        let attended = attentionDropout.forward(attention.forward(norm1.forward(x), batch: B, length: T, adding: inAttention))
        if inAttention == nil { add(x, into: attended) }      // attended is now the residual stream
        let inMLP = mlpDropout.isActive ? nil : attended
        let hidden = activation.forward(overwriting: expand.forward(norm2.forward(attended)))
        let mlp = mlpDropout.forward(contract.forward(hidden, adding: inMLP))
        if inMLP == nil { add(attended, into: mlp) }
        return mlp
    }

    /// Calls `gradientsReady(offset)` after each weight's gradient is final and after each of the
    /// MLP's input-gradient products (nine times, down to the block's own offset): every call is a
    /// poll, so an all-reduce in flight makes progress after nearly every GEMM (at 1 Gbit/s a
    /// 25 MiB bucket outlasts a whole block's backward; with one poll a block, most of it waited).
    func backward(_ outputGradient: Tensor, gradientsReady: (Int) throws -> Void) rethrows -> Tensor {
        // Through each branch; its norm's backward adds the skip connection's gradient.
        let dHidden = try contract.backward(mlpDropout.backward(outputGradient)) { try gradientsReady(contractOffset) }
        try gradientsReady(contractOffset)
        let dNormed2 = try expand.backward(activation.backward(overwriting: dHidden)) { try gradientsReady(expandOffset) }
        try gradientsReady(expandOffset)
        let dMLP = norm2.backward(dNormed2, adding: outputGradient)
        try gradientsReady(norm2Offset)
        let dAttention = norm1.backward(try attention.backward(attentionDropout.backward(dMLP), gradientsReady: gradientsReady),
                                        adding: dMLP)
        try gradientsReady(offset)
        return dAttention
    }
}
