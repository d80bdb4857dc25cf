import Testing
import ReplicaCore
import ReplicaData

@Suite struct GlobalBatchesTests {
    /// 3,000 pairs of 3 to 40 tokens: a token budget cuts a different number of batches from each
    /// epoch's shuffle.
    static let examples: [TranslationExample] = {
        var generator = SeededGenerator(seed: 9)
        return (0..<3000).map { _ in
            let length = 3 + generator.nextInt(below: 38)
            return TranslationExample(source: [Int32](repeating: 5, count: length), target: [Int32](repeating: 6, count: length))
        }
    }()

    static func make(_ epoch: Int) -> [[Int]] { makeBatches(examples: examples, tokensPerBatch: 600, seed: 4, epoch: epoch) }

    @Test func stepsWalkEveryEpochsOwnBatchesInOrderWhateverTheirCount() {
        let counts = (0..<4).map { Self.make($0).count }
        #expect(Set(counts).count > 1, "the epochs' batch counts \(counts) should differ, or this test shows nothing")
        let batches = GlobalBatches(rank: 0, ranks: 1, microSteps: 1, make: Self.make)
        #expect(batches.stepsPerEpoch == counts[0])
        var step = 0
        for epoch in 0..<4 {
            var seen: [Int] = []
            for index in 0..<counts[epoch] {
                let position = batches.position(step: step)
                #expect(position.epoch == epoch && position.index == index, "step \(step)")
                seen += batches.share(step: step, micro: 0)
                step += 1
            }
            #expect(seen.sorted() == Array(0..<Self.examples.count), "epoch \(epoch): every example exactly once")
        }
        // Positions do not depend on the order they are asked in (a resumed run starts mid-way).
        let fresh = GlobalBatches(rank: 0, ranks: 1, microSteps: 1, make: Self.make)
        #expect(fresh.position(step: step - 1) == (3, counts[3] - 1))
        #expect(fresh.position(step: 0) == (0, 0))
    }

    @Test func ranksAndMicroStepsSplitEachGlobalBatchWithoutOverlap() {
        for (ranks, microSteps) in [(2, 1), (3, 2)] {
            let views = (0..<ranks).map { GlobalBatches(rank: $0, ranks: ranks, microSteps: microSteps, make: Self.make) }
            for step in [0, 17, 250] {
                let (epoch, index) = views[0].position(step: step)
                let parts = (0..<microSteps).flatMap { micro in views.map { $0.share(step: step, micro: micro) } }
                #expect(parts.flatMap { $0 } == Self.make(epoch)[index], "\(ranks) ranks × \(microSteps), step \(step)")
            }
        }
    }
}
