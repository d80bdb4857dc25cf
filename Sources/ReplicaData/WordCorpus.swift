import Foundation
import ReplicaCore

// Word-level text for word2vec (Mikolov et al. 2013; the reference is word2vec.c): lower-cased
// word tokens, a vocabulary with counts and a minimum count, frequent-word subsampling, the
// unigram^0.75 table that negatives are drawn from, and CBOW windows with word2vec's random
// window shrinking. Legend: V vocabulary size, B windows, k negatives per window.

/// Lower-cased word tokens: maximal runs of letters and digits (letters only when
/// `includingDigits` is false); an apostrophe between two such characters stays inside the word
/// ("don't", "o'er"). Everything else separates words. word2vec's corpus keeps digits; the
/// temperature study, counting real English words, does not.
public enum WordTokenizer {
    public static func words(_ line: String, includingDigits: Bool = true) -> [String] {
        var result: [String] = []
        var current = ""
        var pendingApostrophe = false
        func isWordCharacter(_ c: Character) -> Bool { c.isLetter || (includingDigits && c.isNumber) }
        for character in line.lowercased() {
            if isWordCharacter(character) {
                if pendingApostrophe { current.append("'") }
                pendingApostrophe = false
                current.append(character)
            } else if (character == "'" || character == "’") && !current.isEmpty && !pendingApostrophe {
                pendingApostrophe = true
            } else {
                if !current.isEmpty { result.append(current) }
                current = ""
                pendingApostrophe = false
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }
}

/// The words seen at least `minimumCount` times, most frequent first, with their counts.
public struct WordVocabulary: Sendable, Equatable {
    /// Words in id order: count descending, ties in code-point order. [V]
    public let words: [String]
    /// Each word's count in the training text. [V]
    public let counts: [Int]
    /// Σ counts: word2vec's `train_words`, the length of the text after out-of-vocabulary words are dropped.
    public let totalCount: Int
    let index: [String: Int32]

    public var count: Int { words.count }

    /// Counts every word of `sentences` and keeps those seen at least `minimumCount` times.
    public init(sentences: [[String]], minimumCount: Int) {
        var tally: [String: Int] = [:]
        for sentence in sentences { for word in sentence { tally[word, default: 0] += 1 } }
        let kept = tally.filter { $0.value >= minimumCount }
            .sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) }
        self.init(words: kept.map(\.key), counts: kept.map(\.value))
    }

    /// A vocabulary as saved (a checkpoint's "vocab" and "counts").
    public init(words: [String], counts: [Int]) {
        precondition(words.count == counts.count, "WordVocabulary: \(words.count) words but \(counts.count) counts")
        self.words = words
        self.counts = counts
        totalCount = counts.reduce(0, +)
        index = Dictionary(words.enumerated().map { ($0.element, Int32($0.offset)) }, uniquingKeysWith: { first, _ in first })
    }

    public func id(of word: String) -> Int32? { index[word] }

    /// The ids of `sentence`'s words, out-of-vocabulary words dropped (word2vec drops them before
    /// windows are formed, so a window reaches past them).
    public func encode(_ sentence: [String]) -> [Int32] { sentence.compactMap { index[$0] } }

    /// word2vec's probability of keeping an occurrence of each word when subsampling frequent words
    /// with threshold t: min(1, (√(c / (t·N)) + 1) · t·N / c) for a word seen c times among N
    /// (Mikolov et al. 2013b give 1 − √(t/f) for the discard probability; word2vec.c uses this
    /// form). t = 0 keeps everything. [V]
    public func keepProbabilities(threshold t: Double) -> [Float] {
        guard t > 0 else { return [Float](repeating: 1, count: count) }
        let scaled = t * Double(totalCount)
        return counts.map { c in Float(min(1, ((Double(c) / scaled).squareRoot() + 1) * scaled / Double(c))) }
    }
}

/// word2vec's table for drawing negatives: word w fills a share c_w^0.75 / Σ c^0.75 of its entries,
/// so a uniform entry is a draw from the unigram distribution raised to 3/4.
public struct UnigramTable: Sendable {
    /// Word ids, each repeated in proportion to count^power. [size]
    public let entries: [Int32]

    /// word2vec.c uses 1e8 entries for vocabularies of millions; 1e6 resolves 1e-6 here.
    public static let defaultSize = 1_000_000

    /// Word w gets the entries from round(S·P(<w)) up to round(S·P(≤w)), P the normalised count^power.
    public init(counts: [Int], power: Double = 0.75, size: Int = defaultSize) {
        precondition(!counts.isEmpty && size > 0, "UnigramTable: needs at least one word and one entry")
        let weights = counts.map { pow(Double($0), power) }
        let total = weights.reduce(0, +)
        var entries = [Int32](repeating: Int32(counts.count - 1), count: size)
        var cumulative = 0.0
        var start = 0
        for (word, weight) in weights.enumerated() {
            cumulative += weight
            let end = word == counts.count - 1 ? size : min(size, Int((cumulative / total * Double(size)).rounded()))
            if end > start { for i in start..<end { entries[i] = Int32(word) } }
            start = max(start, end)
        }
        self.entries = entries
    }

    /// One negative: a uniform entry of the table.
    public func sample(using generator: inout SeededGenerator) -> Int32 {
        entries[Int(generator.next() % UInt64(entries.count))]
    }
}

/// Sentences of word ids laid end to end; windows never cross a sentence's end.
public struct WordStream: Sendable {
    /// Every sentence's ids, concatenated. [N]
    public let tokens: [Int32]
    /// Sentence s is tokens[offsets[s] ..< offsets[s + 1]]. [S + 1]
    public let offsets: [Int]
    /// The sentence of each token. [N]
    let sentenceOfToken: [Int32]

    public init(sentences: [[Int32]]) {
        var tokens: [Int32] = [], offsets = [0], sentenceOfToken: [Int32] = []
        for sentence in sentences where !sentence.isEmpty {
            sentenceOfToken += [Int32](repeating: Int32(offsets.count - 1), count: sentence.count)
            tokens += sentence
            offsets.append(tokens.count)
        }
        self.tokens = tokens
        self.offsets = offsets
        self.sentenceOfToken = sentenceOfToken
    }

    public var count: Int { tokens.count }

    /// The positions of the sentence that holds position `position`.
    public func sentence(containing position: Int) -> Range<Int> {
        let s = Int(sentenceOfToken[position])
        return offsets[s]..<offsets[s + 1]
    }

    /// The context of the centre at `position`: up to `reach` kept words on each side, walking
    /// outwards within the sentence and skipping words that `isKept` rejects (word2vec subsamples
    /// the sentence first, so its window spans `reach` surviving words). Left words first, nearest
    /// last; then right words, nearest first.
    public func context(at position: Int, reach: Int, isKept: (Int) -> Bool) -> [Int32] {
        let sentence = sentence(containing: position)
        var left: [Int32] = [], right: [Int32] = []
        var i = position - 1
        while i >= sentence.lowerBound && left.count < reach {
            if isKept(i) { left.append(tokens[i]) }
            i -= 1
        }
        i = position + 1
        while i < sentence.upperBound && right.count < reach {
            if isKept(i) { right.append(tokens[i]) }
            i += 1
        }
        return left.reversed() + right
    }
}

/// B CBOW training windows, flat: centre words, their contexts and k negatives each.
public struct CBOWWindows: Sendable, Equatable {
    /// The word to predict. [B]
    public var centres: [Int32] = []
    /// Window b's context is contexts[contextOffsets[b] ..< contextOffsets[b + 1]]. [B + 1]
    public var contextOffsets: [Int32] = [0]
    /// Context words. [Σ context sizes]
    public var contexts: [Int32] = []
    /// k negatives per window, from the unigram^0.75 table; one equal to its centre is skipped by the loss
    /// (as word2vec.c skips it). [B, k]
    public var negatives: [Int32] = []

    public init() {}
    public var count: Int { centres.count }
}

/// Draws CBOW windows as word2vec forms them, one independent window at a time.
///
/// A window: a position drawn uniformly from the text, accepted with its word's keep probability
/// (else drawn again) — so centres follow the subsampled distribution; a reach b uniform in
/// 1...window (word2vec's random shrinking); the context of up to b surviving words each side,
/// each neighbour surviving with its own keep probability; a centre whose context is empty is
/// drawn again (word2vec skips it); then k negatives. Each window's marginal law is that of
/// word2vec's pass over a subsampled sentence.
public struct CBOWWindowSampler: Sendable {
    public let stream: WordStream
    /// Keep probability per word. [V]
    public let keep: [Float]
    public let table: UnigramTable
    public let window: Int
    public let negativeCount: Int

    public init(stream: WordStream, keep: [Float], table: UnigramTable, window: Int, negativeCount: Int) {
        precondition(window >= 1 && negativeCount >= 0 && stream.count >= 2, "CBOWWindowSampler: window \(window), negatives \(negativeCount), \(stream.count) tokens")
        self.stream = stream
        self.keep = keep
        self.table = table
        self.window = window
        self.negativeCount = negativeCount
    }

    /// Expected number of centre words a pass over the subsampled text holds: Σ keep(word).
    public var expectedKeptTokens: Double { stream.tokens.reduce(0.0) { $0 + Double(keep[Int($1)]) } }

    /// `count` windows drawn with `generator`.
    public func windows(count: Int, using generator: inout SeededGenerator) -> CBOWWindows {
        var result = CBOWWindows()
        result.centres.reserveCapacity(count)
        result.negatives.reserveCapacity(count * negativeCount)
        var attempts = 0
        while result.count < count {
            attempts += 1
            precondition(attempts < 1000 * (count + 10), "CBOWWindowSampler: no window with a context after \(attempts) draws; the text has no sentence of two kept words")
            let position = Int(generator.next() % UInt64(stream.count))
            let centre = stream.tokens[position]
            guard generator.nextUniform() < keep[Int(centre)] else { continue }
            let reach = 1 + Int(generator.next() % UInt64(window))
            let context = stream.context(at: position, reach: reach) { i in
                generator.nextUniform() < keep[Int(stream.tokens[i])]
            }
            guard !context.isEmpty else { continue }
            result.centres.append(centre)
            result.contexts += context
            result.contextOffsets.append(Int32(result.contexts.count))
            for _ in 0..<negativeCount { result.negatives.append(table.sample(using: &generator)) }
        }
        return result
    }
}

/// Sentences of lower-cased words for word2vec: a training and a held-out split.
public struct WordCorpus: Sendable {
    public var train: [[String]]
    public var heldOut: [[String]]
    /// Where they came from, for messages ("Multi30k English", a path).
    public var description: String

    public init(train: [[String]], heldOut: [[String]], description: String) {
        self.train = train
        self.heldOut = heldOut
        self.description = description
    }

    /// The English side of the embedded Multi30k: 29,000 training captions; its 1,014 validation
    /// captions are held out.
    public static func multi30kEnglish() throws -> WordCorpus {
        let data = try TranslationData.multi30k()
        return WordCorpus(train: data.train.target.map { WordTokenizer.words($0) },
                          heldOut: data.validation.target.map { WordTokenizer.words($0) }, description: "Multi30k English")
    }

    /// The embedded Tiny Shakespeare, one verse line a sentence; its last 10% of lines are held out.
    public static func tinyShakespeare() throws -> WordCorpus {
        try split(lines: try TextCorpus.tinyShakespeare(), description: "Tiny Shakespeare")
    }

    /// The UTF-8 text file `path`, one sentence a line (a window never crosses a line); its last
    /// 10% of non-empty lines are held out. A missing, empty or non-UTF-8 file, or one with fewer
    /// than 10 lines of words, is a UserError naming it.
    public static func load(path: String) throws -> WordCorpus {
        try split(lines: try TextCorpus.load(path), description: path)
    }

    static func split(lines text: String, description: String) throws -> WordCorpus {
        let lines = text.split(whereSeparator: \.isNewline).map { WordTokenizer.words(String($0)) }.filter { !$0.isEmpty }
        guard lines.count >= 10 else {
            throw UserError("\(description): has \(lines.count) line(s) with words; at least 10 are needed (the last 10% are held out), one sentence a line")
        }
        let heldOutCount = max(1, lines.count / 10)
        return WordCorpus(train: Array(lines.dropLast(heldOutCount)), heldOut: Array(lines.suffix(heldOutCount)),
                          description: description)
    }
}
