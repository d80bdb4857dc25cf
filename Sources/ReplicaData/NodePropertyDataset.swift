import Foundation
import ReplicaCore

/// A node-property-prediction graph in the OGB raw layout: Cora, ogbn-arxiv and the like.
///
/// N nodes, F features, E edges as listed in edge.csv (Cora lists each undirected edge once; add
/// the reverse edges and self-loops where the model wants them). The layout, under `directory`:
///
/// ```
/// raw/edge.csv.gz           "src,dst" a line, 0-based node ids              [E]
/// raw/node-feat.csv.gz      a node's features a line, comma separated       [N, F]
/// raw/node-label.csv.gz     a node's class id a line (-1 = unlabelled)      [N]
/// raw/num-node-list.csv.gz  one line: N
/// raw/num-edge-list.csv.gz  one line: E
/// split/public/{train,valid,test}.csv.gz   a node id a line (or the single folder in split/, such as OGB's split/time/)
/// ```
///
/// Each file may also be plain text, named with or without `.gz`.
public struct NodePropertyDataset: Sendable, Equatable {
    public var name: String
    public var nodeCount: Int                  // N
    public var featureCount: Int               // F
    /// Node features with the zeros left out; `values` is always filled (Cora's are all 1). [N, F]
    public var features: CSRMatrix
    public var labels: [Int32]                 // [N], class ids 0..<classCount, or -1 = unlabelled
    public var classCount: Int                 // the largest label + 1
    public var edgeSources: [Int32]            // [E]
    public var edgeTargets: [Int32]            // [E]
    public var train: [Int32]                  // node ids, in file order
    public var validation: [Int32]             // node ids, from valid.csv.gz
    public var test: [Int32]                   // node ids

    public var edgeCount: Int { edgeSources.count }

    public init(name: String, nodeCount: Int, featureCount: Int, features: CSRMatrix, labels: [Int32],
                classCount: Int, edgeSources: [Int32], edgeTargets: [Int32],
                train: [Int32], validation: [Int32], test: [Int32]) {
        precondition(features.rowCount == nodeCount && features.columnCount == featureCount,
                     "NodePropertyDataset: features are [\(features.rowCount), \(features.columnCount)], expected [\(nodeCount), \(featureCount)]")
        precondition(labels.count == nodeCount, "NodePropertyDataset: \(labels.count) labels for \(nodeCount) nodes")
        precondition(edgeSources.count == edgeTargets.count, "NodePropertyDataset: \(edgeSources.count) edge sources, \(edgeTargets.count) targets")
        self.name = name
        self.nodeCount = nodeCount
        self.featureCount = featureCount
        self.features = features
        self.labels = labels
        self.classCount = classCount
        self.edgeSources = edgeSources
        self.edgeTargets = edgeTargets
        self.train = train
        self.validation = validation
        self.test = test
    }

    /// The embedded Cora (Planetoid public split): 2,708 nodes, 1,433 binary features, 7 classes,
    /// 5,278 edges, 140 / 500 / 1,000 train / validation / test nodes.
    public static func cora() throws -> NodePropertyDataset {
        try load(directory: EmbeddedData.coraDirectory(), name: "cora")
    }

    /// Reads the OGB raw layout under `directory` (see the type's documentation).
    ///
    /// Malformed data is a UserError naming the file and the 1-based line: a bad number, a node id
    /// out of range, a ragged feature row, line counts that disagree with num-node-list or
    /// num-edge-list, a label below -1, an empty split, a node in two splits; a missing file is
    /// named with its full path.
    ///
    /// Sizes: N up to 2³¹ (node ids are Int32), E and the feature nonzeros up to what memory holds
    /// (counts and offsets are Int). Memory is the result's arrays: capacity is reserved from the
    /// counts in num-node-list and num-edge-list only as far as the files' sizes can hold that many
    /// lines, so a count that lies costs no memory; beyond that the arrays grow as they fill.
    public static func load(directory: URL, name: String) throws -> NodePropertyDataset {
        let files = try Files(directory: directory, name: name)

        let nodeCount = try readCount(files.nodeCountList, of: "nodes")
        guard nodeCount <= maximumNodeCount else {
            throw UserError("\(files.nodeCountList.path), line 1: \(nodeCount) nodes; at most \(maximumNodeCount) (2³¹) are supported, as node ids are 32-bit")
        }
        let listedEdgeCount = try readCount(files.edgeCountList, of: "edges")
        let features = try readFeatures(files.features, nodeCount: nodeCount, nodeCountFile: files.nodeCountList)
        let (labels, classCount) = try readLabels(files.labels, nodeCount: nodeCount, nodeCountFile: files.nodeCountList)
        let (sources, targets) = try readEdges(files.edges, nodeCount: nodeCount, listedEdgeCount: listedEdgeCount,
                                               edgeCountFile: files.edgeCountList, nodeCountFile: files.nodeCountList)
        var membership = SplitMembership(nodeCount: nodeCount)
        let train = try membership.read(files.train, nodeCountFile: files.nodeCountList)
        let validation = try membership.read(files.validation, nodeCountFile: files.nodeCountList)
        let test = try membership.read(files.test, nodeCountFile: files.nodeCountList)

        return NodePropertyDataset(
            name: name, nodeCount: nodeCount, featureCount: features.columnCount, features: features,
            labels: labels, classCount: classCount, edgeSources: sources, edgeTargets: targets,
            train: train, validation: validation, test: test)
    }
}

// MARK: - Files

extension NodePropertyDataset {
    /// The files of the layout, found on disk (`x.csv.gz`, else `x.csv`).
    struct Files {
        var edges, features, labels, nodeCountList, edgeCountList: URL
        var train, validation, test: URL

        static let layout = "the OGB raw layout: raw/{edge,node-feat,node-label,num-node-list,num-edge-list}.csv.gz and split/public/{train,valid,test}.csv.gz"

        init(directory: URL, name: String) throws {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw UserError("\(directory.path): no such directory; the \(name) data set is read from a directory in \(Files.layout)")
            }
            let raw = directory.appendingPathComponent("raw")
            func find(_ folder: URL, _ stem: String, _ what: String) throws -> URL {
                let compressed = folder.appendingPathComponent("\(stem).csv.gz")
                if FileManager.default.fileExists(atPath: compressed.path) { return compressed }
                let plain = folder.appendingPathComponent("\(stem).csv")
                if FileManager.default.fileExists(atPath: plain.path) { return plain }
                throw UserError("\(compressed.path): no such file (\(what) of the \(name) data set in \(directory.path)); expected \(Files.layout)")
            }
            edges = try find(raw, "edge", "the edge list")
            features = try find(raw, "node-feat", "the node features")
            labels = try find(raw, "node-label", "the node labels")
            nodeCountList = try find(raw, "num-node-list", "the node count")
            edgeCountList = try find(raw, "num-edge-list", "the edge count")
            let splits = try Files.splitFolder(directory: directory, name: name)
            train = try find(splits, "train", "the training split")
            validation = try find(splits, "valid", "the validation split")
            test = try find(splits, "test", "the test split")
        }

        /// split/public, else the only folder in split/ (OGB names it after the split: split/time, split/sales_ranking).
        static func splitFolder(directory: URL, name: String) throws -> URL {
            let split = directory.appendingPathComponent("split")
            let manager = FileManager.default
            let publicSplit = split.appendingPathComponent("public")
            var isDirectory: ObjCBool = false
            if manager.fileExists(atPath: publicSplit.path, isDirectory: &isDirectory), isDirectory.boolValue { return publicSplit }
            guard let entries = try? manager.contentsOfDirectory(atPath: split.path) else {
                throw UserError("\(split.path): no such folder; the \(name) data set needs split/public/{train,valid,test}.csv.gz")
            }
            let folders = entries.filter { entry in
                var isFolder: ObjCBool = false
                return manager.fileExists(atPath: split.appendingPathComponent(entry).path, isDirectory: &isFolder) && isFolder.boolValue
            }.sorted()
            guard folders.count == 1 else {
                let found = folders.isEmpty ? "none" : folders.joined(separator: ", ")
                throw UserError("\(publicSplit.path): no such folder, and \(split.path) holds \(folders.count) split folders (\(found)) rather than exactly one; the \(name) data set needs split/public/{train,valid,test}.csv.gz")
            }
            return split.appendingPathComponent(folders[0])
        }
    }
}

// MARK: - Readers

extension NodePropertyDataset {
    /// The most nodes a data set may have: ids 0..<2³¹ fit Int32.
    public static let maximumNodeCount = 1 << 31

    /// How many lines of at least `minimumLineBytes` bytes each (its "\n" included) `url` can hold:
    /// its size, times 1032 for a `.gz` file (deflate's largest expansion), over the minimum.
    /// A bound for reserving capacity from a count a file claims; 0 if the size cannot be read.
    static func lineCountBound(_ url: URL, minimumLineBytes: Int) -> Int {
        var status = stat()
        guard stat(url.path, &status) == 0 else { return 0 }
        let bytes = Int(status.st_size)
        let expansion = url.pathExtension == "gz" ? 1032 : 1
        let (inflated, overflow) = bytes.multipliedReportingOverflow(by: expansion)
        return overflow ? Int.max : (inflated + 1) / minimumLineBytes
    }

    /// num-node-list / num-edge-list: one line holding one count (one graph).
    static func readCount(_ url: URL, of what: String) throws -> Int {
        var count: Int?
        let lines = try GzipLineReader(url: url).forEachLine { lineNumber, line in
            guard lineNumber == 1 else {
                throw UserError("\(url.path), line \(lineNumber): expected a single line, the number of \(what) of the one graph")
            }
            count = try parseWholeInteger(line, url: url, lineNumber: lineNumber, what: "a count of \(what)")
            guard count! >= 0 else { throw UserError("\(url.path), line 1: the number of \(what) is negative (\(count!))") }
        }
        guard lines > 0, let count else {
            throw UserError("\(url.path), line 1: the file is empty; expected the number of \(what)")
        }
        return count
    }

    /// node-feat: N rows of F numbers each; zeros are left out. [N, F]
    ///
    /// Once the first row is read, room for N times its nonzeros is reserved (as far as the file's
    /// size can hold them: a value takes at least 2 bytes), so dense features are read without
    /// the copies of a growing array.
    static func readFeatures(_ url: URL, nodeCount: Int, nodeCountFile: URL) throws -> CSRMatrix {
        let fieldBound = lineCountBound(url, minimumLineBytes: 2)   // "0," or "0\n"
        var rowOffsets: [Int] = [0]
        rowOffsets.reserveCapacity(min(nodeCount, fieldBound) + 1)
        var columnIndices: [Int32] = []
        var values: [Float] = []
        var columnCount = -1
        let lines = try GzipLineReader(url: url).forEachLine { lineNumber, line in
            guard lineNumber <= nodeCount else {
                throw UserError("\(url.path), line \(lineNumber): more rows than the \(nodeCount) nodes in \(nodeCountFile.lastPathComponent); expected one row per node")
            }
            let count = line.count
            var position = 0
            var column = 0
            while true {
                let fieldStart = position
                guard let value = ASCIINumber.parseFloat(line, at: &position), ASCIINumber.endsField(line, at: &position) else {
                    throw badNumber(url, lineNumber, line, fieldStart: fieldStart, what: "a feature value (column \(column + 1))")
                }
                if value != 0 {
                    guard column <= Int(Int32.max) else {
                        throw UserError("\(url.path), line \(lineNumber): more than \(Int32.max) columns; feature columns are 32-bit")
                    }
                    columnIndices.append(Int32(column))
                    values.append(value)
                }
                column += 1
                if position == count { break }
                position += 1   // the comma
            }
            if columnCount < 0 {
                columnCount = column
                let (expected, overflow) = nodeCount.multipliedReportingOverflow(by: columnIndices.count)
                let reserved = min(overflow ? Int.max : expected, fieldBound)
                columnIndices.reserveCapacity(reserved)
                values.reserveCapacity(reserved)
            } else if column != columnCount {
                throw UserError("\(url.path), line \(lineNumber): \(column) columns, but line 1 has \(columnCount); every node needs the same number of features")
            }
            rowOffsets.append(columnIndices.count)
        }
        guard lines == nodeCount else {
            throw UserError("\(url.path), line \(max(lines, 1)): the file ends after \(lines) rows, but \(nodeCountFile.lastPathComponent) says \(nodeCount) nodes; expected one row per node")
        }
        return CSRMatrix(rowCount: nodeCount, columnCount: max(columnCount, 0), rowOffsets: rowOffsets,
                         columnIndices: columnIndices, values: values)
    }

    /// node-label: N class ids, -1 for an unlabelled node. Returns the labels [N] and the largest + 1.
    static func readLabels(_ url: URL, nodeCount: Int, nodeCountFile: URL) throws -> (labels: [Int32], classCount: Int) {
        var labels: [Int32] = []
        labels.reserveCapacity(min(nodeCount, lineCountBound(url, minimumLineBytes: 2)))   // "0\n"
        var largest: Int32 = -1
        let lines = try GzipLineReader(url: url).forEachLine { lineNumber, line in
            guard lineNumber <= nodeCount else {
                throw UserError("\(url.path), line \(lineNumber): more labels than the \(nodeCount) nodes in \(nodeCountFile.lastPathComponent); expected one label per node")
            }
            let label = try parseWholeInteger(line, url: url, lineNumber: lineNumber, what: "a class id")
            guard label >= -1 else {
                throw UserError("\(url.path), line \(lineNumber): label \(label); a label is a class id from 0, or -1 for an unlabelled node")
            }
            guard label <= Int(Int32.max) else {
                throw UserError("\(url.path), line \(lineNumber): label \(label) is too large for a class id")
            }
            labels.append(Int32(label))
            largest = max(largest, Int32(label))
        }
        guard lines == nodeCount else {
            throw UserError("\(url.path), line \(max(lines, 1)): the file ends after \(lines) labels, but \(nodeCountFile.lastPathComponent) says \(nodeCount) nodes; expected one label per node")
        }
        return (labels, Int(largest) + 1)
    }

    /// edge: E lines "src,dst" of node ids in 0..<N. Returns sources and targets, [E] each.
    static func readEdges(_ url: URL, nodeCount: Int, listedEdgeCount: Int, edgeCountFile: URL,
                          nodeCountFile: URL) throws -> (sources: [Int32], targets: [Int32]) {
        var sources: [Int32] = []
        var targets: [Int32] = []
        let edgeBound = min(listedEdgeCount, lineCountBound(url, minimumLineBytes: 4))   // "0,0\n"
        sources.reserveCapacity(edgeBound)
        targets.reserveCapacity(edgeBound)
        let lines = try GzipLineReader(url: url).forEachLine { lineNumber, line in
            guard lineNumber <= listedEdgeCount else {
                throw UserError("\(url.path), line \(lineNumber): more edges than the \(listedEdgeCount) in \(edgeCountFile.lastPathComponent)")
            }
            var position = 0
            guard let source = ASCIINumber.parseInteger(line, at: &position), ASCIINumber.endsField(line, at: &position),
                  position < line.count else {
                throw badNumber(url, lineNumber, line, fieldStart: 0, what: "a source node id (a line is \"source,target\")")
            }
            position += 1   // the comma
            let targetStart = position
            guard let target = ASCIINumber.parseInteger(line, at: &position), ASCIINumber.endsField(line, at: &position) else {
                throw badNumber(url, lineNumber, line, fieldStart: targetStart, what: "a target node id (a line is \"source,target\")")
            }
            guard position == line.count else {
                throw UserError("\(url.path), line \(lineNumber): more than two columns; a line is \"source,target\"")
            }
            guard source >= 0 && source < nodeCount else {
                throw outOfRange(url, lineNumber, id: source, nodeCount: nodeCount, nodeCountFile: nodeCountFile)
            }
            guard target >= 0 && target < nodeCount else {
                throw outOfRange(url, lineNumber, id: target, nodeCount: nodeCount, nodeCountFile: nodeCountFile)
            }
            sources.append(Int32(source))
            targets.append(Int32(target))
        }
        guard lines == listedEdgeCount else {
            throw UserError("\(url.path), line \(max(lines, 1)): the file ends after \(lines) edges, but \(edgeCountFile.lastPathComponent) says \(listedEdgeCount)")
        }
        return (sources, targets)
    }

    /// Which split each node is in, so that a node in two splits is caught. [N]
    struct SplitMembership {
        var file: [UInt8]       // [N] 0 = in no split yet, else the 1-based index into `names`
        var line: [UInt32]      // [N] where the node was listed (each recorded line lists a new node: at most N ≤ 2³¹)
        var names: [String] = []

        init(nodeCount: Int) {
            file = Array(repeating: 0, count: nodeCount)
            line = Array(repeating: 0, count: nodeCount)
        }

        /// A split file: node ids, one a line, at least one, none already listed.
        mutating func read(_ url: URL, nodeCountFile: URL) throws -> [Int32] {
            names.append(url.lastPathComponent)
            let index = UInt8(names.count)
            let nodeCount = file.count
            var ids: [Int32] = []
            let lines = try GzipLineReader(url: url).forEachLine { lineNumber, text in
                let id = try parseWholeInteger(text, url: url, lineNumber: lineNumber, what: "a node id")
                guard id >= 0 && id < nodeCount else {
                    throw outOfRange(url, lineNumber, id: id, nodeCount: nodeCount, nodeCountFile: nodeCountFile)
                }
                if file[id] != 0 {
                    let other = file[id] == index ? "earlier in this file" : "in \(names[Int(file[id]) - 1])"
                    throw UserError("\(url.path), line \(lineNumber): node \(id) is already listed \(other) (line \(line[id])); a node belongs to at most one split")
                }
                file[id] = index
                line[id] = UInt32(lineNumber)
                ids.append(Int32(id))
            }
            guard lines > 0 else {
                throw UserError("\(url.path), line 1: the split is empty; a split lists at least one node id, one a line")
            }
            return ids
        }
    }

    /// A line that is one integer.
    static func parseWholeInteger(_ line: UnsafeBufferPointer<UInt8>, url: URL, lineNumber: Int, what: String) throws -> Int {
        var position = 0
        guard let value = ASCIINumber.parseInteger(line, at: &position), ASCIINumber.endsField(line, at: &position),
              position == line.count else {
            throw badNumber(url, lineNumber, line, fieldStart: 0, what: what, wholeLine: true)
        }
        return value
    }

    static func badNumber(_ url: URL, _ lineNumber: Int, _ line: UnsafeBufferPointer<UInt8>, fieldStart: Int,
                          what: String, wholeLine: Bool = false) -> UserError {
        var end = fieldStart
        if wholeLine { end = line.count } else { while end < line.count && line[end] != UInt8(ascii: ",") { end += 1 } }
        let field = String(decoding: UnsafeBufferPointer(rebasing: line[fieldStart..<min(end, fieldStart + 40)]), as: UTF8.self)
        let shown = end - fieldStart > 40 ? field + "…" : field
        return UserError("\(url.path), line \(lineNumber): \"\(shown)\" is not \(what)")
    }

    static func outOfRange(_ url: URL, _ lineNumber: Int, id: Int, nodeCount: Int, nodeCountFile: URL) -> UserError {
        UserError("\(url.path), line \(lineNumber): node id \(id) is out of range; \(nodeCountFile.lastPathComponent) says \(nodeCount) nodes, ids 0...\(nodeCount - 1)")
    }
}

extension NodePropertyDataset {
    /// The edges made symmetric, with one self-loop per node: the graph GAT and GraphMAE attend over.
    public var symmetricGraphWithSelfLoops: CSRGraph {
        CSRMatrix.graph(nodeCount: nodeCount, sources: edgeSources, targets: edgeTargets, symmetric: true, selfLoops: true)
    }
}
