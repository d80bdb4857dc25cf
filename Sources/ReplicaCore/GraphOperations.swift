// Graph construction, k-hop neighbourhood sampling and DropEdge on CSR graphs.
// Legend: N nodes, E edges (stored entries). Row v of a CSRGraph lists the sources of v's
// incoming edges, so "in-neighbours of v" is row v and every operation here walks rows.

extension CSRMatrix {
    /// A graph over nodes 0..<nodeCount from edges sources[k] -> targets[k]. [N, N]
    ///
    /// Row v lists the sources of v's incoming edges, sorted and without duplicates. `symmetric`
    /// adds every reverse edge (an undirected graph such as Cora's citation list). `selfLoops`
    /// replaces whatever self-loops the list has by exactly one per node (v -> v), as PyG's GATConv
    /// does (remove_self_loops, then add_self_loops); without it, self-loops in the list are kept
    /// once. The result is a pattern (no values). Cost O(E log d) for E edges of degree ≤ d.
    public static func graph(nodeCount: Int, sources: [Int32], targets: [Int32], symmetric: Bool,
                             selfLoops: Bool) -> CSRGraph {
        precondition(nodeCount >= 0 && nodeCount <= 1 << 31, "graph: \(nodeCount) nodes do not fit Int32 ids")
        precondition(sources.count == targets.count, "graph: \(sources.count) sources but \(targets.count) targets")
        for k in 0..<sources.count {
            precondition(sources[k] >= 0 && Int(sources[k]) < nodeCount && targets[k] >= 0 && Int(targets[k]) < nodeCount,
                         "graph: edge \(k) (\(sources[k]) -> \(targets[k])) leaves 0..<\(nodeCount)")
        }
        // Counting sort by target: counts, then prefix sums, then placement.
        var counts = [Int](repeating: 0, count: nodeCount + 1)
        func forEachEdge(_ body: (Int32, Int32) -> Void) {   // (source, target)
            for k in 0..<sources.count {
                let s = sources[k], t = targets[k]
                if s == t {
                    if !selfLoops { body(s, t) }
                    continue
                }
                body(s, t)
                if symmetric { body(t, s) }
            }
            if selfLoops { for v in 0..<nodeCount { body(Int32(truncatingIfNeeded: v), Int32(truncatingIfNeeded: v)) } }   // v < 2³¹
        }
        forEachEdge { _, t in counts[Int(t) + 1] += 1 }
        for v in 0..<nodeCount { counts[v + 1] += counts[v] }
        var next = counts
        var columns = [Int32](repeating: 0, count: counts[nodeCount])
        forEachEdge { s, t in columns[next[Int(t)]] = s; next[Int(t)] += 1 }

        // Sort each row and squeeze out duplicates in place.
        var offsets = [Int](repeating: 0, count: nodeCount + 1)
        var written = 0
        columns.withUnsafeMutableBufferPointer { c in
            for v in 0..<nodeCount {
                var row = UnsafeMutableBufferPointer(rebasing: c[counts[v]..<counts[v + 1]])
                row.sort()
                var previous: Int32 = -1
                for s in row where s != previous {
                    c[written] = s
                    written += 1
                    previous = s
                }
                offsets[v + 1] = written
            }
        }
        columns.removeLast(columns.count - written)
        return CSRGraph(rowCount: nodeCount, columnCount: nodeCount, rowOffsets: offsets, columnIndices: columns)
    }

    /// The k-hop in-neighbourhood of `seeds` as a local graph, and the global id of each local node.
    ///
    /// Local nodes 0..<seeds.count are the seeds in order; the others follow in the order they were
    /// reached (breadth first). Every node within `hops − 1` of a seed gets its incoming edges (all
    /// of them, or a sample), so a `hops`-layer message-passing model computes the seeds' outputs
    /// exactly as on the whole graph (or on the sampled graph). Nodes first reached at hop `hops`
    /// are inputs only: they keep just their self-loop, if the graph has one.
    ///
    /// `fanout` [f1, f2, ...] (one per hop; nil takes every neighbour): at hop h a node keeps at most
    /// f_h of its in-neighbours, drawn without replacement from `generator` (GraphSAGE's sampler);
    /// its self-loop is always kept and does not count. Values, if any, come along. Rows of the
    /// local graph are sorted. [N, N] -> [n, n] with n = nodes.count
    public func subgraph(rows seeds: [Int32], hops: Int, fanout: [Int]?,
                         generator: inout SeededGenerator) -> (graph: CSRGraph, nodes: [Int32]) {
        precondition(rowCount == columnCount, "subgraph needs a square graph, got \(rowCount)×\(columnCount)")
        precondition(hops >= 0, "subgraph needs hops ≥ 0, got \(hops)")
        if let fanout {
            precondition(fanout.count >= hops, "subgraph: \(fanout.count) fanouts for \(hops) hops")
            precondition(fanout.allSatisfy { $0 >= 0 }, "subgraph: fanouts must be non-negative, got \(fanout)")
        }
        let hasValues = !values.isEmpty
        var local: [Int32: Int32] = [:]                  // global -> local
        local.reserveCapacity(seeds.count * 4)
        var nodes: [Int32] = []
        nodes.reserveCapacity(seeds.count * 4)
        for seed in seeds {
            precondition(seed >= 0 && Int(seed) < rowCount, "subgraph: seed \(seed) outside 0..<\(rowCount)")
            precondition(local[seed] == nil, "subgraph: seed \(seed) appears twice")
            local[seed] = Int32(nodes.count)
            nodes.append(seed)
        }
        func localID(_ global: Int32) -> Int32 {
            if let id = local[global] { return id }
            let id = Int32(nodes.count)
            local[global] = id
            nodes.append(global)
            return id
        }

        // Edges are gathered per local target row: (local source, value).
        var rowColumns: [[Int32]] = []
        var rowValues: [[Float]] = []
        var candidates: [Int] = []                       // entry indices of one row, for sampling
        var frontier = 0..<nodes.count
        for hop in 0...hops {
            let expands = hop < hops
            for target in frontier {
                let global = Int(nodes[target])
                var columnsOut: [Int32] = []
                var valuesOut: [Float] = []
                let row = range(ofRow: global)
                if expands {
                    candidates.removeAll(keepingCapacity: true)
                    for k in row {
                        if Int(columnIndices[k]) == global {
                            columnsOut.append(Int32(target))
                            if hasValues { valuesOut.append(values[k]) }
                        } else {
                            candidates.append(k)
                        }
                    }
                    var take = candidates.count
                    if let limit = fanout?[hop], limit < take {
                        // Partial Fisher–Yates: the first `limit` entries become a uniform sample.
                        for position in 0..<limit {
                            let pick = position + generator.nextInt(below: candidates.count - position)
                            candidates.swapAt(position, pick)
                        }
                        take = limit
                    }
                    for k in candidates[0..<take] {
                        columnsOut.append(localID(columnIndices[k]))
                        if hasValues { valuesOut.append(values[k]) }
                    }
                } else {
                    for k in row where Int(columnIndices[k]) == global {
                        columnsOut.append(Int32(target))
                        if hasValues { valuesOut.append(values[k]) }
                    }
                }
                rowColumns.append(columnsOut)
                rowValues.append(valuesOut)
            }
            frontier = frontier.upperBound..<nodes.count
        }
        precondition(rowColumns.count == nodes.count, "subgraph: every local node has a row")

        let n = nodes.count
        var offsets = [Int](repeating: 0, count: n + 1)
        for v in 0..<n { offsets[v + 1] = offsets[v] + rowColumns[v].count }
        var columns = [Int32](repeating: 0, count: offsets[n])
        var entryValues = [Float](repeating: 0, count: hasValues ? offsets[n] : 0)
        for v in 0..<n {
            let order = rowColumns[v].indices.sorted { rowColumns[v][$0] < rowColumns[v][$1] }
            for (position, index) in order.enumerated() {
                columns[offsets[v] + position] = rowColumns[v][index]
                if hasValues { entryValues[offsets[v] + position] = rowValues[v][index] }
            }
        }
        let graph = CSRGraph(rowCount: n, columnCount: n, rowOffsets: offsets, columnIndices: columns, values: entryValues)
        return (graph, nodes)
    }

    /// Consecutive row ranges covering 0..<rowCount, each with at most `entriesPerChunk` entries
    /// (a row with more is a chunk alone): how layer-wise inference walks a graph a chunk of
    /// nodes at a time. O(rows).
    public func rowChunks(entriesPerChunk: Int) -> [Range<Int>] {
        precondition(entriesPerChunk >= 1, "rowChunks needs entriesPerChunk ≥ 1, got \(entriesPerChunk)")
        var chunks: [Range<Int>] = []
        var start = 0
        while start < rowCount {
            var end = start + 1
            while end < rowCount && rowOffsets[end + 1] - rowOffsets[start] <= entriesPerChunk { end += 1 }
            chunks.append(start..<end)
            start = end
        }
        return chunks
    }

    /// DropEdge: each edge other than a self-loop is removed with `probability`. [N, N] -> [N, N]
    ///
    /// Self-loops (diagonal entries) always stay, so no node loses its own contribution. Each
    /// direction of an undirected edge is dropped independently. Values, if any, come along.
    public func dropEdges(probability: Float, generator: inout SeededGenerator) -> CSRGraph {
        precondition(probability >= 0 && probability <= 1, "dropEdges probability must be in [0, 1], got \(probability)")
        let hasValues = !values.isEmpty
        var offsets = [Int](repeating: 0, count: rowCount + 1)
        var columns: [Int32] = []
        var kept: [Float] = []
        columns.reserveCapacity(Int(Float(nonzeroCount) * (1 - probability)) + rowCount)
        // Kept when a uniform 24-bit draw is at least p·2²⁴.
        let threshold = UInt64((Double(probability) * 0x1p24).rounded())
        for row in 0..<rowCount {
            for k in range(ofRow: row) {
                let isSelfLoop = Int(columnIndices[k]) == row
                if isSelfLoop || generator.next() >> 40 >= threshold {
                    columns.append(columnIndices[k])
                    if hasValues { kept.append(values[k]) }
                }
            }
            offsets[row + 1] = columns.count
        }
        return CSRGraph(rowCount: rowCount, columnCount: columnCount, rowOffsets: offsets, columnIndices: columns, values: kept)
    }
}
