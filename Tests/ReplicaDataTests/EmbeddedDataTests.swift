import Foundation
import Testing
import ReplicaData
import _ReplicaTestSupport

/// The data sets built into the program are byte for byte the published ones.
@Suite struct EmbeddedDataTests {
    /// SHA-256 of every embedded file, taken from the published sources when they were embedded
    /// (Tiny Shakespeare: char-rnn's input.txt; Cora: Planetoid's public split in the OGB raw
    /// layout; Multi30k: task 1 raw files of the multi30k/dataset repository).
    static let checksums: [String: String] = [
        "tinyshakespeare.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        "cora/raw/edge.csv.gz": "69fd230f39a8415a9900fc157bd123849d24c813684a0f7b9adc765bb7797b84",
        "cora/raw/node-feat.csv.gz": "0ff4ee8c0275dceb49ef31a6987b431fea2074d62d4bb833a3daf608d647ba23",
        "cora/raw/node-label.csv.gz": "739c7233c3cb4bafa5995caa7576332ffb4f00433642acd4721c8d81c4461e4b",
        "cora/raw/num-edge-list.csv.gz": "60dd53ae4af9b08d3cd2dc349bb75a96a9c80baf3a40df09fefed2430e65f9c8",
        "cora/raw/num-node-list.csv.gz": "1d81d6f46ca5f0d2e6190e9ad5e9f9a6680bfe0c912ce0e05251743ec461ec0c",
        "cora/split/public/test.csv.gz": "bc6adb28ed9b9e5d93739a474757618580d67dd890b5d8b341b985f8ef0d3e93",
        "cora/split/public/train.csv.gz": "9fcc1b141b59643016d85a7842a9e9511f28b9426cd33a85f0792e49211dd7fc",
        "cora/split/public/valid.csv.gz": "a0147c8a6cd01ed11acd31f01a3b2cf27de6d7b26a6818267625d3a9a0a8c56b",
        "multi30k/test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
        "multi30k/test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        "multi30k/train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "multi30k/train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "multi30k/val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "multi30k/val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    ]

    /// Every file the program reads, keyed as in `checksums`, found through the program's own accessors.
    static func embeddedFiles() throws -> [String: URL] {
        var files = ["tinyshakespeare.txt": try EmbeddedData.tinyShakespeareFile()]
        for (prefix, directory) in [("cora", try EmbeddedData.coraDirectory()), ("multi30k", try EmbeddedData.multi30kDirectory())] {
            let enumerator = try #require(FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey]))
            for case let url as URL in enumerator where (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true {
                let relative = url.standardizedFileURL.path.dropFirst(directory.standardizedFileURL.path.count + 1)
                files["\(prefix)/\(relative)"] = url
            }
        }
        return files
    }

    @Test func everyEmbeddedFileHasItsPublishedChecksum() throws {
        let files = try Self.embeddedFiles()
        #expect(Set(files.keys) == Set(Self.checksums.keys), "the embedded files differ from the list of checksums")
        for (name, url) in files.sorted(by: { $0.key < $1.key }) {
            let result = try runProcess("/usr/bin/env", ["sha256sum", url.path], timeout: 60)
            try #require(result.status == 0, "sha256sum \(url.path): \(result.standardError)")
            let digest = result.standardOutput.split(separator: " ").first.map(String.init)
            #expect(digest == Self.checksums[name], "\(name) (\(url.path)) has changed")
        }
    }

    @Test func theEmbeddedDataSetsLoadWithTheirPublishedSizes() throws {
        #expect(try TextCorpus.tinyShakespeare().count == 1_115_394)
        let cora = try NodePropertyDataset.cora()
        #expect(cora.nodeCount == 2708 && cora.featureCount == 1433 && cora.classCount == 7)
        #expect((cora.train.count, cora.validation.count, cora.test.count) == (140, 500, 1000))
        let multi30k = try TranslationData.multi30k()
        #expect((multi30k.train.source.count, multi30k.validation.source.count, multi30k.test.source.count) == (29_000, 1_014, 1_000))
    }
}
