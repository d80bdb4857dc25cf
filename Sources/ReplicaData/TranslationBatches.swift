import ReplicaCore

// Legend: B sentences in a batch, S source length, T target length (padded, in tokens).

/// One sentence pair as token ids: `source` is the sentence then `</s>`; `target` is `<s>`, the
/// sentence, `</s>` (the decoder reads target[0..<n-1] and predicts target[1..<n]).
public struct TranslationExample: Sendable, Equatable {
    public var source: [Int32]
    public var target: [Int32]

    public init(source: [Int32], target: [Int32]) {
        self.source = source
        self.target = target
    }

    /// The longer of the padded source and decoder lengths, max(S, T): what the example costs in a batch.
    public var length: Int { max(source.count, target.count - 1) }
}

extension ParallelCorpus {
    /// Encodes every pair: source ids + `</s>`, `<s>` + target ids + `</s>`.
    ///
    /// With `maximumLength`, longer sentences are cut so that S ≤ maximumLength and T ≤ maximumLength
    /// (the end token is kept). Multi30k's longest training pair is well under 128 subword tokens.
    public func examples(tokenizer: BPETokenizer, maximumLength: Int? = nil) -> [TranslationExample] {
        precondition(maximumLength.map { $0 >= 2 } ?? true, "maximumLength must be at least 2, got \(maximumLength!)")
        return (0..<count).map { i in
            var source = tokenizer.encode(self.source[i])
            var target = tokenizer.encode(self.target[i])
            if let maximumLength {
                if source.count > maximumLength - 1 { source.removeLast(source.count - (maximumLength - 1)) }
                if target.count > maximumLength - 1 { target.removeLast(target.count - (maximumLength - 1)) }
            }
            return TranslationExample(source: source + [BPETokenizer.sentenceEnd],
                                      target: [BPETokenizer.sentenceStart] + target + [BPETokenizer.sentenceEnd])
        }
    }
}

/// Length-bucketed batches of example indices for one epoch, each batch at most `tokensPerBatch`
/// padded tokens: B × max(S, T) ≤ tokensPerBatch (fairseq's --max-tokens). Transformer base on
/// WMT: 4096 a GPU; Multi30k on a CPU: 1000–2000.
///
/// The examples are shuffled by (seed, epoch), cut into pools of `poolSize` (default: about 100
/// batches' worth), each pool sorted by length and cut into batches, and the batches shuffled
/// (torchtext's BucketIterator `pool`, fairseq's length-sorted batches). Every example is in
/// exactly one batch; one longer than the budget gets a batch of its own. The result depends only
/// on (examples, seed, epoch), so every rank computes the same list.
public func makeBatches(examples: [TranslationExample], tokensPerBatch: Int, seed: UInt64, epoch: Int,
                        poolSize: Int? = nil) -> [[Int]] {
    precondition(tokensPerBatch > 0, "makeBatches: tokensPerBatch must be positive, got \(tokensPerBatch)")
    let meanLength = max(1, examples.reduce(0) { $0 + $1.length } / max(1, examples.count))
    let pool = poolSize ?? 100 * max(1, tokensPerBatch / meanLength)
    return makeBucketedBatches(examples: examples, seed: seed, epoch: epoch, poolSize: pool) { sorted, lengths in
        var batches: [[Int]] = []
        var current: [Int] = []
        var longest = 0
        for (index, length) in zip(sorted, lengths) {
            let newLongest = max(longest, length)
            if !current.isEmpty && (current.count + 1) * newLongest > tokensPerBatch {
                batches.append(current)
                current = []
                longest = 0
            }
            current.append(index)
            longest = max(longest, length)
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }
}

/// Length-bucketed batches of `sentencesPerBatch` example indices for one epoch (the last may be
/// smaller). As the token-budget form: shuffle by (seed, epoch), sort pools of `poolSize`
/// (default 100 batches, a multiple of the batch so only the final batch can fall short) by
/// length, cut, shuffle the batches.
public func makeBatches(examples: [TranslationExample], sentencesPerBatch: Int, seed: UInt64, epoch: Int,
                        poolSize: Int? = nil) -> [[Int]] {
    precondition(sentencesPerBatch > 0, "makeBatches: sentencesPerBatch must be positive, got \(sentencesPerBatch)")
    let pool = poolSize ?? 100 * sentencesPerBatch
    return makeBucketedBatches(examples: examples, seed: seed, epoch: epoch, poolSize: pool) { sorted, _ in
        stride(from: 0, to: sorted.count, by: sentencesPerBatch).map { start in
            Array(sorted[start..<min(start + sentencesPerBatch, sorted.count)])
        }
    }
}

/// Shuffles, sorts each pool by length, lets `cut` split it into batches, and shuffles the batches.
private func makeBucketedBatches(examples: [TranslationExample], seed: UInt64, epoch: Int, poolSize: Int,
                         cut: (_ sortedIndices: [Int], _ lengths: [Int]) -> [[Int]]) -> [[Int]] {
    precondition(poolSize > 0, "makeBatches: poolSize must be positive, got \(poolSize)")
    var generator = SeededGenerator(seed: seed, 0x4255_434B_4554, UInt64(epoch))   // "BUCKET"
    var order = Array(examples.indices)
    seededShuffle(&order, using: &generator)
    var batches: [[Int]] = []
    for poolStart in stride(from: 0, to: order.count, by: poolSize) {
        let pool = order[poolStart..<min(poolStart + poolSize, order.count)]
        // Sort by length; equal lengths keep their shuffled order.
        let sorted = pool.enumerated()
            .sorted { (examples[$0.element].length, $0.offset) < (examples[$1.element].length, $1.offset) }
            .map(\.element)
        batches += cut(sorted, sorted.map { examples[$0].length })
    }
    seededShuffle(&batches, using: &generator)
    return batches
}

/// Fisher–Yates with an explicit generator (the same order on every platform and Swift version).
private func seededShuffle<Element>(_ array: inout [Element], using generator: inout SeededGenerator) {
    guard array.count > 1 else { return }
    for i in stride(from: array.count - 1, to: 0, by: -1) {
        let j = Int(generator.next() % UInt64(i + 1))
        array.swapAt(i, j)
    }
}

/// A padded batch of sentence pairs, row-major, ready for an encoder-decoder Transformer.
///
/// ```
/// sourceIds     [B, S]  source ids, then <pad> (0)
/// sourceMask    [B, S]  true at a real token, false at padding
/// targetInput   [B, T]  <s> y1 … yn, then <pad> (0)
/// targetOutput  [B, T]  y1 … yn </s>, then -100 (CrossEntropy's ignored target)
/// ```
public struct PaddedBatch: Sendable, Equatable {
    /// The target at padding positions: CrossEntropy's default `ignoreIndex`.
    public static let ignoredTarget: Int32 = -100

    public var batchSize: Int        // B
    public var sourceLength: Int     // S, the longest source in the batch
    public var targetLength: Int     // T, the longest target minus one
    public var sourceIds: [Int32]    // [B, S]
    public var sourceMask: [Bool]    // [B, S]
    public var targetInput: [Int32]  // [B, T]
    public var targetOutput: [Int32] // [B, T]

    /// Real (non-padding) source tokens.
    public var sourceTokenCount: Int { sourceMask.reduce(0) { $0 + ($1 ? 1 : 0) } }
    /// Predicted target tokens: the rows the loss counts.
    public var targetTokenCount: Int { targetOutput.reduce(0) { $0 + ($1 == Self.ignoredTarget ? 0 : 1) } }
    /// The targets of the predicted positions, in order: what the model's logits rows are for. [targetTokenCount]
    public var predictedTargets: [Int32] { targetOutput.filter { $0 != Self.ignoredTarget } }

    /// Pads `examples[indices]`, in the order of `indices`.
    public static func make(examples: [TranslationExample], indices: [Int]) -> PaddedBatch {
        precondition(!indices.isEmpty, "PaddedBatch.make: no examples")
        let B = indices.count
        var S = 0, T = 0
        for index in indices {
            let example = examples[index]
            precondition(!example.source.isEmpty, "PaddedBatch.make: example \(index) has an empty source (it should end with </s>)")
            precondition(example.target.count >= 2, "PaddedBatch.make: example \(index)'s target has \(example.target.count) ids; it needs <s> … </s>")
            S = max(S, example.source.count)
            T = max(T, example.target.count - 1)
        }
        var sourceIds = [Int32](repeating: BPETokenizer.padding, count: B * S)
        var sourceMask = [Bool](repeating: false, count: B * S)
        var targetInput = [Int32](repeating: BPETokenizer.padding, count: B * T)
        var targetOutput = [Int32](repeating: ignoredTarget, count: B * T)
        for (row, index) in indices.enumerated() {
            let example = examples[index]
            for (t, id) in example.source.enumerated() {
                sourceIds[row * S + t] = id
                sourceMask[row * S + t] = true
            }
            for t in 0..<(example.target.count - 1) {
                targetInput[row * T + t] = example.target[t]
                targetOutput[row * T + t] = example.target[t + 1]
            }
        }
        return PaddedBatch(batchSize: B, sourceLength: S, targetLength: T, sourceIds: sourceIds,
                           sourceMask: sourceMask, targetInput: targetInput, targetOutput: targetOutput)
    }
}

/// Part `part` of `parts` nearly equal contiguous pieces of a global batch (the first
/// `count % parts` pieces one longer): rank r's share of micro-step m is part m·ranks + r.
public func contiguousShare<Element>(of global: [Element], part: Int, parts: Int) -> [Element] {
    precondition(parts >= 1 && (0..<parts).contains(part), "part \(part) of \(parts)")
    let base = global.count / parts, extra = global.count % parts
    let start = part * base + min(part, extra)
    return Array(global[start..<(start + base + (part < extra ? 1 : 0))])
}
