import ReplicaCore

// Legend: N nodes, F features, M mask nodes, K kept (unmasked) nodes = N − M.

/// One draw of GraphMAE's masking (edcoder.py `encoding_mask_noise`).
///
/// ⌊maskRate·N⌋ mask nodes are the head of a random permutation of the nodes. Shuffled again,
/// the first ⌊(1 − replaceRate)·M⌋ become token nodes (features zeroed, then the learnable mask
/// token added) and the last ⌊replaceRate·M⌋ noise nodes (given the features of as many distinct
/// random nodes); a mask node in neither group (rounding) keeps its features. The loss covers
/// every mask node.
public struct GraphMAEMask: Sendable, Equatable {
    public var nodeCount: Int
    public var maskNodes: [Int32]         // [M], in permutation order
    public var tokenNodes: [Int32]        // [⌊(1 − r)·M⌋]
    public var noiseNodes: [Int32]        // [⌊r·M⌋]
    public var noiseSources: [Int32]      // [⌊r·M⌋]: noise node k takes the features of noiseSources[k]

    public init(nodeCount: Int, maskNodes: [Int32], tokenNodes: [Int32], noiseNodes: [Int32], noiseSources: [Int32]) {
        precondition(noiseNodes.count == noiseSources.count,
                     "GraphMAEMask: \(noiseNodes.count) noise nodes but \(noiseSources.count) sources")
        self.nodeCount = nodeCount
        self.maskNodes = maskNodes
        self.tokenNodes = tokenNodes
        self.noiseNodes = noiseNodes
        self.noiseSources = noiseSources
    }

    /// A random draw over nodes 0..<nodeCount.
    public init(nodeCount: Int, maskRate: Float, replaceRate: Float, generator: inout SeededGenerator) {
        precondition((0...1).contains(maskRate) && (0...1).contains(replaceRate),
                     "GraphMAEMask: mask rate \(maskRate) and replace rate \(replaceRate) must lie in [0, 1]")
        var permutation = (0..<Int32(nodeCount)).map { $0 }
        permutation.shuffle(using: &generator)
        let maskCount = Int(Double(maskRate) * Double(nodeCount))
        let mask = Array(permutation[0..<maskCount])
        var tokens = mask, noise: [Int32] = [], sources: [Int32] = []
        if replaceRate > 0 {
            var shuffled = mask
            shuffled.shuffle(using: &generator)
            let tokenCount = Int((1 - Double(replaceRate)) * Double(maskCount))
            let noiseCount = Int(Double(replaceRate) * Double(maskCount))
            tokens = Array(shuffled[0..<tokenCount])
            noise = Array(shuffled[(maskCount - noiseCount)...])
            // The first noiseCount of a fresh permutation (partial Fisher–Yates).
            var candidates = (0..<Int32(nodeCount)).map { $0 }
            for position in 0..<noiseCount {
                candidates.swapAt(position, position + generator.nextInt(below: nodeCount - position))
            }
            sources = Array(candidates[0..<noiseCount])
        }
        self.init(nodeCount: nodeCount, maskNodes: mask, tokenNodes: tokens, noiseNodes: noise, noiseSources: sources)
    }

    /// The nodes outside the mask, ascending. [K]
    public var keptNodes: [Int32] {
        var isMasked = [Bool](repeating: false, count: nodeCount)
        for node in maskNodes { isMasked[Int(node)] = true }
        return (0..<Int32(nodeCount)).filter { !isMasked[Int($0)] }
    }

    /// The features with token rows emptied and noise rows replaced by their sources' rows
    /// (the mask token itself is added after the projection). [N, F] -> [N, F]
    public func corrupting(_ features: CSRMatrix) -> CSRMatrix {
        precondition(features.rowCount == nodeCount, "GraphMAEMask over \(nodeCount) nodes applied to \(features.rowCount) rows")
        var source = (0..<Int32(nodeCount)).map { $0 }       // the row each row copies; -1: empty
        for node in tokenNodes { source[Int(node)] = -1 }
        for (node, from) in zip(noiseNodes, noiseSources) { source[Int(node)] = from }
        let hasValues = !features.values.isEmpty
        var offsets = [0]
        offsets.reserveCapacity(nodeCount + 1)
        var columns: [Int32] = []
        columns.reserveCapacity(features.nonzeroCount)
        var values: [Float] = []
        values.reserveCapacity(hasValues ? features.nonzeroCount : 0)
        for row in 0..<nodeCount {
            if source[row] >= 0 {
                let range = features.range(ofRow: Int(source[row]))
                columns.append(contentsOf: features.columnIndices[range])
                if hasValues { values.append(contentsOf: features.values[range]) }
            }
            offsets.append(columns.count)
        }
        return CSRMatrix(rowCount: nodeCount, columnCount: features.columnCount, rowOffsets: offsets,
                         columnIndices: columns, values: values)
    }
}
