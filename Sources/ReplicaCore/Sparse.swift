/// A sparse matrix in compressed sparse row form. [rows, columns]
///
/// Row r's entries are `columnIndices[rowOffsets[r]..<rowOffsets[r+1]]` with `values` alongside.
/// Used for graphs (adjacency, values optional) and for sparse node features (Cora is 98.7% zeros).
public struct CSRMatrix: Sendable, Equatable {
    public var rowCount: Int
    public var columnCount: Int
    public var rowOffsets: [Int]          // [rows + 1]
    public var columnIndices: [Int32]     // [nonzeros]
    public var values: [Float]            // [nonzeros], or empty for a pattern (all ones)

    public init(rowCount: Int, columnCount: Int, rowOffsets: [Int], columnIndices: [Int32], values: [Float] = []) {
        precondition(rowOffsets.count == rowCount + 1, "CSRMatrix: \(rowOffsets.count) offsets for \(rowCount) rows")
        precondition(rowOffsets.last == columnIndices.count, "CSRMatrix: offsets end at \(rowOffsets.last ?? -1), \(columnIndices.count) entries")
        precondition(values.isEmpty || values.count == columnIndices.count, "CSRMatrix: values and indices differ in count")
        self.rowCount = rowCount
        self.columnCount = columnCount
        self.rowOffsets = rowOffsets
        self.columnIndices = columnIndices
        self.values = values
    }

    public var nonzeroCount: Int { columnIndices.count }

    /// The entries of row `row`.
    public func range(ofRow row: Int) -> Range<Int> { rowOffsets[row]..<rowOffsets[row + 1] }
}

/// A directed graph over nodes 0..<nodeCount as CSR: row v lists the sources of v's incoming
/// edges (the neighbours v attends to / aggregates from). [nodes, nodes]
public typealias CSRGraph = CSRMatrix

extension CSRMatrix {
    /// The rows `rows`, in that order, as a new matrix. [rows.count, columns]
    public func gatheringRows(_ rows: [Int32]) -> CSRMatrix {
        var offsets = [Int](repeating: 0, count: rows.count + 1)
        for (position, row) in rows.enumerated() { offsets[position + 1] = offsets[position] + range(ofRow: Int(row)).count }
        var indices = [Int32](repeating: 0, count: offsets[rows.count])
        var gathered = [Float](repeating: 0, count: values.isEmpty ? 0 : offsets[rows.count])
        indices.withUnsafeMutableBufferPointer { target in
            gathered.withUnsafeMutableBufferPointer { targetValues in
                columnIndices.withUnsafeBufferPointer { source in
                    values.withUnsafeBufferPointer { sourceValues in
                        for (position, row) in rows.enumerated() {
                            let from = rowOffsets[Int(row)], count = offsets[position + 1] - offsets[position]
                            if count == 0 { continue }                // (an empty buffer has no base address)
                            (target.baseAddress! + offsets[position]).update(from: source.baseAddress! + from, count: count)
                            if !sourceValues.isEmpty {
                                (targetValues.baseAddress! + offsets[position]).update(from: sourceValues.baseAddress! + from, count: count)
                            }
                        }
                    }
                }
            }
        }
        return CSRMatrix(rowCount: rows.count, columnCount: columnCount, rowOffsets: offsets,
                         columnIndices: indices, values: gathered)
    }

    /// The same matrix without the entries in columns where `keepColumn` is false (feature masking).
    public func maskingColumns(_ keepColumn: [Bool]) -> CSRMatrix {
        precondition(keepColumn.count == columnCount, "column mask of \(keepColumn.count) for \(columnCount) columns")
        var offsets = [0]
        offsets.reserveCapacity(rowCount + 1)
        var indices: [Int32] = []
        var kept: [Float] = []
        for row in 0..<rowCount {
            for entry in range(ofRow: row) where keepColumn[Int(columnIndices[entry])] {
                indices.append(columnIndices[entry])
                if !values.isEmpty { kept.append(values[entry]) }
            }
            offsets.append(indices.count)
        }
        return CSRMatrix(rowCount: rowCount, columnCount: columnCount, rowOffsets: offsets, columnIndices: indices, values: kept)
    }
}

extension CSRMatrix {
    /// Every row divided by its sum (rows summing to 0 stay as they are): the feature normalisation of
    /// the GAT paper's code and PyG's `NormalizeFeatures`.
    public func rowNormalized() -> CSRMatrix {
        var result = self
        if result.values.isEmpty { result.values = [Float](repeating: 1, count: nonzeroCount) }
        for row in 0..<rowCount {
            let range = self.range(ofRow: row)
            let sum = range.reduce(Float(0)) { $0 + result.values[$1] }
            if sum != 0 { for entry in range { result.values[entry] /= sum } }
        }
        return result
    }
}
