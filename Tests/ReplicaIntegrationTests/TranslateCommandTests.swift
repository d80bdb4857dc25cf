import Foundation
import Testing
import _ReplicaTestSupport

/// `replica train translate` and `replica translate` end to end on a tiny corpus and model.
@Suite(.serialized) struct TranslateCommandTests {
    /// The first 300 pairs of Multi30k's training set as train, the first 20 as val and test.
    static let corpus = Result { () throws -> URL in
        let folder = Fixtures.folder.appendingPathComponent("translate-corpus")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for language in ["de", "en"] {
            let all = try Fixtures.multi30kLines("train.\(language).gz")
            for (split, count) in [("train", 300), ("val", 20), ("test_2016_flickr", 20)] {
                let lines = all.prefix(count).joined(separator: "\n") + "\n"
                try lines.write(to: folder.appendingPathComponent("\(split).\(language)"), atomically: true, encoding: .utf8)
            }
        }
        return folder
    }

    static let checkpoints = FileManager.default.temporaryDirectory.appendingPathComponent("replica-translate-ckpt-\(getpid())")

    static func trainArguments() throws -> [String] {
        try ["train", "translate", "--data", corpus.get().path, "--steps", "6", "--vocabulary", "300",
                                 "--embedding", "16", "--heads", "2", "--layers", "1", "--feed-forward", "32",
                                 "--batch-size", "400", "--warmup", "2", "--beam", "2", "--threads", "1", "--json", "--quiet"]
    }

    @Test func trainingPrintsTheSummaryAndTheCheckpointTranslates() throws {
        let result = try runProcess(replicaExecutable, Self.trainArguments() + ["--checkpoint-dir", Self.checkpoints.path])
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        for key in ["task", "ranks", "steps", "seconds", "param_count", "val_loss", "bleu", "tokens_per_s"] {
            #expect(summary[key] != nil, "missing \(key)")
        }
        #expect(summary["task"] as? String == "translate")
        // The checkpoint alone translates: its state.json carries the tokenizer.
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("replica-translate-input-\(getpid()).txt")
        try "Ein Hund läuft.\nZwei Männer.\n".write(to: input, atomically: true, encoding: .utf8)
        let translated = try runProcess("/bin/sh", ["-c", "\(replicaExecutable) translate --checkpoint \(Self.checkpoints.path) --beam 2 --threads 1 < \(input.path)"])
        #expect(translated.status == 0, "\(translated.standardError)")
        #expect(translated.standardOutput.filter { $0 == "\n" }.count == 2, "one line out per line in")
        // The key/value cache changes the speed, not the output: the same lines as the full-prefix decoder.
        for beam in ["1", "2"] {
            let command = "\(replicaExecutable) translate --checkpoint \(Self.checkpoints.path) --beam \(beam) --threads 1"
            let cached = try runProcess("/bin/sh", ["-c", "\(command) < \(input.path)"])
            let uncached = try runProcess("/bin/sh", ["-c", "\(command) --no-cache < \(input.path)"])
            #expect(cached.status == 0 && uncached.status == 0, "\(cached.standardError) \(uncached.standardError)")
            #expect(cached.standardOutput == uncached.standardOutput, "beam \(beam)")
        }
    }

    /// A preset fixes the global batch (2000 padded tokens): 2 ranks take 1000 each; explicit options win.
    @Test(arguments: [1, 2])
    func aPresetKeepsTheGlobalBatchWhateverTheRanks(ranks: Int) throws {
        let arguments = try ["train", "translate", "--preset", "quick", "--data", Self.corpus.get().path, "--steps", "2",
                         "--vocabulary", "300", "--embedding", "16", "--heads", "2", "--layers", "1", "--feed-forward", "32",
                         "--beam", "1", "--eval-interval", "0", "--threads", "1", "--json", "--quiet"]
        let result = ranks == 1 ? try runProcess(replicaExecutable, arguments)
            : try runProcess(mpirunPath, mpirunArguments(ranks: ranks) + [replicaExecutable] + arguments)
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        #expect(summary["preset"] as? String == "quick")
        #expect(summary["global_batch_tokens"] as? Int == 2000)
        #expect(summary["steps"] as? Int == 2, "--steps overrides the preset's 600")
        #expect(summary["param_count"] as? Int ?? 0 < 100_000, "--embedding 16 overrides the preset's 256")
        #expect(result.standardError.contains("(preset quick)"), "\(result.standardError)")
    }

    @Test func anUnknownPresetIsAUserError() throws {
        let result = try runProcess(replicaExecutable, ["train", "translate", "--preset", "huge", "--steps", "1"])
        #expect(result.status != 0)
        #expect(result.standardError.contains("--preset huge"), "\(result.standardError)")
    }

    @Test func twoRanksTrainTogether() throws {
        let result = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + Self.trainArguments())
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
        #expect(summary["ranks"] as? Int == 2)
    }

    @Test func unequalLineCountsAreAUserErrorNamingTheFiles() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-translate-bad-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for split in ["train", "val", "test_2016_flickr"] {
            try "a\nb\n".write(to: folder.appendingPathComponent("\(split).de"), atomically: true, encoding: .utf8)
            try (split == "train" ? "a\n" : "a\nb\n").write(to: folder.appendingPathComponent("\(split).en"), atomically: true, encoding: .utf8)
        }
        let result = try runProcess(replicaExecutable, ["train", "translate", "--data", folder.path, "--steps", "1"])
        #expect(result.status == 1)
        let errors = result.standardError.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errors.count == 1 && errors[0].contains("train.en"), "\(result.standardError)")
    }

    @Test func aCheckpointOfAnotherTaskCannotTranslate() throws {
        // A charlm checkpoint: train one step of a tiny GPT.
        let text = FileManager.default.temporaryDirectory.appendingPathComponent("replica-translate-text-\(getpid()).txt")
        try String(repeating: "to be or not to be, that is the question. ", count: 20).write(to: text, atomically: true, encoding: .utf8)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-translate-charlm-\(getpid())")
        let trained = try runProcess(replicaExecutable, ["train", "charlm", "--data", text.path, "--steps", "1", "--layers", "1",
                                                         "--embedding", "8", "--heads", "1", "--block-size", "8",
                                                         "--batch-size", "2", "--eval-batches", "1", "--quiet",
                                                         "--checkpoint-dir", folder.path])
        #expect(trained.status == 0, "\(trained.standardError)")
        let result = try runProcess("/bin/sh", ["-c", "echo Hallo | \(replicaExecutable) translate --checkpoint \(folder.path)"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("charlm"), "\(result.standardError)")
    }
}
