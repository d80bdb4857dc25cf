import ReplicaCore

/// BERT's masking (Devlin et al. 2019, §3.1): each ordinary token is chosen with probability
/// `rate` (15%); a chosen token becomes `<mask>` with probability 0.8, a uniformly random
/// ordinary token with probability 0.1, and stays itself with probability 0.1. Special tokens
/// (`<pad>`, `<s>`, `</s>`, `<unk>`, `<mask>`: ids below 5) are never chosen. The loss is taken at
/// the chosen positions only. (Each token is chosen independently, as Hugging Face's collator;
/// BERT's TensorFlow code picks exactly round(15%) of each sequence.)
public enum BERTMasking {
    /// Ids below this are special tokens.
    public static let firstOrdinaryToken = Int32(BPETokenizer.specialTokens.count)
    public static let defaultRate: Float = 0.15

    /// The model's input for `ids` and the chosen positions (ascending).
    public static func mask(_ ids: [Int32], rate: Float, vocabularySize V: Int,
                            using generator: inout SeededGenerator) -> (input: [Int32], chosen: [Int]) {
        precondition(V > Int(firstOrdinaryToken), "BERTMasking: a vocabulary of \(V) has no ordinary token")
        var input = ids
        var chosen: [Int] = []
        for (position, id) in ids.enumerated() where id >= firstOrdinaryToken {
            guard generator.nextUniform() < rate else { continue }
            chosen.append(position)
            let draw = generator.nextUniform()
            if draw < 0.8 {
                input[position] = BPETokenizer.mask
            } else if draw < 0.9 {
                input[position] = firstOrdinaryToken + Int32(generator.nextInt(below: V - Int(firstOrdinaryToken)))
            }
        }
        return (input, chosen)
    }
}

/// A padded batch of masked sentences, row-major.
///
/// ```
/// inputs   [B, T]  ids after masking, then <pad> (0)
/// mask     [B, T]  true at a real token, false at padding
/// rows     [P]     flat positions (b·T + t) of the chosen tokens
/// targets  [P]     their original ids
/// ```
public struct MaskedBatch: Sendable, Equatable {
    public var batchSize: Int
    public var length: Int
    public var inputs: [Int32]
    public var mask: [Bool]
    public var rows: [Int32]
    public var targets: [Int32]

    /// Pads `sentences[indices]` and masks each with the generator `generator(index)` gives it.
    public static func make(sentences: [[Int32]], indices: [Int], rate: Float, vocabularySize: Int,
                            generator: (Int) -> SeededGenerator) -> MaskedBatch {
        let B = indices.count, T = indices.map { sentences[$0].count }.max() ?? 0
        var batch = MaskedBatch(batchSize: B, length: T, inputs: [Int32](repeating: BPETokenizer.padding, count: B * T),
                                mask: [Bool](repeating: false, count: B * T), rows: [], targets: [])
        for (row, index) in indices.enumerated() {
            let ids = sentences[index]
            var random = generator(index)
            let (input, chosen) = BERTMasking.mask(ids, rate: rate, vocabularySize: vocabularySize, using: &random)
            for t in ids.indices {
                batch.inputs[row * T + t] = input[t]
                batch.mask[row * T + t] = true
            }
            for t in chosen {
                batch.rows.append(Int32(row * T + t))
                batch.targets.append(ids[t])
            }
        }
        return batch
    }
}
