import ReplicaModels
import ReplicaNN

// The memory of the Transformer tasks (`train translate`, `train mlm`): C width, F feed-forward
// width, H heads, V vocabulary, L_max the longest sequence. The rule of the count is
// MemoryCounting.swift's.

/// The widths a pre-norm Transformer layer's memory grows with.
private struct LayerWidths {
    var C: Double
    var F: Double
    /// Floats of attention kept per (query, key) pair: none with the dot scorer (its tiled kernel
    /// keeps no probabilities); with the additive scorer H probabilities and the tanh values,
    /// H × head size = C more.
    var pair: Double
    /// Floats of attention kept per query: the dot scorer's log-sum-exp, one a head.
    var query: Double
    /// Parameters of one norm: LayerNorm's weight, BatchNorm's weight and bias.
    var norm: Double
    /// The additive scorer's vector, C a kernel.
    var scorer: Double

    init(embedding: Int, feedForward: Int, heads: Int, scorer: AttentionScorer, norm: NormKind) {
        C = Double(embedding)
        F = Double(feedForward)
        pair = scorer == .additive ? Double(heads) + C : 0
        query = scorer == .dot ? Double(heads) : 0
        self.norm = norm == .batch ? 2 * C : norm == .layer ? C : 0
        self.scorer = scorer == .additive ? C : 0
    }

    /// Parameters of an encoder layer: two norms, qkv 3C² + 3C, the output projection C² + C,
    /// ff1 C·F + F, ff2 F·C + C.
    var encoderParameters: Double { 2 * norm + 4 * C * C + 4 * C + scorer + 2 * C * F + F + C }
    /// Parameters of a decoder layer: three norms, self-attention as the encoder's, cross-attention
    /// q C² + C, kv 2C² + 2C, output C² + C, and the feed-forward.
    var decoderParameters: Double { 3 * norm + 8 * C * C + 8 * C + 2 * scorer + 2 * C * F + F + C }

    /// Floats an `EncoderLayer` keeps for `n` rows of sequences at most `s` long: the two norms'
    /// normalised rows and outputs (4·n·C), q | k | v (3·n·C), the attention output (n·C), the
    /// feed-forward's ReLU output (n·F, written over its input), and the attention of n queries and
    /// B·s² ≤ n·s pairs.
    func encoderLayer(rows n: Double, length s: Double) -> Double {
        8 * n * C + n * F + n * query + n * s * pair
    }

    /// Floats a `DecoderLayer` keeps for `t` target rows of length ≤ `T` over `m` memory rows of
    /// length ≤ `S`: three norms (6·t·C), self-attention's q | k | v and output (4·t·C),
    /// cross-attention's queries and output (2·t·C) and keys and values of the memory (2·m·C),
    /// the feed-forward (t·F), and the attention of t queries twice and t·T self and t·S cross pairs.
    func decoderLayer(rows t: Double, memoryRows m: Double, length T: Double, sourceLength S: Double) -> Double {
        12 * t * C + 2 * m * C + t * F + 2 * t * query + t * (T + S) * pair
    }

    /// Floats backward allocates at most at once for `n` rows: the feed-forward's n·F gradient
    /// (the ReLU's written over it), and the attention's and residuals' n·C ones (8·n·C, GPT's count).
    func backward(rows n: Double) -> Double { n * F + 8 * n * C }
}

extension TransformerConfig {
    private var widths: LayerWidths {
        LayerWidths(embedding: embedding, feedForward: feedForward, heads: heads, scorer: scorer, norm: norm)
    }

    /// Parameters of the `Seq2SeqTransformer` of this shape (`Seq2SeqTransformer(self).arena.count`):
    /// the shared embedding V·C, the encoder and decoder layers (biased projections, norms, the
    /// additive scorer's vectors) and the two final norms.
    public var parameterCount: Int {
        let w = widths
        return saturatingCount(Double(vocabularySize) * w.C + Double(encoderLayers) * w.encoderParameters
            + Double(decoderLayers) * w.decoderParameters + 2 * w.norm)
    }

    /// BatchNorm running statistics: 2C for each of the 2 a encoder layer, 3 a decoder layer and the two final norms.
    public var bufferCount: Int {
        norm == .batch ? saturatingCount(2 * Double(embedding) * Double(2 * encoderLayers + 3 * decoderLayers + 2)) : 0
    }

    /// Bytes of a training micro-batch of `tokens` padded tokens a side (B·max(S, T) ≤ tokens;
    /// a sentence longer than the budget gets a batch of its own, so the rows a side are at most
    /// r = max(tokens, L_max) and the attention B·S² at most r·L_max), float32: the layers' caches
    /// (`LayerWidths`), the encoder's and decoder's final norms (4·r·C), the logits and their
    /// softmax, which backward turns into their gradient (2·r·V), and backward's buffers.
    /// Evaluation forwards batches of `evaluationTokens` without backward: a batch's logits and
    /// softmax while the previous batch's softmax is still held (3·V a row); the larger of the
    /// two, and one layer more.
    public func activationBytes(tokens: Int, evaluationTokens: Int) -> Int {
        let w = widths, V = Double(vocabularySize), longest = Double(maximumLength)
        let Le = Double(encoderLayers), Ld = Double(decoderLayers)
        func layers(_ r: Double) -> Double {
            Le * w.encoderLayer(rows: r, length: longest)
                + Ld * w.decoderLayer(rows: r, memoryRows: r, length: longest, sourceLength: longest) + 4 * r * w.C
        }
        let r = max(Double(tokens), longest), evaluation = max(Double(evaluationTokens), longest)
        let training = layers(r) + 2 * r * V + w.backward(rows: r) + 2 * r * w.C    // + the memory's gradient
        let evaluating = layers(evaluation) + 3 * evaluation * V
        let larger = max(r, evaluation)
        let oneLayer = max(encoderLayers > 0 ? w.encoderLayer(rows: larger, length: longest) : 0,
                           decoderLayers > 0 ? w.decoderLayer(rows: larger, memoryRows: larger, length: longest, sourceLength: longest) : 0)
        return float32Bytes(max(training, evaluating) + oneLayer)
    }

    /// A `train translate` rank's memory with these options (`batchSize` padded tokens a rank;
    /// `vocabularySize` the vocabulary asked for, which the learned one does not exceed), and
    /// what to lower when it does not fit.
    public func memoryEstimate(options: TrainingOptions, ranks: Int) -> (estimate: MemoryEstimate, advice: String) {
        let estimate = MemoryEstimate.dataParallel(
            parameterCount: parameterCount, bufferCount: bufferCount,
            activations: activationBytes(tokens: options.batchSize, evaluationTokens: TranslateTask.evaluationTokens),
            ranks: ranks, options: options)
        return (estimate, "lower --batch-size (\(options.batchSize) tokens), --vocabulary (\(vocabularySize)), --embedding (\(embedding)), "
            + "--feed-forward (\(feedForward)) or --layers (\(max(encoderLayers, decoderLayers)))")
    }
}

extension MaskedLanguageModelConfig {
    private var widths: LayerWidths {
        LayerWidths(embedding: embedding, feedForward: feedForward, heads: heads, scorer: scorer, norm: norm)
    }

    /// Parameters of the `MaskedLanguageModel` of this shape (`MaskedLanguageModel(self).arena.count`):
    /// the token table V·C, the learned position table L_max·C, the encoder layers, the final
    /// norm and the output bias V.
    public var parameterCount: Int {
        let w = widths, V = Double(vocabularySize)
        let positionTable = positions == .learned ? Double(maximumLength) * w.C : 0
        return saturatingCount(V * w.C + positionTable + Double(layers) * w.encoderParameters + w.norm + V)
    }

    /// BatchNorm running statistics: 2C for each of the 2 a layer and the final norm.
    public var bufferCount: Int {
        norm == .batch ? saturatingCount(2 * Double(embedding) * Double(2 * layers + 1)) : 0
    }

    /// Bytes of a training micro-batch of `sentences` sentences padded to at most L_max tokens
    /// (n = sentences · L_max rows), float32, with a fraction `rate` of the tokens predicted (P
    /// rows): the layers' caches (`LayerWidths`), the final norm (2·n·C), the predicted rows'
    /// hidden states (P·C), logits and softmax, which backward turns into their gradient (2·P·V),
    /// backward's buffers and its [n, C] gradient, the batch's ids and masks (2·n). Evaluation
    /// forwards batches of `evaluationSentences` without backward through the same loss: a
    /// batch's logits and softmax while the previous batch's softmax is still held (3·V a
    /// predicted row); the larger of the two, and one layer more.
    public func activationBytes(sentences: Int, evaluationSentences: Int, rate: Float) -> Int {
        let w = widths, V = Double(vocabularySize), longest = Double(maximumLength), L = Double(layers)
        let n = Double(sentences) * longest, evaluation = Double(evaluationSentences) * longest
        let P = (Double(rate) * n).rounded(.up), evaluationP = (Double(rate) * evaluation).rounded(.up)
        func forward(_ rows: Double, predicted: Double) -> Double {
            L * w.encoderLayer(rows: rows, length: longest) + 2 * rows * w.C + predicted * w.C + 2 * rows
        }
        let training = forward(n, predicted: P) + 2 * P * V + w.backward(rows: n) + n * w.C
        let evaluating = forward(evaluation, predicted: evaluationP) + 3 * evaluationP * V
        return float32Bytes(max(training, evaluating) + w.encoderLayer(rows: max(n, evaluation), length: longest))
    }

    /// A `train mlm` rank's memory with these options (`batchSize` sentences a rank;
    /// `vocabularySize` the vocabulary asked for, which the learned one does not exceed) and
    /// `rate` of the tokens predicted, and what to lower when it does not fit.
    public func memoryEstimate(options: TrainingOptions, rate: Float, ranks: Int) -> (estimate: MemoryEstimate, advice: String) {
        let estimate = MemoryEstimate.dataParallel(
            parameterCount: parameterCount, bufferCount: bufferCount,
            activations: activationBytes(sentences: options.batchSize, evaluationSentences: MLMTask.evaluationSentences, rate: rate),
            ranks: ranks, options: options)
        return (estimate, "lower --batch-size (\(options.batchSize) sentences), --max-length (\(maximumLength)), --vocabulary (\(vocabularySize)), "
            + "--embedding (\(embedding)), --feed-forward (\(feedForward)) or --layers (\(layers))")
    }
}
