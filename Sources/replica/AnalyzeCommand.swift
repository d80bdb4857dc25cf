import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaStudies
import ReplicaTrain

struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Analyse a trained checkpoint.",
        subcommands: [AnalyzeEmbeddings.self]
    )
}

struct AnalyzeEmbeddings: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embeddings",
        abstract: "Anisotropy of a checkpoint's token embeddings, before and after whitening.",
        discussion: """
        Reads the token-embedding matrix of a charlm, translate, mlm or cbow checkpoint (one row per token, special tokens left out) and reports the mean pairwise cosine similarity and the fraction of variance along the top 1 and top K principal directions, before and after whitening (subtract the mean, multiply by the inverse square root of the covariance); for mlm and cbow checkpoints also the correlation between a token's embedding norm and its log frequency, and the mean norm by frequency decade, before and after whitening.
          replica analyze embeddings --checkpoint runs/mlm --json
          replica analyze embeddings --checkpoint runs/mlm --nearest dog,red,running
        """
    )

    @Option(help: "A checkpoint folder (step-NNNNNNNN) or a --checkpoint-dir (its newest checkpoint).") var checkpoint: String
    @Option(help: "Principal directions in the top-K share of variance.") var top = 10
    @Option(help: "Comma-separated words (or tokens) whose nearest neighbours by cosine to print.") var nearest: String?
    @Option(help: "Neighbours printed per word with --nearest.") var neighbours = 8
    @Flag(help: "Print the result as one JSON object, the last line of stdout.") var json = false

    func validate() throws {
        guard top >= 1 else { throw ValidationError("--top \(top) must be at least 1.") }
        guard neighbours >= 1 else { throw ValidationError("--neighbours \(neighbours) must be at least 1.") }
    }

    func run() throws {
        let folder = Checkpoint.folder(forPath: checkpoint)
        let table = try EmbeddingTable.load(try Checkpoint.load(folder))
        let words = try nearest.map {
            try commaSeparated($0, option: "--nearest", expecting: "words", example: "dog,red") { $0.isEmpty ? nil : $0 }
        } ?? []
        let rows = try words.map { word in
            guard let row = table.row(of: word) else {
                throw UserError("--nearest: '\(word)' is not a token of \(folder.path)'s vocabulary")
            }
            return (word, row)
        }
        let statistics = EmbeddingStatistics(vectors: table.vectors, count: table.count, dimension: table.dimension,
                                             k: top, frequencies: table.frequencies)
        let k = statistics.k
        print("\(table.task) checkpoint \(folder.path): \(table.tensorName), \(table.count) tokens × \(table.dimension)"
            + (table.excludedCount > 0 ? " (\(table.excludedCount) special tokens left out)" : "")
            + ", covariance rank \(statistics.rank)")
        print("")
        print(pad("", 22) + pad("before whitening", 18) + "after whitening")
        for (label, value) in [("mean cosine", \AnisotropyStatistics.meanCosine), ("top-1 variance", \.topVariance),
                               ("top-\(k) variance", \.topKVariance)] {
            print(pad(label, 22) + pad(String(format: "%.4f", statistics.before[keyPath: value]), 18)
                + String(format: "%.4f", statistics.after[keyPath: value]))
        }
        if let r = statistics.normLogFrequencyCorrelation {
            print(String(format: "\nnorm vs log training frequency: Pearson r = %.3f", r))
        }
        let byFrequency = table.frequencies.flatMap {
            NormFrequencyReport(vectors: table.vectors, count: table.count, dimension: table.dimension, frequencies: $0)
        }
        byFrequency?.lines.forEach { print($0) }
        for (_, row) in rows {
            let list = table.nearest(to: row, count: neighbours).map { String(format: "%@ %.3f", $0.token, $0.cosine) }
            print("\nnearest to \(table.tokens[row]): " + list.joined(separator: ", "))
        }
        guard json else { return }
        func side(_ s: AnisotropyStatistics) -> JSONValue {
            .object(["mean_cosine": .number(s.meanCosine), "top1_variance": .number(s.topVariance), "topk_variance": .number(s.topKVariance)])
        }
        var summary: [String: JSONValue] = [
            "task": .string(table.task), "checkpoint": .string(folder.path), "tensor": .string(table.tensorName),
            "tokens": .integer(table.count), "dim": .integer(table.dimension), "k": .integer(k), "rank": .integer(statistics.rank),
            "before": side(statistics.before), "after": side(statistics.after),
            "norm_log_frequency_correlation": statistics.normLogFrequencyCorrelation.map(JSONValue.number) ?? .null,
        ]
        if let byFrequency {
            summary["norm_log_frequency_correlation_whitened"] = byFrequency.whitenedCorrelation.map(JSONValue.number) ?? .null
            summary["norm_by_frequency"] = .array(byFrequency.buckets.map {
                .object(["min_count": .integer($0.lowerCount), "max_count": $0.upperCount.map { .integer($0 - 1) } ?? .null,
                         "words": .integer($0.wordCount), "mean_norm": .number($0.meanNorm),
                         "mean_norm_whitened": .number($0.meanWhitenedNorm)])
            })
        }
        if !rows.isEmpty {
            summary["nearest"] = .object(Dictionary(rows.map { word, row in
                (word, JSONValue.array(table.nearest(to: row, count: neighbours).map {
                    .object(["token": .string($0.token), "cosine": .number($0.cosine)])
                }))
            }, uniquingKeysWith: { first, _ in first }))
        }
        print(JSONValue.object(summary).serialized())
    }

    func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
