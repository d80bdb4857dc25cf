import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaNN

/// Greedy and beam-search decoding with an encoder–decoder Transformer (`replica translate`).
///
/// By default decoding is incremental: a key/value cache (`DecoderCache`) keeps each decoder
/// layer's self-attention keys and values of the prefix and the cross-attention keys and values
/// of the encoder output, so each step runs the decoder on the new position only, and beam search
/// decodes the beams of a whole batch of sentences together, reordering the cache as beams are
/// chosen. `usesCache = false` re-runs the decoder over the whole prefix at every step instead
/// (the reference the cache is tested against; the same search, one sentence's beam at a time).
public struct Translator {
    public let model: Seq2SeqTransformer
    public let tokenizer: BPETokenizer
    public var maximumLength = 100
    public var usesCache = true

    public init(model: Seq2SeqTransformer, tokenizer: BPETokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Rebuilds the model and its tokenizer from a translate checkpoint folder.
    public init(checkpoint folder: URL) throws {
        let (model, contents) = try Checkpoint.loadModel(Seq2SeqTransformer.self, from: folder)
        let stateFile = folder.appendingPathComponent("state.json").path
        guard let serialized = contents.state["tokenizer"] as? [String: Any] else {
            throw UserError("\(stateFile): lacks the \"tokenizer\"; not a translate checkpoint")
        }
        let tokenizer: BPETokenizer
        do { tokenizer = try BPETokenizer(serialized: serialized) } catch {
            throw UserError("\(stateFile): the saved tokenizer is damaged (\(error))")
        }
        guard tokenizer.count == model.config.vocabularySize else {
            throw UserError("\(stateFile): the config and the tokenizer disagree (vocabulary \(model.config.vocabularySize) vs \(tokenizer.count))")
        }
        self.init(model: model, tokenizer: tokenizer)
    }

    /// Translates `lines`, `batchSize` sentences at a time; `beam` 1 is greedy.
    /// Beam scores are log-probabilities divided by GNMT's length penalty ((5 + length) / 6)^α.
    public func translate(_ lines: [String], beam: Int = 1, lengthPenalty: Float = 0.6, batchSize: Int = 64) -> [String] {
        var results: [String] = []
        var start = 0
        while start < lines.count {
            let chunk = Array(lines[start..<min(start + batchSize, lines.count)])
            let sources = chunk.map { Array(tokenizer.encode($0).prefix(maximumLength - 1)) + [BPETokenizer.sentenceEnd] }
            results += decode(sources, beam: beam, lengthPenalty: lengthPenalty).map { tokenizer.decode($0) }
            start += batchSize
        }
        return results
    }

    /// Output ids (without `<s>` and `</s>`) for source ids (each ending with `</s>`), decoded as one batch.
    public func decode(_ sources: [[Int32]], beam: Int = 1, lengthPenalty: Float = 0.6) -> [[Int32]] {
        guard !sources.isEmpty else { return [] }
        model.mode = .evaluation
        if beam <= 1 { return usesCache ? cachedGreedy(sources) : greedy(sources) }
        return usesCache ? cachedBeamSearch(sources, beam: beam, lengthPenalty: lengthPenalty)
            : sources.map { beamSearch($0, beam: beam, lengthPenalty: lengthPenalty) }
    }

    /// Pads sources into [B, S] with a mask and encodes them.
    func encode(_ sources: [[Int32]]) -> (memory: Tensor, mask: [Bool], S: Int) {
        let B = sources.count, S = sources.map(\.count).max() ?? 1
        var ids = [Int32](repeating: BPETokenizer.padding, count: B * S)
        var mask = [Bool](repeating: false, count: B * S)
        for (row, source) in sources.enumerated() {
            for (t, id) in source.enumerated() {
                ids[row * S + t] = id
                mask[row * S + t] = true
            }
        }
        return (model.encode(ids, mask: mask, batch: B, length: S), mask, S)
    }

    /// The longest output considered for a source of `length` tokens: 2·length + 10, at most
    /// `maximumLength` (fairseq's max_len_a/max_len_b rule).
    func outputLimit(sourceLength length: Int) -> Int { min(maximumLength, 2 * length + 10) }

    // MARK: - Incremental decoding (key/value cache)

    /// Greedy decoding of a batch; a sentence leaves the cache at its `</s>`.
    func cachedGreedy(_ sources: [[Int32]]) -> [[Int32]] {
        let (memory, mask, S) = encode(sources)
        let limit = outputLimit(sourceLength: S)
        let cache = model.makeDecoderCache(memory: memory, memoryMask: mask, sentences: sources.count, sourceLength: S,
                                           capacity: limit)
        var outputs = sources.map { _ in [Int32]() }
        var active = Array(sources.indices)                   // the sentence of each cache row
        var tokens = [Int32](repeating: BPETokenizer.sentenceStart, count: sources.count)
        for _ in 0..<limit where !active.isEmpty {
            let logits = model.decodeStep(tokens, cache: cache)
            var keep: [Int] = []
            for (row, sentence) in active.enumerated() {
                let next = argmax(logits.data + row * logits.columnCount, count: logits.columnCount)
                guard next != BPETokenizer.sentenceEnd else { continue }
                outputs[sentence].append(next)
                keep.append(row)
            }
            tokens = keep.map { outputs[active[$0]].last! }
            active = keep.map { active[$0] }
            cache.select(rows: keep)
        }
        return outputs
    }

    /// Beam search for a batch of sentences: every open hypothesis of every sentence is one row of
    /// the decoder's batch; a finished sentence's rows leave the cache.
    func cachedBeamSearch(_ sources: [[Int32]], beam K: Int, lengthPenalty alpha: Float) -> [[Int32]] {
        let (memory, mask, S) = encode(sources)
        var searches = sources.map { BeamSearch(width: K, lengthPenalty: alpha, limit: outputLimit(sourceLength: $0.count)) }
        let cache = model.makeDecoderCache(memory: memory, memoryMask: mask, sentences: sources.count, sourceLength: S,
                                           capacity: searches.map(\.limit).max()!, maximumRows: sources.count * K)
        var active = Array(sources.indices)   // sentences in row order; sentence s has searches[s].beams.count rows
        while !active.isEmpty {
            let tokens = active.flatMap { searches[$0].beams.map { $0.tokens.last! } }
            let logits = model.decodeStep(tokens, cache: cache)
            var rows: [Int] = [], stillOpen: [Int] = [], first = 0
            for sentence in active {
                let count = searches[sentence].beams.count
                let scores = (first..<(first + count)).map { logSoftmax(logits.data + $0 * logits.columnCount, count: logits.columnCount) }
                let parents = searches[sentence].advance(scores)
                if !searches[sentence].isDone {
                    rows += parents.map { first + $0 }
                    stillOpen.append(sentence)
                }
                first += count
            }
            active = stillOpen
            cache.select(rows: rows)
        }
        return searches.map(\.result)
    }

    // MARK: - Reference decoding: the whole prefix at every step

    /// Log-softmax of the logits at the last position of every row. [B, V]
    func lastLogProbabilities(prefixes: [[Int32]], memory: Tensor, mask: [Bool]) -> [[Float]] {
        let logits = lastLogits(prefixes: prefixes, memory: memory, mask: mask)
        return (0..<prefixes.count).map { logSoftmax(logits.data + $0 * logits.columnCount, count: logits.columnCount) }
    }

    /// The logits at the last position of every row, [B, V], running the decoder over the whole prefixes.
    func lastLogits(prefixes: [[Int32]], memory: Tensor, mask: [Bool]) -> Tensor {
        let B = prefixes.count, T = prefixes[0].count
        let logits = model.decode(prefixes.flatMap { $0 }, targetMask: [Bool](repeating: true, count: B * T), memory: memory,
                                  memoryMask: mask, batch: B, length: T)
        let V = logits.columnCount
        let last = Tensor(uninitialized: [B, V])
        for row in 0..<B { (last.data + row * V).update(from: logits.data + (row * T + T - 1) * V, count: V) }
        return last
    }

    /// Greedy decoding of a batch; stops each sentence at `</s>`.
    func greedy(_ sources: [[Int32]]) -> [[Int32]] {
        let (memory, mask, _) = encode(sources)
        var prefixes = sources.map { _ in [BPETokenizer.sentenceStart] }
        var finished = [Bool](repeating: false, count: sources.count)
        var outputs = sources.map { _ in [Int32]() }
        let limit = outputLimit(sourceLength: sources.map(\.count).max() ?? 1)
        for _ in 0..<limit where finished.contains(false) {
            let logits = lastLogits(prefixes: prefixes, memory: memory, mask: mask)
            for row in prefixes.indices {
                let next = finished[row] ? BPETokenizer.padding : argmax(logits.data + row * logits.columnCount, count: logits.columnCount)
                prefixes[row].append(next)
                if finished[row] { continue }
                if next == BPETokenizer.sentenceEnd { finished[row] = true } else { outputs[row].append(next) }
            }
        }
        return outputs
    }

    /// Beam search for one sentence with `beam` hypotheses decoded as one batch.
    func beamSearch(_ source: [Int32], beam K: Int, lengthPenalty alpha: Float) -> [Int32] {
        let (memory, mask, _) = encode(Array(repeating: source, count: K))
        var search = BeamSearch(width: K, lengthPenalty: alpha, limit: outputLimit(sourceLength: source.count))
        while !search.isDone {
            let prefixes = search.beams.map(\.tokens) + Array(repeating: search.beams[0].tokens, count: K - search.beams.count)
            _ = search.advance(lastLogProbabilities(prefixes: prefixes, memory: memory, mask: mask))
        }
        return search.result
    }
}

/// One sentence's beam search: the open hypotheses, the finished ones, and when to stop.
///
/// Each step extends every open hypothesis by its `width` best tokens, keeps the `width` best
/// open candidates, and sets aside those ending in `</s>` with their score divided by GNMT's
/// length penalty ((5 + length) / 6)^α. It stops after `limit` steps, when no beam is open, when
/// `width` hypotheses have finished, or when the best open one cannot beat the best finished one.
struct BeamSearch {
    typealias Hypothesis = (tokens: [Int32], score: Float)
    let width: Int
    let lengthPenalty: Float
    let limit: Int
    private(set) var beams: [Hypothesis] = [([BPETokenizer.sentenceStart], 0)]
    private(set) var completed: [Hypothesis] = []
    private(set) var steps = 0
    private(set) var isDone = false

    init(width: Int, lengthPenalty: Float, limit: Int) {
        self.width = width
        self.lengthPenalty = lengthPenalty
        self.limit = limit
        isDone = limit <= 0
    }

    func penalty(_ length: Int) -> Float { powf((5 + Float(length)) / 6, lengthPenalty) }

    /// Extends the open beams with their next-token log-probabilities (`scores[i]` for `beams[i]`,
    /// extra rows ignored); returns for each new open beam the index of the beam it extends.
    mutating func advance(_ scores: [[Float]]) -> [Int] {
        precondition(!isDone && scores.count >= beams.count, "BeamSearch.advance: \(scores.count) score rows for \(beams.count) beams")
        var candidates: [(parent: Int, token: Int32, score: Float)] = []
        for (index, hypothesis) in beams.enumerated() {
            let row = scores[index]
            for v in Translator.topIndices(row, count: width) { candidates.append((index, Int32(v), hypothesis.score + row[v])) }
        }
        candidates.sort { $0.score > $1.score }
        var next: [Hypothesis] = [], parents: [Int] = []
        for candidate in candidates {
            let tokens = beams[candidate.parent].tokens + [candidate.token]
            if candidate.token == BPETokenizer.sentenceEnd {
                completed.append((tokens, candidate.score / penalty(tokens.count - 1)))
            } else if next.count < width {
                next.append((tokens, candidate.score))
                parents.append(candidate.parent)
            }
            if next.count == width { break }
        }
        beams = next
        steps += 1
        if let best = completed.map(\.score).max(), let open = beams.first,
           open.score / penalty(limit) < best || completed.count >= width {
            isDone = true
        }
        if beams.isEmpty || steps >= limit { isDone = true }
        return parents
    }

    /// The best finished hypothesis (else the best open one), without `<s>` and `</s>`.
    var result: [Int32] {
        let best = completed.max { $0.score < $1.score } ?? beams.first ?? ([], 0)
        return best.tokens.dropFirst().filter { $0 != BPETokenizer.sentenceEnd }
    }
}

extension Translator {
    /// The indices of the `count` largest entries, largest first; ties go to the lower index (the
    /// order of a stable descending sort). Beam search's candidates per hypothesis.
    public static func topIndices(_ row: [Float], count: Int) -> [Int] {
        var best: [Int] = []
        best.reserveCapacity(count + 1)
        for v in row.indices {
            if best.count == count, let last = best.last, row[v] <= row[last] { continue }
            var position = best.count
            while position > 0 && row[best[position - 1]] < row[v] { position -= 1 }
            best.insert(v, at: position)
            if best.count > count { best.removeLast() }
        }
        return best
    }
}

/// The index of the largest of `count` values (the first, on ties).
func argmax(_ values: UnsafePointer<Float>, count: Int) -> Int32 {
    var best = 0
    for v in 1..<count where values[v] > values[best] { best = v }
    return Int32(best)
}

/// log softmax of `count` logits.
func logSoftmax(_ z: UnsafePointer<Float>, count V: Int) -> [Float] {
    var maximum = -Float.infinity
    for v in 0..<V { maximum = max(maximum, z[v]) }
    var sum: Float = 0
    for v in 0..<V { sum += expf(z[v] - maximum) }
    let logSum = maximum + logf(sum)
    return (0..<V).map { z[$0] - logSum }
}
