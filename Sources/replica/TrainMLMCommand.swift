import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain

struct TrainMLM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mlm",
        abstract: "BERT-style masked-language-model pre-training (default: the English side of the embedded Multi30k).",
        discussion: """
        15% of the ordinary tokens are chosen (80% become <mask>, 10% a random token, 10% stay) and
        predicted by a pre-norm Transformer encoder whose output layer is tied to its token
        embedding; the loss is over the chosen tokens, normalised by their global count. Reports
        val_loss, masked_accuracy and unigram_accuracy (always answering the most frequent token)
        on fixed validation masks.
          replica train mlm --json --checkpoint-dir runs/mlm
          mpirun -np 2 replica train mlm --data sentences.txt
        --data takes a UTF-8 text file, one sentence a line (its last 10% validate, or --val-data FILE).
        --batch-size is sentences per rank per micro-step.
        """
    )

    @OptionGroup var common: CommonTrainOptions
    @Option(help: "Validation sentences (a UTF-8 file, one a line); without it the last 10% of --data.") var valData: String?
    @Option(help: "BPE vocabulary size (specials included).") var vocabulary = 4000
    @Option(help: "Model width.") var embedding = 128
    @Option(help: "Attention heads.") var heads = 4
    @Option(help: "Encoder layers.") var layers = 4
    @Option(help: "Feed-forward width.") var feedForward = 512
    @Option(help: "Dropout.") var dropout: Float = 0.1
    @Option(help: "Normalisation: layer or batch.") var norm = "layer"
    @Option(help: "Attention scorer: dot or additive.") var attention = "dot"
    @Option(help: "Positions: learned or sinusoidal.") var positions = "learned"
    @Option(help: "Tokens a sentence at most, <s> and </s> included (longer ones are cut).") var maxLength = 64
    @Option(help: "Fraction of tokens chosen for prediction.") var maskRate: Float = BERTMasking.defaultRate
    @Option(help: "Evaluate every N steps (0: only at the end).") var evalInterval = 500

    func validate() throws {
        guard vocabulary >= 16, embedding >= 1, heads >= 1, layers >= 1, feedForward >= 1 else {
            throw ValidationError("--vocabulary ≥ 16; --embedding, --heads, --layers, --feed-forward ≥ 1.")
        }
        guard embedding % heads == 0 else { throw ValidationError("--embedding \(embedding) is not divisible by --heads \(heads).") }
        guard (0..<1).contains(dropout) else { throw ValidationError("--dropout \(dropout) must be in [0, 1).") }
        guard maskRate > 0 && maskRate <= 1 else { throw ValidationError("--mask-rate \(maskRate) must be in (0, 1].") }
        guard maxLength >= 3 else { throw ValidationError("--max-length \(maxLength) must be at least 3 (<s>, a token, </s>).") }
        guard ["layer", "batch"].contains(norm) else { throw ValidationError("--norm \(norm): use layer or batch.") }
        guard AttentionScorer(rawValue: attention) != nil else { throw ValidationError("--attention \(attention): use dot or additive.") }
        guard PositionKind(rawValue: positions) != nil else { throw ValidationError("--positions \(positions): use learned or sinusoidal.") }
        guard evalInterval >= 0 else { throw ValidationError("--eval-interval must not be negative.") }
        if common.augment != nil { throw ValidationError("train mlm takes no --augment: its masking is the augmentation (--mask-rate).") }
        if valData != nil && common.data == nil { throw ValidationError("--val-data goes with --data FILE.") }
    }

    func run() throws {
        var defaults = TrainingOptions()
        defaults.steps = 3000
        defaults.batchSize = 64
        defaults.learningRate = 1e-3
        defaults.warmupSteps = 200
        defaults.schedule = .cosine
        defaults.weightDecay = 0.01
        defaults.beta2 = 0.99
        defaults.evaluationInterval = evalInterval
        var options = try common.trainingOptions(defaults: defaults, augmentationNames: [])
        var config = MaskedLanguageModelConfig()
        config.embedding = embedding
        config.heads = heads
        config.layers = layers
        config.feedForward = feedForward
        config.dropout = dropout
        config.maximumLength = maxLength
        config.norm = NormKind(rawValue: norm) ?? .layer
        config.scorer = AttentionScorer(rawValue: attention) ?? .dot
        config.positions = PositionKind(rawValue: positions) ?? .learned
        let splits = try common.data.map { try SentenceSplits.load(path: $0, validationPath: valData) }
            ?? SentenceSplits.multi30kEnglish()
        let runtime = try Runtime(common.runtime)
        let communicator = runtime.communicator
        let task = MLMTask(splits: splits, vocabularySize: vocabulary, config: config, options: options, rate: maskRate,
                           rank: communicator.rank, ranks: communicator.size)
        if let epochs = common.epochs { options.steps = epochs * task.stepsPerEpoch }
        if options.syncBatchNorm { task.synchronizeBatchNorm(over: communicator) }
        let trainer = try Trainer(task: task, options: options, communicator: communicator)
        try trainer.synchronizeInitialState()
        try trainer.resumeIfAsked()
        runtime.log("mlm: \(task.model.parameterCount) parameters, vocabulary \(task.tokenizer.count), \(splits.train.count) "
            + "training sentences (\(splits.description)), \(task.stepsPerEpoch) steps an epoch, \(communicator.size) rank(s) × "
            + "\(runtime.threads) thread(s), global batch \(options.batchSize * communicator.size * options.gradientAccumulation) "
            + "sentences, \(options.steps) steps")
        let outcome = try trainer.run()
        let evaluation = outcome.evaluation
        let valLoss = evaluation["val_loss"] ?? .nan
        let accuracy = evaluation["masked_accuracy"] ?? .nan, unigram = evaluation["unigram_accuracy"] ?? .nan
        runtime.log(String(format: "done: val loss %.4f, masked accuracy %.2f%% (unigram baseline %.2f%%), %.0f tokens/s, %.1f s",
                           valLoss, 100 * accuracy, 100 * unigram, outcome.unitsPerSecond, outcome.seconds))
        runtime.emit(summary: [
            "task": .string("mlm"), "ranks": .integer(communicator.size), "steps": .integer(outcome.steps),
            "seconds": .number(outcome.seconds), "param_count": .integer(task.model.parameterCount),
            "train_loss": .number(outcome.trainLoss), "val_loss": .number(valLoss), "masked_accuracy": .number(accuracy),
            "unigram_accuracy": .number(unigram), "tokens_per_s": .number(outcome.unitsPerSecond),
            "skipped_steps": .integer(outcome.skippedSteps), "threads": .integer(runtime.threads),
        ])
    }
}
