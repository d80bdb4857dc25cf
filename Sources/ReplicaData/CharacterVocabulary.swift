import ReplicaCore

/// Characters (Unicode code points, as Python's `str`) in id order, as nanoGPT's shakespeare_char
/// `prepare.py` builds them (sorted unique). "\r\n" is two characters, as in Python.
public struct CharacterVocabulary: Sendable, Equatable {
    public let characters: [Unicode.Scalar]
    let ids: [Unicode.Scalar: Int32]

    /// The sorted distinct code points of `text`.
    public init(text: String) {
        self.init(characters: Array(Set(text.unicodeScalars)).sorted())
    }

    public init(characters: [Unicode.Scalar]) {
        self.characters = characters
        var ids: [Unicode.Scalar: Int32] = [:]
        for (index, character) in characters.enumerated() { ids[character] = Int32(index) }
        self.ids = ids
    }

    public var count: Int { characters.count }

    /// Ids of `text`; a character outside the vocabulary is a UserError naming it.
    public func encode(_ text: String) throws -> [Int32] {
        try text.unicodeScalars.map { character in
            guard let id = ids[character] else {
                throw UserError("the character \(String(reflecting: String(character))) is not in the model's vocabulary of \(count) characters")
            }
            return id
        }
    }

    public func decode(_ tokens: [Int32]) -> String {
        var text = String.UnicodeScalarView()
        text.append(contentsOf: tokens.map { characters[Int($0)] })
        return String(text)
    }

    public static func == (a: CharacterVocabulary, b: CharacterVocabulary) -> Bool { a.characters == b.characters }
}

/// A token stream cut into training examples of `blockSize` inputs and the next-token targets.
public struct TokenBlocks: Sendable {
    public let tokens: [Int32]
    public let blockSize: Int

    public init(tokens: [Int32], blockSize: Int) {
        self.tokens = tokens
        self.blockSize = blockSize
    }

    /// Every start offset whose block and shifted targets fit.
    public var exampleCount: Int { max(0, tokens.count - blockSize) }

    /// Inputs and targets [starts.count × blockSize] for the blocks starting at `starts`.
    public func batch(starts: [Int]) -> (inputs: [Int32], targets: [Int32]) {
        var inputs = [Int32](), targets = [Int32]()
        inputs.reserveCapacity(starts.count * blockSize)
        targets.reserveCapacity(starts.count * blockSize)
        for start in starts {
            inputs.append(contentsOf: tokens[start..<(start + blockSize)])
            targets.append(contentsOf: tokens[(start + 1)...(start + blockSize)])
        }
        return (inputs, targets)
    }
}
