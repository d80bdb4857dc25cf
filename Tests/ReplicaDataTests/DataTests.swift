import Foundation
import Testing
import ReplicaCore
import ReplicaData
import _ReplicaTestSupport

@Suite struct CharacterVocabularyTests {
    @Test func charactersAreTheSortedDistinctCharactersOfTheText() {
        let vocabulary = CharacterVocabulary(text: "hello world\nhello")
        #expect(vocabulary.characters == ["\n", " ", "d", "e", "h", "l", "o", "r", "w"])
        #expect(vocabulary.count == 9)
    }

    @Test func encodingThenDecodingGivesTheTextBack() throws {
        let text = "First Citizen:\nBefore we proceed any further, hear me speak.\n"
        let vocabulary = CharacterVocabulary(text: text)
        let ids = try vocabulary.encode(text)
        #expect(ids.count == text.count)
        #expect(ids.allSatisfy { $0 >= 0 && Int($0) < vocabulary.count })
        #expect(vocabulary.decode(ids) == text)
        // Ids are positions in the sorted character list.
        #expect(try vocabulary.encode("\n") == [0])
        #expect(try vocabulary.encode(" ") == [1])
    }

    @Test func anUnknownCharacterIsAUserErrorNamingIt() {
        let vocabulary = CharacterVocabulary(text: "abc")
        let error = #expect(throws: UserError.self) { try vocabulary.encode("abz") }
        #expect(error?.description.contains("\"z\"") == true, "\(error?.description ?? "")")
    }

    /// nanoGPT's prepare.py takes `sorted(list(set(data)))` of a Python str: Unicode code points.
    /// "\r\n" is two characters there (13 and 10), and a decomposed "é" ("e" + U+0301) is two,
    /// distinct from the precomposed U+00E9; ids, vocabulary size and the 90/10 split follow from that.
    @Test func charactersAreCodePointsAsInNanoGPT() throws {
        let text = "line one\r\nline two\r\ncaf\u{E9} cafe\u{301}\n"
        let vocabulary = CharacterVocabulary(text: text)
        let codePoints = Set(text.unicodeScalars).map(\.value).sorted()
        #expect(vocabulary.count == codePoints.count, "\(vocabulary.characters.map(\.value)) vs \(codePoints)")
        let ids = try vocabulary.encode(text)
        #expect(ids.count == text.unicodeScalars.count, "one id per code point, as len() in Python")
        #expect(Array(vocabulary.decode(ids).unicodeScalars) == Array(text.unicodeScalars), "decoding restores the exact text")
    }

    @Test func vocabulariesWithTheSameCharactersAreEqual() {
        #expect(CharacterVocabulary(text: "cab") == CharacterVocabulary(characters: ["a", "b", "c"]))
        #expect(CharacterVocabulary(text: "cab") != CharacterVocabulary(characters: ["a", "b"]))
    }
}

@Suite struct TokenBlocksTests {
    @Test func targetsAreTheInputsShiftedByOne() {
        let blocks = TokenBlocks(tokens: (0..<10).map { Int32($0 * 3) }, blockSize: 4)
        let (inputs, targets) = blocks.batch(starts: [0, 5, 2])
        #expect(inputs == [0, 3, 6, 9, 15, 18, 21, 24, 6, 9, 12, 15])
        #expect(targets == [3, 6, 9, 12, 18, 21, 24, 27, 9, 12, 15, 18])
    }

    @Test func everyStartWhoseBlockAndTargetsFitIsAnExample() {
        // Starts 0...5: the block at 5 covers tokens 5...8 and its targets 6...9.
        let blocks = TokenBlocks(tokens: (0..<10).map(Int32.init), blockSize: 4)
        #expect(blocks.exampleCount == 6)
        let last = blocks.batch(starts: [blocks.exampleCount - 1])
        #expect(last.targets.last == 9)
        #expect(TokenBlocks(tokens: (0..<4).map(Int32.init), blockSize: 4).exampleCount == 0)
        #expect(TokenBlocks(tokens: (0..<5).map(Int32.init), blockSize: 4).exampleCount == 1)
        #expect(TokenBlocks(tokens: [], blockSize: 4).exampleCount == 0)
    }
}

@Suite struct DistributedSamplerTests {
    @Test func eachEpochsOrderIsAPermutationOfTheExamples() {
        let sampler = DistributedSampler(exampleCount: 101, globalBatch: 8, seed: 5)
        for epoch in 0..<3 {
            #expect(sampler.permutation(forEpoch: epoch).sorted() == (0..<101).map(Int32.init))
        }
        #expect(DistributedSampler(exampleCount: 0, globalBatch: 1, seed: 5).permutation(forEpoch: 0).isEmpty)
        #expect(DistributedSampler(exampleCount: 1, globalBatch: 1, seed: 5).permutation(forEpoch: 0) == [0])
    }

    @Test func theSameSeedAndEpochGiveTheSameOrderAndAnotherEpochOrSeedAnother() {
        let sampler = DistributedSampler(exampleCount: 200, globalBatch: 8, seed: 5)
        let first = sampler.permutation(forEpoch: 0)
        #expect(DistributedSampler(exampleCount: 200, globalBatch: 8, seed: 5).permutation(forEpoch: 0) == first)
        #expect(sampler.permutation(forEpoch: 1) != first)
        #expect(DistributedSampler(exampleCount: 200, globalBatch: 8, seed: 6).permutation(forEpoch: 0) != first)
        #expect(first != (0..<200).map(Int32.init), "the order is shuffled")
    }

    @Test func stepsPerEpochDropsTheRemainder() {
        #expect(DistributedSampler(exampleCount: 100, globalBatch: 12, seed: 1).stepsPerEpoch == 8)
        #expect(DistributedSampler(exampleCount: 96, globalBatch: 12, seed: 1).stepsPerEpoch == 8)
        #expect(DistributedSampler(exampleCount: 11, globalBatch: 12, seed: 1).stepsPerEpoch == 0)
    }

    @Test(arguments: [1, 2, 3])
    func theRanksSlicesOfAStepAreDisjointAndMakeUpTheGlobalBatch(ranks: Int) {
        let batch = 4
        let sampler = DistributedSampler(exampleCount: 150, globalBatch: batch * ranks, seed: 9)
        let permutation = sampler.permutation(forEpoch: 2)
        var seenThisEpoch = Set<Int>()
        for step in 0..<sampler.stepsPerEpoch {
            let slices = (0..<ranks).map { sampler.indices(in: permutation, step: step, rank: $0, batchSize: batch) }
            let union = slices.flatMap { $0 }
            #expect(slices.allSatisfy { $0.count == batch })
            #expect(Set(union).count == batch * ranks, "slices of step \(step) overlap")
            let global = permutation[(step * batch * ranks)..<((step + 1) * batch * ranks)].map(Int.init)
            #expect(union == global)
            #expect(seenThisEpoch.isDisjoint(with: union), "an example came twice in one epoch")
            seenThisEpoch.formUnion(union)
        }
    }

    @Test func twoRanksWithBatchBSeeWhatOneRankWithBatchTwoBSees() {
        let b = 5, count = 173
        let two = DistributedSampler(exampleCount: count, globalBatch: 2 * b, seed: 42)
        let one = DistributedSampler(exampleCount: count, globalBatch: 2 * b, seed: 42)
        #expect(two.stepsPerEpoch == one.stepsPerEpoch)
        for epoch in 0..<2 {
            let permutationTwo = two.permutation(forEpoch: epoch), permutationOne = one.permutation(forEpoch: epoch)
            for step in 0..<two.stepsPerEpoch {
                let ranks = (0..<2).flatMap { two.indices(in: permutationTwo, step: step, rank: $0, batchSize: b) }
                let alone = one.indices(in: permutationOne, step: step, rank: 0, batchSize: 2 * b)
                #expect(ranks == alone, "epoch \(epoch) step \(step)")
            }
        }
    }
}

@Suite struct TextCorpusTests {
    /// A fresh temporary folder.
    func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    func expectUserError(naming path: String, containing words: [String] = [], _ body: () throws -> Void,
                         sourceLocation: SourceLocation = #_sourceLocation) {
        let error = #expect(throws: UserError.self, sourceLocation: sourceLocation) { try body() }
        let message = error?.description ?? ""
        #expect(message.contains(path), "\(message)", sourceLocation: sourceLocation)
        for word in words { #expect(message.contains(word), "\(message)", sourceLocation: sourceLocation) }
    }

    @Test func aValidUTF8FileLoadsAsItsText() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("text.txt").path
        let text = "Ærø — naïve café\nzweite Zeile: 東京\n"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        #expect(try TextCorpus.load(path) == text)
    }

    @Test func aMissingFileIsAUserErrorNamingIt() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("absent.txt").path
        expectUserError(naming: path, containing: ["no such file"]) { _ = try TextCorpus.load(path) }
    }

    @Test func aDirectoryIsAUserErrorNamingIt() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        expectUserError(naming: folder.path, containing: ["directory"]) { _ = try TextCorpus.load(folder.path) }
    }

    @Test func anEmptyFileIsAUserErrorNamingIt() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("empty.txt").path
        try Data().write(to: URL(fileURLWithPath: path))
        expectUserError(naming: path, containing: ["empty"]) { _ = try TextCorpus.load(path) }
    }

    @Test func invalidUTF8IsAUserErrorNamingTheFileAndTheLine() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("latin1.txt").path
        // Line 3 holds "café" in Latin-1: 0xE9 followed by a newline is not UTF-8.
        var bytes = Array("first line\nsecond — line\ncaf".utf8)
        bytes += [0xE9, 0x0A]
        bytes += Array("fourth line\n".utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        expectUserError(naming: path, containing: ["UTF-8", "line 3"]) { _ = try TextCorpus.load(path) }
    }

    @Test func aTruncatedMultibyteCharacterAtTheEndIsInvalidUTF8() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("cut.txt").path
        try Data(Array("ok\n".utf8) + [0xE2, 0x80]).write(to: URL(fileURLWithPath: path))
        expectUserError(naming: path, containing: ["UTF-8", "line 2"]) { _ = try TextCorpus.load(path) }
    }

    @Test func theEmbeddedTinyShakespeareHasItsKnownLength() throws {
        let text = try TextCorpus.tinyShakespeare()
        #expect(text.unicodeScalars.count == 1_115_394)
        #expect(CharacterVocabulary(text: text).count == 65)
    }
}
