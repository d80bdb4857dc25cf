import Testing
@testable import ReplicaDistributed

/// `--allreduce auto`'s choice (AllReduceCostModel) and the planner's schedules.
@Suite struct AllReduceAlgorithmTests {
    static func layout(nodes: Int, perNode: Int) -> NodeLayout { NodeLayout(rankInNode: 0, ranksInNode: perNode, nodes: nodes) }

    @Test func autoKeepsOpenMPIsOwnOnOneNodeAndTakesTheRingAcrossNodesForBuckets() {
        func auto(_ bytes: Int, ranks: Int, nodes: Int) -> Bool {
            CollectivePlanner(algorithm: .auto, ranks: ranks, layout: Self.layout(nodes: nodes, perNode: ranks / nodes)).schedule(bytes: bytes).ring
        }
        #expect(!auto(25 << 20, ranks: 4, nodes: 1), "shared memory: Open MPI's own")
        #expect(auto(512 << 10, ranks: 2, nodes: 2), "2 nodes: the ring moves half the bytes through each link direction")
        #expect(auto(512 << 10, ranks: 4, nodes: 4))
        #expect(auto(512 << 10, ranks: 4, nodes: 2))
        // A tiny message on many nodes: the ring's 2(p − 1) latencies lose to 2⌈log2 p⌉.
        #expect(!auto(64, ranks: 128, nodes: 128))
        #expect(auto(25 << 20, ranks: 128, nodes: 128))
    }

    /// The crossover follows the α–β formulas: 2(p−1)(α + nβ/p) against 2⌈log2 p⌉(α + nβ).
    @Test func theModelsCrossoverIsWhereTheFormulasMeet() {
        let model = AllReduceCostModel()
        let p = 8, alpha = model.latency, beta = model.secondsPerByte
        // 14α + 1.75nβ = 6α + 6nβ ⇒ n = 8α / (4.25β).
        let crossover = 8 * alpha / (4.25 * beta)
        #expect(!model.prefersRing(bytes: Int(crossover * 0.9), ranks: p, perNode: 1))
        #expect(model.prefersRing(bytes: Int(crossover * 1.1), ranks: p, perNode: 1))
        #expect(abs(model.binomialSeconds(bytes: 1000, ranks: p, perNode: 1) - 6 * (alpha + 1000 * beta)) < 1e-12)
    }

    @Test func explicitChoicesAndTheHierarchyAreKept() {
        let layout = Self.layout(nodes: 1, perNode: 4)
        #expect(CollectivePlanner(algorithm: .ring, ranks: 4, layout: layout).schedule(bytes: 8).ring)
        #expect(!CollectivePlanner(algorithm: .binomial, ranks: 4, layout: Self.layout(nodes: 4, perNode: 1)).schedule(bytes: 1 << 30).ring)
        let hierarchical = CollectivePlanner(algorithm: .auto, hierarchical: true, ranks: 4, layout: Self.layout(nodes: 2, perNode: 2))
        #expect(hierarchical.schedule(bytes: 1 << 20) == CollectiveSchedule(ring: true, hierarchical: true), "2 leaders: the ring")
        #expect(hierarchical.schedule(bytes: 1 << 20).description == "hierarchical ring")
        #expect(CollectivePlanner.library.schedule(bytes: 1 << 20) == .library)
    }
}
