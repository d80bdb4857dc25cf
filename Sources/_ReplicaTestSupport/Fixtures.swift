import Foundation
import ReplicaCore
import ReplicaData

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
}
