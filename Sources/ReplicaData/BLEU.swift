import Foundation
import ReplicaCore

/// Corpus BLEU of one system against one reference, as sacreBLEU 2.x reports it.
///
/// `score` and `precisions` are in percent; `line` is sacreBLEU's own line,
/// `BLEU = 35.12 66.1/41.5/28.0/19.3 (BP = 0.987 ratio = 0.987 hyp_len = 12345 ref_len = 12504)`,
/// with the same rounding (score to 2 decimals, precisions to 1, BP and ratio to 3). The stored
/// numbers are not rounded: they are sacreBLEU's `score`, `precisions`, `bp` and `ratio`.
public struct BLEUScore: Equatable, Sendable {
    /// BLEU in percent (0...100).
    public var score: Double
    /// Modified n-gram precisions for n = 1...4, in percent (with sacreBLEU's 'exp' smoothing).
    public var precisions: [Double]
    /// exp(1 − r/c) when the hypothesis length c is below the reference length r, else 1 (0 when c = 0).
    public var brevityPenalty: Double
    /// Hypothesis length / reference length (0 when the reference is empty).
    public var ratio: Double
    /// Tokens in all hypotheses (sacreBLEU's sys_len, printed as hyp_len).
    public var hypothesisLength: Int
    /// Tokens in all references (sacreBLEU's ref_len).
    public var referenceLength: Int
    /// Clipped n-gram matches for n = 1...4 (sacreBLEU's counts).
    public var matches: [Int]
    /// Hypothesis n-grams for n = 1...4 (sacreBLEU's totals).
    public var totals: [Int]

    /// sacreBLEU's score line.
    public var line: String {
        let precisionText = precisions.map { String(format: "%.1f", $0) }.joined(separator: "/")
        return "BLEU = " + String(format: "%.2f", score) + " " + precisionText
            + " (BP = " + String(format: "%.3f", brevityPenalty)
            + " ratio = " + String(format: "%.3f", ratio)
            + " hyp_len = \(hypothesisLength) ref_len = \(referenceLength))"
    }
}

/// sacreBLEU 2.x's default corpus BLEU: `sacrebleu.corpus_bleu(hypotheses, [references])`.
///
/// Tokenisation 13a (mteval-v13a; Tokenizer13a.swift), n-grams up to 4, counts clipped by the one
/// reference, brevity penalty, smoothing 'exp', no effective order. Text is handled as Unicode
/// code points, as Python does: "é" and "e" + U+0301 are different tokens, whitespace is what
/// `str.split()` splits on, and `lowercase` follows `str.lower()` (full mappings, final sigma).
///
/// ```swift
/// let score = BLEU.corpus(hypotheses: systemLines, references: referenceLines)
/// print(score.line)   // BLEU = 35.12 66.1/41.5/28.0/19.3 (BP = ...)
/// ```
public enum BLEU {
    public static let maxOrder = 4

    /// Corpus BLEU of `hypotheses` against `references` (one reference per hypothesis, same count).
    public static func corpus(hypotheses: [String], references: [String], lowercase: Bool = false) -> BLEUScore {
        precondition(hypotheses.count == references.count,
                     "BLEU.corpus: \(hypotheses.count) hypotheses but \(references.count) references")
        var vocabulary = TokenVocabulary()
        var counter = NGramCounter()
        var statistics = Statistics()
        var hypothesisIDs: [UInt32] = []
        var referenceIDs: [UInt32] = []
        for (hypothesis, reference) in zip(hypotheses, references) {
            vocabulary.encode(tokenize(preprocess(hypothesis, lowercase: lowercase)), into: &hypothesisIDs)
            vocabulary.encode(tokenize(preprocess(reference, lowercase: lowercase)), into: &referenceIDs)
            counter.add(hypothesis: hypothesisIDs, reference: referenceIDs, to: &statistics)
        }
        return score(statistics)
    }

    // MARK: - Statistics and score

    /// Sufficient statistics summed over segments.
    struct Statistics {
        var hypothesisLength = 0
        var referenceLength = 0
        var matches = [Int](repeating: 0, count: BLEU.maxOrder)
        var totals = [Int](repeating: 0, count: BLEU.maxOrder)
    }

    /// sacreBLEU's `BLEU.compute_bleu` with smooth_method 'exp' and effective_order False.
    static func score(_ statistics: Statistics) -> BLEUScore {
        let sysLength = statistics.hypothesisLength
        let refLength = statistics.referenceLength
        var brevityPenalty = 1.0
        if sysLength < refLength {
            brevityPenalty = sysLength > 0 ? exp(1 - Double(refLength) / Double(sysLength)) : 0.0
        }
        let ratio = refLength > 0 ? Double(sysLength) / Double(refLength) : 0
        var precisions = [Double](repeating: 0, count: maxOrder)
        var result = BLEUScore(score: 0, precisions: precisions, brevityPenalty: brevityPenalty, ratio: ratio,
                               hypothesisLength: sysLength, referenceLength: refLength,
                               matches: statistics.matches, totals: statistics.totals)
        // No match at any order: 0 (sacreBLEU #141).
        guard statistics.matches.contains(where: { $0 != 0 }) else { return result }
        var smoothing = 1.0
        for n in 1...maxOrder {
            let total = statistics.totals[n - 1]
            if total == 0 { break }
            let correct = statistics.matches[n - 1]
            if correct == 0 {
                smoothing *= 2
                precisions[n - 1] = 100.0 / (smoothing * Double(total))
            } else {
                precisions[n - 1] = 100.0 * Double(correct) / Double(total)
            }
        }
        // sacreBLEU's my_log: log(0) is floored to -9999999999. Summed in order, as Python's sum().
        var logSum = 0.0
        for precision in precisions { logSum += precision == 0 ? -9_999_999_999 : log(precision) }
        result.precisions = precisions
        result.score = brevityPenalty * exp(logSum / Double(maxOrder))
        return result
    }

    // MARK: - Preprocessing (code points as UInt32)

    /// The code points of `text`.
    static func codePoints(_ text: String) -> [UInt32] {
        var text = text
        return text.withUTF8 { bytes in
            var index = 0
            while index < bytes.count && bytes[index] < 0x80 { index += 1 }
            if index == bytes.count {
                return [UInt32](unsafeUninitializedCapacity: bytes.count) { buffer, count in
                    for index in 0..<bytes.count { buffer[index] = UInt32(bytes[index]) }
                    count = bytes.count
                }
            }
            var values: [UInt32] = []
            values.reserveCapacity(bytes.count)
            for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars { values.append(scalar.value) }
            return values
        }
    }

    /// sacreBLEU's `_preprocess_segment` up to the tokenizer: optional `str.lower()`, then `str.rstrip()`.
    static func preprocess(_ segment: String, lowercase: Bool) -> [UInt32] {
        var scalars = codePoints(segment)
        if lowercase { scalars = pythonLower(scalars) }
        var end = scalars.count
        while end > 0 && isPythonWhitespace(scalars[end - 1]) { end -= 1 }
        if end < scalars.count { scalars.removeSubrange(end...) }
        return scalars
    }

    /// Python's `str.lower()`: full lowercase mappings per code point, and U+03A3 becomes final
    /// sigma (U+03C2) after a cased letter (skipping case-ignorables) not followed by one.
    static func pythonLower(_ text: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        for index in 0..<text.count {
            let value = text[index]
            if value < 0x80 {
                out.append(value >= 0x41 && value <= 0x5A ? value + 0x20 : value)
            } else if value == 0x3A3 {
                out.append(isFinalSigma(text, at: index) ? 0x3C2 : 0x3C3)
            } else if let scalar = Unicode.Scalar(value) {
                for mapped in scalar.properties.lowercaseMapping.unicodeScalars { out.append(mapped.value) }
            } else {
                out.append(value)
            }
        }
        return out
    }

    /// CPython's handle_capital_sigma: \p{cased}\p{case-ignorable}* Σ !(\p{case-ignorable}* \p{cased}).
    private static func isFinalSigma(_ text: [UInt32], at index: Int) -> Bool {
        func properties(_ value: UInt32) -> Unicode.Scalar.Properties? { Unicode.Scalar(value)?.properties }
        var before = index - 1
        while before >= 0, properties(text[before])?.isCaseIgnorable == true { before -= 1 }
        guard before >= 0, properties(text[before])?.isCased == true else { return false }
        var after = index + 1
        while after < text.count, properties(text[after])?.isCaseIgnorable == true { after += 1 }
        return after == text.count || properties(text[after])?.isCased != true
    }

    /// Python's `str.isspace()`: what `str.split()` and `str.rstrip()` treat as whitespace.
    @inline(__always)
    static func isPythonWhitespace(_ value: UInt32) -> Bool {
        if value <= 0x20 { return value == 0x20 || (value >= 0x09 && value <= 0x0D) || value >= 0x1C }
        if value < 0x85 { return false }
        switch value {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }
}

/// Tokens (code-point sequences, compared exactly as Python compares str) to dense ids, in an
/// open-addressing hash table over one flat store of code points.
struct TokenVocabulary {
    private var store: [UInt32] = []          // the code points of every distinct token, one after another
    private var starts: [Int] = [0]           // token i is store[starts[i] ..< starts[i + 1]]
    private var hashes: [UInt64] = []
    private var slots = [Int32](repeating: -1, count: 1024)

    var count: Int { hashes.count }

    /// Replaces `ids` with the ids of `tokens`, adding new tokens.
    mutating func encode(_ tokens: BLEU.Tokens, into ids: inout [UInt32]) {
        ids.removeAll(keepingCapacity: true)
        tokens.text.withUnsafeBufferPointer { text in
            for range in tokens.ranges {
                ids.append(id(of: UnsafeBufferPointer(rebasing: text[range])))
            }
        }
    }

    private mutating func id(of token: UnsafeBufferPointer<UInt32>) -> UInt32 {
        var hash = FNV1a.offsetBasis
        var index = 0
        while index < token.count { hash = FNV1a.combine(hash, UInt64(token[index])); index += 1 }
        let mask = slots.count - 1
        var slot = Int(truncatingIfNeeded: hash ^ (hash >> 29)) & mask
        while true {
            let found = slots[slot]
            if found < 0 { break }
            let index = Int(found)
            if hashes[index] == hash && starts[index + 1] - starts[index] == token.count {
                let start = starts[index]
                var equal = true
                for offset in 0..<token.count where store[start + offset] != token[offset] { equal = false; break }
                if equal { return UInt32(index) }
            }
            slot = (slot + 1) & mask
        }
        let id = hashes.count
        store.append(contentsOf: token)
        starts.append(store.count)
        hashes.append(hash)
        slots[slot] = Int32(id)
        if 2 * hashes.count > slots.count { grow() }
        return UInt32(id)
    }

    private mutating func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        let mask = slots.count - 1
        for (index, hash) in hashes.enumerated() {
            var slot = Int(truncatingIfNeeded: hash ^ (hash >> 29)) & mask
            while slots[slot] >= 0 { slot = (slot + 1) & mask }
            slots[slot] = Int32(index)
        }
    }
}

/// Clipped n-gram matches of one segment against its reference, by hashing.
///
/// The reference's n-grams (n ≤ 4) go into a table keyed by (id of the (n−1)-gram prefix, token id),
/// so each n-gram is one key whatever its order, with its count. Each hypothesis n-gram found there
/// with a count left takes one: Σ min(hypothesis count, reference count) per n-gram, as sacreBLEU.
struct NGramCounter {
    private var keys: [UInt64] = []     // 0: empty; else (prefix slot + 2) << 32 | token id (prefix slot -1: none)
    private var counts: [Int32] = []    // remaining reference count of the n-gram in this slot
    private var used: [Int] = []        // the slots filled for this segment, emptied before the next

    mutating func add(hypothesis: [UInt32], reference: [UInt32], to statistics: inout BLEU.Statistics) {
        statistics.hypothesisLength += hypothesis.count
        statistics.referenceLength += reference.count
        for n in 1...BLEU.maxOrder {
            statistics.totals[n - 1] += max(0, hypothesis.count - n + 1)
        }
        guard !hypothesis.isEmpty && !reference.isEmpty else { return }
        // A table at most a quarter full.
        var capacity = 64
        while capacity < 4 * BLEU.maxOrder * reference.count { capacity *= 2 }
        if keys.count < capacity {
            keys = [UInt64](repeating: 0, count: capacity)
            counts = [Int32](repeating: 0, count: capacity)
        }
        used.removeAll(keepingCapacity: true)
        let mask = keys.count - 1
        var matches = (0, 0, 0, 0)
        keys.withUnsafeMutableBufferPointer { keys in
            counts.withUnsafeMutableBufferPointer { counts in
                // The slot of key (prefix, token); inserts it when `insert`, else -1 when absent.
                func slot(_ prefix: Int, _ token: UInt32, insert: Bool) -> Int {
                    let key = UInt64(prefix + 2) << 32 | UInt64(token)
                    let hash = FNV1a.combine(FNV1a.offsetBasis, key)
                    var slot = Int(truncatingIfNeeded: hash ^ (hash >> 31)) & mask
                    while true {
                        let found = keys[slot]
                        if found == key { return slot }
                        if found == 0 {
                            guard insert else { return -1 }
                            keys[slot] = key
                            counts[slot] = 0
                            used.append(slot)
                            return slot
                        }
                        slot = (slot + 1) & mask
                    }
                }
                reference.withUnsafeBufferPointer { reference in
                    for start in 0..<reference.count {
                        var prefix = -1
                        for n in 1...min(BLEU.maxOrder, reference.count - start) {
                            let index = slot(prefix, reference[start + n - 1], insert: true)
                            counts[index] += 1
                            prefix = index
                        }
                    }
                }
                hypothesis.withUnsafeBufferPointer { hypothesis in
                    for start in 0..<hypothesis.count {
                        var prefix = -1
                        for n in 1...min(BLEU.maxOrder, hypothesis.count - start) {
                            let index = slot(prefix, hypothesis[start + n - 1], insert: false)
                            if index < 0 { break }   // no longer n-gram from here is in the reference
                            if counts[index] > 0 {
                                counts[index] -= 1
                                switch n {
                                case 1: matches.0 += 1
                                case 2: matches.1 += 1
                                case 3: matches.2 += 1
                                default: matches.3 += 1
                                }
                            }
                            prefix = index
                        }
                    }
                }
                for slot in used { keys[slot] = 0 }
            }
        }
        statistics.matches[0] += matches.0
        statistics.matches[1] += matches.1
        statistics.matches[2] += matches.2
        statistics.matches[3] += matches.3
    }
}
