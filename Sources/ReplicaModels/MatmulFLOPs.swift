import ReplicaNN

// The floating-point operations of the matrix products a training step computes, counted from
// the shapes the code multiplies (2·m·n·k an [m, k]·[k, n] product), for model FLOPs utilisation
// (`replica bench step`'s `mfu`). Element-wise work (norms, softmax, GELU, the optimizer) and
// embedding lookups are not counted.
//
// Backward is twice forward for every product: a Linear computes both its weight gradient and its
// input gradient (the first layer's too: the embedding tables need it), the tied head both, and
// attention's backward four products the size of forward's two (dV, dP, dQ, dK).
//
// Attention computes the full Tq×Tk score matrix of every head and masks it afterwards (causal
// or padding), so its products count the full square, as PaLM's and nanoGPT's MFU do
// (2·2·B·T²·C forward), not the causal half.

extension GPTConfig {
    /// Matrix-product FLOPs of forward and backward of one micro-batch of `batch` sequences of the
    /// block size, N = B·T tokens: 3 × (L·(24·N·C² + 4·B·T²·C) + 2·N·C·V). Per block forward:
    /// qkv 2·N·C·3C, scores 2·B·T²·C, values 2·B·T²·C, output projection 2·N·C², MLP 2·N·C·4C
    /// twice; the tied head 2·N·C·V.
    public func matmulFLOPs(batch B: Int) -> Double {
        let T = Double(blockSize), C = Double(embedding), N = Double(B) * T
        let perBlock = 2 * N * C * (3 * C) + 2 * 2 * Double(B) * T * T * C + 2 * N * C * C + 2 * 2 * N * C * (4 * C)
        let forward = Double(layerCount) * perBlock + 2 * N * C * Double(vocabularySize)
        return 3 * forward
    }
}

extension TransformerConfig {
    /// Matrix-product FLOPs of forward and backward of one padded batch of `batch` pairs, sources
    /// padded to `sourceLength` S and target inputs to `targetLength` T (the layers compute on padding,
    /// so it counts). With Ns = B·S, Nt = B·T, F the feed-forward width, forward per encoder layer:
    /// qkv 2·Ns·C·3C, output 2·Ns·C², feed-forward 2·2·Ns·C·F, attention S×S; per decoder layer:
    /// self-attention's qkv 2·Nt·C·3C and output 2·Nt·C², attention T×T, cross-attention's query
    /// 2·Nt·C², key-value 2·Ns·C·2C, output 2·Nt·C², attention T×S, feed-forward 2·2·Nt·C·F; the
    /// tied head 2·P·C·V over the P predicted (non-padding) target positions, the rows it projects. Attention Tq×Tk is 2·B·Tq·Tk·C for the values and, with the dot scorer,
    /// as much for the scores (the additive scorer's scores are element-wise, not counted).
    /// Backward twice forward: the total is 3 × forward.
    public func matmulFLOPs(batch B: Int, sourceLength S: Int, targetLength T: Int, predictedTokens P: Int) -> Double {
        let C = Double(embedding), F = Double(feedForward), V = Double(vocabularySize)
        let sourceTokens = Double(B * S), targetTokens = Double(B * T)
        func attention(_ queries: Int, _ keys: Int) -> Double {
            let product = 2 * Double(B) * Double(queries) * Double(keys) * C
            return scorer == .dot ? 2 * product : product
        }
        func projections(_ tokens: Double) -> Double { 2 * tokens * C * (3 * C) + 2 * tokens * C * C }
        let encoderLayer = projections(sourceTokens) + attention(S, S) + 2 * 2 * sourceTokens * C * F
        let decoderLayer = projections(targetTokens) + attention(T, T)
            + 2 * targetTokens * C * C + 2 * sourceTokens * C * (2 * C) + 2 * targetTokens * C * C + attention(T, S)
            + 2 * 2 * targetTokens * C * F
        let forward = Double(encoderLayers) * encoderLayer + Double(decoderLayers) * decoderLayer + 2 * Double(P) * C * V
        return 3 * forward
    }
}

extension MaskedLanguageModelConfig {
    /// Matrix-product FLOPs of forward and backward of `batch` sentences padded to `length` T with
    /// P predicted (masked) positions: the encoder layers of `TransformerConfig.matmulFLOPs` over
    /// the B·T tokens, and the tied output layer 2·P·C·V over the rows it projects.
    public func matmulFLOPs(batch B: Int, length T: Int, predictedTokens P: Int) -> Double {
        encoderLayerConfig.matmulFLOPs(batch: B, sourceLength: T, targetLength: 0, predictedTokens: P)
    }
}
