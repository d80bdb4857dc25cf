import ReplicaCore

/// The matrix products of attention's tiles, C = α·op(A)·op(B) + β·C, with the causal mask's
/// structure: a causal tile skips the entries and the terms the mask makes zero.
///
/// Attention's products are small and many: the baby model's step makes 1,152 of 64 × 64 × 32
/// (six a (batch, head): scores, the value product, and four in backward). OpenBLAS runs each as
/// a large product would: a pass clearing C, both operands packed, one kernel call a 16 × 4 block;
/// they ran at about 60 GFLOP/s in the step against 100 for large products. Here B is packed
/// into panels of 16 columns (zero-padded, transposed on the way when op(B) = Bᵀ; a short
/// untransposed B of whole panels is read in place instead), A is read in place (a transposed A
/// costs nothing: its entries are broadcast one at a time), and a register block of 6 × 16
/// (twelve 8-lane accumulators) writes C once, with α and β, so β = 0 needs no clearing pass.
///
/// With a causal mask (key j visible to query i when j ≤ i + diagonal), the probabilities and
/// their gradient are zero past the diagonal, so about half of every product can be skipped:
/// - `.visibleColumns`: C is queries × keys (the scores, dP = dOut·Vᵀ); a 6-row block computes
///   only the 16-column panels holding a visible key. Entries past the diagonal are unspecified.
/// - `.visiblePrefix`: op(A) is queries × keys and zero past the diagonal (P·V, dS·K); row block
///   i sums over the keys up to its last query's diagonal only.
/// - `.visibleSuffix`: op(A) is keys × queries, the transpose of one zero past the diagonal
///   (Pᵀ·dOut, dSᵀ·Q); row block j sums over the queries from its first key's diagonal on.
public enum TileProduct {
    public enum Band: Equatable, Sendable {
        case full
        case visibleColumns(diagonal: Int)
        case visiblePrefix(diagonal: Int)
        case visibleSuffix(diagonal: Int)
    }

    /// Rows and columns of the register block.
    static let blockRows = 6, panelWidth = 16

    /// Floats of packing room `multiply` needs for a product of inner size k and n columns.
    public static func packCapacity(k: Int, n: Int) -> Int {
        k * (n + panelWidth - 1) / panelWidth * panelWidth
    }

    /// C = α·op(A)·op(B) + β·C, op(A) m × k, op(B) k × n, with BLAS.sgemm's conventions (row-major,
    /// `transposingA`: a stored [k, m]; `transposingB`: b stored [n, k]), skipping what `band`
    /// allows. `pack` holds at least `packCapacity(k:n:)` floats.
    public static func multiply(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, transposingA: Bool = false,
        b: UnsafePointer<Float>, ldb: Int, transposingB: Bool = false,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
        band: Band = .full, pack: UnsafeMutablePointer<Float>
    ) {
        if m == 0 || n == 0 { return }
        // op(A)[i, p] = a[i · aRow + p · aColumn]
        let (aRow, aColumn) = transposingA ? (1, lda) : (lda, 1)
        // All of op(B) first, panel after panel (k × 16 floats each, contiguous); a short untransposed
        // B of whole panels is read in place instead (its rows, ldb apart, stay in L1).
        let panels = (n + panelWidth - 1) / panelWidth
        let inPlace = !transposingB && n % panelWidth == 0 && k <= rowsReadInPlace
        if !inPlace {
            for panel in 0..<panels {
                packPanel(b, ldb: ldb, transposed: transposingB, k: k, firstColumn: panel * panelWidth,
                          columns: min(panelWidth, n - panel * panelWidth), into: pack + panel * k * panelWidth)
            }
        }
        let panelStride = inPlace ? ldb : panelWidth
        @inline(__always) func panelBase(_ panel: Int) -> UnsafePointer<Float> {
            inPlace ? b + panel * panelWidth : UnsafePointer(pack + panel * k * panelWidth)
        }
        // Row blocks outside while the packed op(B) fits in L1 beside A's rows; panels outside
        // otherwise, so that each panel stays in L1 while A's rows stream past it from L2.
        let rowBlocks = (m + blockRows - 1) / blockRows
        if k * panels * panelWidth <= panelsInL1 {
            for rowBlock in 0..<rowBlocks {
                for panel in 0..<panels {
                    computeBlock(rowBlock: rowBlock, panel: panel)
                }
            }
        } else {
            for panel in 0..<panels {
                for rowBlock in 0..<rowBlocks {
                    computeBlock(rowBlock: rowBlock, panel: panel)
                }
            }
        }

        /// C's block of rows 6·rowBlock ..< 6·rowBlock + 6 and columns 16·panel ..< 16·panel + 16,
        /// or the part of it `band` needs.
        @inline(__always)
        func computeBlock(rowBlock: Int, panel: Int) {
            let rowStart = rowBlock * blockRows, panelStart = panel * panelWidth
            let rows = min(blockRows, m - rowStart)
            var (first, end) = (0, k)
            switch band {
            case .full: break
            case .visibleColumns(let diagonal):
                // the block's last query sees keys up to rowStart + rows − 1 + diagonal
                if panelStart > rowStart + rows - 1 + diagonal { return }
            case .visiblePrefix(let diagonal):
                end = max(0, min(k, rowStart + rows + diagonal))
            case .visibleSuffix(let diagonal):
                first = min(k, max(0, rowStart - diagonal))
            }
            let block = Block(a: a + rowStart * aRow + first * aColumn, aRow: aRow, aColumn: aColumn,
                              panel: panelBase(panel) + first * panelStride, panelStride: panelStride, depth: end - first,
                              alpha: alpha, beta: beta, c: c + rowStart * ldc + panelStart, ldc: ldc,
                              columns: min(panelWidth, n - panelStart))
            switch rows {
            case 6: block.compute(Rows6.self)
            case 5: block.compute(Rows5.self)
            case 4: block.compute(Rows4.self)
            case 3: block.compute(Rows3.self)
            case 2: block.compute(Rows2.self)
            default: block.compute(Rows1.self)
            }
        }
    }

    /// Floats of packed op(B) kept in L1 (16 KiB of a core's 32 KiB or more).
    static let panelsInL1 = 4096
    /// The most rows of an untransposed B read in place rather than packed: 64 rows of a panel,
    /// a cache line each, stay in L1 even at the strides of a qkv buffer.
    static let rowsReadInPlace = 64

    /// op(B)'s columns firstColumn ..< firstColumn + columns, as k rows of 16 floats (zeros past
    /// `columns`). A transposed B goes through 8 × 8 blocks in registers.
    static func packPanel(_ b: UnsafePointer<Float>, ldb: Int, transposed: Bool, k: Int, firstColumn: Int, columns: Int,
                          into pack: UnsafeMutablePointer<Float>) {
        if columns < panelWidth {
            pack.update(repeating: 0, count: k * panelWidth)
        }
        guard transposed else {
            let source = b + firstColumn
            if columns == panelWidth {                       // two vector moves (memmove's call cost more)
                for p in 0..<k {
                    store8(load8(source + p * ldb), pack + p * panelWidth)
                    store8(load8(source + p * ldb + 8), pack + p * panelWidth + 8)
                }
            } else {
                for p in 0..<k {
                    for j in 0..<columns { pack[p * panelWidth + j] = source[p * ldb + j] }
                }
            }
            return
        }
        // op(B)[p, j] = b[j · ldb + p]: 8 × 8 blocks, then one entry at a time for what is left
        let source = b + firstColumn * ldb
        func copyTransposed(columns: Range<Int>, depths: Range<Int>) {
            for j in columns { for p in depths { pack[p * panelWidth + j] = source[j * ldb + p] } }
        }
        var j = 0
        while j + 8 <= columns {
            var p = 0
            while p + 8 <= k {
                transpose8x8(source + j * ldb + p, ldb, pack + p * panelWidth + j, panelWidth)
                p += 8
            }
            copyTransposed(columns: j..<(j + 8), depths: p..<k)
            j += 8
        }
        copyTransposed(columns: j..<columns, depths: 0..<k)
    }

    /// Writes the transpose of the 8 × 8 block at `source` (rows `sourceStride` apart) at
    /// `target` (rows `targetStride` apart).
    @inline(__always)
    static func transpose8x8(_ source: UnsafePointer<Float>, _ sourceStride: Int,
                             _ target: UnsafeMutablePointer<Float>, _ targetStride: Int) {
        let r0 = load8(source), r1 = load8(source + sourceStride)
        let r2 = load8(source + 2 * sourceStride), r3 = load8(source + 3 * sourceStride)
        let r4 = load8(source + 4 * sourceStride), r5 = load8(source + 5 * sourceStride)
        let r6 = load8(source + 6 * sourceStride), r7 = load8(source + 7 * sourceStride)
        // within each 128-bit half: pairs, then quadruples, as the classic unpack network
        let t0 = interleaveLow(r0, r1), t1 = interleaveHigh(r0, r1), t2 = interleaveLow(r2, r3), t3 = interleaveHigh(r2, r3)
        let t4 = interleaveLow(r4, r5), t5 = interleaveHigh(r4, r5), t6 = interleaveLow(r6, r7), t7 = interleaveHigh(r6, r7)
        let s0 = interleavePairsLow(t0, t2), s1 = interleavePairsHigh(t0, t2)
        let s2 = interleavePairsLow(t1, t3), s3 = interleavePairsHigh(t1, t3)
        let s4 = interleavePairsLow(t4, t6), s5 = interleavePairsHigh(t4, t6)
        let s6 = interleavePairsLow(t5, t7), s7 = interleavePairsHigh(t5, t7)
        store8(SIMD8(lowHalf: s0.lowHalf, highHalf: s4.lowHalf), target)
        store8(SIMD8(lowHalf: s1.lowHalf, highHalf: s5.lowHalf), target + targetStride)
        store8(SIMD8(lowHalf: s2.lowHalf, highHalf: s6.lowHalf), target + 2 * targetStride)
        store8(SIMD8(lowHalf: s3.lowHalf, highHalf: s7.lowHalf), target + 3 * targetStride)
        store8(SIMD8(lowHalf: s0.highHalf, highHalf: s4.highHalf), target + 4 * targetStride)
        store8(SIMD8(lowHalf: s1.highHalf, highHalf: s5.highHalf), target + 5 * targetStride)
        store8(SIMD8(lowHalf: s2.highHalf, highHalf: s6.highHalf), target + 6 * targetStride)
        store8(SIMD8(lowHalf: s3.highHalf, highHalf: s7.highHalf), target + 7 * targetStride)
    }

    /// (x0, y0, x1, y1 | x4, y4, x5, y5)
    @inline(__always)
    static func interleaveLow(_ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(x[0], y[0], x[1], y[1], x[4], y[4], x[5], y[5])
    }
    /// (x2, y2, x3, y3 | x6, y6, x7, y7)
    @inline(__always)
    static func interleaveHigh(_ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(x[2], y[2], x[3], y[3], x[6], y[6], x[7], y[7])
    }
    /// (x0, x1, y0, y1 | x4, x5, y4, y5)
    @inline(__always)
    static func interleavePairsLow(_ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(x[0], x[1], y[0], y[1], x[4], x[5], y[4], y[5])
    }
    /// (x2, x3, y2, y3 | x6, x7, y6, y7)
    @inline(__always)
    static func interleavePairsHigh(_ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> {
        SIMD8(x[2], x[3], y[2], y[3], x[6], x[7], y[6], y[7])
    }
}

/// How many rows a register block has, as a type, so that each count gets its own compiled
/// kernel (a count passed as a value left every row's branch in the inner loop, and a spill).
protocol BlockRowCount { static var rows: Int { get } }
enum Rows1: BlockRowCount { static var rows: Int { 1 } }
enum Rows2: BlockRowCount { static var rows: Int { 2 } }
enum Rows3: BlockRowCount { static var rows: Int { 3 } }
enum Rows4: BlockRowCount { static var rows: Int { 4 } }
enum Rows5: BlockRowCount { static var rows: Int { 5 } }
enum Rows6: BlockRowCount { static var rows: Int { 6 } }

extension TileProduct {
    /// One register block: C[0..<rows, 0..<columns] = α · Σ_p op(A)[r, p] · panel[p] + β · C over
    /// `depth` terms, with at most twelve 8-lane accumulators.
    struct Block {
        let a: UnsafePointer<Float>, aRow: Int, aColumn: Int
        let panel: UnsafePointer<Float>, panelStride: Int, depth: Int
        let alpha: Float, beta: Float
        let c: UnsafeMutablePointer<Float>, ldc: Int, columns: Int

        func compute<R: BlockRowCount>(_: R.Type) {
            let rows = R.rows
            var c00 = SIMD8<Float>(), c01 = SIMD8<Float>(), c10 = SIMD8<Float>(), c11 = SIMD8<Float>()
            var c20 = SIMD8<Float>(), c21 = SIMD8<Float>(), c30 = SIMD8<Float>(), c31 = SIMD8<Float>()
            var c40 = SIMD8<Float>(), c41 = SIMD8<Float>(), c50 = SIMD8<Float>(), c51 = SIMD8<Float>()
            // The addressing is fixed at compile time for each layout of A: an untransposed A is one
            // pointer a row and a shared index, a transposed A one pointer whose rows are the next
            // floats. (One pointer plus runtime row offsets became a chain of dependent additions.)
            @inline(__always)
            func step(_ x0: Float, _ x1: Float, _ x2: Float, _ x3: Float, _ x4: Float, _ x5: Float, _ bp: UnsafePointer<Float>) {
                let b0 = load8(bp), b1 = load8(bp + 8)
                var x = SIMD8<Float>(repeating: x0)
                c00 = multiplyAdd8(x, b0, c00); c01 = multiplyAdd8(x, b1, c01)
                if rows > 1 { x = SIMD8(repeating: x1); c10 = multiplyAdd8(x, b0, c10); c11 = multiplyAdd8(x, b1, c11) }
                if rows > 2 { x = SIMD8(repeating: x2); c20 = multiplyAdd8(x, b0, c20); c21 = multiplyAdd8(x, b1, c21) }
                if rows > 3 { x = SIMD8(repeating: x3); c30 = multiplyAdd8(x, b0, c30); c31 = multiplyAdd8(x, b1, c31) }
                if rows > 4 { x = SIMD8(repeating: x4); c40 = multiplyAdd8(x, b0, c40); c41 = multiplyAdd8(x, b1, c41) }
                if rows > 5 { x = SIMD8(repeating: x5); c50 = multiplyAdd8(x, b0, c50); c51 = multiplyAdd8(x, b1, c51) }
            }
            var bp = panel
            if aColumn == 1 {
                // rows past `rows` repeat row 0: never read (their `step` arguments are dropped)
                let a1 = rows > 1 ? a + aRow : a, a2 = rows > 2 ? a + 2 &* aRow : a, a3 = rows > 3 ? a + 3 &* aRow : a
                let a4 = rows > 4 ? a + 4 &* aRow : a, a5 = rows > 5 ? a + 5 &* aRow : a
                for p in 0..<depth {
                    step(a[p], rows > 1 ? a1[p] : 0, rows > 2 ? a2[p] : 0, rows > 3 ? a3[p] : 0, rows > 4 ? a4[p] : 0,
                         rows > 5 ? a5[p] : 0, bp)
                    bp += panelStride
                }
            } else {                                              // aRow == 1
                var ap = a
                for _ in 0..<depth {
                    step(ap[0], rows > 1 ? ap[1] : 0, rows > 2 ? ap[2] : 0, rows > 3 ? ap[3] : 0, rows > 4 ? ap[4] : 0,
                         rows > 5 ? ap[5] : 0, bp)
                    ap += aColumn
                    bp += panelStride
                }
            }
            write(c00, c01, row: 0)
            if rows > 1 { write(c10, c11, row: 1) }
            if rows > 2 { write(c20, c21, row: 2) }
            if rows > 3 { write(c30, c31, row: 3) }
            if rows > 4 { write(c40, c41, row: 4) }
            if rows > 5 { write(c50, c51, row: 5) }
        }

        /// C's row `row` = α · (low, high) + β · C; β = 0 never reads C (it may hold anything).
        @inline(__always)
        func write(_ low: SIMD8<Float>, _ high: SIMD8<Float>, row: Int) {
            let target = c + row * ldc
            let scale = SIMD8<Float>(repeating: alpha)
            if columns == TileProduct.panelWidth {
                if beta == 0 {
                    store8(low * scale, target)
                    store8(high * scale, target + 8)
                } else {
                    let b = SIMD8<Float>(repeating: beta)
                    store8(multiplyAdd8(low, scale, load8(target) * b), target)
                    store8(multiplyAdd8(high, scale, load8(target + 8) * b), target + 8)
                }
                return
            }
            for j in 0..<columns {
                let value = alpha * (j < 8 ? low[j] : high[j - 8])
                target[j] = beta == 0 ? value : value + beta * target[j]
            }
        }
    }
}
