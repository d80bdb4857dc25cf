import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaTrain

/// Entropy in nats of softmax(logits / temperature), computed in Double.
public func softmaxEntropy(_ logits: UnsafeBufferPointer<Float>, temperature: Float) -> Double {
    precondition(temperature > 0 && !logits.isEmpty, "softmax entropy needs a positive temperature and logits")
    let t = Double(temperature)
    let maximum = Double(logits.max()!) / t
    var sum = 0.0, weighted = 0.0
    for logit in logits {
        let z = Double(logit) / t - maximum
        let e = exp(z)
        sum += e
        weighted += e * z
    }
    // H = log Σ e^z − Σ p·z with p = e^z / Σ e^z.
    return log(sum) - weighted / sum
}

/// distinct-n (Li et al. 2016): distinct n-grams ÷ n-grams, pooled over `sequences`; an n-gram never
/// spans two sequences. 0 when there are no n-grams.
public func distinctNGramRatio<T: Hashable>(_ sequences: [[T]], n: Int) -> Double {
    precondition(n >= 1, "distinct-n needs n ≥ 1")
    var seen = Set<[T]>()
    var total = 0
    for sequence in sequences where sequence.count >= n {
        for start in 0...(sequence.count - n) {
            seen.insert(Array(sequence[start..<(start + n)]))
            total += 1
        }
    }
    return total == 0 ? 0 : Double(seen.count) / Double(total)
}

extension TextGenerator {
    /// `generate`'s sampling, step for step (same draws, same text), also returning the entropy of
    /// each step's sampling distribution softmax(logits / temperature) in nats.
    public func generateMeasuringEntropy(prompt: String, count: Int, temperature: Float, seed: UInt64) throws
        -> (text: String, entropies: [Double]) {
        var tokens = try vocabulary.encode(prompt.isEmpty ? "\n" : prompt)
        var generator = SeededGenerator(seed: seed, 0x6765_6e)
        let V = vocabulary.count
        var output = ""
        var entropies: [Double] = []
        for _ in 0..<count {
            let context = Array(tokens.suffix(model.config.blockSize))
            let logits = model.forward(context, batch: 1, length: context.count)
            let last = UnsafeBufferPointer(start: logits.data + (context.count - 1) * V, count: V)
            entropies.append(temperature > 0 ? softmaxEntropy(last, temperature: temperature) : 0)
            let next = TextGenerator.sample(last, temperature: temperature, topK: nil, using: &generator)
            tokens.append(Int32(next))
            output.unicodeScalars.append(vocabulary.characters[next])
        }
        return (output, entropies)
    }
}

/// Text sampled from one charlm checkpoint at a range of temperatures: how uncertain each step's
/// distribution is, how repetitive the text is, and how many of its words are real (seen in training).
public struct TemperatureStudy {
    public var temperatures: [Float] = (1...10).map { Float($0) / 5 }   // 0.2, 0.4, ..., 2.0
    /// Samples per temperature; sample s uses seed + s at every temperature.
    public var samples = 4
    public var characters = 500
    public var prompt = "\n"
    public var seed: UInt64 = 1337
    public init() {}

    public struct Row: Sendable {
        public var temperature: Float
        /// Mean over generated characters of the sampling distribution's entropy, nats.
        public var meanEntropy: Double
        /// Word distinct-1, -2, -3, pooled over the samples.
        public var distinct: [Double]
        /// Fraction of generated words (tokens) that occur in the training text.
        public var knownWordFraction: Double
        public var wordCount: Int
        /// The start of the first sample (from its first non-blank character), newlines shown as " / ".
        public var sampleLine: String
        public var seconds: Double
    }

    /// One row per temperature. `vocabulary`: the words of the training text.
    public func run(generator: TextGenerator, vocabulary: Set<String>, progress: (String) -> Void = { _ in }) throws -> [Row] {
        try temperatures.map { temperature in
            let started = Date()
            var texts: [String] = []
            var entropies: [Double] = []
            for s in 0..<samples {
                let (text, steps) = try generator.generateMeasuringEntropy(prompt: prompt, count: characters, temperature: temperature,
                                                                           seed: seed &+ UInt64(s))
                texts.append(text)
                entropies += steps
            }
            let sampleWords = texts.map { WordTokenizer.words($0, includingDigits: false) }
            let allWords = sampleWords.flatMap { $0 }
            let known = allWords.filter { vocabulary.contains($0) }.count
            let first = (texts.first ?? "").drop { $0.isWhitespace }
            let line = String(first.replacingOccurrences(of: "\n", with: " / ").prefix(72))
            let row = Row(temperature: temperature, meanEntropy: arithmeticMean(entropies),
                          distinct: (1...3).map { distinctNGramRatio(sampleWords, n: $0) },
                          knownWordFraction: allWords.isEmpty ? 0 : Double(known) / Double(allWords.count),
                          wordCount: allWords.count, sampleLine: line, seconds: Date().timeIntervalSince(started))
            progress(String(format: "τ %.1f: entropy %.3f nats, distinct-1/2/3 %.3f/%.3f/%.3f, %.1f%% known words (%.1f s)",
                            temperature, row.meanEntropy, row.distinct[0], row.distinct[1], row.distinct[2],
                            100 * row.knownWordFraction, row.seconds))
            return row
        }
    }
}
