import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaNN

/// Small inputs for tests, cut from the data sets the program embeds: nothing outside the repository.
public enum Fixtures {
    /// A scratch folder for this test process, removed when it exits.
    public static let folder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-fixtures-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: Fixtures.folder) }
        return folder
    }()

    /// The first `characterCount` characters of the embedded Tiny Shakespeare.
    public static func tinyShakespeare(prefix characterCount: Int) throws -> String {
        String(try TextCorpus.tinyShakespeare().prefix(characterCount))
    }

    /// A UTF-8 file in `folder` holding the first `characterCount` characters of Tiny Shakespeare.
    public static func tinyShakespeareFile(prefix characterCount: Int) throws -> URL {
        let url = folder.appendingPathComponent("tinyshakespeare-\(characterCount)-\(UUID().uuidString).txt")
        try Data(tinyShakespeare(prefix: characterCount).utf8).write(to: url)
        return url
    }

    /// One file of the embedded Multi30k, such as `test_2016_flickr.en.gz`; a missing one is an error naming it.
    public static func multi30kFile(_ name: String) throws -> URL {
        let url = try EmbeddedData.multi30kDirectory().appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw UserError("\(url.path): the embedded Multi30k has no such file")
        }
        return url
    }

    /// The lines of one gzip file of the embedded Multi30k.
    public static func multi30kLines(_ name: String) throws -> [String] {
        var lines: [String] = []
        try GzipLineReader(url: multi30kFile(name)).forEachLine { _, bytes in
            lines.append(String(decoding: bytes, as: UTF8.self))
        }
        return lines
    }

    /// A random 2 + 2-layer encoder–decoder (vocabulary 11, width 8), norm weights and biases moved
    /// off 1 and 0 so that every term of the backward matters: for the model and decoding tests.
    public static func tinySeq2SeqTransformer(norm: NormKind = .layer, scorer: AttentionScorer = .dot) -> Seq2SeqTransformer {
        var config = TransformerConfig()
        config.vocabularySize = 11
        config.embedding = 8
        config.heads = 2
        config.encoderLayers = 2
        config.decoderLayers = 2
        config.feedForward = 16
        config.dropout = 0
        config.norm = norm
        config.scorer = scorer
        let model = Seq2SeqTransformer(config)
        model.initialize(seed: 3)
        var generator = SeededGenerator(seed: 4)
        for slot in model.arena.slots where slot.name.contains("norm") {
            let values = model.arena.value(slot)
            for i in 0..<values.count { values[i] += 0.3 * (generator.nextUniform() - 0.5) }
        }
        return model
    }
}
