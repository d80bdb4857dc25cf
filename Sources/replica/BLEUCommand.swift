import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData

/// `replica bleu`: corpus BLEU of a hypothesis file against a reference file, as sacreBLEU 2.x computes it.
struct BLEUCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bleu",
        abstract: "Corpus BLEU of a hypothesis file against a reference file (sacreBLEU 2.x default: 13a tokens, exp smoothing).",
        discussion: """
        Both files are UTF-8 text (or gzip-compressed UTF-8 text), one segment a line, the same number of lines. Prints sacreBLEU's line, for example
          BLEU = 35.12 66.1/41.5/28.0/19.3 (BP = 0.987 ratio = 0.987 hyp_len = 12345 ref_len = 12504)
        or with --json one object with bleu, precisions, bp, ratio, sys_len and ref_len. Example: replica bleu --reference test_2016_flickr.en --hypothesis output.en
        """
    )

    @Option(help: "The reference translations, one a line.")
    var reference: String
    @Option(help: "The system output to score, one line per reference line.")
    var hypothesis: String
    @Flag(help: "Lowercase both sides before tokenising (sacreBLEU -lc).")
    var lowercase = false
    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func run() throws {
        let start = Date()
        let references = try Self.readSegments(reference)
        guard !references.isEmpty else {
            throw UserError("\(reference): the reference file is empty; there is nothing to score")
        }
        let hypotheses = try Self.readSegments(hypothesis)
        guard hypotheses.count == references.count else {
            throw UserError("\(hypothesis): has \(hypotheses.count) line(s) but the reference \(reference) has \(references.count); "
                            + "give one hypothesis line per reference line")
        }
        let score = BLEU.corpus(hypotheses: hypotheses, references: references, lowercase: lowercase)
        if json {
            // bleu as sacreBLEU's JSON "score" (2 decimals); precisions, bp and ratio unrounded.
            let bleu = Double(String(format: "%.2f", score.score)) ?? score.score
            let summary: [String: JSONValue] = [
                "task": .string("bleu"),
                "ranks": .integer(1),
                "steps": .integer(0),
                "seconds": .number(Date().timeIntervalSince(start)),
                "param_count": .integer(0),
                "bleu": .number(bleu),
                "precisions": .array(score.precisions.map { .number($0) }),
                "bp": .number(score.brevityPenalty),
                "ratio": .number(score.ratio),
                "sys_len": .integer(score.hypothesisLength),
                "ref_len": .integer(score.referenceLength),
                "lowercase": .bool(lowercase),
                "tokenize": .string("13a"),
            ]
            print(JSONValue.object(summary).serialized())
        } else {
            print(score.line)
        }
        fflush(stdout)
    }

    /// The lines of a UTF-8 text file (gzip-compressed or not); a final "\n" does not start another line.
    static func readSegments(_ path: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw UserError("\(path): no such file")
        }
        guard !isDirectory.boolValue else {
            throw UserError("\(path): is a directory, not a text file with one segment a line")
        }
        var lines: [String] = []
        try GzipLineReader(url: URL(fileURLWithPath: path)).forEachLine { lineNumber, bytes in
            guard let line = String(validating: bytes, as: UTF8.self) else {
                throw UserError("\(path): line \(lineNumber) is not valid UTF-8; give UTF-8 text")
            }
            lines.append(line)
        }
        return lines
    }
}
