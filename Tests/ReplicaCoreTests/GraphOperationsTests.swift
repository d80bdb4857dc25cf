import Testing
import ReplicaCore

/// Kept fraction of ~20 000 edges: its standard deviation is √(p(1 − p)/n) ≈ 0.0035 at p = 0.5.
private let keptEdgeFractionTolerance = 0.02

/// The entries of `row` as global ids of a subgraph's nodes.
private func globalSources(_ graph: CSRGraph, row: Int, nodes: [Int32]) -> [Int32] {
    graph.range(ofRow: row).map { nodes[Int(graph.columnIndices[$0])] }
}

/// Sources of `row` in `graph` (ids as stored).
private func sources(_ graph: CSRGraph, row: Int) -> [Int32] {
    graph.range(ofRow: row).map { graph.columnIndices[$0] }
}

/// Breadth-first distance from the seeds over incoming edges; nil when farther than `hops`.
private func distances(_ graph: CSRGraph, seeds: [Int32], hops: Int) -> [Int: Int] {
    var distance: [Int: Int] = [:]
    var frontier = seeds.map { Int($0) }
    for seed in frontier { distance[seed] = 0 }
    for hop in stride(from: 1, through: hops, by: 1) {
        var next: [Int] = []
        for v in frontier {
            for s in sources(graph, row: v) where distance[Int(s)] == nil {
                distance[Int(s)] = hop
                next.append(Int(s))
            }
        }
        frontier = next
    }
    return distance
}

/// A random directed graph with self-loops: node v gets about `degree` random in-edges.
private func randomGraph(nodes: Int, degree: Int, seed: UInt64) -> CSRGraph {
    var generator = SeededGenerator(seed: seed)
    var sourceList: [Int32] = [], targetList: [Int32] = []
    for v in 0..<nodes {
        for _ in 0..<generator.nextInt(below: 2 * degree + 1) {
            sourceList.append(Int32(generator.nextInt(below: nodes)))
            targetList.append(Int32(v))
        }
    }
    return CSRMatrix.graph(nodeCount: nodes, sources: sourceList, targets: targetList, symmetric: true, selfLoops: true)
}

@Suite struct GraphOperationsTests {
    @Test func graphSortsRowsDropsDuplicatesAndAddsOneSelfLoopPerNode() {
        // 0 -> 1 twice, 1 -> 0 (the reverse of 0 -> 1), 2 -> 1, 3 -> 3 (an existing self-loop).
        let graph = CSRMatrix.graph(nodeCount: 4, sources: [0, 0, 1, 2, 3], targets: [1, 1, 0, 1, 3],
                                    symmetric: true, selfLoops: true)
        #expect(graph.rowCount == 4 && graph.columnCount == 4 && graph.values.isEmpty)
        #expect(sources(graph, row: 0) == [0, 1])
        #expect(sources(graph, row: 1) == [0, 1, 2])
        #expect(sources(graph, row: 2) == [1, 2])
        #expect(sources(graph, row: 3) == [3])
    }

    @Test func directedGraphWithoutSelfLoopsKeepsEdgesAsGiven() {
        let graph = CSRMatrix.graph(nodeCount: 3, sources: [2, 0, 1, 2, 2], targets: [0, 0, 1, 0, 1],
                                    symmetric: false, selfLoops: false)
        #expect(sources(graph, row: 0) == [0, 2])
        #expect(sources(graph, row: 1) == [1, 2])
        #expect(sources(graph, row: 2) == [])
        #expect(graph.rowOffsets == [0, 2, 4, 4])
    }

    @Test func symmetricGraphHasEveryReverseEdge() {
        let graph = randomGraph(nodes: 50, degree: 3, seed: 1)
        for v in 0..<50 {
            let row = sources(graph, row: v)
            #expect(row == row.sorted() && Set(row).count == row.count)
            #expect(row.filter { Int($0) == v }.count == 1, "one self-loop at \(v)")
            for s in row { #expect(sources(graph, row: Int(s)).contains(Int32(v)), "\(s) -> \(v) without \(v) -> \(s)") }
        }
    }

    @Test(arguments: [0, 1, 2, 3])
    func fullSubgraphHoldsEveryEdgeIntoNodesWithinHopsMinusOne(hops: Int) {
        let graph = randomGraph(nodes: 60, degree: 2, seed: 2)
        let seeds: [Int32] = [17, 3, 42]
        var generator = SeededGenerator(seed: 3)
        let (local, nodes) = graph.subgraph(rows: seeds, hops: hops, fanout: nil, generator: &generator)
        #expect(Array(nodes.prefix(seeds.count)) == seeds)
        #expect(local.rowCount == nodes.count && local.columnCount == nodes.count)
        let distance = distances(graph, seeds: seeds, hops: hops)
        #expect(Set(nodes.map { Int($0) }) == Set(distance.keys), "exactly the nodes within \(hops) hops")
        #expect(Set(nodes).count == nodes.count)
        for v in 0..<nodes.count {
            let row = sources(local, row: v)
            #expect(row == row.sorted())
            let global = Int(nodes[v])
            if distance[global]! < hops {
                let expected = sources(graph, row: global)
                #expect(row.count == expected.count && Set(globalSources(local, row: v, nodes: nodes)) == Set(expected))
            } else {
                #expect(globalSources(local, row: v, nodes: nodes) == [nodes[v]], "an input-only node keeps its self-loop")
            }
        }
    }

    @Test func sampledSubgraphKeepsAtMostTheFanoutAndTheSelfLoop() {
        let graph = randomGraph(nodes: 200, degree: 6, seed: 4)
        let seeds: [Int32] = [5, 99, 150, 7]
        let fanout = [3, 2]
        var generator = SeededGenerator(seed: 5)
        let (local, nodes) = graph.subgraph(rows: seeds, hops: 2, fanout: fanout, generator: &generator)
        #expect(Array(nodes.prefix(seeds.count)) == seeds)
        let hop = distances(local, seeds: (0..<Int32(seeds.count)).map { $0 }, hops: 2)
        for v in 0..<nodes.count {
            let global = Int(nodes[v])
            let row = globalSources(local, row: v, nodes: nodes)
            #expect(Set(row).count == row.count, "sampled without replacement")
            #expect(row.contains(nodes[v]), "the self-loop stays")
            #expect(Set(row).isSubset(of: Set(sources(graph, row: global))))
            let neighbours = row.filter { Int($0) != global }.count
            let available = sources(graph, row: global).count - 1
            if let d = hop[v], d < 2 {
                #expect(neighbours == min(fanout[d], available), "node \(global) at hop \(d)")
            } else {
                #expect(neighbours == 0)
            }
        }
        var again = SeededGenerator(seed: 5)
        let repeated = graph.subgraph(rows: seeds, hops: 2, fanout: fanout, generator: &again)
        #expect(repeated.graph == local && repeated.nodes == nodes, "same generator, same sample")
    }

    @Test func fanoutAboveEveryDegreeGivesTheFullSubgraph() {
        let graph = randomGraph(nodes: 40, degree: 2, seed: 6)
        var a = SeededGenerator(seed: 7), b = SeededGenerator(seed: 7)
        let full = graph.subgraph(rows: [1, 2], hops: 2, fanout: nil, generator: &a)
        let sampled = graph.subgraph(rows: [1, 2], hops: 2, fanout: [1000, 1000], generator: &b)
        #expect(full.graph == sampled.graph && full.nodes == sampled.nodes)
    }

    @Test func dropEdgesKeepsSelfLoopsAndAboutOneMinusPOfTheRest() {
        let graph = randomGraph(nodes: 2000, degree: 5, seed: 8)
        var generator = SeededGenerator(seed: 9)
        let dropped = graph.dropEdges(probability: 0.5, generator: &generator)
        var others = 0, keptOthers = 0
        for v in 0..<2000 {
            let before = sources(graph, row: v), after = sources(dropped, row: v)
            #expect(after.contains(Int32(v)))
            #expect(Set(after).isSubset(of: Set(before)) && after == after.sorted())
            others += before.count - 1
            keptOthers += after.count - 1
        }
        let fraction = Double(keptOthers) / Double(others)
        #expect(abs(fraction - 0.5) < keptEdgeFractionTolerance, "kept \(fraction)")

        var g0 = SeededGenerator(seed: 1), g1 = SeededGenerator(seed: 1)
        #expect(graph.dropEdges(probability: 0, generator: &g0) == graph)
        let onlyLoops = graph.dropEdges(probability: 1, generator: &g1)
        #expect(onlyLoops.nonzeroCount == 2000 && (0..<2000).allSatisfy { sources(onlyLoops, row: $0) == [Int32($0)] })
    }

    @Test(arguments: [1, 7, 50, 100_000])
    func rowChunksCoverEveryRowOnceWithinTheirEntryBudget(entriesPerChunk: Int) {
        let graph = randomGraph(nodes: 300, degree: 4, seed: 10)
        let chunks = graph.rowChunks(entriesPerChunk: entriesPerChunk)
        #expect(chunks.first?.lowerBound == 0 && chunks.last?.upperBound == 300)
        for (a, b) in zip(chunks, chunks.dropFirst()) { #expect(a.upperBound == b.lowerBound && !a.isEmpty) }
        for chunk in chunks {
            let entries = graph.rowOffsets[chunk.upperBound] - graph.rowOffsets[chunk.lowerBound]
            #expect(entries <= entriesPerChunk || chunk.count == 1, "\(chunk): \(entries) entries")
        }
        if entriesPerChunk >= graph.nonzeroCount { #expect(chunks == [0..<300]) }
    }
}

/// `BlockSampler`: a mini-batch's blocks, one per layer, sampled from the seeds outward.
@Suite struct BlockSamplerTests {
    /// Frequency of each neighbour in 4,000 samples of 5 of 20 (p = 0.25): standard deviation
    /// √(p(1 − p)/4000) ≈ 0.0068, so 0.03 is over four of them.
    static let inclusionFrequencyTolerance = 0.03

    /// Checks the shape and content of `sampled` against `graph`, with `fanout` per hop (nil: all).
    func expectValidBlocks(_ sampled: SampledBlocks, of graph: CSRGraph, seeds: [Int32], fanout: [Int]?) {
        let blocks = sampled.blocks, nodes = sampled.nodes
        #expect(Array(nodes.prefix(seeds.count)) == seeds, "seeds first")
        #expect(Set(nodes).count == nodes.count, "a node once")
        #expect(blocks.last?.rowCount == seeds.count, "the last layer computes the seeds")
        #expect(blocks.first?.columnCount == nodes.count, "the first layer reads every node")
        for l in blocks.indices.dropFirst() { #expect(blocks[l].columnCount == blocks[l - 1].rowCount, "block \(l) reads what \(l - 1) computes") }
        for (l, block) in blocks.enumerated() {
            #expect(block.rowCount <= block.columnCount)
            let hop = blocks.count - 1 - l
            for i in 0..<block.rowCount {
                let node = nodes[i], row = sources(graph, row: Int(node))
                let kept = globalSources(block, row: i, nodes: nodes)
                #expect(Set(kept).isSubset(of: Set(row)), "every kept edge of block \(l) row \(i) is in the graph")
                #expect(kept == kept.sorted() && Set(kept).count == kept.count, "in the graph's row order, without repeats")
                #expect(kept.contains(node), "the self-loop stays")
                let neighbours = kept.count - 1, available = row.count - 1
                #expect(neighbours == min(fanout?[hop] ?? available, available), "node \(node) in block \(l)")
            }
        }
    }

    @Test(arguments: [[3, 2], [1, 4, 2], [0, 5]])
    func blocksAreTheFrontiersWithAtMostTheFanoutOfTheGraphsEdges(fanout: [Int]) {
        let graph = randomGraph(nodes: 300, degree: 6, seed: 11)
        let sampler = BlockSampler(graph: graph)
        let seeds: [Int32] = [5, 99, 150, 7, 299]
        var generator = SeededGenerator(seed: 12)
        let sampled = sampler.sample(seeds: seeds, layers: fanout.count, fanout: fanout, generator: &generator)
        #expect(sampled.blocks.count == fanout.count)
        expectValidBlocks(sampled, of: graph, seeds: seeds, fanout: fanout)
    }

    @Test func fanoutsAboveEveryDegreeGiveWholeNeighbourhoodsAndTheWeightsAsTheyAre() {
        var graph = randomGraph(nodes: 80, degree: 3, seed: 13)
        graph.values = (0..<graph.nonzeroCount).map { Float($0) + 0.5 }
        let sampler = BlockSampler(graph: graph)
        var a = SeededGenerator(seed: 14), b = SeededGenerator(seed: 14)
        let full = sampler.sample(seeds: [3, 40], layers: 2, fanout: nil, generator: &a)
        expectValidBlocks(full, of: graph, seeds: [3, 40], fanout: nil)
        #expect(sampler.sample(seeds: [3, 40], layers: 2, fanout: [1000, 1000], generator: &b) == full)
        for block in full.blocks {
            for i in 0..<block.rowCount {
                let row = graph.range(ofRow: Int(full.nodes[i]))
                #expect(Array(block.values[block.range(ofRow: i)]) == Array(graph.values[row]))
            }
        }
    }

    /// A sampled row's neighbours weigh (neighbours / fanout) times their value, so the expected
    /// sum over the sample is the whole row's; the self-loop keeps its value.
    @Test func sampledWeightsAreScaledByNeighboursOverFanout() {
        var graph = randomGraph(nodes: 100, degree: 8, seed: 15)
        graph.values = [Float](repeating: 1, count: graph.nonzeroCount)
        let sampler = BlockSampler(graph: graph)
        var generator = SeededGenerator(seed: 16)
        let sampled = sampler.sample(seeds: [1, 2, 3], layers: 1, fanout: [2], generator: &generator)
        let block = sampled.blocks[0]
        for i in 0..<3 {
            let neighbours = graph.range(ofRow: Int(sampled.nodes[i])).count - 1
            for e in block.range(ofRow: i) {
                let expected: Float = block.columnIndices[e] == Int32(i) || neighbours <= 2 ? 1 : Float(neighbours) / 2
                #expect(block.values[e] == expected)
            }
        }
    }

    @Test func theSameStreamGivesTheSameBlocksWhateverCameBefore() {
        let graph = randomGraph(nodes: 500, degree: 10, seed: 17)
        let sampler = BlockSampler(graph: graph)
        func sample(_ seeds: [Int32], _ stream: UInt64) -> SampledBlocks {
            var generator = SeededGenerator(seed: 18, stream)
            return sampler.sample(seeds: seeds, layers: 2, fanout: [4, 3], generator: &generator)
        }
        let first = sample([10, 20, 30], 1)
        _ = sample([20, 400, 11, 12], 2)                      // leaves nothing behind in the id map
        #expect(sample([10, 20, 30], 1) == first)
        var fresh = SeededGenerator(seed: 18, 1)
        #expect(BlockSampler(graph: graph).sample(seeds: [10, 20, 30], layers: 2, fanout: [4, 3], generator: &fresh) == first)
        #expect(sample([10, 20, 30], 3) != first, "another stream, another sample")
    }

    /// Each neighbour is equally likely, for a small share of the row (Floyd's algorithm) and a
    /// large one (selection sampling).
    @Test(arguments: [5, 15])
    func everyNeighbourIsEquallyLikely(fanout: Int) {
        let sources = (1...20).map(Int32.init)
        let graph = CSRMatrix.graph(nodeCount: 21, sources: sources, targets: [Int32](repeating: 0, count: 20),
                                    symmetric: false, selfLoops: true)
        let sampler = BlockSampler(graph: graph)
        var counts = [Int](repeating: 0, count: 21)
        var generator = SeededGenerator(seed: 19)
        let draws = 4000
        for _ in 0..<draws {
            let sampled = sampler.sample(seeds: [0], layers: 1, fanout: [fanout], generator: &generator)
            for source in globalSources(sampled.blocks[0], row: 0, nodes: sampled.nodes) { counts[Int(source)] += 1 }
        }
        #expect(counts[0] == draws, "the self-loop every time")
        for v in 1...20 {
            let frequency = Double(counts[v]) / Double(draws)
            #expect(abs(frequency - Double(fanout) / 20) < Self.inclusionFrequencyTolerance, "neighbour \(v): \(frequency)")
        }
    }
}
