import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaNN

/// Samples text from a charlm checkpoint (`replica generate`).
public final class TextGenerator {
    public let model: GPT
    public let vocabulary: CharacterVocabulary

    /// Rebuilds the GPT from the checkpoint's `state.json` and loads its parameters.
    public init(checkpoint folder: URL) throws {
        let (model, contents) = try Checkpoint.loadModel(GPT.self, from: folder)
        let stateFile = folder.appendingPathComponent("state.json").path
        guard let characters = contents.state["vocab"] as? [String], characters.allSatisfy({ $0.unicodeScalars.count == 1 }),
              characters.count == model.config.vocabularySize else {
            throw UserError("\(stateFile): lacks a \"vocab\" of \(model.config.vocabularySize) single characters (the config's vocab_size)")
        }
        vocabulary = CharacterVocabulary(characters: characters.map { $0.unicodeScalars.first! })
        self.model = model
        model.mode = .evaluation
    }

    /// `count` new characters after `prompt`. Temperature 0 is greedy; `topK` keeps the K most likely.
    public func generate(prompt: String, count: Int, temperature: Float, topK: Int?, seed: UInt64,
                         onCharacter: (String) -> Void = { _ in }) throws -> String {
        var tokens = try vocabulary.encode(prompt.isEmpty ? "\n" : prompt)
        var generator = SeededGenerator(seed: seed, 0x6765_6e)
        let V = vocabulary.count
        var output = ""
        for _ in 0..<count {
            let context = Array(tokens.suffix(model.config.blockSize))
            let logits = model.forward(context, batch: 1, length: context.count)
            let last = logits.data + (context.count - 1) * V
            let next = TextGenerator.sample(UnsafeBufferPointer(start: last, count: V), temperature: temperature,
                                            topK: topK, using: &generator)
            tokens.append(Int32(next))
            let character = String(vocabulary.characters[next])
            output += character
            onCharacter(character)
        }
        return output
    }

    /// An index drawn from softmax(logits / temperature) restricted to the top K; argmax when temperature is 0.
    public static func sample(_ logits: UnsafeBufferPointer<Float>, temperature: Float, topK: Int?,
                              using generator: inout SeededGenerator) -> Int {
        let indices = Array(logits.indices)
        if temperature == 0 { return indices.max { logits[$0] < logits[$1] }! }
        var candidates = indices
        if let topK, topK < logits.count {
            candidates = Array(indices.sorted { logits[$0] > logits[$1] }.prefix(max(1, topK)))
        }
        let maximum = candidates.map { logits[$0] }.max()!
        let weights = candidates.map { Double(expf((logits[$0] - maximum) / temperature)) }
        var draw = Double(generator.nextUniform()) * weights.reduce(0, +)
        for (candidate, weight) in zip(candidates, weights) {
            draw -= weight
            if draw < 0 { return candidate }
        }
        return candidates.last!
    }
}
