/// Parses the `--sizes` lists of `replica bench`.
public enum SizeList {
    /// "4K,1M,64M" -> bytes (K, M, G are powers of 1024). Every size must be a positive multiple of `multiple`.
    public static func bytes(_ text: String, multipleOf multiple: Int = 1) throws -> [Int] {
        try items(text).map { item in
            var digits = Substring(item.uppercased())
            if digits.hasSuffix("IB") { digits = digits.dropLast(2) } else if digits.hasSuffix("B") { digits = digits.dropLast() }
            var factor = 1
            if let last = digits.last, let scale = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30][String(last)] {
                factor = scale
                digits = digits.dropLast()
            }
            guard let value = Int(digits), value > 0, value.multipliedReportingOverflow(by: factor).overflow == false else {
                throw UserError("--sizes: '\(item)' is not a size; use a positive number with an optional K, M or G suffix, such as 4K,1M,64M")
            }
            let bytes = value * factor
            guard bytes % multiple == 0 else {
                throw UserError("--sizes: \(item) is not a multiple of \(multiple) bytes (one float32)")
            }
            return bytes
        }
    }

    /// "1024" -> (1024, 1024, 1024); "512x768x1024" -> (m 512, n 768, k 1024).
    public static func matrixShapes(_ text: String) throws -> [(m: Int, n: Int, k: Int)] {
        try items(text).map { item in
            let parts = item.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard parts.count == 1 || parts.count == 3, parts.allSatisfy({ ($0 ?? 0) > 0 }) else {
                throw UserError("--sizes: '\(item)' is not a matrix size; use N for N×N×N or M x N x K as 512x768x1024")
            }
            let values = parts.map { $0! }
            return values.count == 1 ? (values[0], values[0], values[0]) : (values[0], values[1], values[2])
        }
    }

    private static func items(_ text: String) throws -> [String] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters() }
        guard !items.isEmpty, items.allSatisfy({ !$0.isEmpty }) else {
            throw UserError("--sizes: '\(text)' is empty; give a comma-separated list such as 4K,1M,64M")
        }
        return items
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
