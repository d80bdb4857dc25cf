import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

@Suite struct GATTaskTests {
    static let cora = Result { try NodePropertyDataset.cora() }

    static func options(epochs: Int) -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = epochs
        options.learningRate = 0.005
        options.weightDecay = 5e-4
        options.optimizer = .adam
        options.beta2 = 0.999
        options.warmupSteps = 0
        options.schedule = .constant
        options.clip = 0
        options.progress = .none
        options.evaluationInterval = 1
        return options
    }

    /// `epochs` optimizer steps (an epoch each in full batch), `batchSize` seeds per replica for mini-batches.
    static func train(ranks: Int, config: GATConfig, epochs: Int, fanout: [Int]? = nil, accumulation: Int = 1,
                      batchSize: Int? = nil) throws -> [GATTask] {
        let group = ThreadCommunicatorGroup(size: ranks)
        let tasks = Locked<[Int: GATTask]>([:])
        var options = options(epochs: epochs)
        options.gradientAccumulation = accumulation
        try group.run { [options] rank in
            let task = try GATTask(dataset: cora.get(), config: config, options: options, fanout: fanout,
                                   batchSize: batchSize, patience: 0, rank: rank, ranks: ranks)
            let trainer = try Trainer(task: task, options: options, communicator: group.communicator(rank: rank))
            try trainer.synchronizeInitialState()
            _ = try trainer.run()
            tasks.update { $0[rank] = task }
        }
        return (0..<ranks).map { tasks.value[$0]! }
    }

    /// ‖a − b‖ / ‖b‖.
    static func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
        var difference = 0.0, norm = 0.0
        for (x, y) in zip(a, b) { difference += Double(x - y) * Double(x - y); norm += Double(y) * Double(y) }
        return (difference / norm).squareRoot()
    }

    /// Without dropout, ranks that each compute their nodes' loss on the nodes' 2-hop neighbourhood
    /// sum to exactly the full-batch gradient: the same parameters as one rank on the whole graph.
    @Test func ranksOnNeighbourhoodSubgraphsEqualFullBatchTraining() throws {
        var config = GATConfig()
        config.inputDropout = 0
        config.attentionDropout = 0
        config.valueDropout = 0
        let full = try Self.train(ranks: 1, config: config, epochs: 3)[0]
        let split = try Self.train(ranks: 2, config: config, epochs: 3)
        let a = split[0].arena.allValues.scalars, b = full.arena.allValues.scalars
        #expect(Self.relativeDifference(a, b) < 1e-5)
        #expect(split[0].arena.allValues.scalars == split[1].arena.allValues.scalars)
    }

    /// A micro-step is one more replica, dropout included: 1 rank × 2 micro-steps ends with the
    /// parameters of 2 ranks × 1. Only the order of the gradient sum differs, and Adam's division
    /// by √v magnifies that for tiny gradients, so the check is on the whole vector: 1e-5 of its
    /// L2 norm (as for ranks against full batch above); a repeated or wrong micro-batch is ~1e-2.
    @Test func oneRankWithTwoMicroStepsEqualsTwoRanks() throws {
        let accumulated = try Self.train(ranks: 1, config: GATConfig(), epochs: 3, accumulation: 2)[0]
        let split = try Self.train(ranks: 2, config: GATConfig(), epochs: 3)[0]
        #expect(accumulated.targetCount(step: 0, micro: 0) + accumulated.targetCount(step: 0, micro: 1) == 140)
        let a = accumulated.arena.allValues.scalars, b = split.arena.allValues.scalars
        #expect(Self.relativeDifference(a, b) < 1e-5)
    }

    /// Mini-batches: replica m·ranks + r samples its blocks and draws its dropout from the same
    /// stream whether it is a rank or a micro-step, so 1 rank × 2 micro-steps × 32 seeds ends
    /// with the parameters of 2 ranks × 32 (6 steps, 2 an epoch: 140 nodes, global batch 64).
    /// Tolerance as above.
    @Test func miniBatchesOnOneRankWithTwoMicroStepsEqualTwoRanks() throws {
        let accumulated = try Self.train(ranks: 1, config: GATConfig(), epochs: 6, fanout: [5, 5], accumulation: 2, batchSize: 32)[0]
        let split = try Self.train(ranks: 2, config: GATConfig(), epochs: 6, fanout: [5, 5], batchSize: 32)
        #expect(accumulated.stepsPerEpoch == 2 && split[0].stepsPerEpoch == 2)
        #expect(accumulated.targetCount(step: 0, micro: 1) == 32 && accumulated.globalBatch == 64)
        let a = accumulated.arena.allValues.scalars, b = split[0].arena.allValues.scalars
        #expect(Self.relativeDifference(a, b) < 1e-5)
        #expect(split[0].arena.allValues.scalars == split[1].arena.allValues.scalars)
    }

    @Test func noOverlapIsRefusedWithAReason() throws {
        var options = Self.options(epochs: 1)
        options.overlap = false
        #expect(throws: UserError.self) {
            try GATTask(dataset: Self.cora.get(), config: GATConfig(), options: options, fanout: nil, patience: 0, rank: 0, ranks: 1)
        }
    }

    @Test func theGATLearnsCora() throws {
        let task = try Self.train(ranks: 1, config: GATConfig(), epochs: 15)[0]
        let evaluation = try task.evaluate(communicator: LocalCommunicator())
        #expect(evaluation["val_accuracy"]! > 0.6, "\(evaluation)")
    }

    @Test func earlyStoppingSelectsTheEpochWithBothBestAccuracyAndLowestLoss() throws {
        let task = try GATTask(dataset: Self.cora.get(), config: GATConfig(), options: Self.options(epochs: 1), fanout: nil,
                               patience: 2, rank: 0, ranks: 1)
        #expect(!task.shouldStop(after: ["val_accuracy": 0.5, "val_loss": 1.0, "test_accuracy": 0.4], step: 1))
        #expect(!task.shouldStop(after: ["val_accuracy": 0.6, "val_loss": 1.2, "test_accuracy": 0.7], step: 2))
        #expect(!task.shouldStop(after: ["val_accuracy": 0.6, "val_loss": 0.9, "test_accuracy": 0.8], step: 3))
        #expect(!task.shouldStop(after: ["val_accuracy": 0.5, "val_loss": 1.5, "test_accuracy": 0.9], step: 4))
        #expect(task.shouldStop(after: ["val_accuracy": 0.5, "val_loss": 1.5, "test_accuracy": 0.9], step: 5))
        #expect(task.selectedEpoch == 3)
        #expect(task.selected["test_accuracy"] == 0.8)
    }

    @Test func aGlobalBatchAboveTheTrainingNodesIsRefusedWithAReason() throws {
        let error = #expect(throws: UserError.self) {
            try GATTask(dataset: Self.cora.get(), config: GATConfig(), options: Self.options(epochs: 1), fanout: nil,
                        batchSize: 71, patience: 0, rank: 0, ranks: 2)
        }
        #expect(error?.description.contains("--batch-size 70 or less") == true, "\(String(describing: error))")
    }

    @Test func aFanoutNeedsOneCountPerLayer() {
        #expect(throws: UserError.self) {
            try GATTask(dataset: Self.cora.get(), config: GATConfig(), options: Self.options(epochs: 1), fanout: [10],
                        patience: 0, rank: 0, ranks: 1)
        }
    }
}
