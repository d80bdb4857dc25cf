import Foundation
import Testing
import ReplicaCore
@testable import ReplicaData

@Suite struct WordCorpusTests {
    @Test func wordsAreLowerCasedRunsOfLettersAndDigitsWithInnerApostrophes() {
        #expect(WordTokenizer.words("Two young, White males don't STOP—at 3pm.") == ["two", "young", "white", "males", "don't", "stop", "at", "3pm"])
        #expect(WordTokenizer.words("'Tis rock'n'roll, o’er the dogs' bowl''s") == ["tis", "rock'n'roll", "o'er", "the", "dogs", "bowl", "s"])
        #expect(WordTokenizer.words("  ...  ") == [])
        #expect(WordTokenizer.words("Straße ÉTÉ") == ["straße", "été"])
    }

    @Test func theVocabularyKeepsWordsAtTheMinimumCountMostFrequentFirst() {
        let sentences = [["b", "a", "c", "a"], ["d", "b", "a"], ["c", "e"], ["b"]]
        let vocabulary = WordVocabulary(sentences: sentences, minimumCount: 2)
        // a 3, b 3, c 2 (d and e once): count descending, ties in spelling order.
        #expect(vocabulary.words == ["a", "b", "c"])
        #expect(vocabulary.counts == [3, 3, 2])
        #expect(vocabulary.totalCount == 8)
        #expect(vocabulary.encode(["d", "c", "x", "a"]) == [2, 0])
        #expect(vocabulary.id(of: "e") == nil)
        #expect(WordVocabulary(sentences: sentences, minimumCount: 1).count == 5)
        #expect(WordVocabulary(sentences: sentences, minimumCount: 4).count == 0)
    }

    @Test func keepProbabilitiesFollowWord2vecsFormula() {
        let vocabulary = WordVocabulary(words: ["a", "b", "c", "d"], counts: [1000, 100, 10, 1])
        let t = 1e-3
        let keep = vocabulary.keepProbabilities(threshold: t)
        // word2vec.c: ran = (sqrt(cn / (sample * train_words)) + 1) * (sample * train_words) / cn.
        let scaled = t * 1111
        for (c, p) in zip([1000.0, 100, 10, 1], keep) {
            let expected = min(1, ((c / scaled).squareRoot() + 1) * scaled / c)
            #expect(abs(Double(p) - expected) < 1e-6, "count \(c): \(p) vs \(expected)")
        }
        #expect(abs(Double(keep[0]) - 0.034_443) < 1e-5)
        #expect(keep[3] == 1)
        #expect(keep[0] < keep[1] && keep[1] < keep[2])
        #expect(vocabulary.keepProbabilities(threshold: 0) == [1, 1, 1, 1])
    }

    @Test func theUnigramTableHoldsEachWordInProportionToItsCountToTheThreeQuarters() {
        let counts = [5000, 700, 90, 12, 3]
        let size = 100_000
        let table = UnigramTable(counts: counts, size: size)
        #expect(table.entries.count == size)
        let total = counts.reduce(0.0) { $0 + pow(Double($1), 0.75) }
        var tally = [Int](repeating: 0, count: counts.count)
        for entry in table.entries { tally[Int(entry)] += 1 }
        for (word, count) in counts.enumerated() {
            let expected = pow(Double(count), 0.75) / total
            #expect(abs(Double(tally[word]) / Double(size) - expected) <= 1.0 / Double(size), "word \(word)")
        }
        // Entries are in word order, as word2vec.c fills them.
        #expect(table.entries == table.entries.sorted())
        // Draws follow the table: 200,000 draws, each share within 5 standard deviations.
        var generator = SeededGenerator(seed: 7)
        var drawn = [Int](repeating: 0, count: counts.count)
        let draws = 200_000
        for _ in 0..<draws { drawn[Int(table.sample(using: &generator))] += 1 }
        for word in counts.indices {
            let p = Double(tally[word]) / Double(size)
            let sigma = (p * (1 - p) / Double(draws)).squareRoot()
            #expect(abs(Double(drawn[word]) / Double(draws) - p) < 5 * sigma + 1e-9, "word \(word)")
        }
    }

    @Test func aContextTakesUpToTheReachOnEachSideWithinItsSentence() {
        let stream = WordStream(sentences: [[10, 11, 12, 13, 14, 15, 16], [], [17, 18]])
        #expect(stream.offsets == [0, 7, 9])
        let all: (Int) -> Bool = { _ in true }
        #expect(stream.context(at: 3, reach: 2, isKept: all) == [11, 12, 14, 15])
        #expect(stream.context(at: 0, reach: 3, isKept: all) == [11, 12, 13])
        #expect(stream.context(at: 6, reach: 9, isKept: all) == [10, 11, 12, 13, 14, 15])
        #expect(stream.context(at: 7, reach: 5, isKept: all) == [18])
        #expect(stream.sentence(containing: 8) == 7..<9)
        // A discarded word is skipped and the window reaches one word further (word2vec subsamples first).
        #expect(stream.context(at: 3, reach: 2) { $0 != 2 && $0 != 5 } == [10, 11, 14, 16])
        #expect(stream.context(at: 8, reach: 1) { $0 != 7 } == [])
    }

    @Test func windowsShrinkUniformlyAndDrawCentresAsSubsamplingKeepsThem() {
        // One long sentence of two words, 90% word 0: the reach is uniform in 1...4, so away from the
        // ends a context has 2, 4, 6 or 8 words, equally often; centres follow count × keep.
        var generator = SeededGenerator(seed: 3)
        let tokens = (0..<20_000).map { _ in Int32(generator.nextUniform() < 0.9 ? 0 : 1) }
        let stream = WordStream(sentences: [tokens])
        let vocabulary = WordVocabulary(words: ["x", "y"], counts: [tokens.filter { $0 == 0 }.count, tokens.filter { $0 == 1 }.count])
        let table = UnigramTable(counts: vocabulary.counts, size: 1000)
        let plain = CBOWWindowSampler(stream: stream, keep: [1, 1], table: table, window: 4, negativeCount: 3)
        let windows = plain.windows(count: 8000, using: &generator)
        #expect(windows.count == 8000 && windows.negatives.count == 8000 * 3)
        var sizes = [Int: Int]()
        for b in 0..<windows.count { sizes[Int(windows.contextOffsets[b + 1] - windows.contextOffsets[b]), default: 0] += 1 }
        #expect(Set(sizes.keys).isSubset(of: [1, 2, 3, 4, 5, 6, 7, 8]))
        for size in [2, 4, 6, 8] {
            #expect(abs(Double(sizes[size] ?? 0) / 8000 - 0.25) < 0.03, "context size \(size): \(sizes)")
        }
        let keep = vocabulary.keepProbabilities(threshold: 0.05)
        #expect(keep[0] < 0.9 && keep[1] == 1)
        let subsampled = CBOWWindowSampler(stream: stream, keep: keep, table: table, window: 4, negativeCount: 3)
        let drawn = subsampled.windows(count: 8000, using: &generator)
        let share = Double(drawn.centres.filter { $0 == 0 }.count) / 8000
        let expected = Double(vocabulary.counts[0]) * Double(keep[0])
            / (Double(vocabulary.counts[0]) * Double(keep[0]) + Double(vocabulary.counts[1]))
        #expect(abs(share - expected) < 0.02, "share of word 0 among centres \(share), expected \(expected)")
        #expect(abs(share - 0.9) > 0.05)
    }

    @Test func aShortOrFewLinedFileIsAUserErrorNamingIt() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("words-\(UUID().uuidString).txt").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("one line\ntwo lines\n".utf8).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: UserError.self) { try WordCorpus.load(path: path) }
        #expect(error?.description.contains(path) == true)
        try Data((0..<20).map { "line \($0) of words\n" }.joined().utf8).write(to: URL(fileURLWithPath: path))
        let corpus = try WordCorpus.load(path: path)
        #expect(corpus.train.count == 18 && corpus.heldOut.count == 2)
        #expect(corpus.heldOut[1] == ["line", "19", "of", "words"])
    }
}
