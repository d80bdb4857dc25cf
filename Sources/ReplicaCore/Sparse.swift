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
