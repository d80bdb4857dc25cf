import Foundation
import ReplicaCore
import ReplicaData

// Fuzz target: TranslationData.load (the Multi30k folder reader behind `replica train translate
// --data`), then what training does with it: learn a BPE vocabulary, encode the pairs, make
// length-bucketed and padded batches. The input is six files joined by "\n#FILE\n" lines, in
// this order (a file left out is missing); each may be plain or gzip.
private let names = ["train.de", "train.en", "val.de", "val.en", "test_2016_flickr.de", "test_2016_flickr.en"]

// Oracles: the two languages of a split have the same number of lines, none empty-file; a line
// whose characters are all in the vocabulary decodes back to itself up to whitespace; ids are in
// range; the tokenizer survives its state.json round trip; every example is in one batch.

/// The text as decoding restores it: words split at whitespace (and "▁"), joined by one space.
private func normalized(_ line: String) -> [Unicode.Scalar] {
    var words: [[Unicode.Scalar]] = [[]]
    for scalar in line.unicodeScalars {
        if scalar.properties.isWhitespace || scalar == BPETokenizer.wordBoundary {
            if !words[words.count - 1].isEmpty { words.append([]) }
        } else {
            words[words.count - 1].append(scalar)
        }
    }
    if words.last!.isEmpty { words.removeLast() }
    return Array(words.joined(separator: [" "]))
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    writeParts(inputData(start, count), names: names)
    guard let data = expectingUserErrors({ try TranslationData.load(directory: scratch) }) else { return 0 }
    for split in [data.train, data.validation, data.test] {
        check(split.source.count == split.target.count && split.count > 0, "a split's languages differ in length or are empty")
        check(!(split.source + split.target).contains { $0.contains("\n") }, "a line contains a newline")
    }

    let tokenizer = BPETokenizer.learn(from: data.train.source + data.train.target, vocabularySize: 96)
    check(tokenizer.count <= 96 && tokenizer.count >= BPETokenizer.specialTokens.count, "vocabulary size \(tokenizer.count)")
    for line in data.validation.source + data.validation.target + data.train.source.prefix(20) {
        let ids = tokenizer.encode(line)
        check(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.count }, "an id outside the vocabulary")
        if !ids.contains(BPETokenizer.unknown) {
            check(Array(tokenizer.decode(ids).unicodeScalars) == normalized(line),
                  "decode(encode(\(String(reflecting: line)))) = \(String(reflecting: tokenizer.decode(ids)))")
        }
    }

    let json: Data
    do { json = try JSONSerialization.data(withJSONObject: tokenizer.serialized) } catch { fatalError("fuzz: serialized tokenizer is not JSON: \(error)") }
    guard let object = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any],
          let restored = expectingUserErrors({ try BPETokenizer(serialized: object) }) else {
        fatalError("fuzz invariant: a learned tokenizer does not load from its own JSON")
    }
    check(restored == tokenizer, "the tokenizer changed in its JSON round trip")

    let examples = data.train.examples(tokenizer: tokenizer, maximumLength: 16)
    let batches = makeBatches(examples: examples, tokensPerBatch: 64, seed: 1, epoch: 0)
    check(batches.joined().sorted() == Array(examples.indices), "batches do not hold every example once")
    for batch in batches.prefix(8) {
        let padded = PaddedBatch.make(examples: examples, indices: batch)
        check(padded.sourceIds.count == padded.batchSize * padded.sourceLength, "padded source shape")
        check(padded.targetInput.count == padded.batchSize * padded.targetLength, "padded target shape")
    }
    return 0
}
