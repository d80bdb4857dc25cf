import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

@Suite struct CBOWModelTests {
    /// Four windows over 7 words, d = 5, k = 3; window 2's second negative is its own centre.
    static let centres: [Int32] = [0, 3, 6, 2]
    static let contextOffsets: [Int32] = [0, 2, 5, 6, 10]
    static let contexts: [Int32] = [1, 2, 0, 4, 5, 3, 1, 1, 5, 6]
    static let negatives: [Int32] = [4, 5, 1, 0, 2, 6, 1, 6, 0, 3, 4, 5]

    static func model(seed: UInt64) -> CBOW {
        var config = CBOWConfig()
        config.vocabularySize = 7
        config.embedding = 5
        let model = CBOW(config)
        var generator = SeededGenerator(seed: seed)
        model.arena.allValues.fillUniform(bound: 1, using: &generator)
        return model
    }

    func forward(_ model: CBOW) -> CBOW.Cache {
        model.forward(centres: Self.centres, contextOffsets: Self.contextOffsets, contexts: Self.contexts, negatives: Self.negatives)
    }

    @Test func gradientsMatchFiniteDifferences() {
        let model = Self.model(seed: 11)
        let normalizer: Float = 3
        let results = checkGradients(arena: model.arena, inputs: [], directions: 5, loss: {
            model.loss(forward(model)) / Double(normalizer)
        }, gradients: {
            model.backward(forward(model), normalizer: normalizer)
            return []
        })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(result)") }
        // Element-wise on a few entries of each table, including a row only a negative touches.
        let base = model.arena.allGradients.copy()
        for index in [0, 7, 22, 34, 35 + 4, 35 + 22, 35 + 31, 69] {
            let epsilon: Float = 1e-2
            let original = model.arena.allValues[index]
            model.arena.allValues[index] = original + epsilon
            let plus = model.loss(forward(model)) / Double(normalizer)
            model.arena.allValues[index] = original - epsilon
            let minus = model.loss(forward(model)) / Double(normalizer)
            model.arena.allValues[index] = original
            let numerical = (plus - minus) / (2 * Double(epsilon))
            let analytic = Double(base[index])
            #expect(abs(numerical - analytic) <= 1e-2 * max(abs(numerical), abs(analytic), 1e-2), "element \(index): \(analytic) vs \(numerical)")
        }
    }

    @Test func theLossIsTheNegativeSamplingObjectiveAndSkipsANegativeEqualToTheCentre() {
        let model = Self.model(seed: 5)
        let cache = forward(model)
        let d = 5
        let values = model.arena.allValues.scalars
        func row(_ table: Int, _ word: Int32) -> [Double] {
            (0..<d).map { Double(values[table * 35 + Int(word) * d + $0]) }
        }
        var expected = 0.0
        for b in 0..<4 {
            let words = Self.contexts[Int(Self.contextOffsets[b])..<Int(Self.contextOffsets[b + 1])]
            var h = [Double](repeating: 0, count: d)
            for w in words { for j in 0..<d { h[j] += row(0, w)[j] / Double(words.count) } }
            func score(_ o: Int32) -> Double { zip(h, row(1, o)).reduce(0) { $0 + $1.0 * $1.1 } }
            expected += log(1 + exp(-score(Self.centres[b])))
            for j in 0..<3 where Self.negatives[b * 3 + j] != Self.centres[b] {
                expected += log(1 + exp(score(Self.negatives[b * 3 + j])))
            }
        }
        #expect(abs(model.loss(cache) - expected) < 1e-4 * expected)
        #expect(!cache.counts(2, 2) && cache.counts(2, 1) && cache.counts(2, 0))
        // With word2vec's start (output vectors zero) every term is log 2: 4 centres + 11 negatives.
        model.initialize(seed: 1)
        #expect(abs(model.loss(forward(model)) - 15 * log(2.0)) < 1e-9)
    }
}

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
