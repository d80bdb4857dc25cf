import Foundation
import ReplicaCore

/// Do frequent words sit nearer the origin? Embedding norms by word frequency, before and after
/// whitening (`replica analyze embeddings` on checkpoints that hold training counts: cbow, mlm).
public struct NormFrequencyReport: Sendable {
    /// Words whose training count lies in [lowerCount, upperCount).
    public struct Bucket: Sendable, Equatable {
        public var lowerCount: Int
        public var upperCount: Int?        // nil: no upper bound
        public var wordCount: Int
        public var meanNorm: Double
        public var meanWhitenedNorm: Double
        public var label: String { upperCount.map { "\(lowerCount)–\($0 - 1)" } ?? "≥ \(lowerCount)" }
    }

    /// Count decades 1–9, 10–99, ...; the buckets without words are left out.
    public var buckets: [Bucket]
    /// Pearson's r of ‖x‖ with log count, over words seen at least once.
    public var correlation: Double?
    /// The same for the whitened vectors.
    public var whitenedCorrelation: Double?

    /// The report for the n rows of `vectors` [n, d] with training counts `frequencies` [n];
    /// nil when fewer than 3 rows have a count.
    public init?(vectors: [Double], count n: Int, dimension d: Int, frequencies: [Int]) {
        guard frequencies.count == n, n >= 3, frequencies.filter({ $0 > 0 }).count >= 3 else { return nil }
        let (mean, covariance) = EmbeddingStatistics.covariance(vectors, count: n, dimension: d)
        let eigen = SymmetricEigendecomposition(symmetric: covariance, dimension: d)
        let whitened = EmbeddingStatistics.whiten(vectors, count: n, dimension: d, mean: mean, eigen: eigen)
        correlation = EmbeddingStatistics.normLogFrequencyCorrelation(vectors, dimension: d, frequencies: frequencies)
        whitenedCorrelation = EmbeddingStatistics.normLogFrequencyCorrelation(whitened, dimension: d, frequencies: frequencies)
        let largest = frequencies.max() ?? 1
        var buckets: [Bucket] = []
        var lower = 1
        while lower <= largest {
            let upper = lower * 10
            let members = frequencies.indices.filter { frequencies[$0] >= lower && frequencies[$0] < upper }
            if !members.isEmpty {
                let m = Double(members.count)
                buckets.append(Bucket(lowerCount: lower, upperCount: upper, wordCount: members.count,
                                      meanNorm: members.reduce(0) { $0 + rowNorm(vectors, row: $1, dimension: d) } / m,
                                      meanWhitenedNorm: members.reduce(0) { $0 + rowNorm(whitened, row: $1, dimension: d) } / m))
            }
            lower = upper
        }
        self.buckets = buckets
    }

    /// The table as printed by `replica analyze embeddings`.
    public var lines: [String] {
        func pad(_ text: String, _ width: Int) -> String {
            text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
        }
        var lines = [pad("training count", 16) + pad("words", 8) + pad("mean norm", 12) + "mean norm whitened"]
        for bucket in buckets {
            lines.append(pad(bucket.label, 16) + pad("\(bucket.wordCount)", 8) + pad(String(format: "%.4f", bucket.meanNorm), 12)
                + String(format: "%.4f", bucket.meanWhitenedNorm))
        }
        let format = { (r: Double?) in r.map { String(format: "%.3f", $0) } ?? "n/a" }
        lines.append("norm vs log training frequency after whitening: Pearson r = \(format(whitenedCorrelation))")
        return lines
    }
}
