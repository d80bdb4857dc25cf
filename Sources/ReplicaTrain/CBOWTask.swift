import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN

/// word2vec's data settings and sizes for `replica train cbow` (word2vec.c's defaults in the comments).
public struct CBOWSettings: Sendable, Equatable {
    public var minimumCount = 3        // word2vec -min-count 5; 3 keeps Multi30k's 4,565 words of 9,902
    public var window = 5              // -window 5: the reach is drawn from 1...window per centre
    public var negatives = 5           // -negative 5
    public var sample = 1e-3           // -sample 1e-3: frequent-word subsampling threshold (0: off)
    public var embedding = 100         // -size 100
    public var evaluationWindows = 4096
    public var tableSize = UnigramTable.defaultSize
    public init() {}
}

/// word2vec CBOW with negative sampling, data-parallel (`replica train cbow`).
///
/// Each step every rank draws its own windows: micro-step m of rank r uses slot m·ranks + r of the
/// step, and the windows of (seed, step, slot) are drawn from their own stream, so N ranks × b
/// windows equal 1 rank × N accumulated micro-steps × b. Windows are drawn with replacement from
/// the subsampled text (see `CBOWWindowSampler`), not in epochs. The loss is divided by the global
/// number of windows; both embedding tables' gradients are dense and all-reduced whole.
public final class CBOWTask: DataParallelTask {
    public let model: CBOW
    public let vocabulary: WordVocabulary
    public let settings: CBOWSettings
    public let sampler: CBOWWindowSampler
    /// Held-out windows, drawn once with a fixed stream (the same for every seed and rank count).
    public let heldOut: CBOWWindows
    let options: TrainingOptions
    let rank: Int
    let ranks: Int

    public var taskName: String { "cbow" }
    public var arena: ParameterArena { model.arena }
    public var throughputUnit: String { "words" }
    public var unitsPerMicroStep: Int { options.batchSize }
    public var globalBatch: Int? { options.batchSize * ranks * options.gradientAccumulation }
    public var stepsPerEpoch: Int {
        max(1, Int(sampler.expectedKeptTokens) / (options.batchSize * ranks * options.gradientAccumulation))
    }

    /// `vocabulary`, when the caller has built it already, must be `corpus.train`'s at
    /// `settings.minimumCount` (`WordVocabulary(sentences:minimumCount:)`); without it the task builds it.
    public init(corpus: WordCorpus, settings: CBOWSettings, options: TrainingOptions, rank: Int, ranks: Int,
                vocabulary built: WordVocabulary? = nil) throws {
        let name = corpus.description
        let vocabulary = built ?? WordVocabulary(sentences: corpus.train, minimumCount: settings.minimumCount)
        guard vocabulary.count >= 2 else {
            throw UserError("\(name): \(vocabulary.count) word(s) occur at least \(settings.minimumCount) times; at least 2 are needed (lower --min-count or use a longer text)")
        }
        let train = WordStream(sentences: corpus.train.map(vocabulary.encode))
        let heldOutStream = WordStream(sentences: corpus.heldOut.map(vocabulary.encode))
        func pairedShare(_ stream: WordStream) -> Double {
            let paired = zip(stream.offsets, stream.offsets.dropFirst()).reduce(0) { $0 + ($1.1 - $1.0 >= 2 ? $1.1 - $1.0 : 0) }
            return stream.count > 0 ? Double(paired) / Double(stream.count) : 0
        }
        let minimumWords = max(100, settings.window * 2)
        guard train.count >= minimumWords, pairedShare(train) >= 0.01 else {
            throw UserError("\(name): \(train.count) training words of the vocabulary (minimum count \(settings.minimumCount)), too few for word2vec: at least \(minimumWords) are needed, mostly in lines of 2 or more words (lower --min-count or use a longer text)")
        }
        guard heldOutStream.count >= 2, pairedShare(heldOutStream) >= 0.01 else {
            throw UserError("\(name): the held-out text (the last 10% of lines) has \(heldOutStream.count) words of the vocabulary, too few for a held-out window of 2 words; use a longer text")
        }
        let keep = vocabulary.keepProbabilities(threshold: settings.sample)
        let table = UnigramTable(counts: vocabulary.counts, size: settings.tableSize)
        let sampler = CBOWWindowSampler(stream: train, keep: keep, table: table, window: settings.window, negativeCount: settings.negatives)
        var heldOutGenerator = SeededGenerator(seed: 0, 0x6865_6c64)
        heldOut = CBOWWindowSampler(stream: heldOutStream, keep: keep, table: table, window: settings.window,
                                    negativeCount: settings.negatives)
            .windows(count: settings.evaluationWindows, using: &heldOutGenerator)
        self.sampler = sampler
        var config = CBOWConfig()
        config.vocabularySize = vocabulary.count
        config.embedding = settings.embedding
        let model = CBOW(config)
        model.initialize(seed: options.seed)
        self.model = model
        self.vocabulary = vocabulary
        self.settings = settings
        self.options = options
        self.rank = rank
        self.ranks = ranks
    }

    public var batchNorms: [BatchNorm] { [] }

    public var configuration: [String: String] {
        ["task": "cbow", "embedding": "\(settings.embedding)", "window": "\(settings.window)", "negatives": "\(settings.negatives)",
         "sample": "\(settings.sample)", "min_count": "\(settings.minimumCount)", "vocab_size": "\(vocabulary.count)",
         "train_words": "\(sampler.stream.count)", "eval_windows": "\(settings.evaluationWindows)"]
    }

    /// The vocabulary in row order with its training counts, for `replica analyze embeddings`.
    public var checkpointState: [String: Any] {
        ["vocab": vocabulary.words, "counts": vocabulary.counts,
         "config": Checkpoint.jsonObject(model.config, adding: ["window": settings.window, "negatives": settings.negatives,
                                                                "sample": settings.sample, "min_count": settings.minimumCount])]
    }

    public var extraCheckpointTensors: [(String, Tensor)] { [] }

    public func targetCount(step: Int, micro: Int) -> Int { options.batchSize }

    /// This rank's windows for micro-step `micro` of step `step`.
    public func windows(step: Int, micro: Int) -> CBOWWindows {
        let slot = micro * ranks + rank
        var generator = SeededGenerator(seed: options.seed, 0x6362_6f77, UInt64(step), UInt64(slot))
        return sampler.windows(count: options.batchSize, using: &generator)
    }

    func forward(_ windows: CBOWWindows) -> CBOW.Cache {
        model.forward(centres: windows.centres, contextOffsets: windows.contextOffsets, contexts: windows.contexts,
                      negatives: windows.negatives)
    }

    public func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientSink?) throws -> Double {
        let windows = windows(step: step, micro: micro)
        reducer?.phaseEnded("data")
        let cache = forward(windows)
        let value = model.loss(cache) / Double(normalizer)
        reducer?.phaseEnded("forward and loss")
        let outputStart = model.outputEmbedding.range.lowerBound
        try model.backward(cache, normalizer: normalizer) { try reducer?.gradientsReady(downTo: outputStart) }
        return value
    }

    /// Held-out negative-sampling loss per window; `val_accuracy`, the share of windows whose centre
    /// scores above all its k negatives; `val_top10`, the share whose centre is among the 10 best
    /// scores over the whole vocabulary (h · outputᵀ with sgemm). Windows split across ranks.
    public func evaluate(communicator: Communicator) throws -> [String: Double] {
        let mine = (0..<heldOut.count).filter { $0 % ranks == rank }
        var sums = [0.0, 0.0, 0.0, 0.0]   // loss, windows, ranked above the negatives, in the top 10
        let k = settings.negatives, d = settings.embedding, V = vocabulary.count
        let output = arena.value(model.outputEmbedding)   // [V, d]
        let chunk = 512
        for start in stride(from: 0, to: mine.count, by: chunk) {
            var part = CBOWWindows()
            for index in mine[start..<min(start + chunk, mine.count)] {
                part.centres.append(heldOut.centres[index])
                let lower = Int(heldOut.contextOffsets[index]), upper = Int(heldOut.contextOffsets[index + 1])
                part.contexts += heldOut.contexts[lower..<upper]
                part.contextOffsets.append(Int32(part.contexts.count))
                part.negatives += heldOut.negatives[(index * k)..<((index + 1) * k)]
            }
            let cache = forward(part)
            sums[0] += model.loss(cache)
            sums[1] += Double(part.count)
            for b in 0..<part.count {
                let centre = cache.scores[b * (k + 1)]
                var above = true
                for j in stride(from: 1, through: k, by: 1) where cache.counts(b, j) && cache.scores[b * (k + 1) + j] >= centre {
                    above = false
                }
                if above { sums[2] += 1 }
            }
            let scores = matmul(Tensor(shape: [part.count, d], values: cache.hidden), output, transposingB: true)   // [n, V]
            for b in 0..<part.count {
                let row = scores.data + b * V
                let target = Int(part.centres[b]), centre = row[target]
                var better = 0   // ties count against the centre
                for w in 0..<V where w != target && row[w] >= centre { better += 1 }
                if better < 10 { sums[3] += 1 }
            }
        }
        try communicator.allReduce(&sums, .sum)
        let windows = max(sums[1], 1)
        return ["val_loss": sums[0] / windows, "val_accuracy": sums[2] / windows, "val_top10": sums[3] / windows]
    }
}
