import Foundation
import Testing
import ReplicaCore
import ReplicaData
import _ReplicaTestSupport

/// The embedded Multi30k, read once per test process.
enum SharedMulti30k {
    static let data = Result { try TranslationData.multi30k() }
    /// A joint German+English vocabulary learned on the training split (smaller than the task's
    /// 8000 so that debug builds learn it quickly).
    static let tokenizer = Result {
        let train = try data.get().train
        return BPETokenizer.learn(from: train.source + train.target, vocabularySize: tokenizerSize, lowercase: false)
    }
    static let tokenizerSize = 2000
}

/// Runs of whitespace as one space, none at the ends: what decoding restores.
func normalizingWhitespace(_ text: String) -> String {
    text.unicodeScalars.split { $0.properties.isWhitespace || $0 == BPETokenizer.wordBoundary }
        .map { String(String.UnicodeScalarView($0)) }
        .joined(separator: " ")
}

@Suite struct BPETokenizerTests {
    /// Sennrich et al. (2016), section 3.2: {low: 5, lower: 2, newest: 6, widest: 3}.
    static let toyLines = ["low low low low low", "lower lower newest newest newest",
                           "newest newest newest widest widest widest"]

    @Test func theFirstMergesAreTheMostFrequentPairs() {
        // Characters: ▁ d e i l n o r s t w (11) + 5 specials = 16, so 21 leaves room for 5 merges.
        let tokenizer = BPETokenizer.learn(from: Self.toyLines, vocabularySize: 21, lowercase: false)
        #expect(tokenizer.count == 21)
        let merges = tokenizer.mergedPairs.map { "\($0.left) \($0.right)" }
        // "e s" and "s t" both occur 9 times (newest 6 + widest 3): the tie goes to the smaller
        // left id ("e" < "s"); then "es t" (9); then the 7s: "l o" (l < o < ▁), "▁ lo", "▁lo w".
        #expect(merges == ["e s", "es t", "l o", "▁ lo", "▁lo w"])
        #expect(tokenizer.encode("lowest").map { tokenizer.symbols[Int($0)] } == ["▁low", "est"])
        #expect(tokenizer.encode("newest").map { tokenizer.symbols[Int($0)] } == ["▁", "n", "e", "w", "est"])
    }

    @Test func learningStopsWhenNoPairOccursTwice() {
        let tokenizer = BPETokenizer.learn(from: ["ab ab cd"], vocabularySize: 100, lowercase: false)
        // ▁ a b c d + specials = 10; "a b" (a < ▁) then "▁ ab" occur twice; "▁ c", "c d" only once.
        #expect(tokenizer.mergedPairs.map { "\($0.left) \($0.right)" } == ["a b", "▁ ab"])
        #expect(tokenizer.count == 12)
    }

    @Test func specialTokensHaveFixedIds() {
        let tokenizer = BPETokenizer.learn(from: Self.toyLines, vocabularySize: 30, lowercase: false)
        #expect(Array(tokenizer.symbols.prefix(5)) == ["<pad>", "<s>", "</s>", "<unk>", "<mask>"])
        #expect(BPETokenizer.padding == 0)
        #expect(BPETokenizer.sentenceStart == 1)
        #expect(BPETokenizer.sentenceEnd == 2)
        #expect(BPETokenizer.unknown == 3)
        #expect(BPETokenizer.mask == 4)
        // Special tokens in the text are plain text, not the special ids.
        let ids = tokenizer.encode("low <s> lower")
        #expect(!ids.contains(where: { $0 < 5 && $0 != BPETokenizer.unknown }))
        #expect(tokenizer.decode([BPETokenizer.sentenceStart] + tokenizer.encode("low newest")
                                 + [BPETokenizer.sentenceEnd, BPETokenizer.padding, BPETokenizer.mask]) == "low newest")
    }

    @Test func piecesSeparatePunctuationAndMarkTheStartOfEachWord() {
        #expect(BPETokenizer.pieces(of: "Two young, White males (aged 20-ish).")
                == ["▁Two", "▁young", ",", "▁White", "▁males", "▁(", "aged", "▁20", "-", "ish", ")", "."])
        #expect(BPETokenizer.pieces(of: "  Ein\tMann  \"läuft\" ") == ["▁Ein", "▁Mann", "▁\"", "läuft", "\""])
        #expect(BPETokenizer.pieces(of: "") == [])
    }

    @Test func unknownCharactersBecomeUnk() {
        let tokenizer = BPETokenizer.learn(from: ["abc abc ab"], vocabularySize: 50, lowercase: false)
        let ids = tokenizer.encode("abz 😀 c")
        #expect(ids.filter { $0 == BPETokenizer.unknown }.count == 2, "\(ids.map { tokenizer.symbols[Int($0)] })")
        #expect(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.count })
        #expect(tokenizer.decode(ids) == "ab c", "<unk> is skipped; spaces are not doubled")
    }

    @Test func lowercasingAppliesWhenLearningAndEncoding() {
        let tokenizer = BPETokenizer.learn(from: ["Hello World", "HELLO world"], vocabularySize: 40, lowercase: true)
        #expect(!tokenizer.symbols.contains("H"))
        #expect(tokenizer.encode("HeLLo WORLD") == tokenizer.encode("hello world"))
        #expect(tokenizer.decode(tokenizer.encode("Hello  World")) == "hello world")
    }

    @Test func learningIsDeterministic() throws {
        let train = try SharedMulti30k.data.get().train
        let lines = Array(train.source.prefix(2000) + train.target.prefix(2000))
        let first = BPETokenizer.learn(from: lines, vocabularySize: 600, lowercase: false)
        let second = BPETokenizer.learn(from: lines, vocabularySize: 600, lowercase: false)
        #expect(first == second)
        #expect(first.count == 600)
    }

    @Test func decodingAnEncodedMulti30kLineRestoresIt() throws {
        let data = try SharedMulti30k.data.get()
        let tokenizer = try SharedMulti30k.tokenizer.get()
        #expect(tokenizer.count == SharedMulti30k.tokenizerSize)
        var checked = 0
        for line in data.train.source + data.train.target {
            let ids = tokenizer.encode(line)
            #expect(!ids.contains(BPETokenizer.unknown), "\(line)")
            let decoded = tokenizer.decode(ids)
            if Array(decoded.unicodeScalars) != Array(normalizingWhitespace(line).unicodeScalars) {
                Issue.record("decode(encode(\(String(reflecting: line)))) == \(String(reflecting: decoded))")
                break
            }
            checked += 1
        }
        #expect(checked == 58_000)
        // Held-out lines: exact wherever every character was seen in training.
        for line in data.validation.source + data.validation.target + data.test.source + data.test.target {
            let ids = tokenizer.encode(line)
            guard !ids.contains(BPETokenizer.unknown) else { continue }
            #expect(Array(tokenizer.decode(ids).unicodeScalars) == Array(normalizingWhitespace(line).unicodeScalars))
        }
    }

    @Test func encodingTheTrainingTextUsesSubwordsNotCharacters() throws {
        let data = try SharedMulti30k.data.get()
        let tokenizer = try SharedMulti30k.tokenizer.get()
        let line = data.train.target[0]   // "Two young, White males are outside near many bushes."
        let ids = tokenizer.encode(line)
        #expect(ids.count < line.unicodeScalars.count / 2, "\(ids.map { tokenizer.symbols[Int($0)] })")
        #expect(ids.map { tokenizer.symbols[Int($0)] }.prefix(2) == ["▁Two", "▁young"])
    }

    @Test func serializationRoundTripsThroughJSON() throws {
        let original = BPETokenizer.learn(from: Self.toyLines + ["Zwei Männer, „groß“!"], vocabularySize: 40, lowercase: true)
        let json = try JSONSerialization.data(withJSONObject: ["tokenizer": original.serialized], options: [.sortedKeys])
        let object = try #require(JSONSerialization.jsonObject(with: json) as? [String: Any])
        let restored = try BPETokenizer(serialized: try #require(object["tokenizer"] as? [String: Any]))
        #expect(restored == original)
        #expect(restored.lowercase)
        for line in Self.toyLines + ["zwei lower männer", "unseen ✓ text"] {
            #expect(restored.encode(line) == original.encode(line))
        }
    }

    @Test func aMalformedDescriptionIsAUserError() throws {
        let good = BPETokenizer.learn(from: Self.toyLines, vocabularySize: 21, lowercase: false).serialized
        var noSpecials = good
        noSpecials["vocabulary"] = Array((good["vocabulary"] as! [String]).dropFirst())
        var badMerge = good
        badMerge["merges"] = [["l", "q"]]
        var missing = good
        missing["merges"] = nil
        for description in [noSpecials, badMerge, missing] {
            let error = #expect(throws: UserError.self) { try BPETokenizer(serialized: description) }
            #expect(error?.description.contains("BPE tokenizer") == true, "\(error?.description ?? "")")
        }
    }
}

@Suite struct TranslationDataTests {
    @Test func multi30kHasTheKnownSplitSizes() throws {
        let data = try SharedMulti30k.data.get()
        #expect(data.train.count == 29_000)
        #expect(data.validation.count == 1_014)
        #expect(data.test.count == 1_000)
        #expect(data.train.source[0] == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.")
        #expect(data.train.target[0] == "Two young, White males are outside near many bushes.")
    }

    @Test func theEmbeddedMulti30kEqualsTheSharedDataCopy() throws {
        #expect(try TranslationData.multi30k() == (try SharedMulti30k.data.get()))
    }

    /// Writes a small valid data set: three splits, plain text, `pairs` lines each.
    func writeValidFolder(_ directory: URL, pairs: Int = 3, testPrefix: String = "test_2016_flickr") throws {
        for prefix in ["train", "val", testPrefix] {
            try Data((0..<pairs).map { "Satz \($0) aus \(prefix).\n" }.joined().utf8)
                .write(to: directory.appendingPathComponent("\(prefix).de"))
            try Data((0..<pairs).map { "Sentence \($0) from \(prefix).\n" }.joined().utf8)
                .write(to: directory.appendingPathComponent("\(prefix).en"))
        }
    }

    func expectUserError(in directory: URL, testPrefix: String = "test_2016_flickr", mentioning parts: [String],
                         sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: UserError.self, sourceLocation: sourceLocation) {
            try TranslationData.load(directory: directory, testPrefix: testPrefix)
        }
        let message = error?.description ?? ""
        for part in parts { #expect(message.contains(part), "\(message)", sourceLocation: sourceLocation) }
    }

    @Test func plainAndGzipFilesAndAnotherTestPrefixLoad() throws {
        try withTemporaryDirectory { directory in
            try writeValidFolder(directory, pairs: 4, testPrefix: "test_2017_mscoco")
            // Replace the training files with gzip copies.
            for language in ["de", "en"] {
                let plain = directory.appendingPathComponent("train.\(language)")
                writeGzip(try String(contentsOf: plain, encoding: .utf8), to: directory.appendingPathComponent("train.\(language).gz"))
                try FileManager.default.removeItem(at: plain)
            }
            let data = try TranslationData.load(directory: directory, testPrefix: "test_2017_mscoco")
            #expect(data.train.source == ["Satz 0 aus train.", "Satz 1 aus train.", "Satz 2 aus train.", "Satz 3 aus train."])
            #expect(data.validation.target[3] == "Sentence 3 from val.")
            #expect(data.test.count == 4)
            // English to German reads the same files the other way round.
            let reversed = try TranslationData.load(directory: directory, sourceLanguage: "en", targetLanguage: "de",
                                                    testPrefix: "test_2017_mscoco")
            #expect(reversed.train.source == data.train.target)
        }
    }

    @Test func aMissingFolderIsAUserErrorNamingIt() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("replica-no-such-\(UUID().uuidString)")
        expectUserError(in: directory, mentioning: [directory.path, "no such folder"])
    }

    @Test func aMissingFileIsAUserErrorNamingTheFileAndTheFolder() throws {
        try withTemporaryDirectory { directory in
            try writeValidFolder(directory)
            try FileManager.default.removeItem(at: directory.appendingPathComponent("test_2016_flickr.en"))
            expectUserError(in: directory, mentioning: [directory.appendingPathComponent("test_2016_flickr.en").path,
                                                        "no such file", "folder \(directory.path)"])
            // Another --test-prefix names its own files.
            expectUserError(in: directory, testPrefix: "test_2018_flickr",
                            mentioning: [directory.appendingPathComponent("test_2018_flickr.de").path])
        }
    }

    @Test func unequalLineCountsAreAUserErrorNamingBothFilesAndCounts() throws {
        try withTemporaryDirectory { directory in
            try writeValidFolder(directory)
            try Data("eins\nzwei\n".utf8).write(to: directory.appendingPathComponent("val.de"))
            expectUserError(in: directory, mentioning: [directory.appendingPathComponent("val.de").path + " has 2 lines",
                                                        directory.appendingPathComponent("val.en").path + " has 3"])
        }
    }

    @Test func invalidUTF8IsAUserErrorNamingTheFileAndLine() throws {
        try withTemporaryDirectory { directory in
            try writeValidFolder(directory)
            var bytes = Array("first\nsecond\nthi".utf8)
            bytes += [0xC3, 0x28]   // a two-byte lead followed by an ASCII byte
            bytes += Array("rd\n".utf8)
            try Data(bytes).write(to: directory.appendingPathComponent("val.en"))
            expectUserError(in: directory, mentioning: [directory.appendingPathComponent("val.en").path + ", line 3:",
                                                        "not valid UTF-8", "byte 4"])
            let latin1 = directory.appendingPathComponent("val.en")
            try Data([0x61, 0x0A, 0x62, 0x0A, 0xE9, 0x0A]).write(to: latin1)   // "é" in Latin-1 on line 3
            expectUserError(in: directory, mentioning: [latin1.path + ", line 3:"])
        }
    }

    @Test func anEmptyFileIsAUserErrorNamingIt() throws {
        try withTemporaryDirectory { directory in
            try writeValidFolder(directory)
            let empty = directory.appendingPathComponent("train.de")
            try Data().write(to: empty)
            expectUserError(in: directory, mentioning: [empty.path, "empty"])
        }
    }

    @Test func truncatedGzipIsAUserErrorNamingTheFile() throws {
        try withTemporaryDirectory { directory in
            try writeValidFolder(directory)
            let complete = directory.appendingPathComponent("complete.gz")
            writeGzip((0..<3).map { "Satz \($0) aus train, mit etwas mehr Text darin.\n" }.joined(), to: complete)
            let bytes = try Data(contentsOf: complete)
            let truncated = directory.appendingPathComponent("train.de.gz")
            try bytes.prefix(bytes.count - 12).write(to: truncated)
            expectUserError(in: directory, mentioning: [truncated.path, "truncated"])
        }
    }
}

@Suite struct TranslationBatchTests {
    /// Examples with source and target lengths drawn from 1...maximumLength (plus the specials).
    static func randomExamples(count: Int, maximumLength: Int = 40, seed: UInt64 = 7) -> [TranslationExample] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            let sourceLength = 1 + generator.nextInt(below: maximumLength)
            let targetLength = max(1, sourceLength + generator.nextInt(below: 7) - 3)
            return TranslationExample(source: (0..<sourceLength).map { _ in Int32(5 + generator.nextInt(below: 100)) } + [2],
                                      target: [1] + (0..<targetLength).map { _ in Int32(5 + generator.nextInt(below: 100)) } + [2])
        }
    }

    /// Padding as a fraction of all padded positions, max(S, T) per example.
    static func paddingFraction(_ batches: [[Int]], _ examples: [TranslationExample]) -> Double {
        var padded = 0, real = 0
        for batch in batches {
            let longest = batch.map { examples[$0].length }.max()!
            padded += longest * batch.count
            real += batch.reduce(0) { $0 + examples[$1].length }
        }
        return Double(padded - real) / Double(padded)
    }

    static let tokenBudget = 600

    @Test(arguments: [0, 1, 2])
    func everyExampleIsInExactlyOneBatchPerEpoch(epoch: Int) {
        let examples = Self.randomExamples(count: 1_003)
        let byTokens = makeBatches(examples: examples, tokensPerBatch: Self.tokenBudget, seed: 11, epoch: epoch)
        let bySentences = makeBatches(examples: examples, sentencesPerBatch: 32, seed: 11, epoch: epoch)
        #expect(byTokens.flatMap { $0 }.sorted() == Array(0..<1_003))
        #expect(bySentences.flatMap { $0 }.sorted() == Array(0..<1_003))
        #expect(bySentences.filter { $0.count != 32 }.map(\.count) == [1_003 % 32])
        for batch in byTokens {
            let cost = batch.count * batch.map { examples[$0].length }.max()!
            #expect(cost <= Self.tokenBudget || batch.count == 1)
        }
    }

    @Test func anExampleLongerThanTheBudgetGetsABatchOfItsOwn() {
        let examples = Self.randomExamples(count: 50, maximumLength: 20)
            + [TranslationExample(source: Array(repeating: 7, count: 300) + [2], target: [1, 7, 2])]
        let batches = makeBatches(examples: examples, tokensPerBatch: 100, seed: 1, epoch: 0)
        #expect(batches.contains([50]))
        #expect(batches.flatMap { $0 }.sorted() == Array(0..<51))
    }

    @Test func batchesGroupSimilarLengths() {
        let examples = Self.randomExamples(count: 5_000)
        let bucketed = makeBatches(examples: examples, sentencesPerBatch: 32, seed: 3, epoch: 0)
        var generator = SeededGenerator(seed: 3)
        let shuffled = Array(0..<5_000).shuffled(using: &generator)
        let unbucketed = stride(from: 0, to: 5_000, by: 32).map { Array(shuffled[$0..<min($0 + 32, 5_000)]) }
        let bucketedPadding = Self.paddingFraction(bucketed, examples)
        let unbucketedPadding = Self.paddingFraction(unbucketed, examples)
        #expect(bucketedPadding < 0.05, "\(bucketedPadding)")
        #expect(unbucketedPadding > 0.3, "\(unbucketedPadding)")
        // Batches are shuffled: not in length order.
        let firstLengths = bucketed.map { examples[$0[0]].length }
        #expect(firstLengths != firstLengths.sorted())
    }

    @Test func theSameSeedAndEpochGiveTheSameBatchesAndAnotherEpochOthers() {
        let examples = Self.randomExamples(count: 500)
        let a = makeBatches(examples: examples, tokensPerBatch: Self.tokenBudget, seed: 5, epoch: 2)
        let b = makeBatches(examples: examples, tokensPerBatch: Self.tokenBudget, seed: 5, epoch: 2)
        let c = makeBatches(examples: examples, tokensPerBatch: Self.tokenBudget, seed: 5, epoch: 3)
        let d = makeBatches(examples: examples, tokensPerBatch: Self.tokenBudget, seed: 6, epoch: 2)
        #expect(a == b)
        #expect(a != c)
        #expect(a != d)
    }

    @Test func paddingAndMasksAreRight() {
        let examples = [
            TranslationExample(source: [10, 11, 2], target: [1, 20, 21, 22, 2]),
            TranslationExample(source: [12, 13, 14, 15, 2], target: [1, 23, 2]),
            TranslationExample(source: [99, 2], target: [1, 2]),
        ]
        let batch = PaddedBatch.make(examples: examples, indices: [1, 0, 2])
        #expect(batch.batchSize == 3)
        #expect(batch.sourceLength == 5)
        #expect(batch.targetLength == 4)
        #expect(batch.sourceIds == [12, 13, 14, 15, 2,
                                    10, 11, 2, 0, 0,
                                    99, 2, 0, 0, 0])
        #expect(batch.sourceMask == [true, true, true, true, true,
                                     true, true, true, false, false,
                                     true, true, false, false, false])
        #expect(batch.targetInput == [1, 23, 0, 0,
                                      1, 20, 21, 22,
                                      1, 0, 0, 0])
        #expect(batch.targetOutput == [23, 2, -100, -100,
                                       20, 21, 22, 2,
                                       2, -100, -100, -100])
        #expect(batch.sourceTokenCount == 10)
        #expect(batch.targetTokenCount == 7)
    }

    @Test func corpusExamplesEndWithSentenceEndAndTargetsStartWithSentenceStart() throws {
        let tokenizer = BPETokenizer.learn(from: BPETokenizerTests.toyLines, vocabularySize: 30, lowercase: false)
        let corpus = ParallelCorpus(source: ["low lower", "newest widest low low low"], target: ["widest", ""])
        let examples = corpus.examples(tokenizer: tokenizer)
        #expect(examples[0].source == tokenizer.encode("low lower") + [2])
        #expect(examples[0].target == [1] + tokenizer.encode("widest") + [2])
        #expect(examples[1].target == [1, 2])
        let cut = corpus.examples(tokenizer: tokenizer, maximumLength: 4)
        #expect(cut[1].source.count == 4 && cut[1].source.last == 2)
        #expect(cut[1].source.prefix(3) == tokenizer.encode("newest widest low low low").prefix(3))
        #expect(cut.allSatisfy { $0.source.count <= 4 && $0.target.count - 1 <= 4 })
    }
}
