import Foundation
import ReplicaCore
import ReplicaDistributed

/// PowerSGD gradient compression (Vogels, Karimireddy and Jaggi 2019; PyTorch's `powerSGD_hook`):
/// `--grad-compression powersgd`.
///
/// Every matrix gradient M (n×m: a parameter's first dimension by the rest) whose rank-r factors
/// are at most half its size (PyTorch's `min_compression_rate` 2) travels as two thin matrices;
/// vectors and small matrices travel as they are. On each rank, per matrix:
///
///     M ← gradient + error                      error feedback: what earlier steps did not send
///     P ← M·Q                 (n×r)             Q warm-started: the previous step's
///     P ← Σ_ranks P, orthonormal columns        (Gram-Schmidt, the same on every rank)
///     Q ← M^T·P               (m×r)
///     Q ← Σ_ranks Q
///     gradient ← P·Q^T, error ← M − P·Q^T / ranks
///
/// so that the ranks' errors sum to what the sum of their M lost (gradients here are already
/// divided by the global count, so a sum over ranks is the mean PyTorch's hook forms). One
/// all-reduce per bucket carries its vectors and every P; a second carries every Q. The first
/// starts when backward has finished the bucket and its orthogonalisation and M^T·P run at the
/// poll that sees it complete; the second all-reduces start after backward, in bucket order, so
/// that every rank starts its collectives in the same order. Before `startStep`, buckets are
/// all-reduced uncompressed and the error stays zero (PyTorch's `start_powerSGD_iter`).
///
/// State: the error buffer (one float per parameter, this rank's own) and Q (the same on every
/// rank). Checkpoints keep both (`compression.safetensors`), so that a resume is exact.
public final class PowerSGD {
    /// PyTorch's `min_compression_rate`: a matrix is compressed only if its factors, (n + m)·r
    /// floats, are less than 1/2 of its n·m.
    public static let minimumCompressionRate = 2

    struct Matrix {
        let name: String
        /// Its gradient's elements in the arena.
        let range: Range<Int>
        let rows: Int, columns: Int
        /// Its approximation rank: `rank`, or less for a matrix narrower than that.
        let rank: Int
        /// Where its P (rows × rank) lies in `scratch`, and its Q (columns × rank) in `qs`.
        let p: Int, q: Int
    }

    struct Bucket {
        let matrices: [Matrix]
        /// Arena ranges that travel as they are, at the start of the bucket's part of `scratch`.
        let uncompressed: [Range<Int>]
        /// The first all-reduce's buffer: the uncompressed values, then every P.
        let scratch: Range<Int>
        /// The second all-reduce's: every Q, back to back.
        let qs: Range<Int>
    }

    public let communicator: Communicator
    public let arena: ParameterArena
    /// `--powersgd-rank`.
    public let rank: Int
    /// `--powersgd-start-step`: steps before it are all-reduced uncompressed.
    public let startStep: Int
    let seed: UInt64
    let buckets: [Bucket]
    /// This rank's error feedback, at the arena's offsets (zero outside the compressed matrices).
    let errors: TensorStorage
    let qs: TensorStorage
    let scratch: TensorStorage

    /// Values on the wire per step, counting each all-reduce's buffer once, against the arena's.
    public var valuesPerStep: Int { buckets.reduce(0) { $0 + $1.scratch.count + $1.qs.count } }
    public var compressedMatrixCount: Int { buckets.reduce(0) { $0 + $1.matrices.count } }
    /// Extra multiply-adds a step over plain data parallelism: M·Q, M^T·P and P·Q^T for every matrix.
    public var extraFlops: Int { buckets.reduce(0) { $0 + $1.matrices.reduce(0) { $0 + 6 * $1.rows * $1.columns * $1.rank } } }

    /// `buckets`: the reducer's (`GradientReducer.buckets`), whose slots are whole parameters.
    public init(communicator: Communicator, arena: ParameterArena, buckets: [Range<Int>], rank: Int, startStep: Int, seed: UInt64) {
        precondition(rank >= 1, "PowerSGD: rank \(rank) must be at least 1")
        self.communicator = communicator
        self.arena = arena
        self.rank = rank
        self.startStep = startStep
        self.seed = seed
        var plans: [Bucket] = []
        var scratchCount = 0, qCount = 0
        for range in buckets {
            var matrices: [Matrix] = [], uncompressed: [Range<Int>] = []
            var matrixShapes: [(ParameterSlot, Int, Int, Int)] = []
            for slot in arena.slots where range.contains(slot.range.lowerBound) {
                let rows = slot.shape.first ?? 1, columns = slot.range.count / max(rows, 1)
                let r = min(rank, rows, columns)
                if slot.shape.count >= 2 && (rows + columns) * r * Self.minimumCompressionRate < rows * columns {
                    matrixShapes.append((slot, rows, columns, r))
                } else {
                    uncompressed.append(slot.range)
                }
            }
            let scratchStart = scratchCount, qStart = qCount
            scratchCount += uncompressed.reduce(0) { $0 + $1.count }
            for (slot, rows, columns, r) in matrixShapes {
                matrices.append(Matrix(name: slot.name, range: slot.range, rows: rows, columns: columns, rank: r, p: scratchCount, q: qCount))
                scratchCount += rows * r
                qCount += columns * r
            }
            plans.append(Bucket(matrices: matrices, uncompressed: uncompressed, scratch: scratchStart..<scratchCount, qs: qStart..<qCount))
        }
        self.buckets = plans
        errors = TensorStorage(count: arena.count)
        qs = TensorStorage(count: qCount)
        scratch = TensorStorage(count: scratchCount)
        reset()
    }

    /// The state of a fresh run: no error, every Q drawn from the run's seed (the same on every
    /// rank) and orthonormalised. Also after a step that was skipped for a non-finite gradient,
    /// whose NaN would otherwise stay in the error and Q for good.
    public func reset() {
        errors.pointer.update(repeating: 0, count: arena.count)
        var generator = SeededGenerator(seed: seed, 0x5057_5347_4451)  // "PWSGDQ"
        for bucket in buckets {
            for matrix in bucket.matrices {
                let q = qs.pointer + matrix.q
                for index in 0..<(matrix.columns * matrix.rank) { q[index] = generator.nextNormal() }
                Self.orthonormalizeColumns(q, rows: matrix.columns, columns: matrix.rank)
            }
        }
    }

    // MARK: - The two all-reduces of a bucket

    /// Adds the error to the bucket's matrix gradients, forms every P and starts the all-reduce
    /// of the uncompressed values and the Ps; when it completes, the values go back and every
    /// P is orthonormalised and Q = M^T·P formed, ready for `startSecondPhase`.
    func startFirstPhase(bucket index: Int, planner: CollectivePlanner = .library) throws -> PendingCollective {
        let bucket = buckets[index]
        let gradients = arena.gradients.pointer, buffer = scratch.pointer
        var offset = bucket.scratch.lowerBound
        for range in bucket.uncompressed {
            (buffer + offset).update(from: gradients + range.lowerBound, count: range.count)
            offset += range.count
        }
        for matrix in bucket.matrices {
            let m = gradients + matrix.range.lowerBound
            BLAS.saxpy(count: matrix.range.count, alpha: 1, x: errors.pointer + matrix.range.lowerBound, y: m)
            BLAS.sgemm(m: matrix.rows, n: matrix.rank, k: matrix.columns, a: m, lda: matrix.columns,
                       b: qs.pointer + matrix.q, ldb: matrix.rank, c: buffer + matrix.p, ldc: matrix.rank)
        }
        let started = try communicator.startAllReduce(UnsafeMutableBufferPointer(start: buffer + bucket.scratch.lowerBound, count: bucket.scratch.count), .sum,
                                                      schedule: planner.schedule(bytes: 4 * bucket.scratch.count))
        return CompletingCollective(started) { [self] in
            var offset = bucket.scratch.lowerBound
            for range in bucket.uncompressed {
                (gradients + range.lowerBound).update(from: buffer + offset, count: range.count)
                offset += range.count
            }
            for matrix in bucket.matrices {
                let p = buffer + matrix.p
                Self.orthonormalizeColumns(p, rows: matrix.rows, columns: matrix.rank)
                BLAS.sgemm(m: matrix.columns, n: matrix.rank, k: matrix.rows, a: gradients + matrix.range.lowerBound, lda: matrix.columns,
                           transposingA: true, b: p, ldb: matrix.rank, c: qs.pointer + matrix.q, ldc: matrix.rank)
            }
        }
    }

    /// Starts the all-reduce of the bucket's Qs (after its first phase completed); when it
    /// completes, every matrix gradient becomes P·Q^T and the error what that leaves of M.
    func startSecondPhase(bucket index: Int, planner: CollectivePlanner = .library) throws -> PendingCollective {
        let bucket = buckets[index]
        let started = try communicator.startAllReduce(UnsafeMutableBufferPointer(start: qs.pointer + bucket.qs.lowerBound, count: bucket.qs.count), .sum,
                                                      schedule: planner.schedule(bytes: 4 * bucket.qs.count))
        let share = -1 / Float(communicator.size)
        return CompletingCollective(started) { [self] in
            for matrix in bucket.matrices {
                let m = arena.gradients.pointer + matrix.range.lowerBound, error = errors.pointer + matrix.range.lowerBound
                error.update(from: m, count: matrix.range.count)
                BLAS.sgemm(m: matrix.rows, n: matrix.columns, k: matrix.rank, a: scratch.pointer + matrix.p, lda: matrix.rank,
                           b: qs.pointer + matrix.q, ldb: matrix.rank, transposingB: true, c: m, ldc: matrix.columns)
                BLAS.saxpy(count: matrix.range.count, alpha: share, x: m, y: error)
            }
        }
    }

    /// Gram-Schmidt on the columns of a row-major rows×columns matrix (PyTorch's
    /// `_orthogonalize_gram_schmidt`, in Double sums): each column made orthogonal to those before
    /// it, then of unit length. A column that vanishes stays zero (its direction is not sent).
    static func orthonormalizeColumns(_ matrix: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        for k in 0..<columns {
            for j in 0..<k {
                var dot = 0.0
                for i in 0..<rows { dot += Double(matrix[i * columns + k]) * Double(matrix[i * columns + j]) }
                let d = Float(dot)
                for i in 0..<rows { matrix[i * columns + k] -= d * matrix[i * columns + j] }
            }
            var squares = 0.0
            for i in 0..<rows { squares += Double(matrix[i * columns + k]) * Double(matrix[i * columns + k]) }
            guard squares > 0 else { continue }
            let scale = Float(1 / squares.squareRoot())
            for i in 0..<rows { matrix[i * columns + k] *= scale }
        }
    }

    // MARK: - Checkpoints

    static func qName(_ matrix: String) -> String { "powersgd.q.\(matrix)" }
    static func errorName(rank: Int) -> String { "powersgd.error.\(rank)" }
    /// Error elements broadcast at once when a checkpoint gathers them.
    static let checkpointChunk = 1 << 20

    /// The state as `compression.safetensors`: every compressed matrix's Q as
    /// `powersgd.q.<parameter>` [m, r], then each rank's error as `powersgd.error.<rank>`
    /// [parameters], which its rank broadcasts a chunk at a time while rank 0 writes it. Every
    /// rank produces it (rank 0 into the file, the others with `finish()`).
    public func checkpointStream() -> TensorStream {
        let matrices = buckets.flatMap(\.matrices).sorted { $0.range.lowerBound < $1.range.lowerBound }
        let ranks = communicator.size
        let entries = matrices.map { (name: Self.qName($0.name), shape: [$0.columns, $0.rank]) }
            + (0..<ranks).map { (name: Self.errorName(rank: $0), shape: [arena.count]) }
        return TensorStream(entries: entries) { [self] index, write in
            if index < matrices.count {
                let matrix = matrices[index]
                try write(UnsafeRawBufferPointer(start: qs.pointer + matrix.q, count: matrix.columns * matrix.rank * MemoryLayout<Float>.stride))
                return
            }
            try writeError(ofRank: index - matrices.count, write: write)
        }
    }

    /// Rank `owner`'s error buffer to `write` (rank 0's file): rank 0's own directly, another's
    /// broadcast from it a chunk at a time. Every chunk's broadcast runs even after `write` threw.
    func writeError(ofRank owner: Int, write: (UnsafeRawBufferPointer) throws -> Void) throws {
        if owner == 0 {
            guard communicator.isRoot else { return }
            try write(UnsafeRawBufferPointer(start: errors.pointer, count: arena.count * MemoryLayout<Float>.stride))
            return
        }
        var failure: Error?
        let chunk = Tensor(zeros: [min(Self.checkpointChunk, max(arena.count, 1))])
        for start in stride(from: 0, to: arena.count, by: Self.checkpointChunk) {
            let count = min(Self.checkpointChunk, arena.count - start)
            let bytes = UnsafeMutableRawBufferPointer(start: chunk.data, count: count * MemoryLayout<Float>.stride)
            if communicator.rank == owner { chunk.data.update(from: errors.pointer + start, count: count) }
            try communicator.broadcast(bytes, from: owner)
            if failure == nil {
                do { try write(UnsafeRawBufferPointer(bytes)) } catch { failure = error }
            }
        }
        if let failure { throw failure }
    }

    /// Loads the state a checkpoint's `compression.safetensors` holds. A Q whose matrix is not
    /// compressed the same way (another `--powersgd-rank`) is drawn afresh. Written on as many
    /// ranks as now, each rank takes its own error; on another rank count, each takes the saved
    /// errors' sum over the ranks now, so that the ranks' errors still sum to what was not sent.
    /// Returns what a notice should say, or nil when the state was taken as it is.
    public func restore(from url: URL) throws -> String? {
        let file = try SafeTensors.Mapped(url)
        var notes: [String] = []
        var fresh = 0
        for matrix in buckets.flatMap(\.matrices) {
            let name = Self.qName(matrix.name)
            guard file.shapes[name] == [matrix.columns, matrix.rank] else { fresh += 1; continue }
            let tensor = file.tensor(name)
            (qs.pointer + matrix.q).update(from: tensor.data, count: tensor.count)
        }
        if fresh > 0 { notes.append("\(fresh) warm-start matrices drawn afresh (their rank or shape differs from the checkpoint's)") }
        let saved = file.order.filter { $0.hasPrefix("powersgd.error.") }
        for rank in saved.indices {
            guard file.shapes[Self.errorName(rank: rank)] == [arena.count] else {
                throw UserError("\(url.path): lacks \(Self.errorName(rank: rank)) of \(arena.count) elements; the checkpoint is damaged or of another model")
            }
        }
        guard !saved.isEmpty else { throw UserError("\(url.path): holds no powersgd.error tensors; the checkpoint is damaged") }
        let ranges = buckets.flatMap(\.matrices).map(\.range)
        errors.pointer.update(repeating: 0, count: arena.count)
        if saved.count == communicator.size {
            scatter(file.elements(of: Self.errorName(rank: communicator.rank), at: ranges), into: ranges)
        } else {
            for rank in saved.indices {
                scatter(file.elements(of: Self.errorName(rank: rank), at: ranges), into: ranges, addingTimes: 1 / Float(communicator.size))
            }
            notes.append("the error feedback of \(saved.count) ranks is shared among \(communicator.size)")
        }
        return notes.isEmpty ? nil : notes.joined(separator: "; ")
    }

    /// Copies back-to-back values into the error buffer at `ranges` (or adds them times `addingTimes`).
    private func scatter(_ values: Tensor, into ranges: [Range<Int>], addingTimes scale: Float? = nil) {
        var offset = 0
        for range in ranges {
            let destination = errors.pointer + range.lowerBound, source = values.data + offset
            if let scale {
                BLAS.saxpy(count: range.count, alpha: scale, x: source, y: destination)
            } else {
                destination.update(from: source, count: range.count)
            }
            offset += range.count
        }
    }
}
