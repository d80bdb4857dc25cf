import Foundation
import ReplicaCore

/// Plain UTF-8 text: a user's file or the embedded Tiny Shakespeare.
public enum TextCorpus {
    /// The embedded Tiny Shakespeare (Karpathy's char-rnn data), 1,115,394 characters.
    public static func tinyShakespeare() throws -> String {
        try load(EmbeddedData.tinyShakespeareFile().path)
    }

    /// Reads `path` as UTF-8 text; a missing, unreadable, empty or non-UTF-8 file is a UserError naming it.
    public static func load(_ path: String) throws -> String {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw UserError("\(path): no such file (--data takes a UTF-8 text file)")
        }
        guard !isDirectory.boolValue else { throw UserError("\(path): is a directory; --data takes a UTF-8 text file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw UserError("\(path): cannot be read") }
        guard let text = String(validatingUTF8Data: data) else {
            let offset = firstInvalidUTF8Offset(data) ?? 0
            let line = data.prefix(offset).reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
            throw UserError("\(path): not valid UTF-8 (line \(line), byte offset \(offset)); convert it to UTF-8 text")
        }
        guard !text.isEmpty else { throw UserError("\(path): the file is empty") }
        return text
    }

    /// Byte offset of the first invalid UTF-8 sequence, if any.
    static func firstInvalidUTF8Offset(_ data: Data) -> Int? {
        var iterator = data.makeIterator()
        var decoder = UTF8()
        var offset = 0
        var consumed = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar):
                consumed += UTF8.width(scalar)
                offset = consumed
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }
}

extension String {
    /// Decodes `data` only if it is entirely valid UTF-8.
    init?(validatingUTF8Data data: Data) {
        guard TextCorpus.firstInvalidUTF8Offset(data) == nil else { return nil }
        self = String(decoding: data, as: UTF8.self)
    }
}
