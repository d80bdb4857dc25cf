import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

@Suite struct GCNTests {
    static let cora = Result { try NodePropertyDataset.cora() }

    static func gcn(_ configure: (inout GraphNetworkConfig) -> Void = { _ in }) -> GraphNetwork {
        var config = GraphNetworkConfig()
        configure(&config)
        return GraphNetwork(config)
    }

    @Test func theGCNLearnsCoraWellAboveChance() throws {
        var options = TrainingOptions.nodeClassification(gcn: true)
        options.steps = 40
        options.seed = 0
        let task = try trainNodeClassifier(Self.gcn(), dataset: Self.cora.get(), options: options, patience: 0)
        let evaluation = task.evaluate(onGraph: task.graph)
        #expect(evaluation["test_accuracy"]! > 0.7, "\(evaluation)")   // chance: about 0.3 (the largest class)
    }

    /// Without dropout, ranks that each train on their nodes' 2-hop subgraphs (carrying the whole
    /// graph's normalised weights) reach the same parameters as full-batch training.
    @Test func ranksOnSubgraphsEqualFullBatchTraining() throws {
        var settings = TrainingOptions.nodeClassification(gcn: true)
        settings.steps = 4
        settings.progress = .none
        let options = settings
        func train(ranks: Int) throws -> [GATTask] {
            let group = ThreadCommunicatorGroup(size: ranks)
            let tasks = Locked<[Int: GATTask]>([:])
            try group.run { rank in
                let task = try GATTask(dataset: Self.cora.get(), model: Self.gcn { $0.dropout = 0 }, options: options, fanout: nil,
                                       patience: 0, rank: rank, ranks: ranks)
                let trainer = try Trainer(task: task, options: options, communicator: group.communicator(rank: rank))
                try trainer.synchronizeInitialState()
                _ = try trainer.run()
                tasks.update { $0[rank] = task }
            }
            return (0..<ranks).map { tasks.value[$0]! }
        }
        let full = try train(ranks: 1)[0].arena.allValues.scalars, split = try train(ranks: 2)
        let a = split[0].arena.allValues.scalars
        var difference = 0.0, norm = 0.0
        for (x, y) in zip(a, full) { difference += Double(x - y) * Double(x - y); norm += Double(y) * Double(y) }
        #expect((difference / norm).squareRoot() < 1e-5)
    }
}
