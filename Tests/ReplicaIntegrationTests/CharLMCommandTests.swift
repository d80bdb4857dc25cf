import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// Files and one finished training run that several tests read; made once, on first use.
enum CharLMFixtures {
    /// A scratch folder for this test process, removed when it exits.
    static let folder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-charlm-cli-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: CharLMFixtures.folder) }
        return folder
    }()

    /// The first 20,000 characters of the embedded Tiny Shakespeare.
    static let textFile = Result { try Fixtures.tinyShakespeareFile(prefix: 20_000).path }

    /// `replica train charlm` on `textFile` for 20 steps with checkpoints in `checkpointDirectory`.
    static func trainArguments(data: String, checkpointDirectory: String) -> [String] {
        ["train", "charlm", "--data", data, "--steps", "20", "--layers", "1", "--heads", "2", "--embedding", "16",
         "--block-size", "16", "--batch-size", "4", "--eval-batches", "2", "--json", "--checkpoint-dir", checkpointDirectory,
         "--threads", "1"]
    }

    /// The single-process training run: its result and its checkpoint directory.
    static let training: Result<(result: ProcessResult, directory: URL), Error> = Result {
        let directory = folder.appendingPathComponent("run-1")
        let result = try runProcess(replicaExecutable, trainArguments(data: try textFile.get(), checkpointDirectory: directory.path),
                                    timeout: 120)
        return (result, directory)
    }

    /// The final checkpoint of `training`.
    static var checkpoint: URL {
        get throws { try training.get().directory.appendingPathComponent("step-00000020") }
    }
}

@Suite struct CharLMCommandTests {
    func jsonObject(_ line: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not a JSON object: \(line)")
    }

    func generate(_ arguments: [String]) throws -> ProcessResult {
        try runProcess(replicaExecutable, ["generate"] + arguments, timeout: 60)
    }

    @Test func trainingPrintsTheCharLMSummaryAsTheLastLine() throws {
        let (result, _) = try CharLMFixtures.training.get()
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try jsonObject(try #require(result.lines.last))
        #expect(summary["task"] as? String == "charlm")
        for key in ["task", "ranks", "steps", "seconds", "param_count", "train_loss", "val_loss", "tokens_per_s"] {
            #expect(summary[key] != nil, "the summary lacks \(key): \(summary)")
        }
        #expect(summary["ranks"] as? Int == 1)
        #expect(summary["steps"] as? Int == 20)
        for key in ["seconds", "train_loss", "val_loss", "tokens_per_s"] {
            let value = summary[key] as? Double
            #expect(value != nil && value!.isFinite && value! > 0, "\(key): \(summary[key] ?? "absent")")
        }
        // nanoGPT's count for 1 layer, C 16, block 16: V·C + block·C + 12C² + 2C + C.
        let state = try jsonObject(String(decoding: try Data(contentsOf: try CharLMFixtures.checkpoint.appendingPathComponent("state.json")), as: UTF8.self))
        let V = (state["vocab"] as? [String])?.count ?? 0
        #expect(summary["param_count"] as? Int == V * 16 + 16 * 16 + 12 * 16 * 16 + 2 * 16 + 16)
        #expect(result.lines.filter { $0.hasPrefix("{") }.count == 1, "one JSON line")
    }

    @Test func theCheckpointHoldsTheModelTheOptimizerAndTheVocabulary() throws {
        let (result, directory) = try CharLMFixtures.training.get()
        try #require(result.status == 0, "\(result.standardError)")
        let folder = try CharLMFixtures.checkpoint
        for file in ["model.safetensors", "optimizer.safetensors", "state.json"] {
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(file).path), "\(file) missing")
        }
        let latest = try String(contentsOf: directory.appendingPathComponent("latest"), encoding: .utf8)
        #expect(latest.trimmingCharacters(in: .whitespacesAndNewlines) == "step-00000020")
        let state = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("state.json"))) as? [String: Any])
        #expect(state["task"] as? String == "charlm")
        #expect(state["step"] as? Int == 20)
        let vocab = try #require(state["vocab"] as? [String])
        #expect(vocab.allSatisfy { $0.count == 1 }, "vocab is a list of characters")
        #expect(vocab == vocab.sorted() && Set(vocab).count == vocab.count, "sorted, distinct")
        let text = try String(contentsOfFile: try CharLMFixtures.textFile.get(), encoding: .utf8)
        #expect(Set(vocab) == Set(text.map { String($0) }))
        let config = try #require(state["config"] as? [String: Any])
        #expect(config["layers"] as? Int == 1)
        #expect(config["heads"] as? Int == 2)
        #expect(config["embedding"] as? Int == 16)
        #expect(config["block_size"] as? Int == 16)
        // nanoGPT's names and layouts, and the tied lm_head.
        let model = try SafeTensors.read(from: folder.appendingPathComponent("model.safetensors")).tensors
        let V = vocab.count, C = 16
        let shapes: [String: [Int]] = [
            "transformer.wte.weight": [V, C], "transformer.wpe.weight": [16, C], "transformer.h.0.ln_1.weight": [C],
            "transformer.h.0.attn.c_attn.weight": [3 * C, C], "transformer.h.0.attn.c_proj.weight": [C, C],
            "transformer.h.0.ln_2.weight": [C], "transformer.h.0.mlp.c_fc.weight": [4 * C, C],
            "transformer.h.0.mlp.c_proj.weight": [C, 4 * C], "transformer.ln_f.weight": [C], "lm_head.weight": [V, C],
        ]
        #expect(Set(model.keys) == Set(shapes.keys))
        for (name, shape) in shapes { #expect(model[name]?.shape == shape, "\(name)") }
        #expect(model["lm_head.weight"]?.scalars == model["transformer.wte.weight"]?.scalars)
    }

    @Test func greedyGenerationIsDeterministicAndContinuesThePrompt() throws {
        let folder = try CharLMFixtures.checkpoint
        let arguments = ["--checkpoint", folder.path, "--prompt", "ab", "--tokens", "30", "--temperature", "0", "--seed", "1"]
        let first = try generate(arguments)
        #expect(first.status == 0, "\(first.standardError)")
        let second = try generate(arguments)
        #expect(second.status == 0, "\(second.standardError)")
        #expect(first.standardOutput == second.standardOutput)
        #expect(first.standardOutput.hasPrefix("ab"))
        #expect(first.standardOutput.hasSuffix("\n"))
        let generated = Array(first.standardOutput.dropFirst(2).dropLast().unicodeScalars)
        #expect(generated.count == 30, "\(first.standardOutput.debugDescription)")
        let state = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("state.json"))) as? [String: Any])
        let vocab = Set(try #require(state["vocab"] as? [String]))
        #expect(generated.allSatisfy { vocab.contains(String($0)) }, "\(generated)")
        // Another seed does not matter at temperature 0; the checkpoint directory means its newest folder.
        let viaDirectory = try generate(["--checkpoint", try CharLMFixtures.training.get().directory.path, "--prompt", "ab",
                                         "--tokens", "30", "--temperature", "0", "--seed", "2"])
        #expect(viaDirectory.status == 0, "\(viaDirectory.standardError)")
        #expect(viaDirectory.standardOutput == first.standardOutput)
    }

    @Test func sampledGenerationIsReproducibleForASeed() throws {
        let folder = try CharLMFixtures.checkpoint.path
        let arguments = ["--checkpoint", folder, "--prompt", "ab", "--tokens", "40", "--temperature", "1", "--top-k", "5"]
        let first = try generate(arguments + ["--seed", "3"])
        let again = try generate(arguments + ["--seed", "3"])
        #expect(first.status == 0, "\(first.standardError)")
        #expect(first.standardOutput == again.standardOutput)
        #expect(first.standardOutput.unicodeScalars.count == 2 + 40 + 1)
    }

    @Test func minLrAndBeta2ReachTheScheduleAndTheCheckpoint() throws {
        let directory = CharLMFixtures.folder.appendingPathComponent("min-lr-run")
        let metrics = CharLMFixtures.folder.appendingPathComponent("min-lr-metrics.jsonl")
        let arguments = CharLMFixtures.trainArguments(data: try CharLMFixtures.textFile.get(), checkpointDirectory: directory.path)
            + ["--lr", "0.001", "--warmup", "0", "--min-lr", "0", "--beta2", "0.95", "--metrics", metrics.path]
        let result = try runProcess(replicaExecutable, arguments, timeout: 120)
        try #require(result.status == 0, "\(result.standardError)")
        let steps = try String(contentsOf: metrics, encoding: .utf8).split(separator: "\n").map { try jsonObject(String($0)) }
        let rates = steps.compactMap { $0["lr"] as? Double }
        try #require(rates.count == 20, "one lr a step: \(rates)")
        // Cosine from 1e-3 to 0 over 20 steps: the last is far below the default floor lr/10.
        #expect(rates[0] > 0.99e-3 && rates[19] < 0.02e-3, "\(rates)")
        let state = try jsonObject(String(decoding: try Data(contentsOf: directory.appendingPathComponent("step-00000020/state.json")),
                                          as: UTF8.self))
        let fields = try #require(state["config_fields"] as? [String: String], "\(state)")
        #expect(fields["min_lr"] == "0.0" && fields["beta2"] == "0.95", "\(fields)")
        let bad = try runProcess(replicaExecutable, arguments + ["--beta2", "1"], timeout: 60)
        #expect(bad.status != 0 && bad.standardError.contains("--beta2"), "\(bad.standardError)")
    }

    @Test func aMissingDataFileIsAUserError() throws {
        let path = CharLMFixtures.folder.appendingPathComponent("absent.txt").path
        let result = try runProcess(replicaExecutable, CharLMFixtures.trainArguments(
            data: path, checkpointDirectory: CharLMFixtures.folder.appendingPathComponent("absent-run").path))
        expectUserFailure(result, naming: path)
    }

    @Test func aDataFileThatIsNotUTF8IsAUserError() throws {
        let path = CharLMFixtures.folder.appendingPathComponent("latin1.txt").path
        try Data(Array("To be, or not to be\nthat is the question: caf".utf8) + [0xE9, 0x0A] + Array(String(repeating: "more text\n", count: 50).utf8))
            .write(to: URL(fileURLWithPath: path))
        let result = try runProcess(replicaExecutable, CharLMFixtures.trainArguments(
            data: path, checkpointDirectory: CharLMFixtures.folder.appendingPathComponent("latin1-run").path))
        expectUserFailure(result, naming: path)
        #expect(result.standardError.contains("line 2"), "\(result.standardError)")
    }

    @Test func aTextShorterThanOneBlockIsAUserError() throws {
        let path = CharLMFixtures.folder.appendingPathComponent("short.txt").path
        try Data("To be, or not.\n".utf8).write(to: URL(fileURLWithPath: path))
        let result = try runProcess(replicaExecutable, CharLMFixtures.trainArguments(
            data: path, checkpointDirectory: CharLMFixtures.folder.appendingPathComponent("short-run").path))
        expectUserFailure(result, naming: path)
    }

    @Test func aPromptWithACharacterOutsideTheVocabularyIsAUserErrorAndPrintsNothing() throws {
        let result = try generate(["--checkpoint", try CharLMFixtures.checkpoint.path, "--prompt", "ab§", "--tokens", "5"])
        #expect(result.status == 1, "\(result.standardError)")
        let lines = result.standardError.split(separator: "\n")
        #expect(lines.count == 1 && lines.first?.hasPrefix("Error:") == true, "\(result.standardError)")
        #expect(result.standardError.contains("§"), "the message names the character: \(result.standardError)")
        #expect(result.standardOutput.isEmpty, "a failed generate must not print the prompt: \(result.standardOutput.debugDescription)")
    }

    @Test func generatingFromAFolderThatIsNotACheckpointIsAUserError() throws {
        let folder = CharLMFixtures.folder.appendingPathComponent("not-a-checkpoint")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data("notes\n".utf8).write(to: folder.appendingPathComponent("README"))
        expectUserFailure(try generate(["--checkpoint", folder.path, "--tokens", "5"]), naming: folder.path)
        let absent = CharLMFixtures.folder.appendingPathComponent("no-such-folder").path
        expectUserFailure(try generate(["--checkpoint", absent, "--tokens", "5"]), naming: absent)
    }

    @Test func generatingFromACheckpointOfAnotherTaskIsAUserError() throws {
        let source = try CharLMFixtures.checkpoint
        let copy = CharLMFixtures.folder.appendingPathComponent("gat-checkpoint")
        try? FileManager.default.removeItem(at: copy)
        try FileManager.default.copyItem(at: source, to: copy)
        let stateURL = copy.appendingPathComponent("state.json")
        var state = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: stateURL)) as? [String: Any])
        state["task"] = "gat"
        try JSONSerialization.data(withJSONObject: state, options: [.sortedKeys]).write(to: stateURL)
        let result = try generate(["--checkpoint", copy.path, "--prompt", "ab", "--tokens", "5"])
        expectUserFailure(result, naming: copy.path)
        #expect(result.standardError.contains("gat"), "\(result.standardError)")
        #expect(result.standardOutput.isEmpty, "nothing is generated: \(result.standardOutput)")
    }

    @Test func aTextShorterThanOneBlockUnderMPIRunIsOneMessageAndExitOne() throws {
        let path = CharLMFixtures.folder.appendingPathComponent("short-mpi.txt").path
        try Data("To be, or not.\n".utf8).write(to: URL(fileURLWithPath: path))
        let arguments = CharLMFixtures.trainArguments(data: path, checkpointDirectory: CharLMFixtures.folder.appendingPathComponent("short-mpi-run").path)
        let result = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + arguments, timeout: 120)
        #expect(result.status == 1, "\(result.standardError)")
        // mpirun adds its own banner; of the ranks' messages there is one, from rank 0.
        let errors = result.standardError.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        #expect(errors.count == 1 && errors.first?.contains(path) == true, "\(result.standardError)")
        for marker in ["Fatal error", "Stack dump", "backtrace", "Current stack trace"] {
            #expect(!result.standardError.contains(marker))
        }
    }

    @Test func trainingUnderMPIRunOnTwoRanksReportsTwoRanks() throws {
        let directory = CharLMFixtures.folder.appendingPathComponent("run-2")
        let arguments = CharLMFixtures.trainArguments(data: try CharLMFixtures.textFile.get(), checkpointDirectory: directory.path)
        let result = try runProcess(mpirunPath, mpirunArguments(ranks: 2) + [replicaExecutable] + arguments, timeout: 120)
        #expect(result.status == 0, "\(result.standardError)")
        let summary = try jsonObject(try #require(result.lines.last))
        #expect(summary["task"] as? String == "charlm")
        #expect(summary["ranks"] as? Int == 2)
        #expect(summary["steps"] as? Int == 20)
        #expect(((summary["val_loss"] as? Double) ?? .nan).isFinite)
        #expect(result.lines.filter { $0.hasPrefix("{") }.count == 1, "only rank 0 prints the summary")
        let state = try #require(JSONSerialization.jsonObject(
            with: Data(contentsOf: directory.appendingPathComponent("step-00000020/state.json"))) as? [String: Any])
        #expect(state["ranks"] as? Int == 2)
    }
}
