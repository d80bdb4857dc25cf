import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

/// Undirected edges as a set of (min, max) pairs.
private func edgeSet(_ sources: [Int32], _ targets: [Int32]) -> Set<[Int32]> {
    Set(zip(sources, targets).map { [min($0, $1), max($0, $1)] })
}

@Suite struct RewiringTests {
    static let cora = Result { try NodePropertyDataset.cora() }

    @Test(arguments: [0.0, 0.1, 0.3, 0.5])
    func rewiringKeepsTheEdgeCountAndReplacesExactlyTheFraction(p: Double) throws {
        let d = try Self.cora.get()
        let original = edgeSet(d.edgeSources, d.edgeTargets)
        let rewired = rewiredEdges(sources: d.edgeSources, targets: d.edgeTargets, nodeCount: d.nodeCount, fraction: p, seed: 7)
        let after = edgeSet(rewired.sources, rewired.targets)
        #expect(rewired.sources.count == original.count && after.count == original.count, "no edge lost or duplicated")
        #expect(zip(rewired.sources, rewired.targets).allSatisfy { $0 != $1 }, "no self-loop is created")
        let expected = Int((p * Double(original.count)).rounded())
        #expect(original.subtracting(after).count == expected)
        #expect(after.subtracting(original).count == expected)
        // Every new edge keeps one endpoint of an edge it replaced: degrees move by one end only.
        let graph = CSRMatrix.graph(nodeCount: d.nodeCount, sources: rewired.sources, targets: rewired.targets,
                                    symmetric: true, selfLoops: true)
        #expect(graph.nonzeroCount == 2 * original.count + d.nodeCount, "symmetric, one self-loop per node")
        for v in 0..<d.nodeCount {
            for e in graph.range(ofRow: v) {
                let u = Int(graph.columnIndices[e])
                #expect(graph.range(ofRow: u).contains { Int(graph.columnIndices[$0]) == v }, "edge \(u) -> \(v) has its reverse")
            }
        }
    }

    @Test func rewiringIsAFunctionOfTheSeed() throws {
        let d = try Self.cora.get()
        func run(_ seed: UInt64) -> [Int32] {
            let r = rewiredEdges(sources: d.edgeSources, targets: d.edgeTargets, nodeCount: d.nodeCount, fraction: 0.2, seed: seed)
            return r.sources + r.targets
        }
        #expect(run(3) == run(3))
        #expect(run(3) != run(4))
    }
}

@Suite struct SmoothnessMeasureTests {
    /// A path 0 - 1 - 2 - 3 (degrees 1, 2, 2, 1), symmetric with self-loops.
    static let path = CSRMatrix.graph(nodeCount: 4, sources: [0, 1, 2], targets: [1, 2, 3], symmetric: true, selfLoops: true)

    @Test func dirichletEnergyFollowsItsDefinition() {
        // x = (1, 0, 0, 2) as one feature: edges 01, 12, 23 with scales 1/√2, 1/√3, 1/√3, 1/√2.
        let x = Tensor(shape: [4, 1], values: [1, 0, 0, 2])
        let expected = (0.5 + 0 + 2.0) / 4
        #expect(abs(dirichletEnergy(x, graph: Self.path) - expected) < 1e-9)
        // Two features add up.
        let two = Tensor(shape: [4, 2], values: [1, 1, 0, 0, 0, 0, 2, 2])
        #expect(abs(dirichletEnergy(two, graph: Self.path) - 2 * expected) < 1e-9)
        // Relative to the mean squared norm (5/4 for x), and unchanged by scaling.
        #expect(abs(relativeDirichletEnergy(x, graph: Self.path) - expected / (5.0 / 4)) < 1e-9)
        let scaled = Tensor(shape: [4, 1], values: [10, 0, 0, 20])
        #expect(abs(relativeDirichletEnergy(scaled, graph: Self.path) - relativeDirichletEnergy(x, graph: Self.path)) < 1e-9)
    }

    @Test func dirichletEnergyVanishesOnTheSmoothestSignal() {
        // x_v ∝ √(1 + d_v): what repeated GCN propagation converges to.
        let x = Tensor(shape: [4, 2], values: [2.squareRoot(), -2 * 2.squareRoot(), 3.squareRoot(), -2 * 3.squareRoot(),
                                               3.squareRoot(), -2 * 3.squareRoot(), 2.squareRoot(), -2 * 2.squareRoot()].map { Float($0) })
        #expect(dirichletEnergy(x, graph: Self.path) < 1e-10)
        // ... and repeated propagation with Â drives any signal's energy down.
        var h = randomTensor([4, 3], seed: 5)
        let before = dirichletEnergy(h, graph: Self.path)
        for _ in 0..<30 { h = Self.path.gcnNormalized().aggregating(h) }
        #expect(dirichletEnergy(h, graph: Self.path) < 1e-3 * before)
    }

    @Test func meanCosineOfConstructedRows() {
        #expect(abs(meanPairwiseCosine(Tensor(shape: [3, 2], values: [1, 2, 2, 4, 0.5, 1])) - 1) < 1e-12, "parallel rows")
        #expect(abs(meanPairwiseCosine(Tensor(shape: [3, 3], values: [1, 0, 0, 0, 2, 0, 0, 0, 3]))) < 1e-12, "orthogonal rows")
        // (1,0), (0,1), (1,1): cosines 0, 1/√2, 1/√2 -> mean √2/3; an all-zero row is left out.
        let x = Tensor(shape: [4, 2], values: [1, 0, 0, 1, 1, 1, 0, 0])
        #expect(abs(meanPairwiseCosine(x) - 2.0.squareRoot() / 3) < 1e-12)
        // Opposite rows.
        #expect(abs(meanPairwiseCosine(Tensor(shape: [2, 2], values: [1, 1, -1, -1])) + 1) < 1e-12)
    }
}

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

    @Test func weightDecayReachesTheFirstLayerOnly() {
        let model = Self.gcn { $0.layerCount = 3 }
        let decaying = model.arena.slots.filter(\.decays).map(\.name)
        #expect(decaying == ["net.layers.0.weight"], "\(decaying)")
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

    /// Every kind of network, residual paths included, end to end against central differences.
    @Test(arguments: GraphLayerKind.allCases)
    func networkGradientsMatchFiniteDifferences(kind: GraphLayerKind) {
        var config = GraphNetworkConfig()
        config.kind = kind
        config.featureCount = 9
        config.classCount = 3
        config.hidden = 4
        config.heads = kind == .gcn ? 1 : 2
        config.layerCount = 4
        config.residual = true
        config.dropout = 0.3
        config.bias = true
        let model = GraphNetwork(config)
        var generator = SeededGenerator(seed: 51)
        model.arena.allValues.fillUniform(bound: 0.8, using: &generator)
        model.randomContext = RandomContext(seed: 3, rank: 0, step: 1)   // fixed dropout masks
        var offsets = [0], columns: [Int32] = [], values: [Float] = []
        for _ in 0..<7 {
            for f in 0..<9 where generator.nextUniform() < 0.4 { columns.append(Int32(f)); values.append(generator.nextUniform()) }
            offsets.append(columns.count)
        }
        let features = CSRMatrix(rowCount: 7, columnCount: 9, rowOffsets: offsets, columnIndices: columns, values: values)
        let pattern = CSRMatrix.graph(nodeCount: 7, sources: [0, 0, 1, 2, 3, 4, 5], targets: [1, 2, 3, 4, 5, 6, 6],
                                      symmetric: true, selfLoops: true)
        let graph = model.propagationGraph(pattern)
        let r = randomTensor([7, 3], seed: 52)
        let results = checkGradients(arena: model.arena, inputs: [], directions: 4,
            loss: { dot(model.forward(features: features, graph: graph), r) },
            gradients: { model.backward(model.forward(features: features, graph: graph).copyingFrom(r)); return [] })
        for result in results { #expect(result.relativeError < finiteDifferenceTolerance, "\(kind): \(result)") }
        #expect(model.lastHidden?.shape == [7, config.hidden * config.heads])
    }
}

private extension Tensor {
    /// `other` itself (the loss Σ y·r has gradient r), after checking the shapes agree.
    func copyingFrom(_ other: Tensor) -> Tensor {
        precondition(shape == other.shape, "\(shape) vs \(other.shape)")
        return other
    }
}
