/// The `--sizes` lists of `replica bench`, parsed by the one list parser.
enum SizeOption {
    /// "4K,1M,64M" -> bytes (K, M, G and KiB, MiB, GiB are powers of 1024), each a positive multiple of `multiple`.
    static func bytes(_ text: String, multipleOf multiple: Int = 1) throws -> [Int] {
        try commaSeparated(text, option: "--sizes", expecting: "positive byte counts, multiples of \(multiple), with an optional K, M or G suffix",
                           example: "4K,1M,64M", isValid: { $0 % multiple == 0 }, parse: byteCount)
    }

    /// "1024" -> (1024, 1024, 1024); "512x768x1024" -> (m 512, n 768, k 1024).
    static func matrixShapes(_ text: String) throws -> [(m: Int, n: Int, k: Int)] {
        try commaSeparated(text, option: "--sizes", expecting: "matrix sizes, N for N×N×N or MxNxK", example: "1024,512x768x1024") { item in
            let parts = item.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count == 1 || parts.count == 3, parts.allSatisfy({ ($0 ?? 0) > 0 }) else { return nil }
            let values = parts.map { $0! }
            return values.count == 1 ? (values[0], values[0], values[0]) : (values[0], values[1], values[2])
        }
    }

    /// "64M" -> 67108864; nil for anything but a positive count with an optional binary suffix.
    static func byteCount(_ item: String) -> Int? {
        var digits = Substring(item.uppercased())
        if digits.hasSuffix("IB") { digits = digits.dropLast(2) } else if digits.hasSuffix("B") { digits = digits.dropLast() }
        var factor = 1
        if let last = digits.last, let scale = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30][String(last)] {
            factor = scale
            digits = digits.dropLast()
        }
        guard let value = Int(digits), value > 0 else { return nil }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: factor)
        return overflow ? nil : bytes
    }
}
