import Foundation
import ReplicaData

// Fuzz target: BPETokenizer(serialized:), which `replica translate --checkpoint` uses to rebuild
// the tokenizer from a checkpoint's state.json. The input is a state.json (its "tokenizer"
// object is read) or a bare tokenizer object. Oracles: a tokenizer it accepts encodes text
// (sample lines and its own symbols) to ids in range, decodes any ids, and survives its own
// JSON round trip unchanged.

private let sampleLines = [
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Two young, White males are outside near many bushes.",
    "", " \t ", "▁▁x", "(aged 20-ish).", "e\u{301} é ǅ ﬃ 👩‍👩‍👧",
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard let json = try? JSONSerialization.jsonObject(with: inputData(start, count)) as? [String: Any] else { return 0 }
    let serialized = json["tokenizer"] as? [String: Any] ?? json
    guard let tokenizer = expectingUserErrors({ try BPETokenizer(serialized: serialized) }) else { return 0 }

    let lines = sampleLines + [tokenizer.symbols.dropFirst(BPETokenizer.specialTokens.count).joined(),
                               tokenizer.symbols.joined(separator: " ")]
    for line in lines {
        let ids = tokenizer.encode(line)
        check(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.count }, "an id outside the vocabulary")
        _ = tokenizer.decode(ids)
    }
    _ = tokenizer.decode(Array(0..<Int32(tokenizer.count)))
    check(tokenizer.mergedPairs.count == tokenizer.merges.count, "merged pairs")

    guard let again = try? JSONSerialization.data(withJSONObject: tokenizer.serialized),
          let object = (try? JSONSerialization.jsonObject(with: again)) as? [String: Any],
          let restored = expectingUserErrors({ try BPETokenizer(serialized: object) }) else {
        fatalError("fuzz invariant: an accepted tokenizer does not load from its own JSON")
    }
    check(restored == tokenizer, "the tokenizer changed in its JSON round trip")
    return 0
}
