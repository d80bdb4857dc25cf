import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain

struct TrainCBOW: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cbow",
        abstract: "word2vec CBOW with negative sampling (default: the English side of the embedded Multi30k).",
        discussion: """
        Lower-cased words; the words seen at least --min-count times form the vocabulary. Each centre word is predicted from the mean input vector of up to b words each side (b drawn from 1...--window, word2vec's shrinking), against --negatives words drawn from the unigram^0.75 table; frequent words are subsampled with word2vec's threshold --sample. Each rank draws its own windows every step; the loss is divided by the global number of windows. Adam with cosine decay. Reports val_loss, val_accuracy (centre above its negatives) and val_top10 (centre among the 10 best of the whole vocabulary) on fixed held-out windows.
          replica train cbow --json --checkpoint-dir runs/cbow
          replica analyze embeddings --checkpoint runs/cbow --nearest man,dog,red
          replica train cbow --corpus shakespeare
          mpirun -np 2 replica train cbow --data sentences.txt
        --data takes a UTF-8 text file, one sentence a line (its last 10% are held out). --batch-size is windows (centre words) per rank per micro-step.
        """
    )

    @OptionGroup var common: CommonTrainOptions
    @Option(help: "Embedded text without --data: multi30k (English captions, validation captions held out) or shakespeare (Tiny Shakespeare, last 10% of lines held out).")
    var corpus = WordCorpusChoice.multi30k
    @Option(help: "Words seen fewer times are left out (default 3 for multi30k, 5 otherwise).") var minCount: Int?
    @Option(help: "Largest reach each side of the centre; each window's reach is drawn from 1...window.") var window = 5
    @Option(help: "Negative words per window, from the unigram^0.75 table.") var negatives = 5
    @Option(help: "Frequent-word subsampling threshold t (word2vec's -sample; 0: off).") var sample = 1e-3
    @Option(help: "Embedding width.") var embedding = 100
    @Option(help: "Evaluate every N steps (0: only at the end).") var evalInterval = 500
    @Option(help: "Held-out windows per evaluation.") var evalWindows = 4096

    func validate() throws {
        if common.data != nil && corpus != .multi30k { throw ValidationError("give --data FILE or --corpus, not both.") }
        if let minCount, minCount < 1 { throw ValidationError("--min-count \(minCount) must be at least 1.") }
        guard (1...50).contains(window) else { throw ValidationError("--window \(window) must be in 1...50.") }
        guard (1...50).contains(negatives) else { throw ValidationError("--negatives \(negatives) must be in 1...50.") }
        guard sample >= 0, sample.isFinite else { throw ValidationError("--sample \(sample) must be 0 or positive.") }
        guard (1...4096).contains(embedding) else { throw ValidationError("--embedding \(embedding) must be in 1...4096.") }
        guard evalInterval >= 0 else { throw ValidationError("--eval-interval must not be negative.") }
        guard evalWindows >= 1 else { throw ValidationError("--eval-windows must be at least 1.") }
        if common.augment != nil { throw ValidationError("train cbow takes no --augment: subsampling and window shrinking are its sampling.") }
    }

    func run() throws {
        var defaults = TrainingOptions.continuousBagOfWords()
        defaults.evaluationInterval = evalInterval
        var settings = CBOWSettings()
        settings.minimumCount = minCount ?? (common.data == nil && corpus == .multi30k ? 3 : 5)
        settings.window = window
        settings.negatives = negatives
        settings.sample = sample
        settings.embedding = embedding
        settings.evaluationWindows = evalWindows
        let text: WordCorpus
        if let path = common.data {
            text = try WordCorpus.load(path: path)
        } else if corpus == .shakespeare {
            text = try WordCorpus.tinyShakespeare()
        } else {
            text = try WordCorpus.multi30kEnglish()
        }
        let vocabulary = WordVocabulary(sentences: text.train, minimumCount: settings.minimumCount)
        let run = try TrainingRun(common, defaults: defaults, augmentations: [], memory: { options, communicator in
            settings.memoryEstimate(corpus: text, vocabulary: vocabulary.count, options: options, ranks: communicator.size)
        }) { options, communicator in
            try CBOWTask(corpus: text, settings: settings, options: options, rank: communicator.rank, ranks: communicator.size,
                         vocabulary: vocabulary)
        }
        let task = run.task
        try run.train(banner: "cbow: \(task.model.parameterCount) parameters, vocabulary \(task.vocabulary.count) words (min count "
            + "\(settings.minimumCount)), \(task.sampler.stream.count) training words (\(text.description)), "
            + String(format: "%.0f", task.sampler.expectedKeptTokens) + " after subsampling, \(run.communicator.size) rank(s) × "
            + "\(run.runtime.threads) thread(s), global batch \(run.globalBatch) windows, \(run.options.steps) steps") { outcome in
            let evaluation = outcome.evaluation
            let valLoss = evaluation["val_loss"] ?? .nan
            let accuracy = evaluation["val_accuracy"] ?? .nan, top10 = evaluation["val_top10"] ?? .nan
            return (String(format: "done: train loss %.4f, val loss %.4f, centre above its %d negatives %.2f%%, in the top 10 of %d words %.2f%%, %.0f words/s, %.1f s",
                           outcome.trainLoss, valLoss, negatives, 100 * accuracy, task.vocabulary.count, 100 * top10,
                           outcome.unitsPerSecond, outcome.seconds),
                    ["train_loss": .number(outcome.trainLoss), "val_loss": .number(valLoss), "val_accuracy": .number(accuracy),
                     "val_top10": .number(top10), "vocab_size": .integer(task.vocabulary.count),
                     "words_per_s": .number(outcome.unitsPerSecond), "skipped_steps": .integer(outcome.skippedSteps)])
        }
    }
}
