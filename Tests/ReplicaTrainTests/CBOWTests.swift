import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

@Suite struct CBOWTaskTests {
    /// The first 4,000 Multi30k English training captions and 300 validation captions.
    static let corpus = Result { () throws -> WordCorpus in
        let full = try WordCorpus.multi30kEnglish()
        return WordCorpus(train: Array(full.train.prefix(4000)), heldOut: Array(full.heldOut.prefix(300)), description: "test")
    }

    static func settings() -> CBOWSettings {
        var settings = CBOWSettings()
        settings.embedding = 24
        settings.evaluationWindows = 512
        settings.tableSize = 100_000
        return settings
    }

    static func options(batch: Int, accumulation: Int = 1, steps: Int) -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = steps
        options.batchSize = batch
        options.gradientAccumulation = accumulation
        options.optimizer = .adam
        options.learningRate = 1e-2
        options.warmupSteps = 2
        options.weightDecay = 0
        options.beta2 = 0.999
        options.clip = 0
        options.progress = .none
        options.evaluationInterval = 0
        return options
    }

    static func train(ranks: Int, options: TrainingOptions) throws -> [CBOWTask] {
        let group = ThreadCommunicatorGroup(size: ranks)
        let tasks = Locked<[Int: CBOWTask]>([:])
        try group.run { rank in
            let task = try CBOWTask(corpus: corpus.get(), settings: settings(), options: options, rank: rank, ranks: ranks)
            let trainer = try Trainer(task: task, options: options, communicator: group.communicator(rank: rank))
            try trainer.synchronizeInitialState()
            _ = try trainer.run()
            tasks.update { $0[rank] = task }
        }
        return (0..<ranks).map { tasks.value[$0]! }
    }

    static func relativeDifference(_ a: CBOWTask, _ b: CBOWTask) -> Double {
        var difference = 0.0, norm = 0.0
        for (p, q) in zip(a.arena.allValues.scalars, b.arena.allValues.scalars) {
            difference += Double(p - q) * Double(p - q)
            norm += Double(q) * Double(q)
        }
        return (difference / norm).squareRoot()
    }

    @Test func twoRanksEqualOneRankWithTheGlobalBatch() throws {
        let single = try Self.train(ranks: 1, options: Self.options(batch: 64, accumulation: 2, steps: 8))[0]
        let pair = try Self.train(ranks: 2, options: Self.options(batch: 64, steps: 8))
        #expect(Self.relativeDifference(pair[0], single) < 1e-5)
        #expect(pair[0].arena.allValues.scalars == pair[1].arena.allValues.scalars)
        // The ranks drew different windows: rank 1's first batch is slot 1, not slot 0.
        #expect(pair[0].windows(step: 0, micro: 0) != pair[1].windows(step: 0, micro: 0))
        #expect(pair[1].windows(step: 3, micro: 0) == single.windows(step: 3, micro: 1))
    }

    @Test func heldOutLossFallsWithTraining() throws {
        var options = Self.options(batch: 128, steps: 300)
        options.learningRate = 3e-2
        let untrained = try CBOWTask(corpus: Self.corpus.get(), settings: Self.settings(), options: options, rank: 0, ranks: 1)
        let before = try untrained.evaluate(communicator: LocalCommunicator())
        // Output vectors start at zero: every term is log 2, a centre's and each negative's other than the centre.
        let held = untrained.heldOut
        let terms = (0..<held.count).reduce(0) { sum, b in sum + 1 + (0..<5).filter { held.negatives[b * 5 + $0] != held.centres[b] }.count }
        #expect(abs(before["val_loss"]! - Double(terms) * log(2.0) / Double(held.count)) < 1e-6)
        let trained = try Self.train(ranks: 1, options: options)[0]
        let after = try trained.evaluate(communicator: LocalCommunicator())
        #expect(after["val_loss"]! < before["val_loss"]! - 1.0, "val loss \(before) -> \(after)")
        // Chance is 1/6 above 5 negatives and about 10/1,000 for the top 10 of this vocabulary.
        #expect(after["val_accuracy"]! > 0.3, "\(after)")
        #expect(after["val_top10"]! > 0.05 && before["val_top10"]! < 0.01, "\(before) -> \(after)")
    }

    @Test func theCheckpointStateHoldsTheVocabularyWithCounts() throws {
        let task = try CBOWTask(corpus: Self.corpus.get(), settings: Self.settings(), options: Self.options(batch: 8, steps: 1), rank: 0, ranks: 1)
        let state = task.checkpointState
        let words = try #require(state["vocab"] as? [String])
        let counts = try #require(state["counts"] as? [Int])
        #expect(words.count == task.vocabulary.count && counts == task.vocabulary.counts)
        #expect(words.first == "a" && counts == counts.sorted(by: >) && counts.last! >= 3)
        #expect(task.arena.slot(named: CBOW.inputEmbeddingName)?.shape == [words.count, 24])
    }

    @Test func tooFewWordsIsAUserErrorNamingTheText() {
        let tiny = WordCorpus(train: [["a", "b"], ["a", "b"], ["a", "c"]], heldOut: [["a", "b"]], description: "tiny.txt")
        let error = #expect(throws: UserError.self) {
            try CBOWTask(corpus: tiny, settings: Self.settings(), options: Self.options(batch: 8, steps: 1), rank: 0, ranks: 1)
        }
        #expect(error?.description.contains("tiny.txt") == true)
    }
}
