import Foundation
import ReplicaCore
import ReplicaModels

/// A model that a checkpoint rebuilds: `state.json`'s `config` decodes into its `Config`, as nanoGPT
/// rebuilds `GPTConfig(**model_args)`, and `model.safetensors` fills its arena.
public protocol CheckpointModel {
    associatedtype Config: Codable
    /// The task whose checkpoints hold this model ("charlm", ...).
    static var checkpointTask: String { get }
    init(checkpointConfig: Config)
    var arena: ParameterArena { get }
    /// Why a decoded config cannot build the model (the models' preconditions), or nil.
    static func problem(with config: Config) -> String?
}

extension CheckpointModel {
    public static func problem(with config: Config) -> String? { nil }
}

extension Checkpoint {
    /// `config` as a JSON object for `state.json`, with `extra` keys beside its own.
    public static func jsonObject<C: Encodable>(_ config: C, adding extra: [String: Any] = [:]) -> [String: Any] {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        guard let data = try? encoder.encode(config),
              let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            preconditionFailure("\(C.self) does not encode as a JSON object")
        }
        return object.merging(extra) { own, _ in own }
    }

    /// Rebuilds the model a checkpoint folder holds and loads its parameters: one call for every task.
    /// A checkpoint of another task, a `config` that does not decode or describes no valid model, or
    /// missing or misshapen tensors are each a UserError naming the file.
    public static func loadModel<M: CheckpointModel>(_ type: M.Type, from folder: URL) throws -> (model: M, contents: Contents) {
        let contents = try load(folder)
        try requireTask(contents, M.checkpointTask)
        let config = try contents.config(M.Config.self)
        if let problem = M.problem(with: config) {
            throw UserError("\(folder.appendingPathComponent("state.json").path): \"config\" describes no valid model: \(problem)")
        }
        let model = M(checkpointConfig: config)
        try restore(contents, into: model.arena)
        return (model, contents)
    }
}

extension Checkpoint.Contents {
    /// `state.json`'s `config`, decoded.
    public func config<C: Decodable>(_ type: C.Type) throws -> C {
        let file = folder.appendingPathComponent("state.json").path
        guard let object = state["config"], JSONSerialization.isValidJSONObject(object),
              let data = try? JSONSerialization.data(withJSONObject: object) else {
            throw UserError("\(file): has no \"config\" object")
        }
        do {
            return try JSONDecoder().decode(C.self, from: data)
        } catch DecodingError.keyNotFound(let key, _) {
            throw UserError("\(file): \"config\" lacks \"\(key.stringValue)\"; it is not a \(C.self)")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.dataCorrupted(let context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw UserError("\(file): \"config\" has an invalid \"\(key)\" (\(context.debugDescription))")
        } catch {
            throw UserError("\(file): \"config\" does not decode into a \(C.self) (\(error))")
        }
    }
}

extension GPT: CheckpointModel {
    public static var checkpointTask: String { "charlm" }
    public convenience init(checkpointConfig: GPTConfig) { self.init(checkpointConfig) }
    public static func problem(with c: GPTConfig) -> String? {
        positive(["layers": c.layerCount, "heads": c.headCount, "block_size": c.blockSize, "vocab_size": c.vocabularySize])
            ?? divisible(c.embedding, by: c.headCount)
    }
}

extension Seq2SeqTransformer: CheckpointModel {
    public static var checkpointTask: String { "translate" }
    public convenience init(checkpointConfig: TransformerConfig) { self.init(checkpointConfig) }
    public static func problem(with c: TransformerConfig) -> String? {
        positive(["heads": c.heads, "vocab_size": c.vocabularySize, "feed_forward": c.feedForward, "max_length": c.maximumLength])
            ?? divisible(c.embedding, by: c.heads)
    }
}

extension MaskedLanguageModel: CheckpointModel {
    public static var checkpointTask: String { "mlm" }
    public convenience init(checkpointConfig: MaskedLanguageModelConfig) { self.init(checkpointConfig) }
    public static func problem(with c: MaskedLanguageModelConfig) -> String? {
        positive(["layers": c.layers, "heads": c.heads, "vocab_size": c.vocabularySize, "feed_forward": c.feedForward,
                  "max_length": c.maximumLength])
            ?? divisible(c.embedding, by: c.heads)
    }
}

extension GAT: CheckpointModel {
    public static var checkpointTask: String { "gat" }
    public convenience init(checkpointConfig: GATConfig) { self.init(checkpointConfig) }
    public static func problem(with c: GATConfig) -> String? {
        positive(["features": c.featureCount, "classes": c.classCount, "hidden": c.hidden, "heads": c.heads,
                  "output_heads": c.outputHeads, "layers": c.layerCount])
    }
}

extension GraphNetwork: CheckpointModel {
    public static var checkpointTask: String { "gat" }
    public convenience init(checkpointConfig: GraphNetworkConfig) { self.init(checkpointConfig) }
    public static func problem(with c: GraphNetworkConfig) -> String? {
        positive(["features": c.featureCount, "classes": c.classCount, "hidden": c.hidden, "heads": c.heads,
                  "output_heads": c.outputHeads, "layers": c.layerCount])
    }
}

extension GraphMAE: CheckpointModel {
    public static var checkpointTask: String { "graphmae" }
    public convenience init(checkpointConfig: GraphMAEConfig) { self.init(checkpointConfig) }
    public static func problem(with c: GraphMAEConfig) -> String? {
        positive(["features": c.featureCount, "heads": c.heads, "layers": c.layerCount]) ?? divisible(c.hidden, by: c.heads)
    }
}

extension CBOW: CheckpointModel {
    public static var checkpointTask: String { "cbow" }
    public convenience init(checkpointConfig: CBOWConfig) { self.init(checkpointConfig) }
    public static func problem(with c: CBOWConfig) -> String? {
        c.vocabularySize < 2 ? "vocab_size \(c.vocabularySize) is below 2" : positive(["embedding": c.embedding])
    }
}

/// The first of `values` (by name) that is not positive, described.
private func positive(_ values: [String: Int]) -> String? {
    values.sorted { $0.key < $1.key }.first { $0.value <= 0 }.map { "\($0.key) is \($0.value), not positive" }
}

private func divisible(_ width: Int, by heads: Int) -> String? {
    width > 0 && width % heads == 0 ? nil : "the width \(width) is not a positive multiple of \(heads) heads"
}
