import Testing
import ReplicaCore
import _ReplicaTestSupport

/// op(A)·op(B) by three loops in Double, the reference for sgemm.
func naiveProduct(_ a: Tensor, transposingA: Bool, _ b: Tensor, transposingB: Bool, m: Int, n: Int, k: Int) -> [Float] {
    var result = [Float](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var sum = 0.0
            for p in 0..<k {
                let x = transposingA ? a[p * m + i] : a[i * k + p]
                let y = transposingB ? b[j * k + p] : b[p * n + j]
                sum += Double(x) * Double(y)
            }
            result[i * n + j] = Float(sum)
        }
    }
    return result
}

@Suite struct GEMMTests {
    static let shapes: [(Int, Int, Int)] = [(1, 1, 1), (3, 5, 7), (17, 1, 33), (64, 65, 63), (129, 31, 2), (1, 100, 9)]

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func sgemmMatchesNaiveProductOnOddShapes(transposes: (Bool, Bool)) {
        let (ta, tb) = transposes
        for (index, (m, n, k)) in Self.shapes.enumerated() {
            let a = randomTensor(ta ? [k, m] : [m, k], seed: UInt64(index))
            let b = randomTensor(tb ? [n, k] : [k, n], seed: UInt64(100 + index))
            let c = Tensor(zeros: [m, n])
            gemm(a, transposingA: ta, b, transposingB: tb, into: c)
            let expected = naiveProduct(a, transposingA: ta, b, transposingB: tb, m: m, n: n, k: k)
            #expect(maximumRelativeDifference(c.scalars, expected, floor: 1) < float32SummationTolerance,
                    "m \(m) n \(n) k \(k) transposes \(ta) \(tb)")
        }
    }

    @Test func alphaAndBetaScaleAndAccumulate() {
        let a = randomTensor([4, 3], seed: 1), b = randomTensor([3, 5], seed: 2)
        let c = randomTensor([4, 5], seed: 3)
        let before = c.scalars
        gemm(a, b, into: c, alpha: 2, beta: 0.5)
        let product = naiveProduct(a, transposingA: false, b, transposingB: false, m: 4, n: 5, k: 3)
        let expected = zip(product, before).map { 2 * $0 + 0.5 * $1 }
        #expect(maximumRelativeDifference(c.scalars, expected, floor: 1) < float32SummationTolerance)
    }

    @Test func batchedLeadingDimensionsActAsRows() {
        // [B, T, C] · [C, D] is one [B·T, C] · [C, D] product.
        let x = randomTensor([2, 3, 4], seed: 5), w = randomTensor([4, 6], seed: 6)
        let y = matmul(x, w)
        #expect(y.shape == [2, 3, 6])
        let expected = naiveProduct(x, transposingA: false, w, transposingB: false, m: 6, n: 6, k: 4)
        #expect(maximumRelativeDifference(y.scalars, expected, floor: 1) < float32SummationTolerance)
    }

    @Test func strideOfALeadingDimensionSelectsASubmatrix() {
        // A 2×2 block of a 3×4 matrix via lda = 4.
        let a = Tensor(shape: [3, 4], values: (0..<12).map(Float.init))
        let identity = Tensor(shape: [2, 2], values: [1, 0, 0, 1])
        let c = Tensor(zeros: [2, 2])
        BLAS.sgemm(m: 2, n: 2, k: 2, a: a.data + 5, lda: 4, b: identity.data, ldb: 2, c: c.data, ldc: 2)
        #expect(c.scalars == [5, 6, 9, 10])
    }
}
