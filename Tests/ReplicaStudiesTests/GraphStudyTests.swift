import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaStudies
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
