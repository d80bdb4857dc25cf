import Foundation
import ReplicaCore
import ReplicaNN

// Legend: V vocabulary size, d embedding width, B windows, k negatives per window.

/// word2vec's CBOW sizes (word2vec.c's defaults in the comments).
public struct CBOWConfig: Codable, Sendable, Equatable {
    public var vocabularySize = 0      // Multi30k English, minimum count 3: 4,565
    public var embedding = 100         // word2vec -size 100
    public init() {}

    enum CodingKeys: String, CodingKey {
        case vocabularySize = "vocab_size", embedding
    }
}

/// Continuous bag of words with negative sampling (Mikolov et al. 2013a, 2013b; word2vec.c).
///
/// For window b: h_b = the mean of the input vectors of its context words [d]; the score of
/// output word o is s = h_b · output[o]; the loss is −log σ(s_centre) − Σ_negatives log σ(−s_neg),
/// summed over windows and divided by the normaliser (the global number of windows). A negative
/// that equals its window's centre is left out, as word2vec.c skips it. Both tables are dense
/// parameters of the arena, so their whole gradients are all-reduced: 2·V·d floats a step.
public final class CBOW {
    public let config: CBOWConfig
    public let arena = ParameterArena()
    /// word2vec's syn0, the word vectors. [V, d]
    public let inputEmbedding: ParameterSlot
    /// word2vec's syn1neg. [V, d]
    public let outputEmbedding: ParameterSlot

    public static let inputEmbeddingName = "input_embedding.weight"
    public static let outputEmbeddingName = "output_embedding.weight"

    public init(_ config: CBOWConfig) {
        precondition(config.vocabularySize >= 2 && config.embedding >= 1, "CBOW: vocabulary \(config.vocabularySize), embedding \(config.embedding)")
        self.config = config
        let shape = [config.vocabularySize, config.embedding]
        inputEmbedding = arena.declare(Self.inputEmbeddingName, shape: shape, decays: false)
        outputEmbedding = arena.declare(Self.outputEmbeddingName, shape: shape, decays: false)
        arena.allocate()
    }

    public var parameterCount: Int { arena.count }

    /// word2vec.c's start: input vectors uniform in ±0.5/d, output vectors zero.
    public func initialize(seed: UInt64) {
        var generator = SeededGenerator(seed: seed, 0x6362_6f77)
        arena.value(inputEmbedding).fillUniform(bound: 0.5 / Float(config.embedding), using: &generator)
        arena.value(outputEmbedding).zero()
    }

    /// What `backward` needs: the windows, the context means and the scores.
    public struct Cache: Sendable {
        public var centres: [Int32]          // [B]
        public var contextOffsets: [Int32]   // [B + 1]
        public var contexts: [Int32]         // [Σ context sizes]
        public var negatives: [Int32]        // [B, k]
        public var negativeCount: Int
        /// Context means h. [B, d]
        public var hidden: [Float]
        /// Column 0 the centre's score, then the negatives'. [B, 1 + k]
        public var scores: [Float]

        public var count: Int { centres.count }

        /// The output word of column j (0: the centre) of window b.
        @inline(__always) func target(_ b: Int, _ j: Int) -> Int32 {
            j == 0 ? centres[b] : negatives[b * negativeCount + j - 1]
        }

        /// Whether column j of window b is a loss term (not a negative equal to its centre).
        @inline(__always) public func counts(_ b: Int, _ j: Int) -> Bool { j == 0 || target(b, j) != centres[b] }
    }

    /// Context means and the scores of each window's centre and negatives.
    public func forward(centres: [Int32], contextOffsets: [Int32], contexts: [Int32], negatives: [Int32]) -> Cache {
        let B = centres.count, d = config.embedding
        precondition(contextOffsets.count == B + 1 && Int(contextOffsets[B]) == contexts.count, "CBOW.forward: \(B) windows, \(contextOffsets.count) offsets, \(contexts.count) context words")
        let k = B > 0 ? negatives.count / B : 0
        precondition(negatives.count == B * k, "CBOW.forward: \(negatives.count) negatives for \(B) windows")
        var hidden = [Float](repeating: 0, count: B * d)      // [B, d]
        var scores = [Float](repeating: 0, count: B * (k + 1))  // [B, 1 + k]
        let input = arena.values.pointer + inputEmbedding.range.lowerBound
        let output = arena.values.pointer + outputEmbedding.range.lowerBound
        let V = config.vocabularySize
        hidden.withUnsafeMutableBufferPointer { hidden in
            scores.withUnsafeMutableBufferPointer { scores in
                for b in 0..<B {
                    let h = hidden.baseAddress! + b * d
                    let lower = Int(contextOffsets[b]), upper = Int(contextOffsets[b + 1])
                    precondition(upper > lower, "CBOW.forward: window \(b) has no context word")
                    for c in lower..<upper {
                        let word = Int(contexts[c])
                        precondition(word >= 0 && word < V, "CBOW.forward: context word \(word) outside the vocabulary of \(V)")
                        let row = input + word * d
                        for j in 0..<d { h[j] += row[j] }
                    }
                    let scale = 1 / Float(upper - lower)
                    for j in 0..<d { h[j] *= scale }
                    for t in 0...k {
                        let word = Int(t == 0 ? centres[b] : negatives[b * k + t - 1])
                        precondition(word >= 0 && word < V, "CBOW.forward: output word \(word) outside the vocabulary of \(V)")
                        scores[b * (k + 1) + t] = dotProduct(h, output + word * d, d)
                    }
                }
            }
        }
        let cache = Cache(centres: centres, contextOffsets: contextOffsets, contexts: contexts, negatives: negatives,
                          negativeCount: k, hidden: hidden, scores: scores)
        return cache
    }

    /// Σ over windows of −log σ(s_centre) − Σ log σ(−s_negative), in Double (not normalised).
    public func loss(_ cache: Cache) -> Double {
        let k = cache.negativeCount
        var sum = 0.0
        for b in 0..<cache.count {
            for j in 0...k where cache.counts(b, j) {
                let s = Double(cache.scores[b * (k + 1) + j])
                sum += softplus(j == 0 ? -s : s)
            }
        }
        return sum
    }

    /// `backward(_:normalizer:outputReady:)` with nothing to start in between.
    public func backward(_ cache: Cache, normalizer: Float) { backward(cache, normalizer: normalizer, outputReady: {}) }

    /// Adds the gradients of loss/normalizer into `arena.gradients`: first the output table's
    /// (then `outputReady()` may start its all-reduce), then the input table's.
    public func backward(_ cache: Cache, normalizer: Float, outputReady: () throws -> Void) rethrows {
        let B = cache.count, d = config.embedding, k = cache.negativeCount
        let output = arena.values.pointer + outputEmbedding.range.lowerBound
        let inputGradient = arena.gradients.pointer + inputEmbedding.range.lowerBound
        let outputGradient = arena.gradients.pointer + outputEmbedding.range.lowerBound
        var hiddenGradient = [Float](repeating: 0, count: B * d)   // [B, d]
        cache.hidden.withUnsafeBufferPointer { hidden in
            hiddenGradient.withUnsafeMutableBufferPointer { dHidden in
                for b in 0..<B {
                    let h = hidden.baseAddress! + b * d, dh = dHidden.baseAddress! + b * d
                    for t in 0...k where cache.counts(b, t) {
                        // d/ds of softplus(−s) is σ(s) − 1; of softplus(s), σ(s).
                        let s = cache.scores[b * (k + 1) + t]
                        let g = (sigmoid(s) - (t == 0 ? 1 : 0)) / normalizer
                        let word = Int(cache.target(b, t))
                        let row = output + word * d, dRow = outputGradient + word * d
                        for j in 0..<d {
                            dh[j] += g * row[j]
                            dRow[j] += g * h[j]
                        }
                    }
                }
            }
        }
        try outputReady()
        hiddenGradient.withUnsafeBufferPointer { dHidden in
            for b in 0..<B {
                let dh = dHidden.baseAddress! + b * d
                let lower = Int(cache.contextOffsets[b]), upper = Int(cache.contextOffsets[b + 1])
                let scale = 1 / Float(upper - lower)
                for c in lower..<upper {
                    let dRow = inputGradient + Int(cache.contexts[c]) * d
                    for j in 0..<d { dRow[j] += scale * dh[j] }
                }
            }
        }
    }
}

/// log(1 + eˣ) without overflow.
@inline(__always) func softplus(_ x: Double) -> Double { max(x, 0) + log1p(exp(-abs(x))) }

/// 1 / (1 + e⁻ˣ) without overflow.
@inline(__always) func sigmoid(_ x: Float) -> Float {
    x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
}

/// Σ a[i]·b[i] over n floats, 8 lanes at a time.
@inline(__always) func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var lanes = SIMD8<Float>()
    var i = 0
    while i + 8 <= n {
        let x = UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
        let y = UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        lanes += x * y
        i += 8
    }
    var sum = lanes.sum()
    while i < n { sum += a[i] * b[i]; i += 1 }
    return sum
}
