import Foundation
import ReplicaCore

/// Sentences for masked-language-model training, one a line, in two splits.
public struct SentenceSplits: Sendable, Equatable {
    public var train: [String]
    public var validation: [String]
    /// Where they came from, for messages ("Multi30k English", a path).
    public var description: String

    public init(train: [String], validation: [String], description: String) {
        self.train = train
        self.validation = validation
        self.description = description
    }

    /// The English side of the embedded Multi30k: 29,000 training and 1,014 validation captions.
    public static func multi30kEnglish() throws -> SentenceSplits {
        let data = try TranslationData.multi30k()
        return SentenceSplits(train: data.train.target, validation: data.validation.target, description: "Multi30k English")
    }

    /// The non-empty lines of the UTF-8 text file `path`; the last 10% are the validation split
    /// unless `validationPath` names a file of its own. A missing, empty or non-UTF-8 file, or one
    /// without a non-empty line, is a UserError naming it.
    public static func load(path: String, validationPath: String? = nil) throws -> SentenceSplits {
        func sentences(_ path: String) throws -> [String] {
            let lines = try TextCorpus.load(path).split(whereSeparator: \.isNewline)
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard !lines.isEmpty else { throw UserError("\(path): has no non-empty line; it should hold one sentence a line") }
            return lines
        }
        let lines = try sentences(path)
        if let validationPath {
            return SentenceSplits(train: lines, validation: try sentences(validationPath), description: path)
        }
        guard lines.count >= 2 else {
            throw UserError("\(path): has 1 sentence; at least 2 are needed to hold 10% out for validation (or give --val-data FILE)")
        }
        let validationCount = max(1, lines.count / 10)
        return SentenceSplits(train: Array(lines.dropLast(validationCount)), validation: Array(lines.suffix(validationCount)),
                              description: path)
    }
}
