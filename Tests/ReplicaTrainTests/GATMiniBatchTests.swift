import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
@testable import ReplicaTrain
import _ReplicaTestSupport

/// The largest difference between each local row of `part` and the row of `whole` of its global
/// id in `nodes`, relative to the largest magnitude in those rows of `whole`. [n, K] against [N, K]
private func largestDifference(_ part: Tensor, _ whole: Tensor, nodes: [Int32]) -> Float {
    let K = whole.columnCount
    var difference: Float = 0, magnitude: Float = 0
    for (row, node) in nodes.prefix(part.rowCount).enumerated() {
        for k in 0..<K {
            let expected = whole[Int(node) * K + k]
            difference = max(difference, abs(part[row * K + k] - expected))
            magnitude = max(magnitude, abs(expected))
        }
    }
    return difference / max(magnitude, .leastNormalMagnitude)
}

/// Neighbour-sampled mini-batches (`GATTask` with a batch size) and layer-wise inference on Cora.
@Suite struct GATMiniBatchTests {
    /// Layer-wise inference computes each row as the whole-graph forward does: the same sums in
    /// the same order (equal bit for bit on this machine). 1e-6 leaves room for a BLAS whose
    /// sgemm rounds a row differently with another row count, which would be a few ulps.
    static let inferenceTolerance: Float = 1e-6
    /// A mini-batch with whole neighbourhoods sums each row's entries in the graph's order too,
    /// but its sgemms (projections, node scores) run on fewer rows, and OpenBLAS picks its kernel
    /// by size, so a hidden value may round differently by an ulp or so. Measured against the
    /// largest logit (logits near 0 make element-wise ratios meaningless): 2.4e-7 (GAT), 2.8e-7
    /// (GAT with BatchNorm), 0 (GCN). 1e-5 allows 40 times that; a wrong or missing edge moves
    /// a logit by a share of its size.
    static let wholeNeighbourhoodTolerance: Float = 1e-5

    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case gat, gatWithBatchNorm, gcn
        var testDescription: String { rawValue }

        /// The model, initialised, for Cora.
        func model(_ dataset: NodePropertyDataset) -> NodeClassifier {
            let model: NodeClassifier
            switch self {
            case .gat, .gatWithBatchNorm:
                var config = GATConfig()
                config.featureCount = dataset.featureCount
                config.classCount = dataset.classCount
                if self == .gatWithBatchNorm { config.norm = .batch }
                model = GAT(config)
            case .gcn:
                var config = GraphNetworkConfig()
                config.featureCount = dataset.featureCount
                config.classCount = dataset.classCount
                config.bias = true
                model = GraphNetwork(config)
            }
            model.initialize(seed: 3)
            // Running statistics other than 0 and 1, so that BatchNorm's evaluation does something.
            var generator = SeededGenerator(seed: 4)
            model.arena.allBuffers.fillUniform(bound: 1, using: &generator)
            for slot in model.arena.bufferSlots where slot.name.hasSuffix("running_var") {
                let variance = model.arena.buffer(slot)
                for k in 0..<variance.count { variance[k] = abs(variance[k]) + 0.5 }
            }
            model.mode = .evaluation
            return model
        }
    }

    static let cora = Result { () throws -> NodePropertyDataset in
        var dataset = try NodePropertyDataset.cora()
        dataset.features = dataset.features.rowNormalized()
        return dataset
    }

    /// Cora, a model of `kind` in evaluation mode, the graph it propagates over, and its logits
    /// from a whole-graph forward. [N, K]
    static func wholeGraphLogits(_ kind: Kind) throws -> (cora: NodePropertyDataset, model: NodeClassifier, graph: CSRGraph, logits: Tensor) {
        let cora = try cora.get()
        let model = kind.model(cora)
        let graph = model.propagationGraph(cora.symmetricGraphWithSelfLoops)
        return (cora, model, graph, model.forward(features: cora.features, graph: graph))
    }

    @Test(arguments: Kind.allCases)
    func layerwiseInferenceEqualsTheWholeGraphForward(kind: Kind) throws {
        let (cora, model, graph, whole) = try Self.wholeGraphLogits(kind)
        // 1,000 entries a chunk: Cora's 13,264 entries in 14 chunks or so.
        #expect(graph.rowChunks(entriesPerChunk: 1000).count > 10)
        let chunked = model.layerwiseLogits(features: cora.features, graph: graph, entriesPerChunk: 1000)
        #expect(chunked.shape == whole.shape)
        #expect(maximumRelativeDifference(chunked.scalars, whole.scalars, floor: 1e-3) < Self.inferenceTolerance)
    }

    /// Fanouts above every degree: a seed's blocks hold its whole 2-hop neighbourhood, so the
    /// mini-batch computes the seeds' logits of the whole graph (GCN with the whole graph's weights).
    @Test(arguments: Kind.allCases)
    func miniBatchLogitsWithWholeNeighbourhoodsEqualTheWholeGraphs(kind: Kind) throws {
        let (cora, model, graph, whole) = try Self.wholeGraphLogits(kind)
        let sampler = BlockSampler(graph: graph)
        var generator = SeededGenerator(seed: 5)
        let seeds = Array(cora.train.prefix(64))
        let sampled = sampler.sample(seeds: seeds, layers: model.layerCount, fanout: [10_000, 10_000], generator: &generator)
        #expect(sampled.nodes.count < cora.nodeCount && sampled.blocks[0].rowCount < sampled.nodes.count, "proper blocks")
        let logits = model.forward(features: cora.features.gatheringRows(sampled.nodes), blocks: sampled.blocks)
        #expect(logits.rowCount == seeds.count)
        #expect(largestDifference(logits, whole, nodes: sampled.nodes) < Self.wholeNeighbourhoodTolerance)
    }

    /// A mini-batch task trains several steps an epoch on B seeds per replica, and a sampled
    /// fanout keeps the blocks far below the graph.
    @Test func anEpochIsTheFullGlobalBatchesOfTheTrainingNodes() throws {
        var options = GATTaskTests.options(epochs: 1)
        options.gradientAccumulation = 2
        let task = try GATTask(dataset: GATTaskTests.cora.get(), config: GATConfig(), options: options, fanout: [10, 5],
                               batchSize: 16, patience: 0, rank: 1, ranks: 2)
        #expect(task.stepsPerEpoch == 2 && task.globalBatch == 64 && task.unitsPerMicroStep == 16)   // 140 nodes: 12 left over
        var seen: [Int32] = []
        for step in 0..<2 {
            for micro in 0..<2 {
                let seeds = task.trainingNodes(step: step, micro: micro)
                #expect(seeds.count == 16 && task.targetCount(step: step, micro: micro) == 16)
                seen += seeds
            }
        }
        #expect(Set(seen).count == 64, "no seed twice in an epoch")
        #expect(Set(seen).isSubset(of: Set(try GATTaskTests.cora.get().train)))
        #expect(task.trainingNodes(step: 2, micro: 0) != task.trainingNodes(step: 0, micro: 0), "a new permutation each epoch")
        let input = task.trainingInput(seeds: task.trainingNodes(step: 0, micro: 0), step: 0, micro: 0)
        #expect(input.blocks.count == 2 && input.blocks[1].rowCount == 16)
        #expect(input.blocks[0].columnCount <= 16 * 11 * 6 && input.features.rowCount == input.blocks[0].columnCount)
    }

    /// Stopped after step 6 of a mini-batch run (4 steps an epoch: the middle of the second) and
    /// resumed in a new task and trainer: the same parameters after 10 steps as without the stop.
    @Test(arguments: [Kind.gat, .gcn])
    func aMiniBatchRunResumedMidEpochContinuesBitForBit(kind: Kind) throws {
        let straightDirectory = try temporaryFolder("gat-straight"), resumedDirectory = try temporaryFolder("gat-resumed")
        defer {
            try? FileManager.default.removeItem(at: straightDirectory)
            try? FileManager.default.removeItem(at: resumedDirectory)
        }
        var options = GATTaskTests.options(epochs: 10)
        options.augmentation = kind == .gcn ? ["feature-mask": 0.1] : ["feature-mask": 0.1, "drop-edge": 0.1]
        func trainer(_ options: TrainingOptions) throws -> (GATTask, Trainer) {
            let dataset = try GATTaskTests.cora.get()
            let task = try GATTask(dataset: dataset, model: kind.model(dataset), options: options, fanout: [5, 3], batchSize: 32,
                                   patience: 0, rank: 0, ranks: 1)
            let trainer = try Trainer(task: task, options: options, communicator: LocalCommunicator())
            try trainer.synchronizeInitialState()
            try trainer.resumeIfAsked()
            return (task, trainer)
        }
        options.checkpointDirectory = straightDirectory.path
        let (straight, straightTrainer) = try trainer(options)
        #expect(straight.stepsPerEpoch == 4)
        _ = try straightTrainer.run()
        options.checkpointDirectory = resumedDirectory.path
        do {
            let (_, first) = try trainer(options)
            for step in 0..<6 { _ = try first.trainStep(step) }
            try first.saveCheckpoint(step: 6)
        }
        options.resume = true
        let (resumed, resumedTrainer) = try trainer(options)
        #expect(resumedTrainer.startStep == 6)
        _ = try resumedTrainer.run()
        #expect(resumed.arena.allValues.scalars == straight.arena.allValues.scalars, "parameters after 10 steps differ")
    }

    @Test func batchNormRefusesSingleSeedBatches() throws {
        let dataset = try GATTaskTests.cora.get()
        #expect(throws: UserError.self) {
            try GATTask(dataset: dataset, model: Kind.gatWithBatchNorm.model(dataset), options: GATTaskTests.options(epochs: 1),
                        fanout: nil, batchSize: 1, patience: 0, rank: 0, ranks: 1)
        }
    }

    @Test func gcnRefusesDropEdgeOnMiniBatches() throws {
        var options = GATTaskTests.options(epochs: 1)
        options.augmentation = ["drop-edge": 0.1]
        let dataset = try GATTaskTests.cora.get()
        #expect(throws: UserError.self) {
            try GATTask(dataset: dataset, model: Kind.gcn.model(dataset), options: options, fanout: nil, batchSize: 32,
                        patience: 0, rank: 0, ranks: 1)
        }
    }
}
