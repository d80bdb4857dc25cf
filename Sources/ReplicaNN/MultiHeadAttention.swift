import ReplicaCore

/// Multi-head self-attention with a fused query/key/value projection (nanoGPT's `c_attn`, rows:
/// query, key, value) and an output projection (`c_proj`). [B, T, C] -> [B, T, C]
public final class SelfAttention {
    public let qkv: Linear          // C -> 3C
    public let projection: Linear   // C -> C
    public let kernel: AttentionKernel
    public let embedding: Int
    public var causal: Bool
    /// Arena offsets where the fused projection's, the kernel's and the output projection's
    /// parameters begin (declared in that order).
    let qkvOffset, kernelOffset, projectionOffset: Int
    /// The fused projection of the last forward, queries | keys | values per row. [B·T, 3C]
    public private(set) var qkvOutput: Tensor?
    var attended: Tensor?           // [B·T, C], the kernel's output (its backward reads it)
    var shape = (B: 0, T: 0)

    public init(_ name: String, embedding C: Int, heads: Int, bias: Bool, causal: Bool,
                scorer: AttentionScorer = .dot, qkvName: String = "c_attn", projectionName: String = "c_proj",
                arena: ParameterArena) {
        precondition(C % heads == 0, "embedding \(C) is not divisible by \(heads) heads")
        embedding = C
        self.causal = causal
        qkvOffset = arena.count
        qkv = Linear("\(name).\(qkvName)", inputs: C, outputs: 3 * C, bias: bias, arena: arena)
        kernelOffset = arena.count
        kernel = AttentionKernel(name, heads: heads, headSize: C / heads, scorer: scorer, arena: arena)
        projectionOffset = arena.count
        projection = Linear("\(name).\(projectionName)", inputs: C, outputs: C, bias: bias, arena: arena)
    }

    /// GPT-2's initialisation: N(0, 0.02²), the output projection scaled by `projectionScale`.
    public func initialize(standardDeviation: Float, projectionScale: Float, using generator: inout SeededGenerator) {
        qkv.initialize(standardDeviation: standardDeviation, using: &generator)
        projection.initialize(standardDeviation: standardDeviation * projectionScale, using: &generator)
        kernel.initialize(using: &generator)
    }

    /// x [B, T, C]; keyMask [B·T] marks real (true) and padding (false) positions. With `residual`
    /// ([B, T, C]), returns residual + the attention, added in the output projection's product.
    public func forward(_ x: Tensor, batch B: Int, length T: Int, keyMask: [Bool]? = nil, adding residual: Tensor? = nil) -> Tensor {
        let C = embedding
        shape = (B, T)
        let fused = qkv.forward(x.reshaped([B * T, C]))
        qkvOutput = fused
        let attended = Tensor(uninitialized: [B * T, C])
        self.attended = attended
        kernel.forward(q: StridedOperand(fused.data, rowStride: 3 * C, offset: 0),
                       k: StridedOperand(fused.data, rowStride: 3 * C, offset: C),
                       v: StridedOperand(fused.data, rowStride: 3 * C, offset: 2 * C),
                       output: StridedOperand(attended.data, rowStride: C),
                       batch: B, queryLength: T, keyLength: T, causal: causal, keyMask: keyMask)
        return projection.forward(attended, adding: residual).reshaped(x.shape)
    }

    public func backward(_ outputGradient: Tensor) -> Tensor { backward(outputGradient, gradientsReady: { _ in }) }

    /// The same; calls `gradientsReady(offset)` each time every gradient of this layer at arena
    /// offsets ≥ offset is final: after the output projection's, the kernel's, and the fused projection's.
    public func backward(_ outputGradient: Tensor, gradientsReady: (Int) throws -> Void) rethrows -> Tensor {
        guard let fused = qkvOutput, let attended else { preconditionFailure("SelfAttention.backward before forward") }
        let C = embedding
        let dAttended = try projection.backward(outputGradient.reshaped([shape.B * shape.T, C])) {
            try gradientsReady(projectionOffset)
        }
        let dFused = Tensor(uninitialized: fused.shape)      // the kernel writes every row of it
        kernel.backward(outputGradient: StridedOperand(dAttended.data, rowStride: C), output: StridedOperand(attended.data, rowStride: C),
                        q: StridedOperand(fused.data, rowStride: 3 * C, offset: 0),
                        k: StridedOperand(fused.data, rowStride: 3 * C, offset: C),
                        v: StridedOperand(fused.data, rowStride: 3 * C, offset: 2 * C),
                        qGradient: StridedOperand(dFused.data, rowStride: 3 * C, offset: 0),
                        kGradient: StridedOperand(dFused.data, rowStride: 3 * C, offset: C),
                        vGradient: StridedOperand(dFused.data, rowStride: 3 * C, offset: 2 * C))
        try gradientsReady(kernelOffset)
        return try qkv.backward(dFused) { try gradientsReady(qkvOffset) }.reshaped(outputGradient.shape)
    }
}

/// Multi-head attention from queries of one sequence to keys and values of another (the
/// decoder's cross-attention). query [B, Tq, C], memory [B, Tk, C] -> [B, Tq, C]
public final class CrossAttention {
    public let query: Linear        // C -> C
    public let keyValue: Linear     // C -> 2C (rows: key, value)
    public let projection: Linear   // C -> C
    public let kernel: AttentionKernel
    public let embedding: Int
    var queries: Tensor?
    var keysValues: Tensor?
    var attended: Tensor?           // [B·Tq, C], the kernel's output (its backward reads it)
    var shape = (B: 0, Tq: 0, Tk: 0)

    public init(_ name: String, embedding C: Int, heads: Int, bias: Bool, scorer: AttentionScorer = .dot,
                arena: ParameterArena) {
        precondition(C % heads == 0, "embedding \(C) is not divisible by \(heads) heads")
        embedding = C
        query = Linear("\(name).q", inputs: C, outputs: C, bias: bias, arena: arena)
        keyValue = Linear("\(name).kv", inputs: C, outputs: 2 * C, bias: bias, arena: arena)
        kernel = AttentionKernel(name, heads: heads, headSize: C / heads, scorer: scorer, arena: arena)
        projection = Linear("\(name).out", inputs: C, outputs: C, bias: bias, arena: arena)
    }

    public func initialize(standardDeviation: Float, projectionScale: Float, using generator: inout SeededGenerator) {
        query.initialize(standardDeviation: standardDeviation, using: &generator)
        keyValue.initialize(standardDeviation: standardDeviation, using: &generator)
        projection.initialize(standardDeviation: standardDeviation * projectionScale, using: &generator)
        kernel.initialize(using: &generator)
    }

    /// memoryMask [B·Tk]: false marks padding keys of the memory.
    public func forward(_ x: Tensor, memory: Tensor, batch B: Int, queryLength Tq: Int, keyLength Tk: Int,
                        memoryMask: [Bool]?) -> Tensor {
        let C = embedding
        shape = (B, Tq, Tk)
        let q = query.forward(x.reshaped([B * Tq, C]))
        let kv = keyValue.forward(memory.reshaped([B * Tk, C]))
        queries = q
        keysValues = kv
        let attended = Tensor(uninitialized: [B * Tq, C])
        self.attended = attended
        kernel.forward(q: StridedOperand(q.data, rowStride: C),
                       k: StridedOperand(kv.data, rowStride: 2 * C, offset: 0),
                       v: StridedOperand(kv.data, rowStride: 2 * C, offset: C),
                       output: StridedOperand(attended.data, rowStride: C),
                       batch: B, queryLength: Tq, keyLength: Tk, causal: false, keyMask: memoryMask)
        return projection.forward(attended).reshaped(x.shape)
    }

    /// Returns the gradients of the query input and of the memory.
    public func backward(_ outputGradient: Tensor) -> (query: Tensor, memory: Tensor) {
        guard let q = queries, let kv = keysValues, let attended else { preconditionFailure("CrossAttention.backward before forward") }
        let C = embedding
        let dAttended = projection.backward(outputGradient.reshaped([shape.B * shape.Tq, C]))
        let dq = Tensor(uninitialized: q.shape), dkv = Tensor(uninitialized: kv.shape)   // the kernel writes them
        kernel.backward(outputGradient: StridedOperand(dAttended.data, rowStride: C), output: StridedOperand(attended.data, rowStride: C),
                        q: StridedOperand(q.data, rowStride: C),
                        k: StridedOperand(kv.data, rowStride: 2 * C, offset: 0),
                        v: StridedOperand(kv.data, rowStride: 2 * C, offset: C),
                        qGradient: StridedOperand(dq.data, rowStride: C),
                        kGradient: StridedOperand(dkv.data, rowStride: 2 * C, offset: 0),
                        vGradient: StridedOperand(dkv.data, rowStride: 2 * C, offset: C))
        let dx = query.backward(dq).reshaped(outputGradient.shape)
        let dMemory = keyValue.backward(dkv).reshaped([shape.B, shape.Tk, C])
        return (dx, dMemory)
    }
}
