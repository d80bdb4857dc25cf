import Foundation

#if !_endian(little)
#error("SafeTensors copies float32 data as stored in memory; the format is little-endian.")
#endif

/// Reads and writes the safetensors format (huggingface/safetensors), float32 only.
///
/// Layout: N as an 8-byte little-endian integer; N bytes of JSON header, space-padded to a
/// multiple of 8, `{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
/// "__metadata__": {string: string}}`; then the data section, offsets relative to its start.
public enum SafeTensors {
    /// Writes `tensors` in the given order, with `metadata` under "__metadata__", to `url`.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
                             to url: URL) throws {
        try write(streaming: tensors.map { ($0.name, $0.tensor.shape) }, metadata: metadata, to: url) { index, write in
            let tensor = tensors[index].tensor
            try write(UnsafeRawBufferPointer(start: tensor.data, count: tensor.count * MemoryLayout<Float>.stride))
        }
    }

    /// Writes tensors of the given names and shapes, in that order, whose bytes come from
    /// `produce(index, write)`: it must hand `write` exactly tensor `index`'s bytes, in one piece
    /// or several (a sharded optimizer state is streamed bucket by bucket, never held whole).
    public static func write(streaming entries: [(name: String, shape: [Int])], metadata: [String: String] = [:], to url: URL,
                             produce: (Int, (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        var names = Set<String>()
        var headerEntries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            headerEntries.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        var sizes: [Int] = []
        for (name, shape) in entries {
            precondition(name != "__metadata__" && names.insert(name).inserted,
                         "SafeTensors.write: tensor name \"\(name)\" is reserved or repeated")
            let size = Tensor.elementCount(shape) * MemoryLayout<Float>.stride
            let dimensions = shape.map(String.init).joined(separator: ",")
            headerEntries.append("\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(dimensions)],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
            sizes.append(size)
        }
        var header = Array("{\(headerEntries.joined(separator: ","))}".utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))
        var length = UInt64(header.count).littleEndian

        let descriptor = try openForWriting(url)
        do {
            try withUnsafeBytes(of: &length) { try writeAll($0, to: descriptor, path: url) }
            try header.withUnsafeBytes { try writeAll($0, to: descriptor, path: url) }
            for index in entries.indices {
                var written = 0
                try produce(index) { bytes in
                    precondition(written + bytes.count <= sizes[index], "SafeTensors.write: more bytes than \(entries[index].name)'s shape holds")
                    try writeAll(bytes, to: descriptor, path: url)
                    written += bytes.count
                }
                precondition(written == sizes[index], "SafeTensors.write: \(written) bytes of \(entries[index].name), its shape needs \(sizes[index])")
            }
        } catch {
            close(descriptor)
            throw error
        }
        guard close(descriptor) == 0 else { throw posixError("cannot close", url) }
    }

    /// Reads every tensor of a safetensors file, validating the header strictly.
    ///
    /// `order` lists the names by position in the data section (the order they were written).
    /// Throws `UserError` naming the file and the problem for any malformed or non-F32 content.
    public static func read(from url: URL) throws -> (tensors: [String: Tensor], order: [String], metadata: [String: String]) {
        let file = try Mapped(url)
        var tensors: [String: Tensor] = [:]
        for name in file.order { tensors[name] = file.tensor(name) }
        return (tensors, file.order, file.metadata)
    }

    /// A safetensors file mapped into memory with its header validated; tensors, or parts of
    /// them, are copied out on demand (a ZeRO rank reads only its shard of the optimizer state).
    public struct Mapped {
        public let url: URL
        /// Tensor names by position in the data section.
        public let order: [String]
        public let metadata: [String: String]
        /// Every tensor's shape, by name.
        public let shapes: [String: [Int]]
        private let file: Data
        private let dataStart: Int
        private let begins: [String: Int]

        /// Maps and validates `url`; a `UserError` names the file and the problem.
        public init(_ url: URL) throws {
            self.url = url
            let (file, dataStart, entries, metadata) = try SafeTensors.validate(url)
            self.file = file
            self.dataStart = dataStart
            self.metadata = metadata
            order = entries.map(\.name)
            shapes = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.shape) })
            begins = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.begin) })
        }

        /// A copy of tensor `name` (which must be in `shapes`).
        public func tensor(_ name: String) -> Tensor {
            let shape = shapes[name]!
            let tensor = Tensor(zeros: shape)
            copy(name, elements: 0..<tensor.count, to: tensor.data)
            return tensor
        }

        /// The elements of tensor `name` at `ranges` (flat offsets inside the tensor), back to back.
        public func elements(of name: String, at ranges: [Range<Int>]) -> Tensor {
            let count = Tensor.elementCount(shapes[name]!)
            let result = Tensor(zeros: [ranges.reduce(0) { $0 + $1.count }])
            var offset = 0
            for range in ranges {
                precondition(range.lowerBound >= 0 && range.upperBound <= count, "\(name): elements \(range) outside its \(count)")
                copy(name, elements: range, to: result.data + offset)
                offset += range.count
            }
            return result
        }

        private func copy(_ name: String, elements: Range<Int>, to destination: UnsafeMutablePointer<Float>) {
            let start = dataStart + begins[name]! + elements.lowerBound * MemoryLayout<Float>.stride
            file.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(destination).copyMemory(from: raw.baseAddress! + start, byteCount: elements.count * MemoryLayout<Float>.stride)
            }
        }
    }

    /// Maps `url` and checks its header strictly: the data section's start, the tensors in data order, the metadata.
    private static func validate(_ url: URL) throws -> (file: Data, dataStart: Int, entries: [(name: String, shape: [Int], begin: Int, end: Int)], metadata: [String: String]) {
        func failure(_ problem: String) -> UserError { UserError("\(url.path): \(problem)") }
        let file: Data
        do {
            file = try Data(contentsOf: url, options: .mappedIfSafe)
        } catch {
            throw failure("cannot read the file: \(error.localizedDescription)")
        }
        guard file.count >= 8 else {
            throw failure("\(file.count) bytes is too short for a safetensors file (8-byte header length missing)")
        }
        let headerLength = file.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard headerLength <= UInt64(file.count - 8) else {
            throw failure("header length \(headerLength) exceeds the \(file.count - 8) bytes that follow it; "
                + "the file is truncated or not safetensors")
        }
        let dataStart = 8 + Int(headerLength)
        let dataSize = file.count - dataStart
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(file[8..<dataStart]), options: [.fragmentsAllowed])
        } catch {
            throw failure("the header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else { throw failure("the header is not a JSON object") }

        var metadata: [String: String] = [:]
        var entries: [(name: String, shape: [Int], begin: Int, end: Int)] = []
        for (name, value) in header.sorted(by: { $0.key < $1.key }) {
            if name == "__metadata__" {
                guard let map = value as? [String: Any], let strings = map as? [String: String] else {
                    throw failure("\"__metadata__\" must be an object of strings")
                }
                metadata = strings
                continue
            }
            guard let info = value as? [String: Any] else { throw failure("tensor \"\(name)\": entry is not an object") }
            guard let dtype = info["dtype"] as? String else { throw failure("tensor \"\(name)\": \"dtype\" is missing or not a string") }
            guard dtype == "F32" else {
                if knownDataTypes.contains(dtype) {
                    throw failure("tensor \"\(name)\" has dtype \(dtype); Replica reads F32 only (convert the tensor to float32)")
                }
                throw failure("tensor \"\(name)\" has unknown dtype \"\(dtype)\"")
            }
            guard let shapeValues = info["shape"] as? [Any], let shape = integers(shapeValues) else {
                throw failure("tensor \"\(name)\": \"shape\" must be an array of non-negative integers")
            }
            guard let offsetValues = info["data_offsets"] as? [Any], let offsets = integers(offsetValues), offsets.count == 2 else {
                throw failure("tensor \"\(name)\": \"data_offsets\" must be two non-negative integers [begin, end]")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end, end <= dataSize else {
                throw failure("tensor \"\(name)\": data_offsets [\(begin), \(end)] lie outside the data section of \(dataSize) bytes")
            }
            var bytes = MemoryLayout<Float>.stride, overflow = false
            for dimension in shape where !overflow { (bytes, overflow) = bytes.multipliedReportingOverflow(by: dimension) }
            guard !overflow, bytes == end - begin else {
                throw failure("tensor \"\(name)\": shape \(shape) needs \(overflow ? "too many" : String(bytes)) bytes of F32 "
                    + "but data_offsets [\(begin), \(end)] span \(end - begin)")
            }
            entries.append((name, shape, begin, end))
        }

        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0
        for (index, entry) in entries.enumerated() {
            if entry.begin < covered {
                let previous = entries[index - 1]
                throw failure("tensors \"\(previous.name)\" [\(previous.begin), \(previous.end)] and "
                    + "\"\(entry.name)\" [\(entry.begin), \(entry.end)] overlap")
            }
            if entry.begin > covered {
                throw failure("bytes [\(covered), \(entry.begin)) of the data section belong to no tensor")
            }
            covered = entry.end
        }
        guard covered == dataSize else {
            throw failure("the data section has \(dataSize) bytes but the tensors cover \(covered)")
        }
        return (file, dataStart, entries, metadata)
    }
}

/// Data types the safetensors format defines; Replica reads only F32.
private let knownDataTypes: Set<String> = [
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "E8M0",
    "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "C64",
]

/// The values as non-negative Ints if every one is a JSON integer literal (not 1.0, 1e3 or true).
private func integers(_ values: [Any]) -> [Int]? {
    var result: [Int] = []
    for value in values {
        // JSONSerialization yields NSNumber for integers, reals and booleans alike; the
        // Objective-C type code tells them apart ("c" is a boolean, "d" a real).
        guard let number = value as? NSNumber, integerTypeCodes.contains(String(cString: number.objCType)),
              let integer = value as? Int, integer >= 0 else { return nil }
        result.append(integer)
    }
    return result
}

private let integerTypeCodes: Set<String> = ["s", "i", "l", "q", "S", "I", "L", "Q"]

/// `text` as a JSON string literal (quotes, backslashes and control characters escaped).
public func jsonString(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\r": result += "\\r"
        case "\t": result += "\\t"
        case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
        default: result.unicodeScalars.append(scalar)
        }
    }
    return result + "\""
}
