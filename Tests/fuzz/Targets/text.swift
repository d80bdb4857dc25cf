import Foundation
import ReplicaCore
import ReplicaData

// Fuzz target: TextCorpus.load and CharacterVocabulary, the charlm reader behind
// `replica train charlm --data FILE`. The input is one file. Oracles: it is accepted exactly
// when it is non-empty, valid UTF-8; an accepted text encodes to ids in range that decode to the
// same code points, and its token blocks cut as documented.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let data = inputData(start, count)
    let file = writeScratch(data, "input.txt")
    let valid = !data.isEmpty && String(validating: data, as: UTF8.self) != nil
    guard let text = expectingUserErrors({ try TextCorpus.load(file.path) }) else {
        check(!valid, "a non-empty valid UTF-8 file was rejected")
        return 0
    }
    check(valid, "an empty or invalid UTF-8 file was accepted")
    check(Array(text.utf8) == [UInt8](data), "the text is not the file's bytes")

    let vocabulary = CharacterVocabulary(text: text)
    check(vocabulary.characters == vocabulary.characters.sorted() && Set(vocabulary.characters).count == vocabulary.count,
          "the vocabulary is not sorted and distinct")
    let tokens: [Int32]
    do { tokens = try vocabulary.encode(text) } catch { fatalError("fuzz: a text's own vocabulary cannot encode it: \(error)") }
    check(tokens.allSatisfy { $0 >= 0 && Int($0) < vocabulary.count }, "an id outside the vocabulary")
    check(vocabulary.decode(tokens).unicodeScalars.elementsEqual(text.unicodeScalars), "decode(encode(text)) differs")
    check(CharacterVocabulary(characters: vocabulary.characters) == vocabulary, "rebuilding from the characters differs")

    let blocks = TokenBlocks(tokens: tokens, blockSize: 8)
    if blocks.exampleCount > 0 {
        let starts = [0, blocks.exampleCount / 2, blocks.exampleCount - 1]
        let batch = blocks.batch(starts: starts)
        check(batch.inputs.count == 24 && batch.targets.count == 24, "batch sizes")
        check(batch.targets[7] == tokens[8] && batch.inputs[0] == tokens[0], "targets are not the inputs shifted by one")
    }
    return 0
}
