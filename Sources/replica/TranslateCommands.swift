import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain

struct TrainTranslate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "translate",
        abstract: "Encoder–decoder Transformer, German → English (default: the embedded Multi30k).",
        discussion: """
        A joint BPE vocabulary of both languages, shared embeddings and output projection, label smoothing 0.1, inverse-square-root schedule with warmup. At the end the test set is translated (beam search) and scored with sacreBLEU-compatible corpus BLEU.
          replica train translate --epochs 10 --checkpoint-dir runs/de-en
          mpirun -np 2 replica train translate --preset small
        --batch-size is padded tokens per rank per micro-step. A --preset fixes the global batch instead: each rank takes its share (2 ranks: 1000 each of 2000), so any rank count trains alike.
        """
    )

    @OptionGroup var common: CommonTrainOptions
    @Option(help: "Test files' prefix inside --data.") var testPrefix = TranslationData.defaultTestPrefix
    @Option(help: "A named configuration: small (d 256, 3+3 layers, the README's BLEU 37 run) or quick (its model, 600 steps). Options given explicitly override it.")
    var preset: String?
    @Option(help: "Joint subword vocabulary size (default 8000).") var vocabulary: Int?
    @Option(help: "Model width (default 256).") var embedding: Int?
    @Option(help: "Attention heads (default 4).") var heads: Int?
    @Option(help: "Encoder and decoder layers, each (default 3).") var layers: Int?
    @Option(help: "Feed-forward width (default 1024).") var feedForward: Int?
    @Option(help: "Dropout (default 0.1).") var dropout: Float?
    @Option(help: "Label smoothing.") var labelSmoothing: Float = 0.1
    @Option(help: "Normalisation.") var norm = TransformerNorm.layer
    @Option(help: "Attention scorer: dot (scaled dot product) or additive (Bahdanau).") var attention = AttentionScorer.dot
    @Option(help: "Beam size for the test BLEU.") var beam = 4
    @Option(help: "GNMT length penalty exponent for beam search.") var lengthPenalty: Float = 0.6
    @Option(help: "Evaluate every N steps (0: only at the end; a preset's default otherwise).") var evalInterval: Int?

    /// The preset named by --preset, if any.
    var chosenPreset: TranslatePreset? { preset.flatMap(TranslatePreset.named) }

    /// The model's shape: explicit options, else the preset's, else the defaults (the `small` model).
    var modelConfig: TransformerConfig {
        var config = chosenPreset?.config ?? TransformerConfig()
        config.embedding = embedding ?? config.embedding
        config.heads = heads ?? config.heads
        config.encoderLayers = layers ?? config.encoderLayers
        config.decoderLayers = layers ?? config.decoderLayers
        config.feedForward = feedForward ?? config.feedForward
        config.dropout = dropout ?? config.dropout
        config.norm = norm.kind
        config.scorer = attention
        return config
    }

    func validate() throws {
        if let preset, TranslatePreset.named(preset) == nil {
            throw ValidationError("--preset \(preset): use \(TranslatePreset.all.map(\.name).joined(separator: " or ")).")
        }
        let config = modelConfig, vocabulary = vocabulary ?? 8000
        guard vocabulary >= 100, config.embedding >= 1, config.heads >= 1, config.encoderLayers >= 1, config.feedForward >= 1,
              beam >= 1 else {
            throw ValidationError("--vocabulary ≥ 100; --embedding, --heads, --layers, --feed-forward, --beam ≥ 1.")
        }
        guard config.embedding % config.heads == 0 else {
            throw ValidationError("--embedding \(config.embedding) is not divisible by --heads \(config.heads).")
        }
        guard (0..<1).contains(config.dropout), (0..<1).contains(labelSmoothing) else {
            throw ValidationError("--dropout and --label-smoothing must be in [0, 1).")
        }
        if let evalInterval, evalInterval < 0 { throw ValidationError("--eval-interval \(evalInterval) must not be negative.") }
    }

    func run() throws {
        let preset = chosenPreset
        var defaults = TrainingOptions.translation(preset: preset)
        if let evalInterval { defaults.evaluationInterval = evalInterval }
        let config = modelConfig, vocabularySize = vocabulary ?? preset?.vocabulary ?? 8000
        let data = try common.data.map { try TranslationData.load(directory: URL(fileURLWithPath: $0), testPrefix: testPrefix) }
            ?? TranslationData.multi30k()
        let run = try TrainingRun(common, defaults: defaults, augmentations: ["mask", "substitute"], adjust: { options, communicator in
            // A preset fixes the global batch: each rank takes its share.
            if let preset, common.batchSize == nil {
                options.batchSize = preset.tokensPerRank(ranks: communicator.size, gradientAccumulation: options.gradientAccumulation)
            }
        }, memory: { options, communicator in
            var sized = config
            sized.vocabularySize = vocabularySize            // the learned vocabulary is at most this
            return sized.memoryEstimate(options: options, ranks: communicator.size)
        }) { options, communicator in
            TranslateTask(data: data, vocabularySize: vocabularySize, config: config,
                          options: options, tokensPerRank: options.batchSize, labelSmoothing: labelSmoothing,
                          rank: communicator.rank, ranks: communicator.size)
        }
        let task = run.task
        try run.train(banner: "translate\(preset.map { " (preset \($0.name))" } ?? ""): \(task.model.parameterCount) parameters, "
            + "vocabulary \(task.tokenizer.count), global batch \(run.globalBatch) padded tokens, "
            + "\(data.train.count) training pairs, \(task.stepsPerEpoch) steps an epoch, \(run.communicator.size) rank(s) × "
            + "\(run.runtime.threads) thread(s), \(run.options.steps) steps") { outcome in
            let (score, _) = try task.testBLEU(beam: beam, lengthPenalty: lengthPenalty, communicator: run.communicator)
            let valLoss = outcome.evaluation["val_loss"] ?? .nan
            return (String(format: "done: val loss %.4f, test %@, %.0f tokens/s, %.1f s", valLoss, score.line,
                           outcome.unitsPerSecond, outcome.seconds),
                    ["val_loss": .number(valLoss), "bleu": .number(score.score), "tokens_per_s": .number(outcome.unitsPerSecond),
                     "preset": preset.map { .string($0.name) } ?? .null, "global_batch_tokens": .integer(run.globalBatch)])
        }
    }
}

struct Translate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Translate German lines on stdin to English lines on stdout with a translate checkpoint.",
        discussion: "Example: echo 'Ein Hund läuft im Park.' | replica translate --checkpoint runs/de-en --beam 4"
    )

    @Option(help: "A checkpoint folder (step-NNNNNNNN) or a --checkpoint-dir (its newest checkpoint).") var checkpoint: String
    @Option(help: "Beam size (1: greedy).") var beam = 4
    @Option(help: "GNMT length penalty exponent.") var lengthPenalty: Float = 0.6
    @Option(help: "Sentences decoded together.") var batchSize = 64
    @Option(help: "Compute threads.") var threads: Int?
    @Flag(help: "Re-run the decoder over the whole prefix at every step instead of caching keys and values (slow; the reference).")
    var noCache = false

    func validate() throws {
        guard beam >= 1, batchSize >= 1 else { throw ValidationError("--beam and --batch-size must be at least 1.") }
        if let threads, threads < 1 { throw ValidationError("--threads \(threads) must be at least 1.") }
    }

    func run() throws {
        BLAS.setThreadCount(threads ?? ProcessInfo.processInfo.activeProcessorCount)
        let folder = Checkpoint.folder(forPath: checkpoint)
        var translator = try Translator(checkpoint: folder)
        translator.usesCache = !noCache
        var lines: [String] = []
        while let line = readLine(strippingNewline: true) { lines.append(line) }
        for output in translator.translate(lines, beam: beam, lengthPenalty: lengthPenalty, batchSize: batchSize) {
            print(output)
        }
    }
}
