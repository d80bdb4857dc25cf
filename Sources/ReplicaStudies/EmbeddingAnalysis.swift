import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaTrain

/// A checkpoint's token-embedding matrix: one row per vocabulary token, special tokens left out.
public struct EmbeddingTable: Sendable {
    /// The task that wrote the checkpoint ("charlm", "translate", "mlm", "cbow", "gat", "graphmae").
    public var task: String
    /// The tensor's name in `model.safetensors`.
    public var tensorName: String
    /// The included rows' token text. [n]
    public var tokens: [String]
    /// The included rows, row-major. [n, d]
    public var vectors: [Double]
    public var dimension: Int
    /// Each included token's count in the training data, if the checkpoint holds them. [n]
    public var frequencies: [Int]?
    /// Rows of the full table left out (special tokens).
    public var excludedCount: Int

    public var count: Int { tokens.count }

    public init(task: String, tensorName: String, tokens: [String], vectors: [Double], dimension: Int,
                frequencies: [Int]? = nil, excludedCount: Int = 0) {
        precondition(vectors.count == tokens.count * dimension, "EmbeddingTable: \(vectors.count) values for \(tokens.count)×\(dimension)")
        self.task = task
        self.tensorName = tensorName
        self.tokens = tokens
        self.vectors = vectors
        self.dimension = dimension
        self.frequencies = frequencies
        self.excludedCount = excludedCount
    }

    /// Where a task keeps its token embedding, its vocabulary (token text in row order) and how
    /// many leading rows are special tokens. A new task with token embeddings (a word2vec CBOW
    /// checkpoint) is one more case here.
    static func layout(of contents: Checkpoint.Contents) throws -> (tensor: String, tokens: [String], specials: Int, counts: [Int]?) {
        let stateFile = contents.folder.appendingPathComponent("state.json").path
        func bpeSymbols() throws -> [String] {
            guard let serialized = contents.state["tokenizer"] as? [String: Any] else {
                throw UserError("\(stateFile): lacks \"tokenizer\"; the checkpoint is damaged")
            }
            do { return try BPETokenizer(serialized: serialized).symbols } catch {
                throw UserError("\(stateFile): \(error)")
            }
        }
        let specials = BPETokenizer.specialTokens.count
        switch contents.task {
        case "charlm":
            guard let vocabulary = contents.state["vocab"] as? [String] else {
                throw UserError("\(stateFile): lacks \"vocab\" (the characters); the checkpoint is damaged")
            }
            return ("transformer.wte.weight", vocabulary, 0, nil)
        case "translate":
            return ("embedding.weight", try bpeSymbols(), specials, nil)
        case "mlm":
            return (MaskedLanguageModel.tokenEmbeddingName, try bpeSymbols(), specials, contents.state["token_counts"] as? [Int])
        case "cbow":
            guard let vocabulary = contents.state["vocab"] as? [String] else {
                throw UserError("\(stateFile): lacks \"vocab\" (the words); the checkpoint is damaged")
            }
            return (CBOW.inputEmbeddingName, vocabulary, 0, contents.state["counts"] as? [Int])
        case "gat", "graphmae":
            // Graph models: the first layer's weight [F, D] holds one vector per input feature
            // (for Cora, per word of the bag-of-words vocabulary): the graph's token embedding.
            let name = contents.task == "graphmae" ? "encoder.layers.0.weight"
                : contents.model["gat.layers.0.weight"] != nil ? "gat.layers.0.weight" : "net.layers.0.weight"
            guard let rows = contents.model[name]?.shape.first else {
                throw UserError("\(contents.folder.appendingPathComponent("model.safetensors").path): has no tensor \(name); the checkpoint is damaged")
            }
            return (name, (0..<rows).map { "feature \($0)" }, 0, nil)
        default:
            throw UserError("\(contents.folder.path): is a checkpoint of task '\(contents.task)', which has no token embeddings; "
                + "analyze embeddings reads charlm, translate, mlm, cbow, gat and graphmae checkpoints")
        }
    }

    /// The token embedding of a checkpoint, found by the task named in its state.json.
    public static func load(_ contents: Checkpoint.Contents) throws -> EmbeddingTable {
        let (name, tokens, specials, counts) = try layout(of: contents)
        let file = contents.folder.appendingPathComponent("model.safetensors").path
        guard let tensor = contents.model[name] else { throw UserError("\(file): has no tensor \(name); the checkpoint is damaged") }
        guard tensor.shape.count == 2, tensor.shape[0] == tokens.count else {
            throw UserError("\(file): \(name) has shape \(tensor.shape), but state.json names \(tokens.count) tokens")
        }
        guard tokens.count > specials + 1 else { throw UserError("\(file): \(name) has fewer than 2 ordinary tokens to compare") }
        let d = tensor.shape[1]
        let rows = Array(tensor.scalars[(specials * d)...]).map(Double.init)
        let frequencies = counts.flatMap { $0.count == tokens.count ? Array($0[specials...]) : nil }
        return EmbeddingTable(task: contents.task, tensorName: name, tokens: Array(tokens[specials...]), vectors: rows,
                              dimension: d, frequencies: frequencies, excludedCount: specials)
    }

    /// The `count` tokens nearest to row `row` by cosine similarity (the row itself left out).
    public func nearest(to row: Int, count: Int) -> [(token: String, cosine: Double)] {
        let d = dimension
        let unit = normalizedRows(vectors, count: self.count, dimension: d)
        var scored: [(Int, Double)] = []
        for other in 0..<self.count where other != row {
            var dot = 0.0
            for j in 0..<d { dot += unit[row * d + j] * unit[other * d + j] }
            scored.append((other, dot))
        }
        return scored.sorted { ($0.1, -$0.0) > ($1.1, -$1.0) }.prefix(count).map { (tokens[$0.0], $0.1) }
    }

    /// The row of `word`: the token spelled so, else the word-initial BPE token "▁word".
    public func row(of word: String) -> Int? {
        tokens.firstIndex(of: "\(BPETokenizer.wordBoundary)\(word)") ?? tokens.firstIndex(of: word)
    }
}

/// Anisotropy of a set of vectors: how much they share one direction.
public struct AnisotropyStatistics: Sendable, Equatable {
    /// Mean cosine similarity over all pairs of distinct rows (0 for isotropic vectors).
    public var meanCosine: Double
    /// Fraction of the variance along the top principal direction.
    public var topVariance: Double
    /// Fraction of the variance along the top k principal directions.
    public var topKVariance: Double
}

/// The anisotropy of embeddings before and after whitening (Su et al. 2021, "Whitening Sentence
/// Representations"; Ethayarajh 2019 for the mean cosine).
public struct EmbeddingStatistics: Sendable {
    public var count: Int
    public var dimension: Int
    public var k: Int
    public var before: AnisotropyStatistics
    public var after: AnisotropyStatistics
    /// Eigenvalues of the covariance above 1e-10 of the largest: its numerical rank.
    public var rank: Int
    /// Pearson correlation between a token's embedding norm and the log of its training count, over tokens seen.
    public var normLogFrequencyCorrelation: Double?

    /// Whitening adds ε = this × (trace / d) to each eigenvalue before 1/√λ.
    public static let relativeEpsilon = 1e-6

    /// Statistics of the n rows of `vectors` [n, d]; `frequencies` [n] are training counts.
    public init(vectors: [Double], count n: Int, dimension d: Int, k: Int, frequencies: [Int]? = nil) {
        precondition(n >= 2 && vectors.count == n * d, "EmbeddingStatistics: need at least 2 rows of \(d)")
        count = n
        dimension = d
        self.k = min(max(k, 1), d)
        let (mean, covariance) = Self.covariance(vectors, count: n, dimension: d)
        let eigen = SymmetricEigendecomposition(symmetric: covariance, dimension: d)
        rank = eigen.values.filter { $0 > 1e-10 * max(eigen.values[0], .leastNormalMagnitude) }.count
        before = Self.statistics(vectors, count: n, dimension: d, eigenvalues: eigen.values, k: self.k)
        let whitened = Self.whiten(vectors, count: n, dimension: d, mean: mean, eigen: eigen)
        let whitenedEigen = SymmetricEigendecomposition(symmetric: Self.covariance(whitened, count: n, dimension: d).covariance,
                                                        dimension: d)
        after = Self.statistics(whitened, count: n, dimension: d, eigenvalues: whitenedEigen.values, k: self.k)
        normLogFrequencyCorrelation = frequencies.flatMap { Self.normLogFrequencyCorrelation(vectors, dimension: d, frequencies: $0) }
    }

    static func statistics(_ x: [Double], count n: Int, dimension d: Int, eigenvalues: [Double], k: Int) -> AnisotropyStatistics {
        let total = eigenvalues.reduce(0) { $0 + max($1, 0) }
        let share = { (m: Int) in total > 0 ? eigenvalues.prefix(m).reduce(0) { $0 + max($1, 0) } / total : 0 }
        return AnisotropyStatistics(meanCosine: meanPairwiseCosine(x, count: n, dimension: d), topVariance: share(1),
                                    topKVariance: share(k))
    }

    /// The mean [d] and the covariance (1/n) Σ (xᵢ − μ)(xᵢ − μ)ᵀ [d, d] of the rows.
    public static func covariance(_ x: [Double], count n: Int, dimension d: Int) -> (mean: [Double], covariance: [Double]) {
        var mean = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mean[j] += x[i * d + j] } }
        for j in 0..<d { mean[j] /= Double(n) }
        var covariance = [Double](repeating: 0, count: d * d)
        var centred = [Double](repeating: 0, count: d)
        covariance.withUnsafeMutableBufferPointer { c in
            for i in 0..<n {
                for j in 0..<d { centred[j] = x[i * d + j] - mean[j] }
                for a in 0..<d {
                    let value = centred[a]
                    if value == 0 { continue }
                    for b in a..<d { c[a * d + b] += value * centred[b] }
                }
            }
            for a in 0..<d {
                for b in a..<d {
                    c[a * d + b] /= Double(n)
                    c[b * d + a] = c[a * d + b]
                }
            }
        }
        return (mean, covariance)
    }

    /// (xᵢ − μ) · U diag(1/√(λ + ε)) Uᵀ for every row: the whitened rows, covariance ≈ I. [n, d]
    public static func whiten(_ x: [Double], count n: Int, dimension d: Int, mean: [Double],
                              eigen: SymmetricEigendecomposition) -> [Double] {
        let trace = eigen.values.reduce(0) { $0 + max($1, 0) }
        let epsilon = relativeEpsilon * max(trace / Double(d), .leastNormalMagnitude)
        // W = U diag(1/√(λ+ε)) Uᵀ
        let u = eigen.vectors
        let scales = eigen.values.map { 1 / (max($0, 0) + epsilon).squareRoot() }
        var w = [Double](repeating: 0, count: d * d)
        for a in 0..<d {
            for b in 0..<d {
                var sum = 0.0
                for m in 0..<d { sum += u[a * d + m] * scales[m] * u[b * d + m] }
                w[a * d + b] = sum
            }
        }
        var result = [Double](repeating: 0, count: n * d)
        var centred = [Double](repeating: 0, count: d)
        for i in 0..<n {
            for j in 0..<d { centred[j] = x[i * d + j] - mean[j] }
            for a in 0..<d {
                let value = centred[a]
                for b in 0..<d { result[i * d + b] += value * w[a * d + b] }
            }
        }
        return result
    }

    /// Pearson's r between ‖xᵢ‖ and log(countᵢ) over the rows whose count is at least 1.
    public static func normLogFrequencyCorrelation(_ x: [Double], dimension d: Int, frequencies: [Int]) -> Double? {
        var norms: [Double] = [], logs: [Double] = []
        for (i, frequency) in frequencies.enumerated() where frequency > 0 {
            norms.append(rowNorm(x, row: i, dimension: d))
            logs.append(log(Double(frequency)))
        }
        // Fewer than 3 tokens, or all equally frequent: no correlation to speak of.
        guard norms.count >= 3, Set(logs).count > 1, Set(norms).count > 1 else { return nil }
        return pearsonCorrelation(norms, logs)
    }
}
