import Foundation
import Testing
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaNN
import ReplicaTrain
import _ReplicaTestSupport

/// `Checkpoint.loadModel`: the config in state.json decodes into the model's own config, and the
/// rebuilt model holds the saved parameters, for every model a task checkpoints.
@Suite struct CheckpointModelTests {
    /// Writes `arena` with `config` as a checkpoint of `task` in a new folder; returns the step folder.
    static func save<C: Encodable>(_ arena: ParameterArena, config: C, task: String, extra: [String: Any] = [:]) throws -> URL {
        let directory = try temporaryFolder("model-checkpoint")
        let state: [String: Any] = ["task": task, "config": Checkpoint.jsonObject(config, adding: extra)]
        return try Checkpoint.save(in: directory, step: 3, arena: arena, optimizer: .whole(AdamW(beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0)),
                                   state: state)
    }

    /// Saves a model of `config`, loads it back, and checks config and every parameter and buffer.
    static func roundTrip<M: CheckpointModel & AnyObject>(_ model: M, _ config: M.Config) throws where M.Config: Equatable {
        let folder = try save(model.arena, config: config, task: M.checkpointTask)
        defer { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent()) }
        let (loaded, contents) = try Checkpoint.loadModel(M.self, from: folder)
        #expect(try contents.config(M.Config.self) == config)
        #expect(loaded !== model)
        #expect(loaded.arena.slots.map(\.name) == model.arena.slots.map(\.name))
        #expect(loaded.arena.allValues.scalars == model.arena.allValues.scalars, "\(M.self)")
        #expect(loaded.arena.bufferSlots.map { loaded.arena.buffer($0).scalars } == model.arena.bufferSlots.map { model.arena.buffer($0).scalars })
    }

    @Test func gptRoundTrips() throws {
        var c = GPTConfig()
        (c.layerCount, c.headCount, c.embedding, c.blockSize, c.vocabularySize, c.dropout, c.norm) = (2, 2, 8, 6, 13, 0.1, .batch)
        let model = GPT(c)
        model.initialize(seed: 1)
        try Self.roundTrip(model, c)
    }

    @Test func encoderDecoderRoundTrips() throws {
        let model = Fixtures.tinySeq2SeqTransformer(norm: .layer, scorer: .additive)
        try Self.roundTrip(model, model.config)
    }

    @Test func maskedLanguageModelRoundTrips() throws {
        var c = MaskedLanguageModelConfig()
        (c.vocabularySize, c.embedding, c.heads, c.layers, c.feedForward, c.maximumLength, c.positions) = (20, 8, 2, 1, 16, 10, .sinusoidal)
        let model = MaskedLanguageModel(c)
        model.initialize(seed: 2)
        try Self.roundTrip(model, c)
    }

    @Test func graphModelsRoundTrip() throws {
        var gat = GATConfig()
        (gat.featureCount, gat.classCount, gat.hidden, gat.heads, gat.norm) = (12, 3, 4, 2, .batch)
        let gatModel = GAT(gat)
        gatModel.initialize(seed: 3)
        try Self.roundTrip(gatModel, gat)

        var network = GraphNetworkConfig.gat(layers: 3)
        (network.featureCount, network.classCount, network.residual, network.bias) = (12, 3, true, true)
        let networkModel = GraphNetwork(network)
        networkModel.initialize(seed: 4)
        try Self.roundTrip(networkModel, network)

        var mae = GraphMAEConfig()
        (mae.featureCount, mae.hidden, mae.heads, mae.maskRate) = (12, 8, 2, 0.3)
        let maeModel = GraphMAE(mae)
        maeModel.initialize(seed: 5)
        try Self.roundTrip(maeModel, mae)
    }

    @Test func cbowRoundTrips() throws {
        var c = CBOWConfig()
        (c.vocabularySize, c.embedding) = (30, 5)
        let model = CBOW(c)
        model.initialize(seed: 6)
        try Self.roundTrip(model, c)
    }

    /// The charlm task's own checkpoint (written by the trainer) rebuilds the task's model.
    @Test func aTrainedTasksCheckpointRebuildsItsModel() throws {
        let directory = try temporaryFolder("task-checkpoint")
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = tinyOptions(steps: 4)
        options.checkpointDirectory = directory.path
        let (task, trainer) = try tinyTrainer(options)
        _ = try trainer.run()
        let folder = try #require(Checkpoint.newest(in: directory))
        let (model, _) = try Checkpoint.loadModel(GPT.self, from: folder)
        #expect(model.config == task.model.config)
        #expect(model.arena.allValues.scalars == task.arena.allValues.scalars)
        let generator = try TextGenerator(checkpoint: folder)
        #expect(generator.vocabulary.characters == task.vocabulary.characters)
    }

    /// What each task writes as its checkpoint's `config` decodes into its model's config.
    static func expectTaskConfigRoundTrips<M: CheckpointModel>(_ task: DataParallelTask, as type: M.Type, equals config: M.Config) throws
    where M.Config: Equatable {
        let directory = try temporaryFolder("task-config")
        defer { try? FileManager.default.removeItem(at: directory) }
        let folder = try Checkpoint.save(in: directory, step: 1, arena: task.arena, extraTensors: task.extraCheckpointTensors,
                                         optimizer: .whole(AdamW(beta1: 0.9, beta2: 0.99, epsilon: 1e-8, weightDecay: 0)),
                                         state: task.checkpointState.merging(["task": task.taskName]) { own, _ in own })
        let (model, contents) = try Checkpoint.loadModel(M.self, from: folder)
        #expect(try contents.config(M.Config.self) == config)
        #expect(model.arena.allValues.scalars == task.arena.allValues.scalars)
    }

    @Test func everyTasksCheckpointConfigDecodesIntoItsModelsConfig() throws {
        let options = GATTaskTests.options(epochs: 1)
        let gat = try GATTask(dataset: GATTaskTests.cora.get(), config: GATConfig(), options: options, fanout: nil, patience: 0, rank: 0, ranks: 1)
        try Self.expectTaskConfigRoundTrips(gat, as: GAT.self, equals: try #require(gat.model as? GAT).config)

        // GCN, as `train gat --model gcn` builds it.
        let cora = try GATTaskTests.cora.get()
        var network = GraphNetworkConfig()
        (network.featureCount, network.classCount) = (cora.featureCount, cora.classCount)
        let gcnTask = try GATTask(dataset: cora, model: GraphNetwork(network), options: options, fanout: nil, patience: 0, rank: 0, ranks: 1)
        try Self.expectTaskConfigRoundTrips(gcnTask, as: GraphNetwork.self, equals: network)

        let mae = try GraphMAETask(dataset: GraphMAETaskTests.cora.get(), config: GraphMAETaskTests.smallConfig, options: options, rank: 0, ranks: 1)
        try Self.expectTaskConfigRoundTrips(mae, as: GraphMAE.self, equals: mae.model.config)

        let mlm = MLMTask(splits: MLMTests.splits, vocabularySize: 200, config: MLMTests.config(), options: MLMTests.options(batch: 4, steps: 1),
                          rank: 0, ranks: 1)
        try Self.expectTaskConfigRoundTrips(mlm, as: MaskedLanguageModel.self, equals: mlm.model.config)
    }

    static func expectError(_ folder: URL, _ fragments: [String], _ load: (URL) throws -> Void) {
        let error = #expect(throws: UserError.self) { try load(folder) }
        for fragment in fragments {
            #expect(error?.description.contains(fragment) == true, "\(error?.description ?? "no error") lacks \(fragment)")
        }
    }

    @Test func aCheckpointOfAnotherTaskOrConfigIsRefusedByName() throws {
        var c = GPTConfig()
        (c.layerCount, c.headCount, c.embedding, c.blockSize, c.vocabularySize) = (1, 2, 8, 4, 7)
        let model = GPT(c)
        let charlm = try Self.save(model.arena, config: c, task: "charlm")
        defer { try? FileManager.default.removeItem(at: charlm.deletingLastPathComponent()) }
        Self.expectError(charlm, ["task 'charlm'", "not 'translate'"]) { _ = try Checkpoint.loadModel(Seq2SeqTransformer.self, from: $0) }

        // A GPT config does not decode into a GAT config: the first missing key is named.
        let asGAT = try Self.save(model.arena, config: c, task: "gat")
        defer { try? FileManager.default.removeItem(at: asGAT.deletingLastPathComponent()) }
        Self.expectError(asGAT, ["state.json", "lacks \""]) { _ = try Checkpoint.loadModel(GAT.self, from: $0) }

        // A config that decodes but describes no model: 3 heads do not divide a width of 8.
        var odd = c
        odd.headCount = 3
        let invalid = try Self.save(model.arena, config: odd, task: "charlm")
        defer { try? FileManager.default.removeItem(at: invalid.deletingLastPathComponent()) }
        Self.expectError(invalid, ["state.json", "not a positive multiple of 3 heads"]) { _ = try Checkpoint.loadModel(GPT.self, from: $0) }

        // The config says 2 layers, the tensors hold 1.
        var deeper = c
        deeper.layerCount = 2
        let mismatched = try Self.save(model.arena, config: deeper, task: "charlm")
        defer { try? FileManager.default.removeItem(at: mismatched.deletingLastPathComponent()) }
        Self.expectError(mismatched, ["model.safetensors", "has no tensor transformer.h.1"]) { _ = try Checkpoint.loadModel(GPT.self, from: $0) }

        // A norm that is not one of the kinds.
        let badNorm = try Self.save(model.arena, config: c, task: "charlm", extra: [:])
        defer { try? FileManager.default.removeItem(at: badNorm.deletingLastPathComponent()) }
        let stateURL = badNorm.appendingPathComponent("state.json")
        var state = try readJSONObject(stateURL)
        var config = try #require(state["config"] as? [String: Any])
        config["norm"] = "group"
        state["config"] = config
        try JSONSerialization.data(withJSONObject: state).write(to: stateURL)
        Self.expectError(badNorm, ["state.json", "invalid \"norm\""]) { _ = try Checkpoint.loadModel(GPT.self, from: $0) }
    }
}
