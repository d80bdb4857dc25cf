import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaDistributed
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

/// The first 20,000 characters of the embedded Tiny Shakespeare.
let tinyTextResult = Result { try Fixtures.tinyShakespeare(prefix: 20_000) }

/// Options of a tiny, fast run: batch 8 of blocks of 8, lr 1e-2, no progress output.
func tinyOptions(steps: Int, seed: UInt64 = 7) -> TrainingOptions {
    var options = TrainingOptions()
    options.seed = seed
    options.steps = steps
    options.batchSize = 8
    options.learningRate = 1e-2
    options.warmupSteps = 5
    options.progress = .none
    options.evaluationInterval = 0
    options.evaluationBatches = 2
    return options
}

/// A CharLMTask with a 2-layer, 2-head, 16-wide GPT of block 8 on `tinyText`.
func tinyTask(_ options: TrainingOptions, norm: NormKind = .layer, embedding: Int = 16) throws -> CharLMTask {
    var config = GPTConfig()
    config.layerCount = 2
    config.headCount = 2
    config.embedding = embedding
    config.blockSize = 8
    config.norm = norm
    return try CharLMTask(text: tinyTextResult.get(), dataDescription: "tiny Shakespeare", config: config, options: options, rank: 0, ranks: 1)
}

/// A task and its trainer on one local rank, initial state synchronised and resumed if asked.
func tinyTrainer(_ options: TrainingOptions, norm: NormKind = .layer, embedding: Int = 16) throws -> (CharLMTask, Trainer) {
    let task = try tinyTask(options, norm: norm, embedding: embedding)
    let trainer = try Trainer(task: task, options: options, communicator: LocalCommunicator())
    try trainer.synchronizeInitialState()
    try trainer.resumeIfAsked()
    return (task, trainer)
}

/// A fresh temporary folder.
func temporaryFolder(_ label: String = "train") throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder
}

func readJSONObject(_ url: URL) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
}

func writeJSONObject(_ object: [String: Any], to url: URL) throws {
    try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]).write(to: url)
}

/// The loss must fall by at least this (nats) from the first 3 steps to the last 10 of 60: a tiny
/// GPT goes from ln V ≈ 4 to below the unigram entropy (≈ 3.3) in that time.
private let minimumLossDrop = 0.5

/// 1 rank × 2 micro-steps of b and 1 rank × 1 micro-step of 2b differ only in summation order.
private let accumulationTolerance: Float = 1e-4

@Suite struct CharLMTrainingTests {
    @Test func theLossFallsClearlyInSixtySteps() throws {
        let (task, trainer) = try tinyTrainer(tinyOptions(steps: 60))
        let initial = task.model.parameterCount
        var losses: [Double] = []
        for step in 0..<60 {
            let result = try trainer.trainStep(step)
            #expect(result.applied)
            losses.append(result.loss)
        }
        #expect(losses.allSatisfy { $0.isFinite })
        let first = losses.prefix(3).reduce(0, +) / 3
        let last = losses.suffix(10).reduce(0, +) / 10
        #expect(abs(first - log(Double(task.vocabulary.count))) < 0.5, "an untrained GPT costs about ln V: \(first)")
        #expect(last < first - minimumLossDrop, "first-3 mean \(first), last-10 mean \(last)")
        #expect(task.model.parameterCount == initial)
    }

    @Test func theSameSeedGivesBitIdenticalParameters() throws {
        func train(seed: UInt64) throws -> [Float] {
            let (task, trainer) = try tinyTrainer(tinyOptions(steps: 8, seed: seed))
            _ = try trainer.run()
            return task.arena.allValues.scalars
        }
        let first = try train(seed: 3)
        #expect(try train(seed: 3) == first)
        #expect(try train(seed: 4) != first)
    }

    @Test func accumulatingTwoMicroBatchesEqualsOneBatchTwiceAsLarge() throws {
        var accumulated = tinyOptions(steps: 5)
        accumulated.batchSize = 4
        accumulated.gradientAccumulation = 2
        let (taskA, trainerA) = try tinyTrainer(accumulated)
        let (taskB, trainerB) = try tinyTrainer(tinyOptions(steps: 5))
        for step in 0..<5 {
            let a = try trainerA.trainStep(step), b = try trainerB.trainStep(step)
            #expect(abs(a.loss - b.loss) < 1e-4 * abs(b.loss), "step \(step): loss \(a.loss) vs \(b.loss)")
        }
        let difference = maximumRelativeDifference(taskA.arena.allValues.scalars, taskB.arena.allValues.scalars, floor: 1e-2)
        #expect(difference < accumulationTolerance, "parameters differ by \(difference)")
    }

    @Test func evaluationReportsAFiniteValidationLossAndChangesNoParameter() throws {
        let (task, _) = try tinyTrainer(tinyOptions(steps: 1))
        let before = task.arena.allValues.scalars
        let metrics = try task.evaluate(communicator: LocalCommunicator())
        let loss = try #require(metrics["val_loss"])
        #expect(loss.isFinite && abs(loss - log(Double(task.vocabulary.count))) < 0.5, "\(loss)")
        #expect(task.arena.allValues.scalars == before)
        #expect(try task.evaluate(communicator: LocalCommunicator())["val_loss"] == loss, "evaluation is deterministic")
    }

    @Test func aTextTooShortForOneBlockIsAUserErrorNamingTheData() throws {
        var config = GPTConfig()
        config.blockSize = 8
        let error = #expect(throws: UserError.self) {
            _ = try CharLMTask(text: "to be", dataDescription: "short.txt", config: config, options: tinyOptions(steps: 1),
                               rank: 0, ranks: 1)
        }
        #expect(error?.description.contains("short.txt") == true, "\(error?.description ?? "")")
    }
}

@Suite struct CheckpointTests {
    @Test func periodicCheckpointsAreStepFoldersWithALatestFile() throws {
        let directory = try temporaryFolder("checkpoints")
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = tinyOptions(steps: 25)
        options.checkpointDirectory = directory.path
        options.checkpointEvery = 10
        let (task, trainer) = try tinyTrainer(options)
        _ = try trainer.run()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names == [".lock", "latest", "step-00000010", "step-00000020", "step-00000025"])
        let latest = try String(contentsOf: directory.appendingPathComponent("latest"), encoding: .utf8)
        #expect(latest.trimmingCharacters(in: .whitespacesAndNewlines) == "step-00000025")
        #expect(Checkpoint.newest(in: directory)?.lastPathComponent == "step-00000025")
        for name in names where name.hasPrefix("step-") {
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent(name).path).sorted()
            #expect(files == ["model.safetensors", "optimizer.safetensors", "state.json"], "\(name): \(files)")
        }
        let folder = directory.appendingPathComponent("step-00000025")
        let state = try readJSONObject(folder.appendingPathComponent("state.json"))
        #expect(state["task"] as? String == "charlm")
        #expect(state["step"] as? Int == 25)
        #expect(state["format_version"] as? Int == Checkpoint.formatVersion)
        #expect(state["ranks"] as? Int == 1)
        #expect(state["seed"] as? Int == 7)
        #expect(state["config_hash"] is String)
        #expect(state["vocab"] as? [String] == task.vocabulary.characters.map { String($0) })
        let config = try #require(state["config"] as? [String: Any])
        #expect(config["layers"] as? Int == 2 && config["heads"] as? Int == 2)
        #expect(config["embedding"] as? Int == 16 && config["block_size"] as? Int == 8)
        #expect(config["vocab_size"] as? Int == task.vocabulary.count)
        // model.safetensors: every parameter by its nanoGPT name, the final values, and lm_head = wte.
        let model = try SafeTensors.read(from: folder.appendingPathComponent("model.safetensors")).tensors
        let arena = task.arena
        for slot in arena.slots {
            let saved = try #require(model[slot.name], "\(slot.name) missing")
            #expect(saved.shape == slot.shape)
            #expect(saved.scalars == arena.value(slot).scalars, "\(slot.name)")
        }
        #expect(Set(model.keys) == Set(arena.slots.map(\.name) + ["lm_head.weight"]))
        #expect(model["lm_head.weight"]?.scalars == arena.value(arena.slot(named: "transformer.wte.weight")!).scalars)
    }

    @Test(arguments: [NormKind.layer, .batch])
    func fortyStepsEqualTwentyThenAResumeAndTwentyMore(norm: NormKind) throws {
        let straightDirectory = try temporaryFolder("straight"), resumedDirectory = try temporaryFolder("resumed")
        defer {
            try? FileManager.default.removeItem(at: straightDirectory)
            try? FileManager.default.removeItem(at: resumedDirectory)
        }
        var options = tinyOptions(steps: 40)
        options.checkpointEvery = 20
        // 40 steps without a break.
        options.checkpointDirectory = straightDirectory.path
        let (straight, straightTrainer) = try tinyTrainer(options, norm: norm)
        _ = try straightTrainer.run()
        // 20 steps and their periodic checkpoint, then the process "dies".
        options.checkpointDirectory = resumedDirectory.path
        do {
            let (_, first) = try tinyTrainer(options, norm: norm)
            for step in 0..<20 { _ = try first.trainStep(step) }
            try first.saveCheckpoint(step: 20)
        }
        let straightModel = try Data(contentsOf: straightDirectory.appendingPathComponent("step-00000020/model.safetensors"))
        let resumedModel = try Data(contentsOf: resumedDirectory.appendingPathComponent("step-00000020/model.safetensors"))
        #expect(straightModel == resumedModel, "the step-20 checkpoints differ")
        // A new process: a fresh task and trainer with --resume.
        options.resume = true
        let (resumed, resumedTrainer) = try tinyTrainer(options, norm: norm)
        #expect(resumedTrainer.startStep == 20)
        #expect(resumedTrainer.optimizer.stepCount == 20)
        let outcome = try resumedTrainer.run()
        #expect(outcome.steps == 40)
        #expect(resumed.arena.allValues.scalars == straight.arena.allValues.scalars, "parameters after 40 steps differ")
        #expect(resumed.arena.allBuffers.scalars == straight.arena.allBuffers.scalars, "buffers after 40 steps differ")
        #expect(Checkpoint.newest(in: resumedDirectory)?.lastPathComponent == "step-00000040")
    }

    /// Ways a checkpoint can be damaged, and the file the message must name.
    enum Damage: String, CaseIterable, Sendable {
        case truncatedModel, truncatedOptimizer, stateNotJSON, stateMissing, wrongFormatVersion, otherTask,
             tensorOfWrongShape, tensorMissing

        var namedFile: String {
            switch self {
            case .truncatedModel, .tensorOfWrongShape, .tensorMissing: return "model.safetensors"
            case .truncatedOptimizer: return "optimizer.safetensors"
            case .stateNotJSON, .stateMissing, .wrongFormatVersion: return "state.json"
            case .otherTask: return ""   // the folder itself
            }
        }

        /// Whether Checkpoint.load itself refuses it (shapes and tasks are checked against a model later).
        var refusedByLoad: Bool { ![.otherTask, .tensorOfWrongShape, .tensorMissing].contains(self) }

        func apply(to folder: URL) throws {
            let model = folder.appendingPathComponent("model.safetensors")
            let state = folder.appendingPathComponent("state.json")
            func truncate(_ url: URL) throws {
                let data = try Data(contentsOf: url)
                try data.prefix(data.count / 2).write(to: url)
            }
            func rewriteModel(_ change: (inout [(name: String, tensor: Tensor)]) -> Void) throws {
                let file = try SafeTensors.read(from: model)
                var tensors = file.order.map { (name: $0, tensor: file.tensors[$0]!) }
                change(&tensors)
                try SafeTensors.write(tensors, metadata: file.metadata, to: model)
            }
            switch self {
            case .truncatedModel: try truncate(model)
            case .truncatedOptimizer: try truncate(folder.appendingPathComponent("optimizer.safetensors"))
            case .stateNotJSON: try Data("step: 2, task: charlm\n".utf8).write(to: state)
            case .stateMissing: try FileManager.default.removeItem(at: state)
            case .wrongFormatVersion:
                var object = try readJSONObject(state)
                object["format_version"] = Checkpoint.formatVersion + 1
                try writeJSONObject(object, to: state)
            case .otherTask:
                var object = try readJSONObject(state)
                object["task"] = "gat"
                try writeJSONObject(object, to: state)
            case .tensorOfWrongShape:
                try rewriteModel { tensors in
                    let index = tensors.firstIndex { $0.name == "transformer.wpe.weight" }!
                    let tensor = tensors[index].tensor
                    tensors[index].tensor = tensor.reshaped([tensor.shape[1], tensor.shape[0]])
                }
            case .tensorMissing:
                try rewriteModel { tensors in tensors.removeAll { $0.name == "transformer.h.1.mlp.c_fc.weight" } }
            }
        }
    }

    /// A 2-step run's checkpoint folder in a new directory.
    func makeCheckpoint() throws -> (directory: URL, folder: URL, options: TrainingOptions) {
        let directory = try temporaryFolder("checkpoint")
        var options = tinyOptions(steps: 2)
        options.checkpointDirectory = directory.path
        let (_, trainer) = try tinyTrainer(options)
        _ = try trainer.run()
        return (directory, directory.appendingPathComponent("step-00000002"), options)
    }

    @Test(arguments: Damage.allCases)
    func aDamagedCheckpointIsAUserErrorNamingTheFile(damage: Damage) throws {
        let (directory, folder, options) = try makeCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        try damage.apply(to: folder)
        let file = damage.namedFile.isEmpty ? folder.path : folder.appendingPathComponent(damage.namedFile).path
        if damage.refusedByLoad {
            let error = #expect(throws: UserError.self) { _ = try Checkpoint.load(folder) }
            #expect(error?.description.contains(file) == true, "\(damage): \(error?.description ?? "")")
        } else {
            _ = try Checkpoint.load(folder)
        }
        // Resuming from it is refused the same way, before any parameter changes.
        var resuming = options
        resuming.resumeFrom = folder.path
        let task = try tinyTask(resuming)
        let before = task.arena.allValues.scalars
        let trainer = try Trainer(task: task, options: resuming, communicator: LocalCommunicator())
        let error = #expect(throws: UserError.self) { try trainer.resumeIfAsked() }
        let message = error?.description ?? ""
        #expect(message.contains(file), "\(damage): \(message)")
        if damage == .otherTask { #expect(message.contains("gat"), "\(message)") }
        if damage == .tensorOfWrongShape { #expect(message.contains("transformer.wpe.weight"), "\(message)") }
        if damage == .tensorMissing { #expect(message.contains("transformer.h.1.mlp.c_fc.weight"), "\(message)") }
        if damage != .tensorMissing && damage != .tensorOfWrongShape {
            #expect(task.arena.allValues.scalars == before, "\(damage): a refused checkpoint changed parameters")
        }
    }

    @Test func resumingWithAnotherLearningRateIsRefusedNamingTheField() throws {
        let (directory, _, options) = try makeCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        var resuming = options
        resuming.resume = true
        resuming.learningRate = 2e-2
        let error = #expect(throws: UserError.self) { _ = try tinyTrainer(resuming) }
        let message = error?.description ?? ""
        #expect(message.contains("lr"), "\(message)")
        #expect(message.contains("0.01") && message.contains("0.02"), "both values: \(message)")
        #expect(message.contains(directory.path), "\(message)")
    }

    @Test func resumingWithAnotherModelWidthIsRefusedNamingTheField() throws {
        let (directory, _, options) = try makeCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        var resuming = options
        resuming.resume = true
        let error = #expect(throws: UserError.self) { _ = try tinyTrainer(resuming, embedding: 32) }
        let message = error?.description ?? ""
        #expect(message.contains("embedding"), "\(message)")
        #expect(!message.contains("lr:"), "only the differing field is named: \(message)")
    }

    @Test func resumingWithTheSameOptionsIsAccepted() throws {
        let (directory, _, options) = try makeCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        var resuming = options
        resuming.resume = true
        let (_, trainer) = try tinyTrainer(resuming)
        #expect(trainer.startStep == 2)
    }

    @Test func resumingFromAnEmptyDirectoryIsAUserErrorNamingIt() throws {
        let directory = try temporaryFolder("empty")
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = tinyOptions(steps: 2)
        options.checkpointDirectory = directory.path
        options.resume = true
        let error = #expect(throws: UserError.self) { _ = try tinyTrainer(options) }
        #expect(error?.description.contains(directory.path) == true, "\(error?.description ?? "")")
    }

    @Test func aCheckpointDirectoryWithoutRoomForTwoCheckpointsIsRefusedBeforeTraining() throws {
        let directory = try temporaryFolder("full")
        defer { try? FileManager.default.removeItem(at: directory) }
        let needed = 50_000_000
        let error = #expect(throws: UserError.self) {
            try Checkpoint.preflight(directory, bytesNeeded: needed, availableBytes: { _ in needed + needed / 2 })
        }
        #expect(error?.description.contains(directory.path) == true)
        #expect(error?.description.contains("75.0 MB free") == true, "\(error?.description ?? "")")
        try Checkpoint.preflight(directory, bytesNeeded: needed, availableBytes: { _ in 2 * needed })
        // The real file system is asked when no function is given.
        #expect((Checkpoint.availableBytes(directory) ?? 0) > 0)
    }
}

@Suite struct MicroStepRandomnessTests {
    /// A task keys its dropout by (step, micro-step): with 65 micro-steps, micro-step 64 of step 0
    /// and micro-step 0 of step 1 once drew the same masks (the key was step × 64 + micro).
    @Test func aLateMicroStepDoesNotRepeatTheNextStepsDropout() throws {
        var options = tinyOptions(steps: 2)
        options.gradientAccumulation = 65
        var config = GPTConfig()
        config.layerCount = 1
        config.headCount = 2
        config.embedding = 16
        config.blockSize = 8
        config.dropout = 0.5
        let task = try CharLMTask(text: tinyTextResult.get(), dataDescription: "tiny Shakespeare", config: config,
                                  options: options, rank: 0, ranks: 1)
        _ = try task.trainMicroStep(step: 0, micro: 64, normalizer: 1, reducer: nil)
        var late = task.model.randomContext.generator(layer: 1)
        _ = try task.trainMicroStep(step: 1, micro: 0, normalizer: 1, reducer: nil)
        var next = task.model.randomContext.generator(layer: 1)
        #expect(late.next() != next.next())
    }
}
