import Foundation
import ReplicaCore

/// The sizes and planted structure of a synthetic node-classification graph (`replica data synth-graph`).
///
/// Legend: N nodes, E edges (lines of edge.csv), F features, C classes, H homophily.
public struct SyntheticGraphConfig: Sendable, Equatable {
    public var nodeCount = 169_343        // N; ogbn-products: 2,449,029
    public var edgeCount = 1_166_243      // E, directed edges as edge.csv lists them; products: 61,859,140
    public var featureCount = 128         // F; products: 100
    public var classCount = 40            // C; products: 47
    /// H: the chance that an edge's target is drawn from its source's class (else from another).
    public var homophily = 0.65           // products preset: 0.40
    public var seed: UInt64 = 0
    /// Train and validation nodes per `splitBase` nodes (the rest test): OGB's counts for ogbn-arxiv.
    public var splitTrain = 90_941, splitValidation = 29_799, splitBase = 169_343

    public init() {}

    /// The largest graph the loader reads: node ids are Int32; 2³⁹ edges (a 10 TB edge file).
    public static let maximumNodeCount = NodePropertyDataset.maximumNodeCount
    public static let maximumEdgeCount = 1 << 39

    /// (train, validation, test) node counts: N scaled from the split's counts, rounded.
    public var splitCounts: (train: Int, validation: Int, test: Int) {
        let train = (nodeCount * splitTrain + splitBase / 2) / splitBase
        let validation = (nodeCount * splitValidation + splitBase / 2) / splitBase
        return (train, validation, nodeCount - train - validation)
    }

    /// What is wrong with these sizes, naming the option of `replica data synth-graph` to change; nil if none.
    public var problem: String? {
        if classCount < 2 { return "--classes \(classCount): at least 2 classes (edges across classes need another class)" }
        if featureCount < 1 { return "--features \(featureCount): at least 1 feature" }
        if nodeCount < 2 * classCount || nodeCount > Self.maximumNodeCount {
            return "--nodes \(nodeCount): between 2 × classes (\(2 * classCount)), so that every class has two nodes, and 2³¹ (node ids are 32-bit)"
        }
        if edgeCount < 0 || edgeCount > Self.maximumEdgeCount {
            return "--avg-degree: \(edgeCount) edges; at most 2³⁹"
        }
        if !(0...1).contains(homophily) { return "--homophily \(homophily): a probability in [0, 1]" }
        let (train, validation, test) = splitCounts
        if train < 1 || validation < 1 || test < 1 {
            return "--nodes \(nodeCount): too few for non-empty train, validation and test splits (\(train)/\(validation)/\(test))"
        }
        return nil
    }
}

/// Sizes of OGB node-property graphs, for `--like`.
public enum SyntheticGraphPreset: String, CaseIterable, Sendable {
    /// ogbn-arxiv: 169,343 nodes, 1,166,243 edges, 128 features, 40 classes; H 0.65 (ogbn-arxiv's
    /// own edge homophily is reported at about 0.66), and its split sizes 90,941 / 29,799 / 48,603.
    case arxiv
    /// ogbn-products: 2,449,029 nodes, 61,859,140 edges, 100 features, 47 classes; H 0.40 (below
    /// ogbn-products' reported 0.81, which with 25 edges a node would make these features' classes
    /// trivial to tell; docs/graphs-at-scale.md), and its split sizes 196,615 / 39,323 / 2,213,091.
    case products

    public var config: SyntheticGraphConfig {
        var config = SyntheticGraphConfig()
        switch self {
        case .arxiv:
            break   // the defaults
        case .products:
            config.nodeCount = 2_449_029
            config.edgeCount = 61_859_140
            config.featureCount = 100
            config.classCount = 47
            config.homophily = 0.40
            (config.splitTrain, config.splitValidation, config.splitBase) = (196_615, 39_323, 2_449_029)
        }
        return config
    }
}

/// A degree-corrected stochastic block model with power-law degrees whose blocks are the classes,
/// and class-dependent noisy features, written in the OGB raw layout `NodePropertyDataset` reads.
///
/// - Classes: class c holds 2 + a share ∝ (c + 1)^-0.5 of the other N − 2C nodes (largest
///   remainders), labels shuffled over the node ids. Every node is labelled.
/// - Degrees: node i has weight θᵢ = min(U^(−1/(α−1)), 1000), U uniform in (0, 1], α = 2.5: a
///   Pareto tail P(θ > x) = x^−1.5, mean ≈ 3, the largest 1000 × the smallest.
/// - Edges, E of them, each on its own: the source u ∝ θ over all nodes; with probability H the
///   target ∝ θ among u's class (other than u), else ∝ θ among the other classes. So in- and
///   out-degrees both follow θ, and about H·E edges join a class to itself. No self-loops;
///   duplicate edges are kept (removing them would mean remembering every edge; the symmetric
///   graph the models use stores each neighbour once anyway).
/// - Features: class c has a mean μ_c ~ N(0, I_F); node i's features are 0.1 · μ_{y_i} + N(0, I_F),
///   written with 3 decimals. Signed, like ogbn-arxiv's: train with `--no-normalize-features`.
/// - Splits: a random permutation of the nodes cut into train, validation and test
///   (`SyntheticGraphConfig.splitCounts`), each file sorted.
///
/// Every random choice comes from a stream keyed by the seed and its purpose, so one seed gives
/// the same bytes every time. Memory: labels, weights and alias tables, about 40 bytes a node
/// (100 MB for products); edges and features are generated and compressed as they are written.
public struct SyntheticGraph {
    public let config: SyntheticGraphConfig

    /// The edge propensity's tail exponent α, and the cap on θ (the smallest θ is 1).
    public static let degreeExponent = 2.5
    public static let weightCap = 1000.0
    /// How far the class means stand out of the unit noise.
    public static let featureSignal: Float = 0.1
    public static let classSizeExponent = 0.5
    public static let fractionDigits = 3

    /// The generator streams, one per purpose.
    enum Stream: UInt64 { case labels = 1, weights, means, features, edges, splits }

    /// The long parts of writing, for progress.
    public enum Phase: String, Sendable { case features, edges }

    /// What was written.
    public struct Summary: Sendable {
        public var nodeCount, edgeCount, featureCount, classCount: Int
        /// The fraction of the written edges that join two nodes of one class (NaN without edges).
        public var measuredHomophily: Double
        public var splitCounts: (train: Int, validation: Int, test: Int)
        /// The files' sizes on disk (compressed), in bytes.
        public var bytes: Int
    }

    public init(config: SyntheticGraphConfig) {
        precondition(config.problem == nil, "SyntheticGraph: \(config.problem ?? "")")
        self.config = config
    }

    /// Writes the graph into `final` (which must not exist or be empty) through a temporary sibling
    /// renamed into place, so a run that fails or is killed leaves no half-written folder (only,
    /// after a kill, a hidden `.tmp-<name>-<pid>` that the next run into `final` removes).
    ///
    /// `progress(phase, done, total)` is called at each phase's start, every 65,536 rows or edges, and at its end.
    public func write(to final: URL, progress: (Phase, Int, Int) -> Void = { _, _, _ in }) throws -> Summary {
        let manager = FileManager.default
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: final.path, isDirectory: &isDirectory) {
            let entries = isDirectory.boolValue ? (try? manager.contentsOfDirectory(atPath: final.path)) : nil
            guard let entries, entries.isEmpty else {
                throw UserError("\(final.path) already exists and is not an empty folder; give --out a new folder, or remove this one first")
            }
        }
        AtomicDirectory.removeLeftovers(in: final.deletingLastPathComponent(), named: final.lastPathComponent)
        var summary: Summary?
        try AtomicDirectory.write(to: final) { directory in
            summary = try writeFiles(into: directory, progress: progress)
        }
        return summary!
    }

    /// Writes every file of the layout into `directory`.
    func writeFiles(into directory: URL, progress: (Phase, Int, Int) -> Void) throws -> Summary {
        let raw = directory.appendingPathComponent("raw")
        let split = directory.appendingPathComponent("split/public")
        try FileManager.default.createDirectory(at: raw, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: split, withIntermediateDirectories: true)
        var bytes = 0

        bytes += try writeLines(raw.appendingPathComponent("num-node-list.csv.gz"), [config.nodeCount])
        bytes += try writeLines(raw.appendingPathComponent("num-edge-list.csv.gz"), [config.edgeCount])
        let labels = classLabels()
        bytes += try writeLines(raw.appendingPathComponent("node-label.csv.gz"), labels.lazy.map { Int($0) })
        bytes += try writeFeatures(raw.appendingPathComponent("node-feat.csv.gz"), labels: labels, progress: progress)
        let (edgeBytes, sameClass) = try writeEdges(raw.appendingPathComponent("edge.csv.gz"), labels: labels, progress: progress)
        bytes += edgeBytes
        let (train, validation, test) = splits()
        bytes += try writeLines(split.appendingPathComponent("train.csv.gz"), train.lazy.map { Int($0) })
        bytes += try writeLines(split.appendingPathComponent("valid.csv.gz"), validation.lazy.map { Int($0) })
        bytes += try writeLines(split.appendingPathComponent("test.csv.gz"), test.lazy.map { Int($0) })

        return Summary(nodeCount: config.nodeCount, edgeCount: config.edgeCount, featureCount: config.featureCount,
                       classCount: config.classCount,
                       measuredHomophily: config.edgeCount > 0 ? Double(sameClass) / Double(config.edgeCount) : .nan,
                       splitCounts: (train.count, validation.count, test.count), bytes: bytes)
    }

    func generator(_ stream: Stream) -> SeededGenerator { SeededGenerator(seed: config.seed, stream.rawValue) }

    // MARK: - Classes and degrees

    /// Nodes per class: 2 each, and the rest by shares ∝ (c + 1)^-0.5, largest remainders first. [C]
    func classSizes() -> [Int] {
        let c = config.classCount
        let rest = config.nodeCount - 2 * c
        let shares = (0..<c).map { pow(Double($0 + 1), -Self.classSizeExponent) }
        let total = shares.reduce(0, +)
        let exact = shares.map { Double(rest) * $0 / total }
        var sizes = exact.map { 2 + Int($0) }
        let leftOver = config.nodeCount - sizes.reduce(0, +)
        let byRemainder = (0..<c).sorted { a, b in
            let ra = exact[a] - exact[a].rounded(.down), rb = exact[b] - exact[b].rounded(.down)
            return ra != rb ? ra > rb : a < b
        }
        for k in 0..<leftOver { sizes[byRemainder[k % c]] += 1 }
        return sizes
    }

    /// Every node's class, the class sizes shuffled over the ids. [N]
    func classLabels() -> [Int32] {
        var labels: [Int32] = []
        labels.reserveCapacity(config.nodeCount)
        for (c, size) in classSizes().enumerated() {
            labels.append(contentsOf: repeatElement(Int32(c), count: size))
        }
        var random = generator(.labels)
        shuffle(&labels, using: &random)
        return labels
    }

    /// θ: the power-law edge propensity of each node. [N]
    func degreeWeights() -> [Double] {
        var random = generator(.weights)
        let power = -1 / (Self.degreeExponent - 1)
        return (0..<config.nodeCount).map { _ in
            let uniform = (Double(random.next() >> 11) + 1) * 0x1p-53   // (0, 1]
            return min(pow(uniform, power), Self.weightCap)
        }
    }

    /// Fisher–Yates, the same permutation for the same generator everywhere.
    func shuffle(_ values: inout [Int32], using random: inout SeededGenerator) {
        guard values.count > 1 else { return }
        for i in stride(from: values.count - 1, to: 0, by: -1) {
            values.swapAt(i, random.nextInt(below: i + 1))
        }
    }

    // MARK: - Files

    /// One integer a line.
    func writeLines<Values: Sequence>(_ url: URL, _ values: Values) throws -> Int where Values.Element == Int {
        let writer = try GzipFileWriter(url: url)
        for value in values {
            try writer.append(integer: value)
            try writer.append(byte: UInt8(ascii: "\n"))
        }
        try writer.close()
        return writer.compressedBytes
    }

    /// N rows of F features: signal · μ_class + N(0, 1) noise. [N, F]
    func writeFeatures(_ url: URL, labels: [Int32], progress: (Phase, Int, Int) -> Void) throws -> Int {
        let f = config.featureCount
        var meanStream = generator(.means)
        let means = (0..<config.classCount * f).map { _ in Self.featureSignal * meanStream.nextNormal() }   // [C, F]
        var noise = generator(.features)
        let writer = try GzipFileWriter(url: url)
        progress(.features, 0, config.nodeCount)
        for node in 0..<config.nodeCount {
            let row = Int(labels[node]) * f
            for j in 0..<f {
                if j > 0 { try writer.append(byte: UInt8(ascii: ",")) }
                try writer.append(decimal: means[row + j] + noise.nextNormal(), fractionDigits: Self.fractionDigits)
            }
            try writer.append(byte: UInt8(ascii: "\n"))
            if (node + 1) % 65_536 == 0 { progress(.features, node + 1, config.nodeCount) }
        }
        try writer.close()
        progress(.features, config.nodeCount, config.nodeCount)
        return writer.compressedBytes
    }

    /// E lines "source,target" drawn from the block model; returns the bytes and the same-class edges.
    func writeEdges(_ url: URL, labels: [Int32], progress: (Phase, Int, Int) -> Void) throws -> (bytes: Int, sameClass: Int) {
        let weights = degreeWeights()
        let anyNode = AliasTable(weights: weights)
        // The nodes of each class, by class (counting sort), and an alias table over each class.
        let c = config.classCount
        var offsets = [Int](repeating: 0, count: c + 1)   // [C + 1]
        for label in labels { offsets[Int(label) + 1] += 1 }
        for k in 0..<c { offsets[k + 1] += offsets[k] }
        var members = [Int32](repeating: 0, count: config.nodeCount)   // [N] node ids by class
        var next = offsets
        for (node, label) in labels.enumerated() {
            members[next[Int(label)]] = Int32(truncatingIfNeeded: node)
            next[Int(label)] += 1
        }
        let inClass = (0..<c).map { k in AliasTable(weights: members[offsets[k]..<offsets[k + 1]].map { weights[Int($0)] }) }

        var random = generator(.edges)
        let writer = try GzipFileWriter(url: url)
        var sameClass = 0
        progress(.edges, 0, config.edgeCount)
        for edge in 0..<config.edgeCount {
            let source = anyNode.sample(using: &random)
            let label = labels[source]
            var target: Int
            if Double(random.next() >> 11) * 0x1p-53 < config.homophily {
                let start = offsets[Int(label)]
                repeat { target = Int(members[start + inClass[Int(label)].sample(using: &random)]) } while target == source
            } else {
                repeat { target = anyNode.sample(using: &random) } while labels[target] == label
            }
            if labels[target] == label { sameClass += 1 }
            try writer.append(integer: source)
            try writer.append(byte: UInt8(ascii: ","))
            try writer.append(integer: target)
            try writer.append(byte: UInt8(ascii: "\n"))
            if (edge + 1) % 65_536 == 0 { progress(.edges, edge + 1, config.edgeCount) }
        }
        try writer.close()
        progress(.edges, config.edgeCount, config.edgeCount)
        return (writer.compressedBytes, sameClass)
    }

    /// A random permutation of the nodes cut into train, validation and test, each sorted.
    func splits() -> (train: [Int32], validation: [Int32], test: [Int32]) {
        var order = (0..<config.nodeCount).map { Int32(truncatingIfNeeded: $0) }
        var random = generator(.splits)
        shuffle(&order, using: &random)
        let (train, validation, _) = config.splitCounts
        return (order[..<train].sorted(), order[train..<(train + validation)].sorted(), order[(train + validation)...].sorted())
    }
}
