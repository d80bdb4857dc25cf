import Foundation
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN

/// Sentences for masked-language-model training, one a line, in two splits.
public struct SentenceSplits: Sendable, Equatable {
    public var train: [String]
    public var validation: [String]
    /// Where they came from, for messages ("Multi30k English", a path).
    public var description: String

    public init(train: [String], validation: [String], description: String) {
        self.train = train
        self.validation = validation
        self.description = description
    }

    /// The English side of the embedded Multi30k: 29,000 training and 1,014 validation captions.
    public static func multi30kEnglish() throws -> SentenceSplits {
        let data = try TranslationData.multi30k()
        return SentenceSplits(train: data.train.target, validation: data.validation.target, description: "Multi30k English")
    }

    /// The non-empty lines of the UTF-8 text file `path`; the last 10% are the validation split
    /// unless `validationPath` names a file of its own. A missing, empty or non-UTF-8 file, or one
    /// without a non-empty line, is a UserError naming it.
    public static func load(path: String, validationPath: String? = nil) throws -> SentenceSplits {
        func sentences(_ path: String) throws -> [String] {
            let lines = try TextCorpus.load(path).split(whereSeparator: \.isNewline)
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !lines.isEmpty else { throw UserError("\(path): has no non-empty line; it should hold one sentence a line") }
            return lines
        }
        let lines = try sentences(path)
        if let validationPath {
            return SentenceSplits(train: lines, validation: try sentences(validationPath), description: path)
        }
        guard lines.count >= 2 else {
            throw UserError("\(path): has 1 sentence; at least 2 are needed to hold 10% out for validation (or give --val-data FILE)")
        }
        let validationCount = max(1, lines.count / 10)
        return SentenceSplits(train: Array(lines.dropLast(validationCount)), validation: Array(lines.suffix(validationCount)),
                              description: path)
    }
}

/// BERT's masking (Devlin et al. 2019, §3.1): each ordinary token is chosen with probability
/// `rate` (15%); a chosen token becomes `<mask>` with probability 0.8, a uniformly random
/// ordinary token with probability 0.1, and stays itself with probability 0.1. Special tokens
/// (`<pad>`, `<s>`, `</s>`, `<unk>`, `<mask>`: ids below 5) are never chosen. The loss is taken at
/// the chosen positions only. (Each token is chosen independently, as Hugging Face's collator;
/// BERT's TensorFlow code picks exactly round(15%) of each sequence.)
public enum BERTMasking {
    /// Ids below this are special tokens.
    public static let firstOrdinaryToken = Int32(BPETokenizer.specialTokens.count)
    public static let defaultRate: Float = 0.15

    /// The model's input for `ids` and the chosen positions (ascending).
    public static func mask(_ ids: [Int32], rate: Float, vocabularySize V: Int,
                            using generator: inout SeededGenerator) -> (input: [Int32], chosen: [Int]) {
        precondition(V > Int(firstOrdinaryToken), "BERTMasking: a vocabulary of \(V) has no ordinary token")
        var input = ids
        var chosen: [Int] = []
        for (position, id) in ids.enumerated() where id >= firstOrdinaryToken {
            guard generator.nextUniform() < rate else { continue }
            chosen.append(position)
            let draw = generator.nextUniform()
            if draw < 0.8 {
                input[position] = BPETokenizer.mask
            } else if draw < 0.9 {
                input[position] = firstOrdinaryToken + Int32(generator.nextInt(below: V - Int(firstOrdinaryToken)))
            }
        }
        return (input, chosen)
    }
}

/// A padded batch of masked sentences, row-major.
///
/// ```
/// inputs   [B, T]  ids after masking, then <pad> (0)
/// mask     [B, T]  true at a real token, false at padding
/// rows     [P]     flat positions (b·T + t) of the chosen tokens
/// targets  [P]     their original ids
/// ```
public struct MaskedBatch: Sendable, Equatable {
    public var batchSize: Int
    public var length: Int
    public var inputs: [Int32]
    public var mask: [Bool]
    public var rows: [Int32]
    public var targets: [Int32]

    /// Pads `sentences[indices]` and masks each with the generator `generator(index)` gives it.
    public static func make(sentences: [[Int32]], indices: [Int], rate: Float, vocabularySize: Int,
                            generator: (Int) -> SeededGenerator) -> MaskedBatch {
        let B = indices.count, T = indices.map { sentences[$0].count }.max() ?? 0
        var batch = MaskedBatch(batchSize: B, length: T, inputs: [Int32](repeating: BPETokenizer.padding, count: B * T),
                                mask: [Bool](repeating: false, count: B * T), rows: [], targets: [])
        for (row, index) in indices.enumerated() {
            let ids = sentences[index]
            var random = generator(index)
            let (input, chosen) = BERTMasking.mask(ids, rate: rate, vocabularySize: vocabularySize, using: &random)
            for t in ids.indices {
                batch.inputs[row * T + t] = input[t]
                batch.mask[row * T + t] = true
            }
            for t in chosen {
                batch.rows.append(Int32(row * T + t))
                batch.targets.append(ids[t])
            }
        }
        return batch
    }
}

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
public final class MLMTask: DataParallelTask {
    public let splits: SentenceSplits
    public let tokenizer: BPETokenizer
    public let model: MaskedLanguageModel
    /// Each token's count in the encoded training sentences, [V].
    public let tokenCounts: [Int]
    /// The most frequent ordinary training token: the unigram baseline's answer.
    public let mostFrequentToken: Int32
    let train: [[Int32]]
    let validation: [[Int32]]
    let lengths: [TranslationExample]    // makeBatches reads only each example's `length`
    let rate: Float
    let loss = CrossEntropy()
    let options: TrainingOptions
    let rank: Int
    let ranks: Int
    private var epochBatches: (epoch: Int, batches: [[Int]])?
    private var stepBatches: (step: Int, batches: [Int: MaskedBatch])?

    public var taskName: String { "mlm" }
    public var arena: ParameterArena { model.arena }
    public var throughputUnit: String { "tokens" }
    public var stepsPerEpoch: Int { batches(epoch: 0).count }
    public var batchNorms: [BatchNorm] { model.batchNorms }
    public var extraCheckpointTensors: [(String, Tensor)] { [] }
    /// Real tokens a rank processes per micro-step, on average.
    public var unitsPerMicroStep: Int { options.batchSize * train.reduce(0) { $0 + $1.count } / max(train.count, 1) }

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
        lengths = train.map { TranslationExample(source: $0, target: []) }
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
        let c = model.config
        return ["tokenizer": tokenizer.serialized, "token_counts": tokenCounts,
                "config": ["vocab_size": c.vocabularySize, "embedding": c.embedding, "heads": c.heads, "layers": c.layers,
                           "feed_forward": c.feedForward, "dropout": Double(c.dropout), "norm": c.norm.rawValue,
                           "attention": c.scorer.rawValue, "positions": c.positions.rawValue, "max_length": c.maximumLength,
                           "mask_rate": Double(rate), "tied_output": true] as [String: Any]]
    }

    /// The epoch's global batches of sentence indices (every rank computes the same list).
    func batches(epoch: Int) -> [[Int]] {
        if let cached = epochBatches, cached.epoch == epoch { return cached.batches }
        let global = makeBatches(examples: lengths, sentencesPerBatch: options.batchSize * ranks * options.gradientAccumulation,
                                 seed: options.seed, epoch: epoch)
        epochBatches = (epoch, global)
        return global
    }

    /// This rank's sentences of micro-step `micro` of global step `step` (possibly none).
    func slice(step: Int, micro: Int) -> [Int] {
        let all = batches(epoch: 0).count
        let global = batches(epoch: step / all)[step % all]
        return contiguousShare(of: global, part: micro * ranks + rank, parts: ranks * options.gradientAccumulation)
    }

    /// This rank's masked micro-batch (drawn once per step and kept for `trainMicroStep`).
    public func maskedBatch(step: Int, micro: Int) -> MaskedBatch {
        if stepBatches?.step != step { stepBatches = (step, [:]) }
        if let cached = stepBatches?.batches[micro] { return cached }
        let seed = options.seed
        let batch = MaskedBatch.make(sentences: train, indices: slice(step: step, micro: micro), rate: rate,
                                     vocabularySize: tokenizer.count) { index in
            SeededGenerator(seed: seed, 0x6d61_736b, UInt64(step), UInt64(index))   // "mask"
        }
        stepBatches?.batches[micro] = batch
        return batch
    }

    /// The chosen tokens of this rank's micro-batch: the loss terms.
    public func targetCount(step: Int, micro: Int) -> Int { maskedBatch(step: step, micro: micro).targets.count }

    public func trainMicroStep(step: Int, micro: Int, normalizer: Float, reducer: GradientReducer?) throws -> Double {
        let batch = maskedBatch(step: step, micro: micro)
        guard batch.batchSize > 0 else { return 0 }   // a short last batch: this rank adds nothing
        model.mode = .training
        model.randomContext = RandomContext(seed: options.seed, rank: rank, step: step, micro: micro)
        let logits = model.forward(batch.inputs, mask: batch.mask, batch: batch.batchSize, length: batch.length,
                                   predicting: batch.rows)
        let value = loss.forward(logits: logits, targets: batch.targets, normalizer: normalizer)
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
        let batchSentences = 128
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
