import Foundation
import Testing
import ReplicaCore
import ReplicaData
import _ReplicaTestSupport

/// Expected values come from sacreBLEU 2.6.0 (Python 3.11): `sacrebleu.corpus_bleu(hyps, [refs], lowercase=...)`
/// and `Tokenizer13a()(line).split()`, computed once while writing these tests.
@Suite struct BLEUTokenizerTests {
    @Test(arguments: [
        ("He said &quot;1,000.50 dollars&quot; -- in 2019-2020.",
         ["He", "said", "\"", "1,000.50", "dollars", "\"", "--", "in", "2019", "-", "2020", "."]),
        ("<skipped> U.S.A. isn't (big)! a/b@c",
         ["U", ".", "S", ".", "A", ".", "isn't", "(", "big", ")", "!", "a", "/", "b", "@", "c"]),
        ("Tabs\tand\u{A0}spaces   end.  ", ["Tabs", "and", "spaces", "end", "."]),
        ("a-\nb &amp;lt; &AMP; x&gt;y", ["ab", "<", "&", "AMP", ";", "x", ">", "y"]),
        ("3.14, 1,5 ,5 a.b a,b 5-6 -7 a-b",
         ["3.14", ",", "1,5", ",", "5", "a", ".", "b", "a", ",", "b", "5", "-", "6", "-7", "a-b"]),
        ("ΟΔΟΣ Straße", ["ΟΔΟΣ", "Straße"]),
        ("\"Hello,\" she said... (really?) [yes] {no} ~ | ^ _ ` @ # $ % * + = \\ /",
         ["\"", "Hello", ",", "\"", "she", "said", ".", ".", ".", "(", "really", "?", ")", "[", "yes", "]", "{", "no", "}",
          "~", "|", "^", "_", "`", "@", "#", "$", "%", "*", "+", "=", "\\", "/"]),
        ("e.g. 10km/h, $5.00; 1.2.3 a..b ,,",
         ["e", ".", "g", ".", "10km", "/", "h", ",", "$", "5.00", ";", "1.2.3", "a", ".", ".", "b", ",", ","]),
        ("A man in an orange hat starring at something.",
         ["A", "man", "in", "an", "orange", "hat", "starring", "at", "something", "."]),
        ("", []),
    ] as [(String, [String])])
    func tokenize13aSplitsAsSacreBLEU(line: String, expected: [String]) {
        #expect(BLEU.tokenize13a(line) == expected)
    }

    /// Tokens are compared as code points, as Python compares str: a precomposed "é" and "e" + U+0301
    /// are different tokens although Swift's String == calls them equal.
    @Test func tokensAreCodePointSequences() {
        let score = BLEU.corpus(hypotheses: ["caf\u{E9}"], references: ["cafe\u{301}"])
        #expect(score.matches == [0, 0, 0, 0])
        let tokens = BLEU.tokenize13a("caf\u{E9}, cafe\u{301}.")
        #expect(tokens.map { Array($0.unicodeScalars) } == [
            Array("caf\u{E9}".unicodeScalars), [","], Array("cafe\u{301}".unicodeScalars), ["."],
        ])
    }
}

@Suite struct BLEUScoreTests {
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var hypotheses: [String]
        var references: [String]
        var lowercase = false
        var line: String
        var score: Double
        var matches: [Int]
        var totals: [Int]
        var description: String { name }
    }

    static let synthetic: [Case] = [
        Case(name: "basic", hypotheses: ["the cat sat on the mat", "a dog barked ."],
             references: ["the cat sat on a mat", "the dog barked loudly ."],
             line: "BLEU = 38.66 80.0/50.0/33.3/25.0 (BP = 0.905 ratio = 0.909 hyp_len = 10 ref_len = 11)",
             score: 38.66252716278831, matches: [8, 4, 2, 1], totals: [10, 8, 6, 4]),
        Case(name: "exp smoothing of orders without matches", hypotheses: ["the cat", "a dog ran far"],
             references: ["the cat is here", "dogs ran far away"],
             line: "BLEU = 27.22 66.7/50.0/25.0/25.0 (BP = 0.717 ratio = 0.750 hyp_len = 6 ref_len = 8)",
             score: 27.22230298303347, matches: [4, 2, 0, 0], totals: [6, 4, 2, 1]),
        Case(name: "no 3- and 4-grams at all", hypotheses: ["hi", "yes ."], references: ["hi there", "yes ."],
             line: "BLEU = 0.00 100.0/100.0/0.0/0.0 (BP = 0.717 ratio = 0.750 hyp_len = 3 ref_len = 4)",
             score: 0, matches: [3, 1, 0, 0], totals: [3, 1, 0, 0]),
        Case(name: "no matches", hypotheses: ["foo bar"], references: ["baz qux"],
             line: "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 2 ref_len = 2)",
             score: 0, matches: [0, 0, 0, 0], totals: [2, 1, 0, 0]),
        Case(name: "an empty hypothesis line", hypotheses: ["", "the cat sat"], references: ["a cat", "the cat sat"],
             line: "BLEU = 0.00 100.0/100.0/100.0/0.0 (BP = 0.513 ratio = 0.600 hyp_len = 3 ref_len = 5)",
             score: 0, matches: [3, 2, 1, 0], totals: [3, 2, 1, 0]),
        Case(name: "all hypotheses empty", hypotheses: ["", ""], references: ["a b", "c"],
             line: "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 0.000 ratio = 0.000 hyp_len = 0 ref_len = 3)",
             score: 0, matches: [0, 0, 0, 0], totals: [0, 0, 0, 0]),
        Case(name: "clipped counts", hypotheses: ["the the the the the the the"], references: ["the cat is on the mat"],
             line: "BLEU = 7.81 28.6/8.3/5.0/3.1 (BP = 1.000 ratio = 1.167 hyp_len = 7 ref_len = 6)",
             score: 7.809849842300637, matches: [2, 0, 0, 0], totals: [7, 6, 5, 4]),
        Case(name: "punctuation, numbers and entities",
             hypotheses: ["He said &quot;1,000.50 dollars&quot; -- in 2019-2020.", "<skipped> U.S.A. isn't (big)! a/b@c",
                          "Tabs\tand\u{A0}spaces   end.  "],
             references: ["He said \"1,000.50 dollars\" - in 2019 - 2020.", "The U.S.A. is not big! a/b@c", "Tabs and spaces end ."],
             line: "BLEU = 70.23 87.9/76.7/66.7/54.2 (BP = 1.000 ratio = 1.000 hyp_len = 33 ref_len = 33)",
             score: 70.23165016209583, matches: [29, 23, 18, 13], totals: [33, 30, 27, 24]),
        Case(name: "Unicode, mixed case", hypotheses: ["ΟΔΟΣ Straße İstanbul caf\u{E9}", "The Cat"],
             references: ["οδος straße i\u{307}stanbul cafe\u{301}", "the cat"],
             line: "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)",
             score: 0, matches: [0, 0, 0, 0], totals: [6, 4, 2, 1]),
        Case(name: "Unicode, lowercased as Python's str.lower (final sigma, dotted I)",
             hypotheses: ["ΟΔΟΣ Straße İstanbul caf\u{E9}", "The Cat"],
             references: ["οδος straße i\u{307}stanbul cafe\u{301}", "the cat"], lowercase: true,
             line: "BLEU = 62.87 83.3/75.0/50.0/50.0 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)",
             score: 62.87167148414675, matches: [5, 3, 1, 0], totals: [6, 4, 2, 1]),
        // sacreBLEU's own test cases (test_bleu.py), with one reference.
        Case(name: "sacreBLEU: this is a fest", hypotheses: ["this is a fest"], references: ["this is a test"],
             line: "BLEU = 59.46 75.0/66.7/50.0/50.0 (BP = 1.000 ratio = 1.000 hyp_len = 4 ref_len = 4)",
             score: 59.460355750136046, matches: [3, 2, 1, 0], totals: [4, 3, 2, 1]),
        Case(name: "sacreBLEU: no matching n-gram gives 0 (#141)", hypotheses: ["this is a test", "another test"],
             references: ["ref1", "ref2"],
             line: "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 3.000 hyp_len = 6 ref_len = 2)",
             score: 0, matches: [0, 0, 0, 0], totals: [6, 4, 2, 1]),
        Case(name: "sacreBLEU: statistics", hypotheses: ["am I am a character sequence"],
             references: ["I am a symbol string sequence a a"],
             line: "BLEU = 23.26 66.7/40.0/25.0/16.7 (BP = 0.717 ratio = 0.750 hyp_len = 6 ref_len = 8)",
             score: 23.263472697663296, matches: [4, 2, 1, 0], totals: [6, 5, 4, 3]),
    ]

    @Test(arguments: synthetic)
    func corpusBLEUEqualsSacreBLEU(_ example: Case) {
        let score = BLEU.corpus(hypotheses: example.hypotheses, references: example.references, lowercase: example.lowercase)
        #expect(score.line == example.line)
        #expect(abs(score.score - example.score) <= 1e-9 * max(1, example.score), "\(score.score) vs \(example.score)")
        #expect(score.matches == example.matches)
        #expect(score.totals == example.totals)
        #expect(score.precisions.count == 4)
    }

    @Test func identicalTextScores100() {
        let lines = ["A man in an orange hat starring at something.", "Two dogs play in the snow, 3.5 km away!"]
        let score = BLEU.corpus(hypotheses: lines, references: lines)
        #expect(score.line == "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 21 ref_len = 21)")
        #expect(abs(score.score - 100) < 1e-9)
        #expect(score.brevityPenalty == 1 && score.ratio == 1)
    }
}

/// Hypotheses made from the Multi30k English test set (1,000 lines) by deterministic edits, scored
/// against the original lines; the expected lines are sacreBLEU 2.6.0's on the same edits, made in Python.
@Suite struct BLEURealTextTests {
    static let references = Result { try Fixtures.multi30kLines("test_2016_flickr.en.gz") }

    typealias Edit = (Int, [Substring]) -> [Substring]

    static func dropped(_ i: Int, _ words: [Substring]) -> [Substring] {
        words.enumerated().filter { (i + 2 * $0.offset) % 7 != 3 }.map(\.element)
    }

    static func duplicated(_ i: Int, _ words: [Substring]) -> [Substring] {
        var out: [Substring] = []
        for (j, word) in words.enumerated() {
            out.append(word)
            if (3 * i + j) % 9 == 4 { out.append(word) }
        }
        return out
    }

    static func swapped(_ i: Int, _ words: [Substring]) -> [Substring] {
        var out = words
        var j = 0
        while j < out.count - 1 {
            if (i + j) % 5 == 0 { out.swapAt(j, j + 1) }
            j += 2
        }
        return out
    }

    static func rotated(_ i: Int, _ words: [Substring]) -> [Substring] {
        guard i % 4 == 0, !words.isEmpty else { return words }
        let k = (i % 3 + 1) % words.count
        return Array(words[k...] + words[..<k])
    }

    static func truncated(_ i: Int, _ words: [Substring]) -> [Substring] {
        Array(words.prefix((words.count * 7 + 9) / 10))
    }

    static func mixed(_ i: Int, _ words: [Substring]) -> [Substring] { swapped(i, duplicated(i, dropped(i, words))) }

    static func hypotheses(_ edit: Edit, uppercaseEveryFourth: Bool = false) throws -> [String] {
        try references.get().enumerated().map { i, line in
            // Words split at " " only, as Python's line.split(' ').
            let words = line.split(separator: " ", omittingEmptySubsequences: false)
            let text = edit(i, words).joined(separator: " ")
            return uppercaseEveryFourth && i % 4 == 1 ? text.uppercased() : text
        }
    }

    @Test func theReferenceIsTheMulti30kTestSet() throws {
        let references = try Self.references.get()
        #expect(references.count == 1000)
        #expect(references.first == "A man in an orange hat starring at something.")
    }

    @Test(arguments: [
        ("identity", "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 12955 ref_len = 12955)", 100.00000000000004),
        ("dropped", "BLEU = 64.28 100.0/86.0/70.7/54.9 (BP = 0.846 ratio = 0.857 hyp_len = 11098 ref_len = 12955)", 64.28126344019954),
        ("duplicated", "BLEU = 81.52 90.1/89.3/79.0/69.5 (BP = 1.000 ratio = 1.110 hyp_len = 14383 ref_len = 12955)", 81.52475291888166),
        ("swapped", "BLEU = 70.56 100.0/73.9/62.7/53.5 (BP = 1.000 ratio = 1.000 hyp_len = 12955 ref_len = 12955)", 70.56156240700422),
        ("rotated", "BLEU = 97.25 100.0/97.9/96.2/95.0 (BP = 1.000 ratio = 1.000 hyp_len = 12955 ref_len = 12955)", 97.25395736510077),
        ("truncated", "BLEU = 62.86 100.0/100.0/100.0/100.0 (BP = 0.629 ratio = 0.683 hyp_len = 8847 ref_len = 12955)", 62.855094652366546),
        ("mixed", "BLEU = 44.66 90.2/61.0/38.4/23.1 (BP = 0.950 ratio = 0.951 hyp_len = 12318 ref_len = 12955)", 44.66017100741942),
    ] as [(String, String, Double)])
    func perturbedMulti30kScoresAsSacreBLEU(edit name: String, line: String, expected: Double) throws {
        let edits: [String: Edit] = [
            "identity": { $1 }, "dropped": Self.dropped, "duplicated": Self.duplicated, "swapped": Self.swapped,
            "rotated": Self.rotated, "truncated": Self.truncated, "mixed": Self.mixed,
        ]
        let score = BLEU.corpus(hypotheses: try Self.hypotheses(try #require(edits[name])), references: try Self.references.get())
        #expect(score.line == line)
        #expect(abs(score.score - expected) <= 1e-9 * expected, "\(score.score) vs \(expected)")
    }

    @Test func lowercaseMatchesSacreBLEUsLowercaseOption() throws {
        let hypotheses = try Self.hypotheses(Self.mixed, uppercaseEveryFourth: true)
        let references = try Self.references.get()
        let mixedCase = BLEU.corpus(hypotheses: hypotheses, references: references)
        #expect(mixedCase.line == "BLEU = 31.62 66.9/42.9/26.8/16.0 (BP = 0.950 ratio = 0.951 hyp_len = 12318 ref_len = 12955)")
        #expect(mixedCase.matches == [8244, 4851, 2766, 1490])
        let lowercased = BLEU.corpus(hypotheses: hypotheses, references: references, lowercase: true)
        #expect(lowercased.line == "BLEU = 44.69 90.3/61.1/38.5/23.1 (BP = 0.950 ratio = 0.951 hyp_len = 12318 ref_len = 12955)")
        #expect(lowercased.matches == [11120, 6913, 3969, 2155])
        #expect(lowercased.totals == [12318, 11318, 10318, 9318])
        #expect(abs(lowercased.score - 44.68988683904425) < 1e-9)
    }

    /// 30,000 segments (the reference 30 times over) score well within a second or two.
    /// A corpus repeated 30 times has the same n-gram precisions and BP (statistics add up).
    @Test func aRepeatedCorpusScoresTheSame() throws {
        let references = Array(repeating: try Self.references.get(), count: 30).flatMap { $0 }
        let hypotheses = Array(repeating: try Self.hypotheses(Self.mixed), count: 30).flatMap { $0 }
        let score = BLEU.corpus(hypotheses: hypotheses, references: references)
        #expect(score.hypothesisLength == 30 * 12318)
        #expect(score.line.hasPrefix("BLEU = 44.66 90.2/61.0/38.4/23.1 "))
    }
}
