import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN

/// BERT-style masked-language-model pre-training (`replica train mlm`).
///
/// A BPE vocabulary is learned from the training sentences (the same on every rank) and saved in
/// the checkpoint with each token's training frequency. A sentence is `<s>` ids `</s>`, cut to the
/// model's maximum length. Each epoch the sentences are put in length-bucketed global batches of
/// `--batch-size` × ranks × micro-steps sentences (the same list on every rank); rank r, micro-step
/// m takes slice m·ranks + r. Masks are drawn per sentence from (seed, step, sentence), so each rank
/// draws the masks of its own sentences, a sentence gets new masks every time it is seen (dynamic
/// masking, as RoBERTa), and N ranks see exactly what one rank with the global batch sees. The loss
/// is summed over the chosen tokens and divided by the global number of chosen tokens.
///
/// Validation masks are fixed (drawn from the sentence's index alone), so every run and every
/// rank count is scored on the same positions; `unigram_accuracy` is the accuracy there of always
/// answering the most frequent training token.
public final class MLMTask: DataParallelTask, MatmulCounting {
    public let splits: SentenceSplits
    public let tokenizer: BPETokenizer
    public let model: MaskedLanguageModel
    /// Each token's count in the encoded training sentences, [V].
    public let tokenCounts: [Int]
    /// The most frequent ordinary training token: the unigram baseline's answer.
    public let mostFrequentToken: Int32
    let train: [[Int32]]
    let validation: [[Int32]]
    let rate: Float
    let loss = CrossEntropy()
    let options: TrainingOptions
    let rank: Int
    let ranks: Int
    /// Length-bucketed global batches of `--batch-size` × ranks × micro-steps sentences.
    let batches: GlobalBatches
    private var stepBatches: (step: Int, batches: [Int: MaskedBatch])?

    public var taskName: String { "mlm" }
    public var arena: ParameterArena { model.arena }
    public var throughputUnit: String { "tokens" }
    public var stepsPerEpoch: Int { batches.stepsPerEpoch }
    public var batchNorms: [BatchNorm] { model.batchNorms }
    public var extraCheckpointTensors: [(String, Tensor)] { [] }
    /// Real tokens a rank processes per micro-step, on average.
    public var unitsPerMicroStep: Int { options.batchSize * train.reduce(0) { $0 + $1.count } / max(train.count, 1) }
    /// Sentences a step.
    public var globalBatch: Int? { options.batchSize * ranks * options.gradientAccumulation }
    /// Sentences of an evaluation batch (sorted by length), on every rank count.
    public static let evaluationSentences = 128

    public init(splits: SentenceSplits, vocabularySize: Int, config baseConfig: MaskedLanguageModelConfig,
                options: TrainingOptions, rate: Float = BERTMasking.defaultRate, rank: Int, ranks: Int,
                tokenizer existing: BPETokenizer? = nil) {
        self.splits = splits
        self.options = options
        self.rate = rate
        self.rank = rank
        self.ranks = ranks
        tokenizer = existing ?? BPETokenizer.learn(from: splits.train, vocabularySize: vocabularySize)
        var config = baseConfig
        config.vocabularySize = tokenizer.count
        let tokenizer = tokenizer
        func encode(_ line: String) -> [Int32] {
            [BPETokenizer.sentenceStart] + tokenizer.encode(line).prefix(config.maximumLength - 2) + [BPETokenizer.sentenceEnd]
        }
        train = splits.train.map(encode)
        validation = splits.validation.map(encode)
        let lengths = train.map { TranslationExample(source: $0, target: []) }   // makeBatches reads only `length`
        let sentencesPerBatch = options.batchSize * ranks * options.gradientAccumulation, seed = options.seed
        batches = GlobalBatches(rank: rank, ranks: ranks, microSteps: options.gradientAccumulation) { epoch in
            makeBatches(examples: lengths, sentencesPerBatch: sentencesPerBatch, seed: seed, epoch: epoch)
        }
        var counts = [Int](repeating: 0, count: tokenizer.count)
        for sentence in train { for id in sentence { counts[Int(id)] += 1 } }
        tokenCounts = counts
        let ordinary = counts.indices.dropFirst(Int(BERTMasking.firstOrdinaryToken))
        mostFrequentToken = Int32(ordinary.max { (counts[$0], -$0) < (counts[$1], -$1) } ?? Int(BPETokenizer.unknown))
        model = MaskedLanguageModel(config)
        model.initialize(seed: options.seed)
    }

    public var configuration: [String: String] {
        let c = model.config
        return ["task": "mlm", "vocabulary": "\(c.vocabularySize)", "embedding": "\(c.embedding)", "heads": "\(c.heads)",
                "layers": "\(c.layers)", "feed_forward": "\(c.feedForward)", "dropout": "\(c.dropout)",
                "norm": c.norm.rawValue, "attention": c.scorer.rawValue, "positions": c.positions.rawValue,
                "max_length": "\(c.maximumLength)", "mask_rate": "\(rate)", "train_sentences": "\(train.count)"]
    }

    public var checkpointState: [String: Any] {
        ["tokenizer": tokenizer.serialized, "token_counts": tokenCounts,
         "config": Checkpoint.jsonObject(model.config, adding: ["mask_rate": Double(rate), "tied_output": true])]
    }

    /// This rank's masked micro-batch (drawn once per step and kept for `trainMicroStep`).
    public func maskedBatch(step: Int, micro: Int) -> MaskedBatch {
        if stepBatches?.step != step { stepBatches = (step, [:]) }
        if let cached = stepBatches?.batches[micro] { return cached }
        let seed = options.seed
        let batch = MaskedBatch.make(sentences: train, indices: batches.share(step: step, micro: micro), rate: rate,
                                     vocabularySize: tokenizer.count) { index in
            SeededGenerator(seed: seed, 0x6d61_736b, UInt64(step), UInt64(index))   // "mask"
        }
        stepBatches?.batches[micro] = batch
        return batch
    }

    /// The micro-step's padded batch and its masked rows: the products' shapes differ from batch to batch.
    public func matmulFLOPs(step: Int, micro: Int) -> Double {
        let batch = maskedBatch(step: step, micro: micro)
        return model.config.matmulFLOPs(batch: batch.batchSize, length: batch.length, predictedTokens: batch.rows.count)
    }

    /// The chosen tokens of this rank's micro-batch: the loss terms.
    public func targetCount(step: Int, micro: Int) -> Int { maskedBatch(step: step, micro: micro).targets.count }

    /// The replica that micro-step `micro` of this rank stands for: micro · ranks + rank (dropout's key).
    func replica(micro: Int) -> Int { micro * ranks + rank }

    public func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientSink?) throws -> Double {
        let batch = maskedBatch(step: step, micro: micro)
        guard batch.batchSize > 0 else { return 0 }   // a short last batch: this rank adds nothing
        reducer?.phaseEnded("data")
        model.phases = reducer
        model.mode = .training
        model.randomContext = RandomContext(seed: options.seed, rank: replica(micro: micro), step: step)
        let logits = model.forward(batch.inputs, mask: batch.mask, batch: batch.batchSize, length: batch.length,
                                   predicting: batch.rows)
        let value = loss.forward(logits: logits, targets: batch.targets, normalizer: normalizer)
        reducer?.phaseEnded("loss")
        try model.backward(loss.backward()) { offset in try reducer?.gradientsReady(downTo: offset) }
        return value
    }

    /// The fixed validation masks of sentence `index`.
    static func validationGenerator(_ index: Int) -> SeededGenerator { SeededGenerator(seed: 0, 0x7661_6c6d, UInt64(index)) }

    /// Validation loss, masked-token accuracy and the unigram baseline's accuracy over every chosen
    /// validation token (fixed masks), split across ranks.
    public func evaluate(communicator: Communicator) throws -> [String: Double] {
        model.mode = .evaluation
        defer { model.mode = .training }
        let order = validation.indices.sorted { (validation[$0].count, $0) < (validation[$1].count, $1) }
        let batchSentences = Self.evaluationSentences
        var sums = [0.0, 0.0, 0.0, 0.0]   // loss, correct, unigram correct, chosen tokens
        for (number, start) in stride(from: 0, to: order.count, by: batchSentences).enumerated() where number % ranks == rank {
            let indices = Array(order[start..<min(start + batchSentences, order.count)])
            let batch = MaskedBatch.make(sentences: validation, indices: indices, rate: rate, vocabularySize: tokenizer.count,
                                         generator: Self.validationGenerator)
            guard !batch.rows.isEmpty else { continue }
            let logits = model.forward(batch.inputs, mask: batch.mask, batch: batch.batchSize, length: batch.length,
                                       predicting: batch.rows)
            sums[0] += loss.forward(logits: logits, targets: batch.targets, normalizer: 1)
            let V = logits.columnCount
            for (row, target) in batch.targets.enumerated() {
                let z = logits.data + row * V
                var best = 0
                for v in 1..<V where z[v] > z[best] { best = v }
                if best == Int(target) { sums[1] += 1 }
                if target == mostFrequentToken { sums[2] += 1 }
            }
            sums[3] += Double(batch.targets.count)
        }
        try communicator.allReduce(&sums, .sum)
        let count = max(sums[3], 1)
        return ["val_loss": sums[0] / count, "masked_accuracy": sums[1] / count, "unigram_accuracy": sums[2] / count]
    }
}
