import ArgumentParser

/// The one parser of comma-separated option values (`--depths 2,4,8`, `--fanout 10,10`).
///
/// Each item is trimmed and parsed by `parse`; an empty list, an item that does not parse, or one
/// that `isValid` rejects is a ValidationError naming the option, what it takes and an example.
func commaSeparated<Value>(_ text: String, option: String, expecting: String, example: String,
                           isValid: (Value) -> Bool = { _ in true }, parse: (String) -> Value?) throws -> [Value] {
    let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    var values: [Value] = []
    for item in items {
        guard let value = parse(item), isValid(value) else {
            throw ValidationError("\(option) \(text): give \(expecting), comma-separated, such as \(example).")
        }
        values.append(value)
    }
    guard !values.isEmpty else { throw ValidationError("\(option) \(text): give \(expecting), comma-separated, such as \(example).") }
    return values
}
