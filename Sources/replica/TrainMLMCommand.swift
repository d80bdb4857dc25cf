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
        15% of the ordinary tokens are chosen (80% become <mask>, 10% a random token, 10% stay) and predicted by a pre-norm Transformer encoder whose output layer is tied to its token embedding; the loss is over the chosen tokens, normalised by their global count. Reports val_loss, masked_accuracy and unigram_accuracy (always answering the most frequent token) on fixed validation masks.
          replica train mlm --json --checkpoint-dir runs/mlm
          mpirun -np 2 replica train mlm --data sentences.txt
        --data takes a UTF-8 text file, one sentence a line (its last 10% validate, or --val-data FILE). --batch-size is sentences per rank per micro-step.
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
    @Option(help: "Normalisation.") var norm = TransformerNorm.layer
    @Option(help: "Attention scorer: dot (scaled dot product) or additive (Bahdanau).") var attention = AttentionScorer.dot
    @Option(help: "Position encoding.") var positions = PositionKind.learned
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
        guard evalInterval >= 0 else { throw ValidationError("--eval-interval must not be negative.") }
        if common.augment != nil { throw ValidationError("train mlm takes no --augment: its masking is the augmentation (--mask-rate).") }
        if valData != nil && common.data == nil { throw ValidationError("--val-data goes with --data FILE.") }
    }

    func run() throws {
        var defaults = TrainingOptions.maskedLanguageModel()
        defaults.evaluationInterval = evalInterval
        var config = MaskedLanguageModelConfig()
        config.embedding = embedding
        config.heads = heads
        config.layers = layers
        config.feedForward = feedForward
        config.dropout = dropout
        config.maximumLength = maxLength
        config.norm = norm.kind
        config.scorer = attention
        config.positions = positions
        let splits = try common.data.map { try SentenceSplits.load(path: $0, validationPath: valData) }
            ?? SentenceSplits.multi30kEnglish()
        let run = try TrainingRun(common, defaults: defaults, augmentations: [], memory: { options, communicator in
            var sized = config
            sized.vocabularySize = vocabulary                // the learned vocabulary is at most this
            return sized.memoryEstimate(options: options, rate: maskRate, ranks: communicator.size)
        }) { options, communicator in
            MLMTask(splits: splits, vocabularySize: vocabulary, config: config, options: options, rate: maskRate,
                    rank: communicator.rank, ranks: communicator.size)
        }
        let task = run.task
        try run.train(banner: "mlm: \(task.model.parameterCount) parameters, vocabulary \(task.tokenizer.count), \(splits.train.count) "
            + "training sentences (\(splits.description)), \(task.stepsPerEpoch) steps an epoch, \(run.communicator.size) rank(s) × "
            + "\(run.runtime.threads) thread(s), global batch \(run.globalBatch) sentences, \(run.options.steps) steps") { outcome in
            let evaluation = outcome.evaluation
            let valLoss = evaluation["val_loss"] ?? .nan
            let accuracy = evaluation["masked_accuracy"] ?? .nan, unigram = evaluation["unigram_accuracy"] ?? .nan
            return (String(format: "done: val loss %.4f, masked accuracy %.2f%% (unigram baseline %.2f%%), %.0f tokens/s, %.1f s",
                           valLoss, 100 * accuracy, 100 * unigram, outcome.unitsPerSecond, outcome.seconds),
                    ["train_loss": .number(outcome.trainLoss), "val_loss": .number(valLoss), "masked_accuracy": .number(accuracy),
                     "unigram_accuracy": .number(unigram), "tokens_per_s": .number(outcome.unitsPerSecond),
                     "skipped_steps": .integer(outcome.skippedSteps)])
        }
    }
}
