import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN

/// German→English translation with an encoder–decoder Transformer (`replica train translate`).
///
/// A joint BPE vocabulary is learned from the training text of both languages (the same on every
/// rank: it is deterministic) and saved in the checkpoint. Each epoch the training pairs are put
/// in length-bucketed global batches of `--batch-size` padded tokens × ranks × micro-steps, the
/// same list on every rank; rank r, micro-step m takes slice m·ranks + r of each global batch (a
/// nearly equal share of its sentences). The loss is summed over target tokens and divided by the
/// global count of non-padding target tokens.
public final class TranslateTask: DataParallelTask, MatmulCounting {
    public let data: TranslationData
    public let tokenizer: BPETokenizer
    public let model: Seq2SeqTransformer
    let examples: [TranslationExample]
    let loss: CrossEntropy
    let options: TrainingOptions
    let rank: Int
    let ranks: Int
    let tokensPerRank: Int
    /// Length-bucketed global batches of `tokensPerRank` × ranks × micro-steps padded tokens.
    let batches: GlobalBatches
    /// Test-set BLEU of the last `evaluate(withBLEU:)`.
    public private(set) var lastBLEU: BLEUScore?

    public var taskName: String { "translate" }
    public var arena: ParameterArena { model.arena }
    public var throughputUnit: String { "tokens" }
    public var unitsPerMicroStep: Int { tokensPerRank }
    /// Padded tokens a step.
    public var globalBatch: Int? { tokensPerRank * ranks * options.gradientAccumulation }
    public var stepsPerEpoch: Int { batches.stepsPerEpoch }
    /// Padded tokens of an evaluation batch (the validation loss), on every rank count.
    public static let evaluationTokens = 4000

    public init(data: TranslationData, vocabularySize: Int, config baseConfig: TransformerConfig, options: TrainingOptions,
                tokensPerRank: Int, labelSmoothing: Float, rank: Int, ranks: Int, tokenizer existing: BPETokenizer? = nil) {
        self.data = data
        self.options = options
        self.rank = rank
        self.ranks = ranks
        self.tokensPerRank = tokensPerRank
        tokenizer = existing ?? BPETokenizer.learn(from: data.train.source + data.train.target, vocabularySize: vocabularySize)
        var config = baseConfig
        config.vocabularySize = tokenizer.count
        let examples = data.train.examples(tokenizer: tokenizer, maximumLength: config.maximumLength)
        self.examples = examples
        let tokensPerBatch = tokensPerRank * ranks * options.gradientAccumulation, seed = options.seed
        batches = GlobalBatches(rank: rank, ranks: ranks, microSteps: options.gradientAccumulation) { epoch in
            makeBatches(examples: examples, tokensPerBatch: tokensPerBatch, seed: seed, epoch: epoch)
        }
        loss = CrossEntropy(labelSmoothing: labelSmoothing, ignoreIndex: PaddedBatch.ignoredTarget)
        model = Seq2SeqTransformer(config)
        model.initialize(seed: options.seed)
    }

    public var configuration: [String: String] {
        let c = model.config
        return ["task": "translate", "vocabulary": "\(c.vocabularySize)", "embedding": "\(c.embedding)", "heads": "\(c.heads)",
                "encoder_layers": "\(c.encoderLayers)", "decoder_layers": "\(c.decoderLayers)", "feed_forward": "\(c.feedForward)",
                "dropout": "\(c.dropout)", "norm": c.norm.rawValue, "attention": c.scorer.rawValue,
                "train_pairs": "\(data.train.count)"]
    }

    public var checkpointState: [String: Any] {
        ["tokenizer": tokenizer.serialized, "config": Checkpoint.jsonObject(model.config, adding: ["shared_embeddings": true])]
    }

    public var extraCheckpointTensors: [(String, Tensor)] { [] }
    public var batchNorms: [BatchNorm] { model.batchNorms }

    public func targetCount(step: Int, micro: Int) -> Int {
        batches.share(step: step, micro: micro).reduce(0) { $0 + examples[$1].target.count - 1 }
    }

    /// The padded shape of this rank's micro-step (as `PaddedBatch.make` pads it): pairs B, the
    /// longest source S, the longest target input T; all 0 for an empty share.
    func paddedShape(step: Int, micro: Int) -> (B: Int, S: Int, T: Int) {
        let indices = batches.share(step: step, micro: micro)
        let S = indices.map { examples[$0].source.count }.max() ?? 0
        let T = indices.map { examples[$0].target.count - 1 }.max() ?? 0
        return (indices.count, S, T)
    }

    /// Padded source and decoder-input tokens of this rank's micro-step, B·S + B·T (what the model computes on).
    public func paddedTokenCount(step: Int, micro: Int) -> Int {
        let shape = paddedShape(step: step, micro: micro)
        return shape.B * (shape.S + shape.T)
    }

    /// The micro-step's padded batch: its products' shapes differ from batch to batch.
    public func matmulFLOPs(step: Int, micro: Int) -> Double {
        let shape = paddedShape(step: step, micro: micro)
        return model.config.matmulFLOPs(batch: shape.B, sourceLength: shape.S, targetLength: shape.T, predictedTokens: targetCount(step: step, micro: micro))
    }

    /// Input augmentation `mask=P` (source tokens → <mask>) and `substitute=P` (→ a random token),
    /// drawn per replica from (seed, micro · ranks + rank, step).
    func augment(_ batch: inout PaddedBatch, step: Int, micro: Int) {
        let maskRate = options.augmentation["mask"] ?? 0, substituteRate = options.augmentation["substitute"] ?? 0
        guard maskRate > 0 || substituteRate > 0 else { return }
        var generator = SeededGenerator(seed: options.seed, 0x7472_6175, UInt64(replica(micro: micro)), UInt64(step), 0)
        for i in batch.sourceIds.indices where batch.sourceMask[i] && batch.sourceIds[i] > BPETokenizer.mask {
            let draw = generator.nextUniform()
            if draw < maskRate {
                batch.sourceIds[i] = BPETokenizer.mask
            } else if draw < maskRate + substituteRate {
                batch.sourceIds[i] = Int32(5 + generator.nextInt(below: tokenizer.count - 5))
            }
        }
    }

    /// The replica that micro-step `micro` of this rank stands for: micro · ranks + rank (dropout's key).
    func replica(micro: Int) -> Int { micro * ranks + rank }

    public func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientSink?) throws -> Double {
        let indices = batches.share(step: step, micro: micro)
        guard !indices.isEmpty else { return 0 }   // a short last batch: this rank adds nothing
        var batch = PaddedBatch.make(examples: examples, indices: indices)
        augment(&batch, step: step, micro: micro)
        reducer?.phaseEnded("data")
        model.phases = reducer
        model.mode = .training
        model.randomContext = RandomContext(seed: options.seed, rank: replica(micro: micro), step: step)
        let B = batch.batchSize
        let memory = model.encode(batch.sourceIds, mask: batch.sourceMask, batch: B, length: batch.sourceLength)
        let logits = model.decode(batch.targetInput, targetMask: batch.targetOutput.map { $0 != PaddedBatch.ignoredTarget },
                                  memory: memory, memoryMask: batch.sourceMask, batch: B, length: batch.targetLength)
        let value = loss.forward(logits: logits, targets: batch.predictedTargets, normalizer: normalizer)
        reducer?.phaseEnded("loss")
        try model.backward(loss.backward()) { offset in try reducer?.gradientsReady(downTo: offset) }
        return value
    }

    /// Validation loss (teacher forcing, no label smoothing), split across ranks.
    public func evaluate(communicator: Communicator) throws -> [String: Double] {
        model.mode = .evaluation
        defer { model.mode = .training }
        let validation = data.validation.examples(tokenizer: tokenizer, maximumLength: model.config.maximumLength)
        let plain = CrossEntropy(ignoreIndex: PaddedBatch.ignoredTarget)
        var sums = [0.0, 0.0]
        let batches = makeBatches(examples: validation, tokensPerBatch: Self.evaluationTokens, seed: 0, epoch: 0)
        for (index, indices) in batches.enumerated() where index % ranks == rank {
            let batch = PaddedBatch.make(examples: validation, indices: indices)
            let memory = model.encode(batch.sourceIds, mask: batch.sourceMask, batch: batch.batchSize, length: batch.sourceLength)
            let logits = model.decode(batch.targetInput, targetMask: batch.targetOutput.map { $0 != PaddedBatch.ignoredTarget },
                                      memory: memory, memoryMask: batch.sourceMask, batch: batch.batchSize,
                                      length: batch.targetLength)
            sums[0] += plain.forward(logits: logits, targets: batch.predictedTargets, normalizer: 1)
            sums[1] += Double(batch.targetTokenCount)
        }
        try communicator.allReduce(&sums, .sum)
        return ["val_loss": sums[0] / max(sums[1], 1)]
    }

    /// Translates the test set (ranks share the sentences, rank 0 gathers by rank order) and scores it.
    public func testBLEU(beam: Int, lengthPenalty: Float, communicator: Communicator) throws -> (BLEUScore, [String]) {
        let translator = Translator(model: model, tokenizer: tokenizer)
        let sources = data.test.source
        let share = (sources.count + ranks - 1) / ranks
        let mine = Array(sources[min(rank * share, sources.count)..<min((rank + 1) * share, sources.count)])
        let translated = translator.translate(mine, beam: beam, lengthPenalty: lengthPenalty)
        let hypotheses = try gatherLines(translated, communicator: communicator)
        let score = BLEU.corpus(hypotheses: hypotheses, references: data.test.target)
        lastBLEU = score
        return (score, hypotheses)
    }

    /// Every rank's lines in rank order, on every rank (each rank broadcasts its UTF-8 block).
    func gatherLines(_ lines: [String], communicator: Communicator) throws -> [String] {
        guard communicator.size > 1 else { return lines }
        var all: [String] = []
        for root in 0..<communicator.size {
            let isRoot = root == communicator.rank
            var bytes = isRoot ? Array(lines.joined(separator: "\n").utf8) : []
            var sizes = isRoot ? [Double(lines.count), Double(bytes.count)] : [0, 0]
            try communicator.allReduce(&sizes, .sum)   // only the root contributes
            if !isRoot { bytes = [UInt8](repeating: 0, count: Int(sizes[1])) }
            try communicator.broadcast(&bytes, from: root)
            if sizes[0] > 0 {
                all += String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            }
        }
        return all
    }
}

/// A named configuration of `replica train translate --preset NAME`: the model's shape and the
/// optimisation. Options given on the command line override it.
///
/// The batch is fixed globally, in padded tokens per optimizer step: each rank's `--batch-size`
/// is `globalBatchTokens / (ranks × grad-accum)`, so 1 rank and 2 ranks follow the same
/// optimisation (the same global batches, the same learning rate: no linear scaling).
public struct TranslatePreset: Sendable, Equatable {
    public var name: String
    public var vocabulary = 8000
    public var config = TransformerConfig()
    public var steps: Int
    public var warmup: Int
    public var learningRate: Float = 1e-3
    public var globalBatchTokens = 2000
    public var evaluationInterval: Int

    /// The README's Multi30k result (BLEU 37.23, beam 4): d 256, 3 + 3 layers, 4 heads, FFN 1024,
    /// dropout 0.1, 2000 global padded tokens a step, peak lr 1e-3 after 500 warmup steps, 2000 steps.
    public static let small = TranslatePreset(name: "small", steps: 2000, warmup: 500, evaluationInterval: 500)

    /// `small`'s model and batch, trained for 600 steps with a 300-step warmup (BLEU above 20 within 20 minutes on 2 cores).
    public static let quick = TranslatePreset(name: "quick", steps: 600, warmup: 300, evaluationInterval: 300)

    public static let all = [small, quick]

    public static func named(_ name: String) -> TranslatePreset? { all.first { $0.name == name } }

    /// Each rank's `--batch-size`: the global batch shared by the ranks and micro-steps.
    public func tokensPerRank(ranks: Int, gradientAccumulation: Int) -> Int {
        max(1, globalBatchTokens / (ranks * gradientAccumulation))
    }
}
