// Tokenisation 13a (mteval-v13a), as sacreBLEU 2.x's `Tokenizer13a`: what BLEU splits a segment
// into before counting n-grams. Text is code points (UInt32), as Python sees a str.

extension BLEU {
    /// sacreBLEU's `Tokenizer13a` applied to `line` (no lowercasing, no stripping beforehand).
    public static func tokenize13a(_ line: String) -> [String] {
        let tokens = tokenize(codePoints(line))
        return tokens.ranges.map { range in
            var text = String.UnicodeScalarView()
            for value in tokens.text[range] { text.append(Unicode.Scalar(value)!) }
            return String(text)
        }
    }

    /// Tokens as ranges of `text`.
    struct Tokens {
        var text: [UInt32]
        var ranges: [Range<Int>]
    }

    private static let skipped = "<skipped>".unicodeScalars.map(\.value)
    private static let hyphenNewline: [UInt32] = [0x2D, 0x0A]
    private static let newline: [UInt32] = [0x0A]
    private static let space: [UInt32] = [0x20]
    private static let entities: [(pattern: [UInt32], replacement: [UInt32])] = [
        ("&quot;", "\""), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"),
    ].map { ($0.0.unicodeScalars.map(\.value), $0.1.unicodeScalars.map(\.value)) }

    /// Tokenizer13a then TokenizerRegexp, then `str.split()`.
    static func tokenize(_ input: [UInt32]) -> Tokens {
        // The language-independent part of Tokenizer13a.
        var line = input
        line = replacing(line, skipped, with: [])
        line = replacing(line, hyphenNewline, with: [])
        line = replacing(line, newline, with: space)
        if contains(line, 0x26 /* & */) {
            for entity in entities { line = replacing(line, entity.pattern, with: entity.replacement) }
        }
        // f' {line} ' and the four regular expressions of TokenizerRegexp, in order.
        var text = padSymbols(line)
        text = substitute(text, .periodOrCommaAfterNonDigit)
        text = substitute(text, .periodOrCommaBeforeNonDigit)
        text = substitute(text, .dashAfterDigit)
        // ' '.join(line.split()), split again by extract_all_word_ngrams: whitespace-separated tokens.
        var ranges: [Range<Int>] = []
        text.withUnsafeBufferPointer { text in
            var start = -1
            for index in 0..<text.count {
                if isPythonWhitespace(text[index]) {
                    if start >= 0 { ranges.append(start..<index); start = -1 }
                } else if start < 0 {
                    start = index
                }
            }
            if start >= 0 { ranges.append(start..<text.count) }
        }
        return Tokens(text: text, ranges: ranges)
    }

    /// ' ' + line + ' ' with `([\{-\~\[-\` -\&\(-\+\:-\@\/])` replaced by ' \1 '.
    private static func padSymbols(_ line: [UInt32]) -> [UInt32] {
        line.withUnsafeBufferPointer { line in
            [UInt32](unsafeUninitializedCapacity: 3 * line.count + 2) { out, count in
                var written = 0
                out[written] = 0x20; written += 1
                for index in 0..<line.count {
                    let value = line[index]
                    if isSymbol(value) {
                        out[written] = 0x20; out[written + 1] = value; out[written + 2] = 0x20; written += 3
                    } else {
                        out[written] = value; written += 1
                    }
                }
                out[written] = 0x20; written += 1
                count = written
            }
        }
    }

    /// The three two-character rules of TokenizerRegexp.
    enum PairRule {
        /// `([^0-9])([\.,])` -> `\1 \2 `
        case periodOrCommaAfterNonDigit
        /// `([\.,])([^0-9])` -> ` \1 \2`
        case periodOrCommaBeforeNonDigit
        /// `([0-9])(-)` -> `\1 \2 `
        case dashAfterDigit
    }

    /// Python's `re.sub` of a two-character rule: leftmost, non-overlapping matches.
    private static func substitute(_ text: [UInt32], _ rule: PairRule) -> [UInt32] {
        text.withUnsafeBufferPointer { text in
            [UInt32](unsafeUninitializedCapacity: 2 * text.count) { out, count in
                var written = 0
                var index = 0
                let end = text.count
                while index < end {
                    let a = text[index]
                    if index + 1 < end {
                        let b = text[index + 1]
                        let match: Bool
                        switch rule {
                        case .periodOrCommaAfterNonDigit: match = !isDigit(a) && isPeriodOrComma(b)
                        case .periodOrCommaBeforeNonDigit: match = isPeriodOrComma(a) && !isDigit(b)
                        case .dashAfterDigit: match = isDigit(a) && b == 0x2D
                        }
                        if match {
                            switch rule {
                            case .periodOrCommaAfterNonDigit, .dashAfterDigit:
                                out[written] = a; out[written + 1] = 0x20; out[written + 2] = b; out[written + 3] = 0x20
                            case .periodOrCommaBeforeNonDigit:
                                out[written] = 0x20; out[written + 1] = a; out[written + 2] = 0x20; out[written + 3] = b
                            }
                            written += 4
                            index += 2
                            continue
                        }
                    }
                    out[written] = a
                    written += 1
                    index += 1
                }
                count = written
            }
        }
    }

    /// Python's `str.replace(pattern, replacement)`: leftmost, non-overlapping occurrences.
    private static func replacing(_ text: [UInt32], _ pattern: [UInt32], with replacement: [UInt32]) -> [UInt32] {
        let head = pattern[0]
        guard text.count >= pattern.count, contains(text, head) else { return text }
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        var changed = false
        text.withUnsafeBufferPointer { text in
            var index = 0
            while index < text.count {
                if text[index] == head && index + pattern.count <= text.count {
                    var equal = true
                    for offset in 1..<pattern.count where text[index + offset] != pattern[offset] { equal = false; break }
                    if equal {
                        out.append(contentsOf: replacement)
                        index += pattern.count
                        changed = true
                        continue
                    }
                }
                out.append(text[index])
                index += 1
            }
        }
        return changed ? out : text
    }

    /// Whether `value` occurs in `text`.
    private static func contains(_ text: [UInt32], _ value: UInt32) -> Bool {
        text.withUnsafeBufferPointer { text in
            var index = 0
            while index < text.count {
                if text[index] == value { return true }
                index += 1
            }
            return false
        }
    }

    /// The class of the first regular expression, `[\{-\~\[-\` -\&\(-\+\:-\@\/]`: ASCII
    /// punctuation and the space, except ' , - . (a table: this runs once per code point).
    private static let symbolTable: [Bool] = (0..<128).map { value in
        (0x7B...0x7E).contains(value)      // { | } ~
            || (0x5B...0x60).contains(value)   // [ \ ] ^ _ `
            || (0x20...0x26).contains(value)   // space ! " # $ % &
            || (0x28...0x2B).contains(value)   // ( ) * +
            || (0x3A...0x40).contains(value)   // : ; < = > ? @
            || value == 0x2F                   // /
    }

    @inline(__always)
    static func isSymbol(_ value: UInt32) -> Bool { value < 128 && symbolTable[Int(value)] }

    @inline(__always) static func isDigit(_ value: UInt32) -> Bool { value &- 0x30 < 10 }
    @inline(__always) static func isPeriodOrComma(_ value: UInt32) -> Bool { value == 0x2E || value == 0x2C }
}
