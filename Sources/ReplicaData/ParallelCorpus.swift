import Foundation
import ReplicaCore

/// Sentence pairs: line i of `source` translates to line i of `target`.
public struct ParallelCorpus: Sendable, Equatable {
    public var source: [String]
    public var target: [String]

    public init(source: [String], target: [String]) {
        precondition(source.count == target.count, "ParallelCorpus: \(source.count) source lines, \(target.count) target lines")
        self.source = source
        self.target = target
    }

    /// The number of sentence pairs.
    public var count: Int { source.count }
}

/// A translation data set in three splits, read from one folder of line-aligned text files.
///
/// ```
/// DIR/train.de(.gz)  DIR/train.en(.gz)                         training pairs (Multi30k: 29,000)
/// DIR/val.de(.gz)    DIR/val.en(.gz)                           validation pairs (1,014)
/// DIR/test_2016_flickr.de(.gz)  DIR/test_2016_flickr.en(.gz)   test pairs (1,000); another prefix with --test-prefix
/// ```
///
/// One sentence a line, UTF-8, each file plain or gzip-compressed (`NAME.LANG.gz` is read when
/// present, else `NAME.LANG`).
public struct TranslationData: Sendable, Equatable {
    public var train: ParallelCorpus
    public var validation: ParallelCorpus
    public var test: ParallelCorpus

    public init(train: ParallelCorpus, validation: ParallelCorpus, test: ParallelCorpus) {
        self.train = train
        self.validation = validation
        self.test = test
    }

    /// The split names of the folder layout: training, validation; the test prefix is a parameter.
    public static let trainPrefix = "train"
    public static let validationPrefix = "val"
    public static let defaultTestPrefix = "test_2016_flickr"

    /// The embedded Multi30k task 1, German-English (Elliott et al. 2016): 29,000 / 1,014 / 1,000
    /// pairs of image captions for train / val / test_2016_flickr.
    public static func multi30k() throws -> TranslationData {
        try load(directory: EmbeddedData.multi30kDirectory())
    }

    /// Reads the three splits under `directory` (see the type's documentation).
    ///
    /// A missing folder or file, a file that is empty or not UTF-8 (named with its line number),
    /// truncated gzip data, or two languages of a split with different line counts is a UserError
    /// naming the file(s).
    public static func load(directory: URL, sourceLanguage: String = "de", targetLanguage: String = "en",
                            testPrefix: String = defaultTestPrefix) throws -> TranslationData {
        precondition(sourceLanguage != targetLanguage, "TranslationData.load: source and target language are both \(sourceLanguage)")
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory) else {
            throw UserError("\(directory.path): no such folder; --data takes a folder with \(layout(sourceLanguage, targetLanguage, testPrefix))")
        }
        guard isDirectory.boolValue else {
            throw UserError("\(directory.path): is a file, not a folder; --data takes a folder with \(layout(sourceLanguage, targetLanguage, testPrefix))")
        }
        func split(_ prefix: String) throws -> ParallelCorpus {
            let sourceFile = try findFile(prefix, sourceLanguage, in: directory, layout: layout(sourceLanguage, targetLanguage, testPrefix))
            let targetFile = try findFile(prefix, targetLanguage, in: directory, layout: layout(sourceLanguage, targetLanguage, testPrefix))
            let source = try readLines(sourceFile)
            let target = try readLines(targetFile)
            guard source.count == target.count else {
                throw UserError("\(sourceFile.path) has \(source.count) lines but \(targetFile.path) has \(target.count); the two languages of a split must be line-aligned, one sentence pair a line")
            }
            return ParallelCorpus(source: source, target: target)
        }
        return TranslationData(train: try split(trainPrefix), validation: try split(validationPrefix), test: try split(testPrefix))
    }

    static func layout(_ sourceLanguage: String, _ targetLanguage: String, _ testPrefix: String) -> String {
        "\(trainPrefix).\(sourceLanguage)/.\(targetLanguage), \(validationPrefix).\(sourceLanguage)/.\(targetLanguage) and \(testPrefix).\(sourceLanguage)/.\(targetLanguage) (each may be gzip-compressed, ending in .gz; another test set with --test-prefix)"
    }

    /// `PREFIX.LANGUAGE.gz` if it exists, else `PREFIX.LANGUAGE`.
    static func findFile(_ prefix: String, _ language: String, in directory: URL, layout: String) throws -> URL {
        let plain = directory.appendingPathComponent("\(prefix).\(language)")
        let compressed = directory.appendingPathComponent("\(prefix).\(language).gz")
        if FileManager.default.fileExists(atPath: compressed.path) { return compressed }
        if FileManager.default.fileExists(atPath: plain.path) { return plain }
        throw UserError("\(plain.path): no such file (nor \(compressed.lastPathComponent)) in the folder \(directory.path); it should hold \(layout)")
    }

    /// Every line of `url` as a String; an empty or non-UTF-8 file is a UserError naming it.
    static func readLines(_ url: URL) throws -> [String] {
        var lines: [String] = []
        try GzipLineReader(url: url).forEachLine { lineNumber, bytes in
            guard let line = String(validating: bytes, as: UTF8.self) else {
                let offset = TextCorpus.firstInvalidUTF8Offset(Data(bytes)) ?? 0
                throw UserError("\(url.path), line \(lineNumber): not valid UTF-8 (byte \(offset + 1) of the line); convert the file to UTF-8 text")
            }
            lines.append(line)
        }
        guard !lines.isEmpty else { throw UserError("\(url.path): the file is empty; it should hold one sentence a line") }
        return lines
    }
}
