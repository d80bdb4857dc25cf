import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaNN

/// Greedy and beam-search decoding with an encoder–decoder Transformer (`replica translate`).
///
/// Each decoding step runs the decoder over the whole prefix (no key/value cache): simple, and
/// for caption-length sentences (≤ 40 subwords) cheap next to training.
public struct Translator {
    public let model: Seq2SeqTransformer
    public let tokenizer: BPETokenizer
    public var maximumLength = 100

    public init(model: Seq2SeqTransformer, tokenizer: BPETokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Translates `lines`, `batchSize` sentences at a time; `beam` 1 is greedy.
    /// Beam scores are log-probabilities divided by GNMT's length penalty ((5 + length) / 6)^α.
    public func translate(_ lines: [String], beam: Int = 1, lengthPenalty: Float = 0.6, batchSize: Int = 64) -> [String] {
        model.mode = .evaluation
        var results: [String] = []
        var start = 0
        while start < lines.count {
            let chunk = Array(lines[start..<min(start + batchSize, lines.count)])
            let sources = chunk.map { Array(tokenizer.encode($0).prefix(maximumLength - 1)) + [BPETokenizer.sentenceEnd] }
            let outputs = beam <= 1 ? greedy(sources) : sources.map { beamSearch($0, beam: beam, lengthPenalty: lengthPenalty) }
            results += outputs.map { tokenizer.decode($0) }
            start += batchSize
        }
        return results
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

    /// Log-softmax of the logits at position `t` of every row. [B, V]
    func lastLogProbabilities(prefixes: [[Int32]], memory: Tensor, mask: [Bool]) -> [[Float]] {
        let B = prefixes.count, T = prefixes[0].count
        let input = prefixes.flatMap { $0 }
        let logits = model.decode(input, targetMask: [Bool](repeating: true, count: B * T), memory: memory,
                                  memoryMask: mask, batch: B, length: T)
        let V = logits.columnCount
        return (0..<B).map { row in
            let z = logits.data + (row * T + T - 1) * V
            var maximum = -Float.infinity
            for v in 0..<V { maximum = max(maximum, z[v]) }
            var sum: Float = 0
            for v in 0..<V { sum += expf(z[v] - maximum) }
            let logSum = maximum + logf(sum)
            return (0..<V).map { z[$0] - logSum }
        }
    }

    /// The longest output considered for a source of `length` tokens: 2·length + 10, at most
    /// `maximumLength` (fairseq's max_len_a/max_len_b rule).
    func outputLimit(sourceLength length: Int) -> Int { min(maximumLength, 2 * length + 10) }

    /// Greedy decoding of a batch; stops each sentence at `</s>`.
    func greedy(_ sources: [[Int32]]) -> [[Int32]] {
        let (memory, mask, _) = encode(sources)
        var prefixes = sources.map { _ in [BPETokenizer.sentenceStart] }
        var finished = [Bool](repeating: false, count: sources.count)
        var outputs = sources.map { _ in [Int32]() }
        let limit = outputLimit(sourceLength: sources.map(\.count).max() ?? 1)
        for _ in 0..<limit where finished.contains(false) {
            let scores = lastLogProbabilities(prefixes: prefixes, memory: memory, mask: mask)
            for row in prefixes.indices {
                let next = finished[row] ? BPETokenizer.padding : Int32(scores[row].indices.max { scores[row][$0] < scores[row][$1] }!)
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
        var beams: [(tokens: [Int32], score: Float)] = [([BPETokenizer.sentenceStart], 0)]
        var completed: [(tokens: [Int32], score: Float)] = []
        func penalty(_ length: Int) -> Float { powf((5 + Float(length)) / 6, alpha) }
        let limit = outputLimit(sourceLength: source.count)
        for _ in 0..<limit {
            let prefixes = beams.map(\.tokens) + Array(repeating: beams[0].tokens, count: K - beams.count)
            let scores = lastLogProbabilities(prefixes: prefixes, memory: memory, mask: mask)
            var candidates: [(tokens: [Int32], score: Float)] = []
            for (index, hypothesis) in beams.enumerated() {
                let row = scores[index]
                let best = row.indices.sorted { row[$0] > row[$1] }.prefix(K)
                for v in best { candidates.append((hypothesis.tokens + [Int32(v)], hypothesis.score + row[v])) }
            }
            candidates.sort { $0.score > $1.score }
            beams = []
            for candidate in candidates {
                if candidate.tokens.last == BPETokenizer.sentenceEnd {
                    completed.append((candidate.tokens, candidate.score / penalty(candidate.tokens.count - 1)))
                } else if beams.count < K {
                    beams.append(candidate)
                }
                if beams.count == K { break }
            }
            // Stop once no open hypothesis can beat the best finished one.
            if let best = completed.map(\.score).max(), let open = beams.first,
               open.score / penalty(limit) < best || completed.count >= K {
                break
            }
            if beams.isEmpty { break }
        }
        let best = completed.max { $0.score < $1.score } ?? beams.first.map { ($0.tokens, $0.score) } ?? ([], 0)
        return best.tokens.dropFirst().filter { $0 != BPETokenizer.sentenceEnd }
    }
}
