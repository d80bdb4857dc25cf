import Testing
import ReplicaCore
import ReplicaNN

/// Attention's own product against the definition. The operands are small integers and α, β
/// powers of two, so every sum is exact in Float and the results must be equal, not close.
@Suite struct TileProductTests {
    /// Entries in −4...4 from a fixed sequence, stored with `stride` floats a row.
    static func integers(rows: Int, columns: Int, stride: Int, seed: Int) -> [Float] {
        var values = [Float](repeating: .nan, count: max(rows, 1) * stride)
        for r in 0..<rows {
            for c in 0..<columns { values[r * stride + c] = Float((r * 7 + c * 3 + seed * 5) % 9 - 4) }
        }
        return values
    }

    struct Case: CustomTestStringConvertible, Sendable {
        let m: Int, n: Int, k: Int, transposingA: Bool, transposingB: Bool
        var testDescription: String { "\(m)×\(n)×\(k)\(transposingA ? " Aᵀ" : "")\(transposingB ? " Bᵀ" : "")" }
    }

    static let cases: [Case] = [(1, 1, 1), (5, 7, 3), (6, 16, 8), (7, 17, 9), (13, 33, 16), (64, 64, 32), (64, 32, 64), (12, 40, 0)]
        .flatMap { shape in [(false, false), (true, false), (false, true), (true, true)].map {
            Case(m: shape.0, n: shape.1, k: shape.2, transposingA: $0.0, transposingB: $0.1) } }

    /// Runs the product with leading dimensions wider than the matrices, the packing room and C
    /// filled with NaN where they must not be read, and returns C and the reference
    /// α·op(A)·op(B) + β·C0 in Double. `zeroA(i, p)` says which entries of op(A) are zero.
    static func run(_ c: Case, alpha: Float, beta: Float, band: TileProduct.Band,
                    zeroA: (Int, Int) -> Bool = { _, _ in false }) -> (result: [Float], expected: [Double]) {
        let (m, n, k) = (c.m, c.n, c.k)
        let (aRows, aColumns) = c.transposingA ? (k, m) : (m, k)
        let (bRows, bColumns) = c.transposingB ? (n, k) : (k, n)
        let lda = aColumns + 3, ldb = bColumns + 5, ldc = n + 2
        var a = integers(rows: aRows, columns: aColumns, stride: lda, seed: 1)
        for i in 0..<m { for p in 0..<k where zeroA(i, p) { a[c.transposingA ? p * lda + i : i * lda + p] = 0 } }
        let b = integers(rows: bRows, columns: bColumns, stride: ldb, seed: 2)
        var result = beta == 0 ? [Float](repeating: .nan, count: m * ldc) : integers(rows: m, columns: n, stride: ldc, seed: 3)
        var expected = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for p in 0..<k {
                    let x = c.transposingA ? a[p * lda + i] : a[i * lda + p], y = c.transposingB ? b[j * ldb + p] : b[p * ldb + j]
                    sum += Double(x) * Double(y)
                }
                expected[i * n + j] = Double(alpha) * sum + (beta == 0 ? 0 : Double(beta) * Double(result[i * ldc + j]))
            }
        }
        var pack = [Float](repeating: .nan, count: max(TileProduct.packCapacity(k: k, n: n), 1))
        TileProduct.multiply(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, transposingA: c.transposingA,
                             b: b, ldb: ldb, transposingB: c.transposingB, beta: beta, c: &result, ldc: ldc,
                             band: band, pack: &pack)
        return ((0..<(m * n)).map { result[$0 / n * ldc + $0 % n] }, expected)
    }

    @Test(arguments: cases)
    func theWholeProductEqualsTheDefinition(_ c: Case) {
        for (alpha, beta) in [(Float(1), Float(0)), (0.5, 1), (2, 0.5)] {
            let (result, expected) = Self.run(c, alpha: alpha, beta: beta, band: .full)
            #expect(result.map(Double.init) == expected, "α \(alpha), β \(beta)")
        }
    }

    /// Scores and dP: only the entries on or before the diagonal are specified.
    @Test(arguments: cases)
    func visibleColumnsAreTheProductsEntriesUpToTheDiagonal(_ c: Case) {
        for diagonal in [-3, 0, 5] {
            let (result, expected) = Self.run(c, alpha: 0.5, beta: 0, band: .visibleColumns(diagonal: diagonal))
            for i in 0..<c.m {
                for j in 0..<c.n where j <= i + diagonal {
                    #expect(Double(result[i * c.n + j]) == expected[i * c.n + j], "diagonal \(diagonal), (\(i), \(j))")
                }
            }
        }
    }

    /// P·V and dS·K: op(A) is zero past the diagonal, and the whole result is the product.
    @Test(arguments: cases)
    func aVisiblePrefixGivesTheWholeProduct(_ c: Case) {
        for diagonal in [-3, 0, 5] {
            let (result, expected) = Self.run(c, alpha: 1, beta: 1, band: .visiblePrefix(diagonal: diagonal),
                                              zeroA: { i, p in p > i + diagonal })
            #expect(result.map(Double.init) == expected, "diagonal \(diagonal)")
        }
    }

    /// Pᵀ·dOut and dSᵀ·Q: op(A)[j, i] is zero where key j is hidden from query i (j > i + diagonal).
    @Test(arguments: cases)
    func aVisibleSuffixGivesTheWholeProduct(_ c: Case) {
        for diagonal in [-3, 0, 5] {
            let (result, expected) = Self.run(c, alpha: 2, beta: 1, band: .visibleSuffix(diagonal: diagonal),
                                              zeroA: { j, i in j > i + diagonal })
            #expect(result.map(Double.init) == expected, "diagonal \(diagonal)")
        }
    }
}
