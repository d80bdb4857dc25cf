import Foundation
import ReplicaCore
import ReplicaNN

/// An encoder–decoder Transformer's shape. Defaults: a small model for Multi30k.
public struct TransformerConfig: Codable, Sendable, Equatable {
    public var vocabularySize = 8000     // joint German+English subwords; WMT: 37000
    public var embedding = 256           // Vaswani base: 512
    public var heads = 4                 // base: 8
    public var encoderLayers = 3         // base: 6
    public var decoderLayers = 3         // base: 6
    public var feedForward = 1024        // base: 2048
    public var dropout: Float = 0.1
    public var maximumLength = 256
    public var norm = NormKind.layer
    public var scorer = AttentionScorer.dot
    public init() {}

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocab_size", embedding, heads, encoderLayers = "encoder_layers"
        case decoderLayers = "decoder_layers", feedForward = "feed_forward", dropout, maximumLength = "max_length"
        case norm, scorer = "attention"
    }
}

/// A pre-norm encoder–decoder Transformer (Vaswani et al. 2017, with normalisation before each
/// sub-layer as most current implementations) with sinusoidal positions and one embedding
/// matrix shared by the source, the target and the output projection (a joint subword
/// vocabulary, as the paper's three-way weight tying).
///
/// B batch, S source length, T target length, C embedding, V vocabulary.
/// Names: `embedding.weight` [V, C], `encoder.layers.{i}.self_attn.qkv.weight`, `.self_attn.out`,
/// `.norm1`, `.ff1`, `.ff2`, `.norm2`; `decoder.layers.{i}.self_attn.*`, `.cross_attn.{q,kv,out}`,
/// `.norm1..3`, `.ff1`, `.ff2`; `encoder.norm`, `decoder.norm`.
public final class Seq2SeqTransformer {
    public let config: TransformerConfig
    public let arena: ParameterArena
    let embedding: Embedding
    let encoderLayers: [EncoderLayer]
    let decoderLayers: [DecoderLayer]
    let encoderNorm: FeatureNormalization
    let decoderNorm: FeatureNormalization
    let sourceDropout: Dropout
    let targetDropout: Dropout
    var decoderHidden: Tensor?          // [n, C], the predicted rows' input of the output projection
    var predictedRows: [Int32]?         // [n], the rows of [B·T] with a target; nil when every row has one
    var shape = (B: 0, S: 0, T: 0)
    /// PE(p, j) for p < maximumLength, computed once. [maximumLength, C]
    let positionTable: [Float]

    public init(_ config: TransformerConfig, arena: ParameterArena = ParameterArena()) {
        self.config = config
        self.arena = arena
        let C = config.embedding
        embedding = Embedding("embedding", count: config.vocabularySize, dimension: C, arena: arena)
        sourceDropout = Dropout(probability: config.dropout, tag: 1)
        targetDropout = Dropout(probability: config.dropout, tag: 2)
        var encoderOffsets: [Int] = [], decoderOffsets: [Int] = []
        encoderLayers = (0..<config.encoderLayers).map {
            encoderOffsets.append(arena.count)
            return EncoderLayer("encoder.layers.\($0)", index: $0, config: config, arena: arena)
        }
        encoderNormOffset = arena.count
        encoderNorm = makeNormalization(config.norm, "encoder.norm", features: C, arena: arena)
        decoderLayers = (0..<config.decoderLayers).map {
            decoderOffsets.append(arena.count)
            return DecoderLayer("decoder.layers.\($0)", index: $0, config: config, arena: arena)
        }
        decoderNormOffset = arena.count
        decoderNorm = makeNormalization(config.norm, "decoder.norm", features: C, arena: arena)
        encoderLayerOffsets = encoderOffsets
        decoderLayerOffsets = decoderOffsets
        positionTable = (0..<(config.maximumLength * C)).map { Seq2SeqTransformer.positionalEncoding($0 / C, $0 % C, C) }
        arena.allocate()
    }

    public var parameterCount: Int { arena.count }

    /// Embedding N(0, C^−½) (scaled by √C in forward, as the paper), Xavier-uniform projections, norms 1.
    public func initialize(seed: UInt64) {
        var generator = SeededGenerator(seed: seed, 0x7472_616e)
        embedding.initialize(standardDeviation: 1 / Float(config.embedding).squareRoot(), using: &generator)
        for layer in encoderLayers { layer.initialize(using: &generator) }
        for layer in decoderLayers { layer.initialize(using: &generator) }
        encoderNorm.initialize()
        decoderNorm.initialize()
    }

    public var mode: Mode = .training {
        didSet {
            for layer in encoderLayers { layer.setMode(mode) }
            for layer in decoderLayers { layer.setMode(mode) }
            for part in [encoderNorm, decoderNorm] { part.mode = mode }
            sourceDropout.mode = mode
            targetDropout.mode = mode
        }
    }

    /// Where the forward pass marks its layers (`--timeline`), or nil.
    public weak var phases: PhaseMarker?

    public var randomContext = RandomContext(seed: 0) {
        didSet {
            sourceDropout.context = randomContext
            targetDropout.context = randomContext
            for layer in encoderLayers { layer.setContext(randomContext) }
            for layer in decoderLayers { layer.setContext(randomContext) }
        }
    }

    /// The encoder's output [B·S, C] for source ids [B·S] with mask (true = real token).
    public func encode(_ source: [Int32], mask: [Bool], batch B: Int, length S: Int) -> Tensor {
        shape.B = B
        shape.S = S
        sourceIds = source
        var x = embed(source, length: S)
        x = sourceDropout.forward(x)
        phases?.phaseEnded("forward: source embeddings")
        for (index, layer) in encoderLayers.enumerated() {
            x = layer.forward(x, batch: B, length: S, mask: mask)
            phases?.phaseEnded("forward: encoder layer \(index)")
        }
        setRowMask(encoderNorm, mask)
        return encoderNorm.forward(x)
    }

    /// Logits [n, V] for target inputs [B·T] (`<s>` y₁ … padded) given the encoder's memory: one
    /// row for each of the n positions where `targetMask` is true, in order. Padding rows get no
    /// output projection (their loss would be ignored; in a bucketed batch they are about 9% of
    /// the rows, and the projection onto the vocabulary is half of translate's FLOPs).
    public func decode(_ targetInput: [Int32], targetMask: [Bool], memory: Tensor, memoryMask: [Bool],
                       batch B: Int, length T: Int) -> Tensor {
        shape.T = T
        targetIds = targetInput
        var x = embed(targetInput, length: T)
        x = targetDropout.forward(x)
        phases?.phaseEnded("forward: encoder norm, target embeddings")
        for (index, layer) in decoderLayers.enumerated() {
            x = layer.forward(x, memory: memory, batch: B, length: T, sourceLength: shape.S, targetMask: targetMask,
                              memoryMask: memoryMask)
            phases?.phaseEnded("forward: decoder layer \(index)")
        }
        setRowMask(decoderNorm, targetMask)
        var hidden = decoderNorm.forward(x)
        predictedRows = nil
        if targetMask.contains(false) {
            let rows = targetMask.indices.filter { targetMask[$0] }.map(Int32.init)
            hidden = hidden.gatheringRows(rows)
            predictedRows = rows
        }
        decoderHidden = hidden
        let logits = Tensor(uninitialized: [hidden.rowCount, config.vocabularySize])
        gemm(hidden, arena.value(embedding.weight), transposingB: true, into: logits)
        phases?.phaseEnded("forward: final norm and logits")
        return logits
    }

    /// Adds every parameter's gradient from the logits' gradient [n, V] (after `encode` and `decode`).
    /// Where each layer's and norm's parameters start in the arena (for `gradientsReady`).
    let encoderLayerOffsets: [Int], decoderLayerOffsets: [Int]
    let encoderNormOffset: Int, decoderNormOffset: Int

    /// Adds every parameter's gradient.
    public func backward(_ logitsGradient: Tensor) {
        backward(logitsGradient, gradientsReady: { _ in })
    }

    /// Adds every parameter's gradient; `gradientsReady(offset)` is called each time every
    /// gradient at arena offsets ≥ offset is final (decoder norm, decoder layers from the last,
    /// encoder norm, encoder layers, then the shared embedding at 0), so all-reduce buckets can
    /// start during backward.

    public func backward(_ logitsGradient: Tensor, gradientsReady: (Int) throws -> Void) rethrows {
        guard let hidden = decoderHidden else { preconditionFailure("Seq2SeqTransformer.backward before decode") }
        let weight = embedding.weight
        gemm(logitsGradient, transposingA: true, hidden, into: arena.gradient(weight), beta: 1)
        var dx = Tensor(uninitialized: hidden.shape)
        gemm(logitsGradient, arena.value(weight), into: dx)
        if let predictedRows {
            let full = Tensor(zeros: [shape.B * shape.T, config.embedding])
            dx.scatterRows(predictedRows, into: full)
            dx = full
        }
        dx = decoderNorm.backward(dx)
        try gradientsReady(decoderNormOffset)
        var dMemory = Tensor(zeros: [shape.B * shape.S, config.embedding])
        for (layer, offset) in zip(decoderLayers, decoderLayerOffsets).reversed() {
            let (dInput, dLayerMemory) = layer.backward(dx)
            add(dLayerMemory, into: dMemory)
            dx = dInput
            try gradientsReady(offset)
        }
        dx = targetDropout.backward(dx)
        embedBackward(dx, ids: targetIds)
        dMemory = encoderNorm.backward(dMemory)
        try gradientsReady(encoderNormOffset)
        for (layer, offset) in zip(encoderLayers, encoderLayerOffsets).reversed() {
            dMemory = layer.backward(dMemory)
            try gradientsReady(offset)
        }
        dMemory = sourceDropout.backward(dMemory)
        embedBackward(dMemory, ids: sourceIds)
        try gradientsReady(0)
    }

    // MARK: - Embedding with sinusoidal positions

    var sourceIds: [Int32] = []
    var targetIds: [Int32] = []

    /// √C · E[id] + PE(position). ids [B·L] -> [B·L, C]
    func embed(_ ids: [Int32], length L: Int) -> Tensor {
        let C = config.embedding
        let x = Tensor(uninitialized: [ids.count, C])
        let table = arena.value(embedding.weight).data
        let scale = Float(C).squareRoot()
        precondition(L <= config.maximumLength, "sequence length \(L) exceeds the model's maximum \(config.maximumLength)")
        positionTable.withUnsafeBufferPointer { positions in
            for (row, id) in ids.enumerated() {
                precondition(id >= 0 && Int(id) < config.vocabularySize, "token id \(id) outside the vocabulary")
                let source = table + Int(id) * C, target = x.data + row * C
                let encoding = positions.baseAddress! + (row % L) * C
                for j in 0..<C { target[j] = scale * source[j] + encoding[j] }
            }
        }
        return x
    }

    func embedBackward(_ gradient: Tensor, ids: [Int32]) {
        let C = config.embedding
        let table = arena.gradient(embedding.weight).data
        let scale = Float(C).squareRoot()
        for (row, id) in ids.enumerated() {
            let target = table + Int(id) * C, source = gradient.data + row * C
            for j in 0..<C { target[j] += scale * source[j] }
        }
    }

    /// PE(p, 2i) = sin(p / 10000^{2i/C}), PE(p, 2i+1) = cos(p / 10000^{2i/C}).
    static func positionalEncoding(_ position: Int, _ j: Int, _ C: Int) -> Float {
        let angle = Double(position) / pow(10000, Double(2 * (j / 2)) / Double(C))
        return Float(j % 2 == 0 ? sin(angle) : cos(angle))
    }

    func setRowMask(_ norm: FeatureNormalization, _ mask: [Bool]) {
        (norm as? BatchNorm)?.rowMask = mask
    }

    /// BatchNorm layers (none with layer norm).
    public var batchNorms: [BatchNorm] {
        ([encoderNorm, decoderNorm] + encoderLayers.flatMap { [$0.norm1, $0.norm2] }
            + decoderLayers.flatMap { [$0.norm1, $0.norm2, $0.norm3] }).compactMap { $0 as? BatchNorm }
    }
}
