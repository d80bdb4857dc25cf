import Foundation
import Testing
import ReplicaCore
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

/// A run resumed on another rank count (issue 18). Keeping the global batch (per-rank batch ×
/// ranks × `--grad-accum`) continues the run: every split of a step's global batch draws the same
/// examples, so the only difference from an uninterrupted run is the order in which Float
/// gradients are summed. Another global batch is refused unless `--allow-batch-change`, which
/// scales the learning rate by new/old. On thread ranks; ElasticCommandTests does it under mpirun.
@Suite struct ElasticResumeTests {
    func temporaryDirectory() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("replica-elastic-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// One split of the global batch.
    struct Split {
        var ranks: Int
        var batch: Int
        var accumulation = 1
    }

    func options(_ split: Split, steps: Int, directory: URL, resume: Bool = false) -> TrainingOptions {
        var options = DataParallelEngineTests.options(batch: split.batch, accumulation: split.accumulation, steps: steps)
        options.checkpointDirectory = directory.path
        options.resume = resume
        return options
    }

    /// Trains `split` with `options`; with `stopAfter`, every rank is asked to stop after that
    /// many steps (a checkpoint of it is written, as for a signal). Rank 0's trainer and parameters.
    func train(_ split: Split, _ options: TrainingOptions, stopAfter: Int? = nil) throws -> (policy: LearningRatePolicy, parameters: [Float]) {
        let group = ThreadCommunicatorGroup(size: split.ranks)
        let result = Locked<(LearningRatePolicy, [Float])?>(nil)
        try group.run { rank in
            let task = try CharLMTask(text: DataParallelEngineTests.text.get(), dataDescription: "test",
                                      config: DataParallelEngineTests.config(), options: options, rank: rank, ranks: split.ranks)
            let trainer = try Trainer(task: task, options: options, communicator: group.communicator(rank: rank))
            var asked = 0
            trainer.stopRequest = {
                defer { asked += 1 }
                return stopAfter.map { asked >= $0 ? SIGUSR1 : 0 } ?? 0
            }
            try trainer.synchronizeInitialState()
            try trainer.resumeIfAsked()
            _ = try trainer.run()
            if rank == 0 { result.update { $0 = (trainer.policy, task.arena.allValues.scalars) } }
        }
        return try #require(result.value)
    }

    static func relativeDifference(_ x: [Float], _ y: [Float]) -> Double {
        var difference = 0.0, norm = 0.0
        for (p, q) in zip(x, y) {
            difference += Double(p - q) * Double(p - q)
            norm += Double(q) * Double(q)
        }
        return (difference / norm).squareRoot()
    }

    /// 2 ranks × 12 for 20 steps (of a 40-step run), then 20 more on `resumed`.
    func twoRanksThen(_ resumed: Split) throws -> [Float] {
        let directory = temporaryDirectory()
        let first = Split(ranks: 2, batch: 12)
        _ = try train(first, options(first, steps: 40, directory: directory), stopAfter: 20)
        #expect(Checkpoint.newest(in: directory)?.lastPathComponent == "step-00000020")
        return try train(resumed, options(resumed, steps: 40, directory: directory, resume: true)).parameters
    }

    static let reference = Result {
        let split = Split(ranks: 2, batch: 12)
        return try ElasticResumeTests().train(split, ElasticResumeTests().options(split, steps: 40, directory: ElasticResumeTests().temporaryDirectory())).parameters
    }

    // The tolerance: the same 24 sequences a step on every split, summed in another order (12 + 12
    // on 2 ranks, 12 then 12 in 2 micro-steps on 1, 8 + 8 + 8 on 3): Float rounding of about 1e-7
    // a step, which 20 AdamW steps carry to 1e-6 at most; a wrong example or a wrong learning rate
    // moves the parameters by 1e-3 or more (checked below).

    @Test func oneRankWithTwoMicroStepsContinuesATwoRankRun() throws {
        let parameters = try twoRanksThen(Split(ranks: 1, batch: 12, accumulation: 2))
        #expect(Self.relativeDifference(parameters, try Self.reference.get()) < 1e-5)
    }

    @Test func threeRanksOfEightContinueATwoRankRunOfTwelve() throws {
        let parameters = try twoRanksThen(Split(ranks: 3, batch: 8))
        #expect(Self.relativeDifference(parameters, try Self.reference.get()) < 1e-5)
    }

    @Test func anotherGlobalBatchIsRefusedNamingBothUnlessAllowedWhichScalesTheLearningRate() throws {
        let directory = temporaryDirectory()
        let first = Split(ranks: 2, batch: 12)
        _ = try train(first, options(first, steps: 40, directory: directory), stopAfter: 20)
        let bigger = Split(ranks: 3, batch: 12)
        let refused = #expect(throws: UserError.self) {
            try train(bigger, options(bigger, steps: 40, directory: directory, resume: true))
        }
        let message = refused.map { "\($0)" } ?? ""
        #expect(message.contains("global batch is 24 (2 rank(s) × batch 12 × grad-accum 1)"), "\(message)")
        #expect(message.contains("this run's 36 (3 rank(s) × batch 12 × grad-accum 1)"), "\(message)")
        #expect(message.contains("--allow-batch-change"), "\(message)")
        #expect(Checkpoint.newest(in: directory)?.lastPathComponent == "step-00000020", "the refusal wrote nothing")

        var allowed = options(bigger, steps: 40, directory: directory, resume: true)
        allowed.allowBatchChange = true
        let (policy, parameters) = try train(bigger, allowed)
        let plain = LearningRatePolicy(baseRate: allowed.learningRate, warmupSteps: allowed.warmupSteps, totalSteps: 40,
                                       minimumRate: nil, schedule: allowed.schedule)
        for step in [20, 30, 39] {
            #expect(abs(policy.rate(atStep: step) - 1.5 * plain.rate(atStep: step)) <= 1e-6 * plain.rate(atStep: step), "step \(step)")
        }
        // A different run: the failure the 1e-5 tolerance above must catch.
        #expect(Self.relativeDifference(parameters, try Self.reference.get()) > 1e-3)
    }

    @Test func withScaledLearningRatesTheCheckpointsFactorIsKept() throws {
        let directory = temporaryDirectory()
        let first = Split(ranks: 2, batch: 12)
        var start = options(first, steps: 24, directory: directory)
        start.scaleLearningRate = true
        let before = try train(first, start, stopAfter: 4).policy
        let three = Split(ranks: 3, batch: 8)
        var resumed = options(three, steps: 24, directory: directory, resume: true)
        resumed.scaleLearningRate = true
        let after = try train(three, resumed).policy
        // 2 ranks × 1 micro-step: ×2, not the ×3 that 3 ranks would give a fresh run.
        #expect(before.rate(atStep: 10) == after.rate(atStep: 10))
        #expect(after.baseRate == 2 * resumed.learningRate)
    }

    /// Dropout and augmentation are keyed by the replica (micro-step · ranks + rank), so 1 rank ×
    /// 2 micro-steps draws exactly the masks and substitutions of 2 ranks × 1.
    @Test func oneRankWithMicroStepsDrawsTheDropoutAndAugmentationOfTwoRanks() throws {
        var config = DataParallelEngineTests.config()
        config.dropout = 0.2
        var two = DataParallelEngineTests.options(batch: 6, steps: 12)
        two.augmentation = ["substitute": 0.1]
        var one = two
        one.gradientAccumulation = 2
        let pair = try DataParallelEngineTests.train(ranks: 2, options: two, config: config)
        let single = try DataParallelEngineTests.train(ranks: 1, options: one, config: config)
        #expect(DataParallelEngineTests.relativeDifference(single[0], pair[0]) < 1e-5)
        // What the tolerance must catch: without dropout and substitution the run is another.
        var plain = two
        plain.augmentation = [:]
        let undropped = try DataParallelEngineTests.train(ranks: 2, options: plain)
        #expect(DataParallelEngineTests.relativeDifference(undropped[0], pair[0]) > 1e-3)
    }
}
