import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

/// Two ranks' all-reduced gradient against the sum of both ranks' gradients computed in turn:
/// only the summation order of the all-reduce differs.
private let allReduceTolerance: Float = 1e-5

/// The subgraph of Cora induced by its first and last `half` nodes (train and validation nodes
/// come first, test nodes last), relabelled 0..<2·half, with every feature: a debug build trains
/// on the whole graph at several seconds an epoch.
private func coraSlice(half: Int) throws -> NodePropertyDataset {
    let cora = try NodePropertyDataset.cora()
    let nodes = (0..<Int32(half)).map { $0 } + (Int32(cora.nodeCount - half)..<Int32(cora.nodeCount)).map { $0 }
    var local = [Int32](repeating: -1, count: cora.nodeCount)
    for (index, node) in nodes.enumerated() { local[Int(node)] = Int32(index) }
    let edges = zip(cora.edgeSources, cora.edgeTargets).map { (local[Int($0.0)], local[Int($0.1)]) }.filter { $0.0 >= 0 && $0.1 >= 0 }
    func inSlice(_ split: [Int32]) -> [Int32] { split.map { local[Int($0)] }.filter { $0 >= 0 } }
    return NodePropertyDataset(name: "cora slice", nodeCount: nodes.count, featureCount: cora.featureCount,
                               features: cora.features.gatheringRows(nodes), labels: nodes.map { cora.labels[Int($0)] },
                               classCount: cora.classCount, edgeSources: edges.map(\.0), edgeTargets: edges.map(\.1),
                               train: inSlice(cora.train), validation: inSlice(cora.validation), test: inSlice(cora.test))
}

@Suite struct GraphMAETaskTests {
    static let cora = Result { try coraSlice(half: 200) }

    static func smallOptions(epochs: Int) -> TrainingOptions {
        var options = TrainingOptions()
        options.seed = 3
        options.steps = epochs
        options.learningRate = 5e-3
        options.weightDecay = 2e-4
        options.optimizer = .adam
        options.beta2 = 0.999
        options.warmupSteps = 0
        options.schedule = .cosine
        options.minimumLearningRate = 0
        options.clip = 0
        options.progress = .none
        options.evaluationInterval = 0
        return options
    }

    static var smallConfig: GraphMAEConfig {
        var config = GraphMAEConfig()
        config.hidden = 32
        config.heads = 2
        return config
    }

    @Test func masksDifferAcrossRanksAndEpochsAndAreReproducible() throws {
        let options = Self.smallOptions(epochs: 1)
        let first = try GraphMAETask(dataset: Self.cora.get(), config: Self.smallConfig, options: options, rank: 0, ranks: 2)
        let second = try GraphMAETask(dataset: Self.cora.get(), config: Self.smallConfig, options: options, rank: 1, ranks: 2)
        let again = try GraphMAETask(dataset: Self.cora.get(), config: Self.smallConfig, options: options, rank: 0, ranks: 2)
        #expect(first.mask(step: 0) != second.mask(step: 0))
        #expect(first.mask(step: 0) != first.mask(step: 1))
        #expect(first.mask(step: 4) == again.mask(step: 4))
        #expect(first.mask(step: 0) == again.mask(step: 0))
        #expect(first.targetCount(step: 0, micro: 0) == 200)
    }

    /// Two ranks, each with its own mask: the all-reduced gradient is the sum of both ranks'
    /// gradients with the loss divided by the global number of mask nodes.
    @Test func twoRanksSumTheirMasksGradients() throws {
        let options = Self.smallOptions(epochs: 1)
        let group = ThreadCommunicatorGroup(size: 2)
        let reduced = Locked<[Int: [Float]]>([:])
        try group.run { rank in
            let task = try GraphMAETask(dataset: Self.cora.get(), config: Self.smallConfig, options: options, rank: rank, ranks: 2)
            let trainer = try Trainer(task: task, options: options, communicator: group.communicator(rank: rank))
            try trainer.synchronizeInitialState()
            _ = try trainer.trainStep(0)
            reduced.update { $0[rank] = task.arena.allGradients.scalars }
        }
        #expect(reduced.value[0]! == reduced.value[1]!)
        let tasks = try (0..<2).map { try GraphMAETask(dataset: Self.cora.get(), config: Self.smallConfig, options: options, rank: $0, ranks: 2) }
        let total = Float(tasks.map { $0.targetCount(step: 0, micro: 0) }.reduce(0, +))
        var sum = [Float](repeating: 0, count: tasks[0].arena.count)
        for task in tasks {
            task.arena.zeroGradients()
            _ = try task.trainMicroStep(step: 0, micro: 0, normalizer: total, reducer: nil)
            for (i, g) in task.arena.allGradients.scalars.enumerated() { sum[i] += g }
        }
        #expect(maximumRelativeDifference(reduced.value[0]!, sum, floor: 1e-4) < allReduceTolerance)
    }

    /// A micro-step is one more replica (its own mask, dropout and DropEdge): 1 rank × 2
    /// micro-steps ends with the parameters of 2 ranks × 1, up to the order of the gradient sum.
    @Test func oneRankWithTwoMicroStepsEqualsTwoRanks() throws {
        func train(ranks: Int, accumulation: Int) throws -> [Float] {
            var options = Self.smallOptions(epochs: 2)
            options.gradientAccumulation = accumulation
            options.augmentation = ["drop-edge": 0.2]
            let group = ThreadCommunicatorGroup(size: ranks)
            let values = Locked<[Int: [Float]]>([:])
            try group.run { [options] rank in
                let task = try GraphMAETask(dataset: Self.cora.get(), config: Self.smallConfig, options: options, rank: rank, ranks: ranks)
                let trainer = try Trainer(task: task, options: options, communicator: group.communicator(rank: rank))
                try trainer.synchronizeInitialState()
                _ = try trainer.run()
                values.update { $0[rank] = task.arena.allValues.scalars }
            }
            return values.value[0]!
        }
        #expect(maximumRelativeDifference(try train(ranks: 1, accumulation: 2), try train(ranks: 2, accumulation: 1), floor: 1e-3) < 1e-5)
    }

    @Test func aFewEpochsOfPreTrainingReduceTheReconstructionLoss() throws {
        let options = Self.smallOptions(epochs: 6)
        let task = try GraphMAETask(dataset: Self.cora.get(), config: Self.smallConfig, options: options, rank: 0, ranks: 1)
        let before = try task.evaluate(communicator: LocalCommunicator())["reconstruction_loss"]!
        let trainer = try Trainer(task: task, options: options, communicator: LocalCommunicator())
        let outcome = try trainer.run()
        let after = outcome.evaluation["reconstruction_loss"]!
        #expect(after < before - 0.01, "reconstruction loss \(before) -> \(after)")
    }

    @Test func theLinearProbeSeparatesSeparableEmbeddingsAndReportsTheBestValidationEpoch() {
        // Node n of class n mod 3: its embedding is the class's one-hot row plus noise.
        let N = 60, D = 5
        var generator = SeededGenerator(seed: 8)
        let embeddings = Tensor(zeros: [N, D])
        let labels = (0..<N).map { Int32($0 % 3) }
        for n in 0..<N {
            for d in 0..<D { embeddings[n * D + d] = 0.1 * generator.nextNormal() }
            embeddings[n * D + Int(labels[n])] += 1
        }
        var options = LinearProbeOptions()
        options.epochs = 50
        options.learningRate = 0.05
        let nodes = (0..<Int32(N)).map { $0 }
        let result = LinearProbe(options: options).run(embeddings: embeddings, labels: labels, classCount: 3,
                                                       train: Array(nodes[0..<15]), validation: Array(nodes[15..<30]),
                                                       test: Array(nodes[30...]))
        #expect(result.validationAccuracy == 1 && result.testAccuracy == 1 && result.finalTestAccuracy == 1)
        // Ties keep the later epoch (`>=`, as the authors' code): a perfect score held to the end.
        #expect(result.bestEpoch == 50)
        let repeated = LinearProbe(options: options).run(embeddings: embeddings, labels: labels, classCount: 3,
                                                         train: Array(nodes[0..<15]), validation: Array(nodes[15..<30]),
                                                         test: Array(nodes[30...]))
        #expect(repeated == result)
    }
}
