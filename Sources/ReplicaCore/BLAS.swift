import CBLAS

/// Every matrix product in Replica but attention's tiles (ReplicaNN's `TileProduct`) goes through
/// OpenBLAS's sgemm, single-threaded; with more than one thread (`--threads`) a large product is
/// split into one block of rows or columns a thread of the `ComputePool`, the pool the
/// element-wise kernels use too.
public enum BLAS {
    /// Sets the threads of this process's compute (the `ComputePool`); OpenBLAS keeps one.
    public static func setThreadCount(_ count: Int) {
        precondition(count >= 1, "BLAS thread count must be at least 1, got \(count)")
        openblas_set_num_threads(1)
        ComputePool.setThreadCount(count)
    }

    public static var threadCount: Int { ComputePool.threadCount }

    /// Products below this many multiply-adds stay on one thread (about 20 µs of sgemm).
    @usableFromInline static let splitThreshold = 1 << 21

    /// OpenBLAS's description of its build and the kernel it chose for this CPU.
    public static var configuration: String {
        guard let config = openblas_get_config() else { return "OpenBLAS" }
        return "\(String(cString: config)) (kernel \(kernelName))"
    }

    /// y += alpha · x over `count` contiguous elements.
    @inlinable
    public static func saxpy(count: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        if count > 0 { cblas_saxpy(Int32(count), alpha, x, 1, y, 1) }
    }

    /// C[m×n] = alpha · op(A) · op(B) + beta · C on row-major buffers with leading dimensions.
    ///
    /// op(A) is m×k: A is stored m×k (lda ≥ k), or k×m (lda ≥ m) when `transposingA`.
    /// op(B) is k×n: B is stored k×n (ldb ≥ n), or n×k (ldb ≥ k) when `transposingB`.
    @inlinable
    public static func sgemm(
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, transposingA: Bool = false,
        b: UnsafePointer<Float>, ldb: Int, transposingB: Bool = false,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        let threads = ComputePool.threadCount
        if threads > 1 && m * n * k >= splitThreshold && !ComputePool.isBusy {
            // One block a thread of the larger of m and n, so each packs the smaller operand whole;
            // block edges at multiples of 16, the kernels' tile sizes.
            let splitRows = m >= n
            let extent = splitRows ? m : n
            let parts = min(threads, max(1, extent / 16))
            if parts > 1 {
                ComputePool.run(parts: parts) { part in
                    let lower = extent * part / parts / 16 * 16
                    let upper = part == parts - 1 ? extent : extent * (part + 1) / parts / 16 * 16
                    guard upper > lower else { return }
                    if splitRows {
                        sgemmBlock(m: upper - lower, n: n, k: k, alpha: alpha,
                                   a: transposingA ? a + lower : a + lower * lda, lda: lda, transposingA: transposingA,
                                   b: b, ldb: ldb, transposingB: transposingB, beta: beta, c: c + lower * ldc, ldc: ldc)
                    } else {
                        sgemmBlock(m: m, n: upper - lower, k: k, alpha: alpha, a: a, lda: lda, transposingA: transposingA,
                                   b: transposingB ? b + lower * ldb : b + lower, ldb: ldb, transposingB: transposingB,
                                   beta: beta, c: c + lower, ldc: ldc)
                    }
                }
                return
            }
        }
        sgemmBlock(m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, transposingA: transposingA, b: b, ldb: ldb,
                   transposingB: transposingB, beta: beta, c: c, ldc: ldc)
    }

    /// One cblas_sgemm call (on the calling thread).
    @usableFromInline
    static func sgemmBlock(
        m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, transposingA: Bool,
        b: UnsafePointer<Float>, ldb: Int, transposingB: Bool,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor,
            transposingA ? CblasTrans : CblasNoTrans,
            transposingB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k),
            alpha, a, Int32(lda), b, Int32(ldb),
            beta, c, Int32(ldc))
    }
}

/// c = alpha · op(a) · op(b) + beta · c, treating each tensor as a matrix [rows, last dimension].
///
/// Transposes are BLAS flags, never copies. With `transposingA`, `a` is stored [k, m];
/// with `transposingB`, `b` is stored [n, k].
public func gemm(
    _ a: Tensor, transposingA: Bool = false,
    _ b: Tensor, transposingB: Bool = false,
    into c: Tensor, alpha: Float = 1, beta: Float = 0
) {
    let (aRows, aColumns) = (a.rowCount, a.columnCount)
    let (bRows, bColumns) = (b.rowCount, b.columnCount)
    let m = transposingA ? aColumns : aRows
    let k = transposingA ? aRows : aColumns
    let kB = transposingB ? bColumns : bRows
    let n = transposingB ? bRows : bColumns
    precondition(k == kB, "gemm: inner dimensions differ: op(a) is \(m)×\(k), op(b) is \(kB)×\(n) (a \(a.shape), b \(b.shape))")
    precondition(c.rowCount == m && c.columnCount == n, "gemm: c is \(c.shape), expected \(m)×\(n)")
    BLAS.sgemm(m: m, n: n, k: k, alpha: alpha,
               a: a.data, lda: aColumns, transposingA: transposingA,
               b: b.data, ldb: bColumns, transposingB: transposingB,
               beta: beta, c: c.data, ldc: n)
}

/// A new tensor op(a) · op(b), shaped [leading dimensions of a..., n] when a is not transposed.
public func matmul(_ a: Tensor, transposingA: Bool = false, _ b: Tensor, transposingB: Bool = false) -> Tensor {
    let m = transposingA ? a.columnCount : a.rowCount
    let n = transposingB ? b.rowCount : b.columnCount
    let shape = transposingA || a.rank < 2 ? [m, n] : Array(a.shape.dropLast()) + [n]
    let c = Tensor(zeros: shape)
    gemm(a, transposingA: transposingA, b, transposingB: transposingB, into: c)
    return c
}
