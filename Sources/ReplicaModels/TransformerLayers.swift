import ReplicaCore
import ReplicaNN

/// Position-wise feed-forward: ff2(ReLU(ff1(x))). [N, C] -> [N, C]
final class FeedForward {
    let expand: Linear       // ff1 C -> F
    let activation = ReLU()
    let contract: Linear     // ff2 F -> C

    init(_ name: String, embedding C: Int, hidden F: Int, arena: ParameterArena) {
        expand = Linear("\(name).ff1", inputs: C, outputs: F, bias: true, arena: arena)
        contract = Linear("\(name).ff2", inputs: F, outputs: C, bias: true, arena: arena)
    }

    func initialize(using generator: inout SeededGenerator) {
        expand.initializeXavier(using: &generator)
        contract.initializeXavier(using: &generator)
    }

    func forward(_ x: Tensor) -> Tensor { contract.forward(activation.forward(overwriting: expand.forward(x))) }
    func backward(_ g: Tensor) -> Tensor { expand.backward(activation.backward(overwriting: contract.backward(g))) }
}


/// x + drop(attn(norm₁(x))), then + drop(ff(norm₂(·))), with a key-padding mask. [B·S, C] -> [B·S, C]
final class EncoderLayer {
    let norm1, norm2: FeatureNormalization
    let attention: SelfAttention
    let feedForward: FeedForward
    let attentionDropout, feedForwardDropout: Dropout

    init(_ name: String, index: Int, config: TransformerConfig, arena: ParameterArena) {
        let C = config.embedding
        norm1 = makeNormalization(config.norm, "\(name).norm1", features: C, arena: arena)
        attention = SelfAttention("\(name).self_attn", embedding: C, heads: config.heads, bias: true, causal: false,
                                  scorer: config.scorer, qkvName: "qkv", projectionName: "out", arena: arena)
        norm2 = makeNormalization(config.norm, "\(name).norm2", features: C, arena: arena)
        feedForward = FeedForward(name, embedding: C, hidden: config.feedForward, arena: arena)
        attentionDropout = Dropout(probability: config.dropout, tag: 1000 + UInt64(index) * 10)
        feedForwardDropout = Dropout(probability: config.dropout, tag: 1001 + UInt64(index) * 10)
    }

    func initialize(using generator: inout SeededGenerator) {
        norm1.initialize()
        norm2.initialize()
        attention.qkv.initializeXavier(using: &generator)
        attention.projection.initializeXavier(using: &generator)
        attention.kernel.initialize(using: &generator)
        feedForward.initialize(using: &generator)
    }

    func setMode(_ mode: Mode) {
        norm1.mode = mode
        norm2.mode = mode
        attentionDropout.mode = mode
        feedForwardDropout.mode = mode
    }

    func setContext(_ context: RandomContext) {
        attentionDropout.context = context
        feedForwardDropout.context = context
    }

    func forward(_ x: Tensor, batch B: Int, length S: Int, mask: [Bool]) -> Tensor {
        (norm1 as? BatchNorm)?.rowMask = mask
        (norm2 as? BatchNorm)?.rowMask = mask
        let attended = attentionDropout.forward(attention.forward(norm1.forward(x), batch: B, length: S, keyMask: mask))
        add(x, into: attended)
        let output = feedForwardDropout.forward(feedForward.forward(norm2.forward(attended)))
        add(attended, into: output)
        return output
    }

    func backward(_ g: Tensor) -> Tensor {
        let dMiddle = norm2.backward(feedForward.backward(feedForwardDropout.backward(g)), adding: g)
        return norm1.backward(attention.backward(attentionDropout.backward(dMiddle)), adding: dMiddle)
    }
}

/// Causal self-attention, cross-attention to the encoder's memory, feed-forward; pre-norm residuals.
final class DecoderLayer {
    let norm1, norm2, norm3: FeatureNormalization
    let selfAttention: SelfAttention
    let crossAttention: CrossAttention
    let feedForward: FeedForward
    let dropouts: [Dropout]
    var memoryShape = [Int]()

    init(_ name: String, index: Int, config: TransformerConfig, arena: ParameterArena) {
        let C = config.embedding
        norm1 = makeNormalization(config.norm, "\(name).norm1", features: C, arena: arena)
        selfAttention = SelfAttention("\(name).self_attn", embedding: C, heads: config.heads, bias: true, causal: true,
                                      scorer: config.scorer, qkvName: "qkv", projectionName: "out", arena: arena)
        norm2 = makeNormalization(config.norm, "\(name).norm2", features: C, arena: arena)
        crossAttention = CrossAttention("\(name).cross_attn", embedding: C, heads: config.heads, bias: true,
                                        scorer: config.scorer, arena: arena)
        norm3 = makeNormalization(config.norm, "\(name).norm3", features: C, arena: arena)
        feedForward = FeedForward(name, embedding: C, hidden: config.feedForward, arena: arena)
        dropouts = (0..<3).map { Dropout(probability: config.dropout, tag: 2000 + UInt64(index) * 10 + UInt64($0)) }
    }

    func initialize(using generator: inout SeededGenerator) {
        for norm in [norm1, norm2, norm3] { norm.initialize() }
        for linear in [selfAttention.qkv, selfAttention.projection, crossAttention.query, crossAttention.keyValue,
                       crossAttention.projection] {
            linear.initializeXavier(using: &generator)
        }
        selfAttention.kernel.initialize(using: &generator)
        crossAttention.kernel.initialize(using: &generator)
        feedForward.initialize(using: &generator)
    }

    func setMode(_ mode: Mode) {
        for norm in [norm1, norm2, norm3] { norm.mode = mode }
        for dropout in dropouts { dropout.mode = mode }
    }

    func setContext(_ context: RandomContext) {
        for dropout in dropouts { dropout.context = context }
    }

    /// x [B·T, C], memory [B·S, C] -> [B·T, C]
    func forward(_ x: Tensor, memory: Tensor, batch B: Int, length T: Int, sourceLength S: Int, targetMask: [Bool],
                 memoryMask: [Bool]) -> Tensor {
        for norm in [norm1, norm2, norm3] { (norm as? BatchNorm)?.rowMask = targetMask }
        memoryShape = memory.shape
        // Padding sits at the end of each target, after every real query: the causal mask hides it.
        let attended = dropouts[0].forward(selfAttention.forward(norm1.forward(x), batch: B, length: T))
        add(x, into: attended)
        let crossed = dropouts[1].forward(crossAttention.forward(norm2.forward(attended), memory: memory, batch: B,
                                                                 queryLength: T, keyLength: S, memoryMask: memoryMask))
        add(attended, into: crossed)
        let output = dropouts[2].forward(feedForward.forward(norm3.forward(crossed)))
        add(crossed, into: output)
        return output
    }

    /// Returns the gradients of the layer's input and of the memory.
    func backward(_ g: Tensor) -> (input: Tensor, memory: Tensor) {
        let dCrossed = norm3.backward(feedForward.backward(dropouts[2].backward(g)), adding: g)
        let (dQuery, dMemory) = crossAttention.backward(dropouts[1].backward(dCrossed))
        let dAttended = norm2.backward(dQuery, adding: dCrossed)
        let dInput = norm1.backward(selfAttention.backward(dropouts[0].backward(dAttended)), adding: dAttended)
        return (dInput, dMemory.reshaped(memoryShape))
    }
}
