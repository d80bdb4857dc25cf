import Testing
import ReplicaCore
import ReplicaData

@Suite struct BERTMaskingTests {
    @Test func maskingChoosesFifteenPercentOfOrdinaryTokensAndSplitsThem801010() {
        let V = 100
        var source = SeededGenerator(seed: 11)
        let ids = (0..<200_000).map { _ in Int32(source.nextInt(below: V)) }   // 5% are special tokens
        var generator = SeededGenerator(seed: 12)
        let (input, chosen) = BERTMasking.mask(ids, rate: 0.15, vocabularySize: V, using: &generator)
        let ordinary = ids.filter { $0 >= BERTMasking.firstOrdinaryToken }.count
        #expect(chosen.allSatisfy { ids[$0] >= BERTMasking.firstOrdinaryToken }, "a special token was chosen")
        let chosenSet = Set(chosen)
        #expect((0..<ids.count).allSatisfy { chosenSet.contains($0) || input[$0] == ids[$0] }, "an unchosen token changed")
        let rate = Double(chosen.count) / Double(ordinary)
        #expect(abs(rate - 0.15) < 0.005, "chosen \(rate)")
        let masked = chosen.filter { input[$0] == BPETokenizer.mask }.count
        let unchanged = chosen.filter { input[$0] == ids[$0] }.count
        let random = chosen.count - masked - unchanged
        let n = Double(chosen.count)
        #expect(abs(Double(masked) / n - 0.8) < 0.012, "masked \(Double(masked) / n)")
        // A random draw equal to the original counts as unchanged: 0.1 + 0.1/(V − 5).
        #expect(abs(Double(unchanged) / n - (0.1 + 0.1 / Double(V - 5))) < 0.008, "unchanged \(Double(unchanged) / n)")
        #expect(abs(Double(random) / n - 0.1 * (1 - 1 / Double(V - 5))) < 0.008, "random \(Double(random) / n)")
        #expect(chosen.allSatisfy { input[$0] == BPETokenizer.mask || input[$0] >= BERTMasking.firstOrdinaryToken },
                "a random replacement was a special token")
    }

    @Test func sentenceStartAndEndAreNeverChosenInABatch() {
        let sentences: [[Int32]] = (0..<50).map { _ in [BPETokenizer.sentenceStart] + Array(repeating: 7, count: 9) + [BPETokenizer.sentenceEnd] }
        let batch = MaskedBatch.make(sentences: sentences, indices: Array(0..<50), rate: 1, vocabularySize: 20) {
            SeededGenerator(seed: 3, UInt64($0))
        }
        // Rate 1: every ordinary token is chosen, and only those.
        #expect(batch.rows.count == 50 * 9)
        #expect(batch.rows.allSatisfy { $0 % 11 != 0 && $0 % 11 != 10 })
        #expect(batch.targets.allSatisfy { $0 == 7 })
    }
}
