// Neighbour sampling for mini-batch training of graph models, as blocks (DGL's message-flow graphs).
// Legend: L layers; n_0 ≥ n_1 ≥ … ≥ n_L nodes per level, n_L the seeds; f_h the fanout of hop h
// (hop 0 starts at the seeds, as PyG's num_neighbors and `subgraph(rows:hops:fanout:generator:)`).
// Row v of a CSRGraph lists the sources of v's incoming edges.

/// A sampled mini-batch: the nodes its first layer reads, and one block per layer.
///
/// Local ids index `nodes`; the seeds come first (local 0..<n_L), then the nodes in the order the
/// hops reached them. Block l (input layer first) is a CSR graph [n_{l+1}, n_l]: its rows are
/// local nodes 0..<n_{l+1} (those layer l computes), its columns local nodes 0..<n_l (those it
/// reads), so row i's own node is column i. The last block's rows are the seeds.
public struct SampledBlocks: Sendable, Equatable {
    /// Global id of each local node, seeds first. [n_0]
    public var nodes: [Int32]
    /// Block l, [n_{l+1}, n_l], input layer first. [L]
    public var blocks: [CSRGraph]

    public init(nodes: [Int32], blocks: [CSRGraph]) {
        self.nodes = nodes
        self.blocks = blocks
    }
}

/// Samples the blocks of a mini-batch from a graph, touching only the rows of the nodes it reaches.
///
/// Hop h (h = 0 at the seeds) gives the block of layer L − 1 − h: each of its rows, every node
/// reached so far, keeps at most f_h of its in-neighbours, drawn without replacement (GraphSAGE's
/// and DGL's `MultiLayerNeighborSampler`; every row is sampled afresh for each layer), and its
/// self-loop, if the graph has one, always and outside the count. A row with no more than f_h
/// neighbours keeps them all, so fanouts above every degree give each node's whole
/// neighbourhood. Kept entries stay in the graph's row order. Values come along; when a row is
/// sampled, its kept neighbours' values are multiplied by m/f_h (m its neighbours), so the
/// expected sum over the sample is the whole row's (GCN's aggregation stays unbiased; the
/// self-loop's value is kept as it is).
///
/// Cost per mini-batch: O(log d + min(f², d)) per row for degree d (Floyd's sampling, or a pass
/// over the row when the sample is a large share of it), plus the blocks' entries. Nothing is
/// proportional to the graph: the global-to-local id map is a scratch array of N entries made
/// once, and only the entries a mini-batch set are reset after it. Not thread-safe: one sampler
/// per rank.
public final class BlockSampler {
    /// [N, N], rows sorted (as `CSRMatrix.graph` builds them), at most one self-loop per row.
    public let graph: CSRGraph
    /// Local id of each global node in the mini-batch being sampled, −1 elsewhere. [N]
    private var localIDs: [Int32]
    /// Virtual indices of one row's sample. [f]
    private var picks: [Int] = []

    public init(graph: CSRGraph) {
        precondition(graph.rowCount == graph.columnCount, "BlockSampler needs a square graph, got \(graph.rowCount)×\(graph.columnCount)")
        precondition(graph.rowCount <= Int(Int32.max), "BlockSampler: \(graph.rowCount) nodes do not fit Int32 ids")
        self.graph = graph
        localIDs = [Int32](repeating: -1, count: graph.rowCount)
    }

    /// The blocks of a `layers`-layer model for `seeds` (distinct node ids). `fanout` [f_0, …]
    /// gives one count per hop (nil: every neighbour). Draws from `generator` only.
    public func sample(seeds: [Int32], layers: Int, fanout: [Int]?, generator: inout SeededGenerator) -> SampledBlocks {
        precondition(layers >= 1, "BlockSampler needs layers ≥ 1, got \(layers)")
        if let fanout {
            precondition(fanout.count == layers, "BlockSampler: \(fanout.count) fanouts for \(layers) layers")
            precondition(fanout.allSatisfy { $0 >= 0 }, "BlockSampler: fanouts must be non-negative, got \(fanout)")
        }
        var nodes: [Int32] = []
        nodes.reserveCapacity(seeds.count * (1 + (fanout?.first ?? 4)))
        defer { for node in nodes { localIDs[Int(node)] = -1 } }
        for seed in seeds {
            precondition(seed >= 0 && Int(seed) < graph.rowCount, "BlockSampler: seed \(seed) outside 0..<\(graph.rowCount)")
            precondition(localIDs[Int(seed)] < 0, "BlockSampler: seed \(seed) appears twice")
            localIDs[Int(seed)] = Int32(nodes.count)
            nodes.append(seed)
        }
        var blocks: [CSRGraph] = []
        for hop in 0..<layers {
            blocks.append(sampleBlock(rows: nodes.count, nodes: &nodes, fanout: fanout?[hop], generator: &generator))
        }
        return SampledBlocks(nodes: nodes, blocks: blocks.reversed())
    }

    /// One hop: rows 0..<rows of `nodes` sample their neighbours; nodes reached for the first time
    /// are appended. [rows, nodes.count after the hop]
    private func sampleBlock(rows: Int, nodes: inout [Int32], fanout: Int?, generator: inout SeededGenerator) -> CSRGraph {
        let hasValues = !graph.values.isEmpty
        var offsets = [Int](repeating: 0, count: rows + 1)
        var columns: [Int32] = []
        var values: [Float] = []
        columns.reserveCapacity(rows * (1 + min(fanout ?? 8, 64)))
        for target in 0..<rows {
            let node = Int(nodes[target])
            let row = graph.range(ofRow: node)
            let selfEntry = selfLoopEntry(of: node, in: row)
            let neighbours = row.count - (selfEntry == nil ? 0 : 1)
            let take = min(fanout ?? neighbours, neighbours)
            let scale = take < neighbours ? Float(neighbours) / Float(take) : 1
            /// Entry k of the row, as a local column and a value.
            func keep(_ k: Int, scaled: Bool) {
                let source = graph.columnIndices[k]
                var local = localIDs[Int(source)]
                if local < 0 {
                    local = Int32(nodes.count)
                    localIDs[Int(source)] = local
                    nodes.append(source)
                }
                columns.append(local)
                if hasValues { values.append(scaled ? graph.values[k] * scale : graph.values[k]) }
            }
            if take == neighbours {
                for k in row { keep(k, scaled: false) }
            } else {
                choose(take, of: neighbours, generator: &generator)
                var selfPending = selfEntry != nil
                for pick in picks {
                    // Virtual index `pick` skips the self-loop's entry.
                    let k = row.lowerBound + pick + (selfEntry.map { pick >= $0 - row.lowerBound ? 1 : 0 } ?? 0)
                    if selfPending, let selfEntry, selfEntry < k {
                        keep(selfEntry, scaled: false)
                        selfPending = false
                    }
                    keep(k, scaled: true)
                }
                if selfPending, let selfEntry { keep(selfEntry, scaled: false) }
            }
            offsets[target + 1] = columns.count
        }
        return CSRGraph(rowCount: rows, columnCount: nodes.count, rowOffsets: offsets, columnIndices: columns, values: values)
    }

    /// The entry of `node`'s self-loop in its sorted row, if any: a binary search.
    private func selfLoopEntry(of node: Int, in row: Range<Int>) -> Int? {
        var low = row.lowerBound, high = row.upperBound
        let target = Int32(node)
        while low < high {
            let middle = (low + high) / 2
            if graph.columnIndices[middle] < target { low = middle + 1 } else { high = middle }
        }
        return low < row.upperBound && graph.columnIndices[low] == target ? low : nil
    }

    /// `count` distinct indices of 0..<total drawn uniformly into `picks`, ascending (count < total).
    /// Floyd's algorithm (O(count²)) for a small share, else selection sampling in one pass (O(total)).
    private func choose(_ count: Int, of total: Int, generator: inout SeededGenerator) {
        picks.removeAll(keepingCapacity: true)
        if count * count <= total {
            for j in (total - count)..<total {
                let t = generator.nextInt(below: j + 1)
                picks.append(picks.contains(t) ? j : t)
            }
            picks.sort()
        } else {
            var needed = count
            for index in 0..<total where needed > 0 {
                if generator.nextInt(below: total - index) < needed {
                    picks.append(index)
                    needed -= 1
                }
            }
        }
    }
}
