import Foundation
import ReplicaCore

/// A byte-pair-encoding subword vocabulary (Sennrich, Haddow, Birch, "Neural Machine Translation of
/// Rare Words with Subword Units", ACL 2016), learned from training text.
///
/// **Pre-tokenisation.** A line (lowercased first if `lowercase`) is split on whitespace into
/// words; inside a word, every punctuation mark or symbol (Unicode categories P* and S*) becomes a
/// piece of its own, and the runs between them are pieces too. The first piece of each word
/// carries the word-boundary marker "▁" (U+2581) in front, as SentencePiece writes it; the other
/// pieces do not:
///
/// ```
/// "Two young, White males (aged 20-ish)."
///   -> ▁Two ▁young , ▁White ▁males ▁( aged ▁20 - ish ) .
/// ```
///
/// Decoding concatenates the pieces and turns each "▁" into a space (the first one dropped), so it
/// restores the text up to whitespace normalisation: runs of whitespace become one space, leading
/// and trailing whitespace goes. A "▁" in the input text itself counts as whitespace.
///
/// **Learning.** Each piece starts as its characters (Unicode scalars; "▁" is a character like any
/// other). The most frequent adjacent pair of symbols, counted over piece types weighted by their
/// frequency, is merged into a new symbol, repeatedly, until the vocabulary (specials, characters
/// and merged symbols) reaches `vocabularySize` or no pair occurs twice. Merges never cross a
/// piece boundary. Ties go to the pair whose left symbol, then right symbol, has the smaller id
/// (characters are numbered in code-point order, merged symbols after them in creation order).
///
/// **Encoding** applies the merges to each piece greedily in learned order (the adjacent pair with
/// the earliest merge first), caching each piece's result. A character never seen in training
/// becomes `<unk>`.
///
/// Ids: 0 `<pad>`, 1 `<s>`, 2 `</s>`, 3 `<unk>`, 4 `<mask>`, then the characters in code-point
/// order, then the merged symbols in the order they were learned.
public struct BPETokenizer: @unchecked Sendable {
    // MARK: Special tokens

    public static let padding: Int32 = 0
    public static let sentenceStart: Int32 = 1
    public static let sentenceEnd: Int32 = 2
    public static let unknown: Int32 = 3
    public static let mask: Int32 = 4
    /// The special tokens' text, in id order.
    public static let specialTokens = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
    /// Marks the first piece of a word: "▁" (U+2581, as in SentencePiece).
    public static let wordBoundary: Unicode.Scalar = "\u{2581}"

    /// A learned pair is merged only if it occurs at least this often (subword-nmt's default).
    public static let minimumPairCount = 2

    // MARK: State

    /// Every token's text in id order: the specials, the characters, the merged symbols.
    public let symbols: [String]
    /// The merges in learned order, as pairs of token ids.
    public let merges: [(left: Int32, right: Int32)]
    /// Whether lines are lowercased before encoding (and were when learning).
    public let lowercase: Bool

    /// Id of each single-character token.
    let characterIds: [Unicode.Scalar: Int32]
    /// For each merged pair (left << 32 | right): its rank in `merges` and the id it becomes.
    let mergeRanks: [UInt64: (rank: Int32, result: Int32)]
    private let cache = PieceCache()

    /// The vocabulary size V, specials included.
    public var count: Int { symbols.count }

    /// The merges as text, in learned order.
    public var mergedPairs: [(left: String, right: String)] {
        merges.map { (symbols[Int($0.left)], symbols[Int($0.right)]) }
    }

    init(symbols: [String], merges: [(left: Int32, right: Int32)], lowercase: Bool) {
        precondition(Array(symbols.prefix(Self.specialTokens.count)) == Self.specialTokens,
                     "BPETokenizer: the first symbols must be the specials \(Self.specialTokens)")
        self.symbols = symbols
        self.merges = merges
        self.lowercase = lowercase
        var characterIds: [Unicode.Scalar: Int32] = [:]
        for (id, symbol) in symbols.enumerated().dropFirst(Self.specialTokens.count) {
            let scalars = symbol.unicodeScalars
            if scalars.count == 1 { characterIds[scalars.first!] = Int32(id) }
        }
        self.characterIds = characterIds
        var ids: [String: Int32] = [:]
        for (id, symbol) in symbols.enumerated() { ids[symbol] = Int32(id) }
        var mergeRanks: [UInt64: (rank: Int32, result: Int32)] = [:]
        for (rank, merge) in merges.enumerated() {
            let key = pairKey(merge.left, merge.right)
            if mergeRanks[key] != nil { continue }   // a repeated merge never applies twice
            guard let result = ids[symbols[Int(merge.left)] + symbols[Int(merge.right)]] else {
                preconditionFailure("BPETokenizer: merge \(rank) makes a symbol that is not in the vocabulary")
            }
            mergeRanks[key] = (Int32(rank), result)
        }
        self.mergeRanks = mergeRanks
    }

    // MARK: Encoding and decoding

    /// The token ids of `line` (no `<s>` or `</s>` added).
    public func encode(_ line: String) -> [Int32] {
        var ids: [Int32] = []
        for piece in Self.pieces(of: lowercase ? line.lowercased() : line) {
            if let cached = cache.lookUp(piece) {
                ids.append(contentsOf: cached)
            } else {
                let encoded = encodePiece(piece)
                cache.store(encoded, for: piece)
                ids.append(contentsOf: encoded)
            }
        }
        return ids
    }

    /// The text of `ids`, skipping the special tokens (`<unk>` too).
    ///
    /// Each "▁" becomes one space between words: none at the start or end, never two in a row
    /// (a skipped `<unk>` between two word starts leaves one space).
    public func decode(_ ids: [Int32]) -> String {
        var text = String.UnicodeScalarView()
        var spacePending = false
        for id in ids {
            precondition(id >= 0 && Int(id) < symbols.count, "BPETokenizer.decode: id \(id) is outside the vocabulary of \(symbols.count)")
            if id < Int32(Self.specialTokens.count) { continue }
            for scalar in symbols[Int(id)].unicodeScalars {
                if scalar == Self.wordBoundary {
                    spacePending = !text.isEmpty
                } else {
                    if spacePending { text.append(" ") }
                    spacePending = false
                    text.append(scalar)
                }
            }
        }
        return String(text)
    }

    /// One piece's ids: its characters, then the merges with the earliest rank first.
    func encodePiece(_ piece: String) -> [Int32] {
        var symbols = piece.unicodeScalars.map { characterIds[$0] ?? Self.unknown }
        while symbols.count > 1 {
            var best: (rank: Int32, result: Int32)? = nil
            var bestPair: UInt64 = 0
            for i in 0..<(symbols.count - 1) {
                let key = pairKey(symbols[i], symbols[i + 1])
                if let merge = mergeRanks[key], best == nil || merge.rank < best!.rank {
                    best = merge
                    bestPair = key
                }
            }
            guard let merge = best else { break }
            let (left, right) = unpackPair(bestPair)
            var merged: [Int32] = []
            merged.reserveCapacity(symbols.count)
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == left && symbols[i + 1] == right {
                    merged.append(merge.result)
                    i += 2
                } else {
                    merged.append(symbols[i])
                    i += 1
                }
            }
            symbols = merged
        }
        return symbols
    }

    // MARK: Pre-tokenisation

    /// The pieces of `line` (see the type's documentation): word-initial pieces start with "▁".
    public static func pieces(of line: String) -> [String] {
        var pieces: [String] = []
        var current = String.UnicodeScalarView()
        var atWordStart = true
        func finishPiece() {
            if !current.isEmpty {
                pieces.append(String(current))
                current = String.UnicodeScalarView()
            }
        }
        for scalar in line.unicodeScalars {
            if scalar.properties.isWhitespace || scalar == wordBoundary {
                finishPiece()
                atWordStart = true
            } else if isPunctuationOrSymbol(scalar) {
                finishPiece()
                var piece = String.UnicodeScalarView()
                if atWordStart { piece.append(wordBoundary) }
                piece.append(scalar)
                pieces.append(String(piece))
                atWordStart = false
            } else {
                if atWordStart { current.append(wordBoundary) }
                current.append(scalar)
                atWordStart = false
            }
        }
        finishPiece()
        return pieces
    }

    static func isPunctuationOrSymbol(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation,
             .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            return true
        default:
            return false
        }
    }

    // MARK: Learning

    /// Learns merges from `lines` until the vocabulary has `vocabularySize` tokens (specials
    /// included) or no pair occurs twice. Joint German+English on Multi30k: 8000.
    ///
    /// If the characters alone would exceed the size, the most frequent ones are kept (and "▁").
    /// Pair counts are kept in a table updated incrementally: a merge revisits only the piece
    /// types that contain its pair, and a heap with lazy deletion finds the next best pair.
    public static func learn(from lines: [String], vocabularySize: Int, lowercase: Bool = false) -> BPETokenizer {
        precondition(vocabularySize > specialTokens.count,
                     "BPETokenizer.learn: vocabularySize \(vocabularySize) leaves no room after the \(specialTokens.count) special tokens")
        // Piece types with their counts, in a fixed order (dictionary order varies between runs).
        var pieceCounts: [String: Int] = [:]
        for line in lines {
            for piece in pieces(of: lowercase ? line.lowercased() : line) { pieceCounts[piece, default: 0] += 1 }
        }
        let pieceTypes = pieceCounts.keys.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        let typeCounts = pieceTypes.map { pieceCounts[$0]! }

        // Characters: all of them in code-point order, or the most frequent if they do not fit.
        var characterCounts: [Unicode.Scalar: Int] = [:]
        for (piece, count) in zip(pieceTypes, typeCounts) {
            for scalar in piece.unicodeScalars { characterCounts[scalar, default: 0] += count }
        }
        var characters = characterCounts.keys.sorted { $0.value < $1.value }
        let characterRoom = vocabularySize - specialTokens.count
        if characters.count > characterRoom {
            let byFrequency = characters.sorted {
                ($0 == wordBoundary ? 1 : 0, characterCounts[$0]!) > ($1 == wordBoundary ? 1 : 0, characterCounts[$1]!)
            }
            characters = byFrequency.prefix(characterRoom).sorted { $0.value < $1.value }
        }
        var symbols = specialTokens + characters.map { String($0) }
        var symbolIds: [String: Int32] = [:]
        for (id, symbol) in symbols.enumerated() { symbolIds[symbol] = Int32(id) }
        var characterIds: [Unicode.Scalar: Int32] = [:]
        for (offset, character) in characters.enumerated() { characterIds[character] = Int32(specialTokens.count + offset) }

        var words: [[Int32]] = pieceTypes.map { piece in piece.unicodeScalars.map { characterIds[$0] ?? unknown } }
        var pairCounts: [UInt64: Int] = [:]
        var piecesWithPair: [UInt64: [Int32]] = [:]   // piece types that contain the pair (may list stale ones)
        for (wordIndex, word) in words.enumerated() where word.count > 1 {
            for i in 0..<(word.count - 1) where word[i] != unknown && word[i + 1] != unknown {
                let key = pairKey(word[i], word[i + 1])
                pairCounts[key, default: 0] += typeCounts[wordIndex]
                if piecesWithPair[key]?.last != Int32(wordIndex) { piecesWithPair[key, default: []].append(Int32(wordIndex)) }
            }
        }
        var heap = PairHeap(pairCounts.map { PairHeap.Entry(count: $0.value, pair: $0.key) })

        var merges: [(left: Int32, right: Int32)] = []
        var visited = [Int](repeating: -1, count: words.count)   // merge number that last visited a piece type
        var changed: Set<UInt64> = []
        while symbols.count < vocabularySize {
            // The best pair whose heap entry is current (entries of changed counts are stale).
            var best: PairHeap.Entry? = nil
            while let entry = heap.pop() {
                if pairCounts[entry.pair] == entry.count { best = entry; break }
            }
            guard let chosen = best, chosen.count >= minimumPairCount else { break }
            let (left, right) = unpackPair(chosen.pair)
            let mergedText = symbols[Int(left)] + symbols[Int(right)]
            let result: Int32
            if let existing = symbolIds[mergedText] {
                result = existing   // the same text reached by another split: one token
            } else {
                result = Int32(symbols.count)
                symbols.append(mergedText)
                symbolIds[mergedText] = result
            }
            merges.append((left, right))

            changed.removeAll(keepingCapacity: true)
            let mergeNumber = merges.count
            for wordIndex in piecesWithPair[chosen.pair] ?? [] {
                let w = Int(wordIndex)
                if visited[w] == mergeNumber { continue }
                visited[w] = mergeNumber
                let word = words[w]
                var contains = false
                for i in 0..<(word.count - 1) where word[i] == left && word[i + 1] == right { contains = true; break }
                if !contains { continue }
                let count = typeCounts[w]
                for i in 0..<(word.count - 1) where word[i] != unknown && word[i + 1] != unknown {
                    let key = pairKey(word[i], word[i + 1])
                    pairCounts[key]! -= count
                    changed.insert(key)
                }
                var merged: [Int32] = []
                merged.reserveCapacity(word.count)
                var i = 0
                while i < word.count {
                    if i + 1 < word.count && word[i] == left && word[i + 1] == right {
                        merged.append(result)
                        i += 2
                    } else {
                        merged.append(word[i])
                        i += 1
                    }
                }
                for i in 0..<(merged.count - 1) where merged[i] != unknown && merged[i + 1] != unknown {
                    let key = pairKey(merged[i], merged[i + 1])
                    pairCounts[key, default: 0] += count
                    changed.insert(key)
                    // Only pairs with the new symbol are new to this piece type.
                    if merged[i] == result || merged[i + 1] == result, piecesWithPair[key]?.last != wordIndex {
                        piecesWithPair[key, default: []].append(wordIndex)
                    }
                }
                words[w] = merged
            }
            piecesWithPair[chosen.pair] = nil
            for key in changed {
                let count = pairCounts[key]!
                if count <= 0 {
                    pairCounts[key] = nil
                } else {
                    heap.push(PairHeap.Entry(count: count, pair: key))
                }
            }
        }
        return BPETokenizer(symbols: symbols, merges: merges, lowercase: lowercase)
    }

    // MARK: Serialisation

    /// A JSON-compatible description (for a checkpoint's state.json):
    /// `{"type": "bpe", "lowercase": false, "vocabulary": [token text in id order], "merges": [["▁", "a"], ...]}`.
    public var serialized: [String: Any] {
        [
            "type": "bpe",
            "lowercase": lowercase,
            "vocabulary": symbols,
            "merges": merges.map { [symbols[Int($0.left)], symbols[Int($0.right)]] },
        ]
    }

    /// Rebuilds a tokenizer from `serialized`; anything malformed is a UserError saying what.
    public init(serialized: [String: Any]) throws {
        func malformed(_ problem: String) -> UserError {
            UserError("the BPE tokenizer description is malformed: \(problem); the checkpoint's state.json is damaged or from another program")
        }
        if let type = serialized["type"] as? String, type != "bpe" { throw malformed("\"type\" is \"\(type)\", expected \"bpe\"") }
        guard let vocabulary = serialized["vocabulary"] as? [String] else { throw malformed("\"vocabulary\" is missing or not a list of strings") }
        guard let mergeList = serialized["merges"] as? [[String]] else { throw malformed("\"merges\" is missing or not a list of string pairs") }
        guard let lowercase = serialized["lowercase"] as? Bool else { throw malformed("\"lowercase\" is missing or not true/false") }
        guard Array(vocabulary.prefix(Self.specialTokens.count)) == Self.specialTokens else {
            throw malformed("the vocabulary must start with \(Self.specialTokens)")
        }
        var ids: [String: Int32] = [:]
        for (id, symbol) in vocabulary.enumerated() {
            guard ids[symbol] == nil else { throw malformed("the token \(String(reflecting: symbol)) appears twice (ids \(ids[symbol]!) and \(id))") }
            guard !symbol.isEmpty else { throw malformed("token \(id) is empty") }
            ids[symbol] = Int32(id)
        }
        var merges: [(left: Int32, right: Int32)] = []
        for (index, pair) in mergeList.enumerated() {
            guard pair.count == 2 else { throw malformed("merge \(index) has \(pair.count) parts, expected 2") }
            guard let left = ids[pair[0]], let right = ids[pair[1]], ids[pair[0] + pair[1]] != nil else {
                throw malformed("merge \(index) (\(String(reflecting: pair[0])), \(String(reflecting: pair[1]))) uses or makes a token that is not in the vocabulary")
            }
            guard left >= Int32(Self.specialTokens.count) && right >= Int32(Self.specialTokens.count) else {
                throw malformed("merge \(index) uses a special token")
            }
            merges.append((left, right))
        }
        self.init(symbols: vocabulary, merges: merges, lowercase: lowercase)
    }
}

extension BPETokenizer: Equatable {
    public static func == (a: BPETokenizer, b: BPETokenizer) -> Bool {
        a.symbols == b.symbols && a.lowercase == b.lowercase && a.merges.elementsEqual(b.merges) { $0 == $1 }
    }
}

/// Each piece's encoding, shared by copies of a tokenizer and safe to use from several threads.
private final class PieceCache: @unchecked Sendable {
    private var encodings: [String: [Int32]] = [:]
    private let lock = NSLock()

    func lookUp(_ piece: String) -> [Int32]? {
        lock.lock()
        defer { lock.unlock() }
        return encodings[piece]
    }

    func store(_ ids: [Int32], for piece: String) {
        lock.lock()
        defer { lock.unlock() }
        encodings[piece] = ids
    }
}

@inline(__always) private func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
    UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
}

@inline(__always) private func unpackPair(_ key: UInt64) -> (Int32, Int32) {
    (Int32(bitPattern: UInt32(truncatingIfNeeded: key >> 32)), Int32(bitPattern: UInt32(truncatingIfNeeded: key)))
}

/// A binary max-heap of pair counts; ties go to the smaller pair key (left id, then right id).
private struct PairHeap {
    struct Entry {
        var count: Int
        var pair: UInt64
    }

    private var entries: [Entry]

    init(_ entries: [Entry]) {
        self.entries = entries
        if entries.count > 1 {
            for i in stride(from: entries.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
        }
    }

    @inline(__always) private func precedes(_ a: Entry, _ b: Entry) -> Bool {
        a.count > b.count || (a.count == b.count && a.pair < b.pair)
    }

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if !precedes(entries[child], entries[parent]) { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let first = entries.first else { return nil }
        let last = entries.removeLast()
        if !entries.isEmpty {
            entries[0] = last
            siftDown(0)
        }
        return first
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            if left >= entries.count { return }
            var best = left
            if left + 1 < entries.count && precedes(entries[left + 1], entries[left]) { best = left + 1 }
            if !precedes(entries[best], entries[parent]) { return }
            entries.swapAt(best, parent)
            parent = best
        }
    }
}
