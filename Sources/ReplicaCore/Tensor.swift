/// Contiguous float32 storage, 64-byte aligned so SIMD loads and BLAS kernels see aligned rows.
public final class TensorStorage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    private let allocatedBytes: Int

    /// Allocates `count` floats, zeroed unless `zeroed` is false (for buffers a kernel overwrites
    /// entirely). Large buffers come from and go back to `BufferCache`.
    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "TensorStorage needs a non-negative count, got \(count)")
        allocatedBytes = BufferCache.allocationBytes(for: max(count, 1) * MemoryLayout<Float>.stride)
        pointer = BufferCache.allocate(classBytes: allocatedBytes).bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
        self.count = count
    }

    deinit { BufferCache.release(UnsafeMutableRawPointer(pointer), classBytes: allocatedBytes) }
}

/// A float32 tensor: a shape over contiguous row-major storage.
///
/// A tensor is a view: copies of it share the same elements (like a NumPy view or an llm.c
/// pointer into the parameter buffer). Use `copy()` for an independent tensor.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    /// First element; `count` elements follow.
    public let data: UnsafeMutablePointer<Float>
    public let count: Int
    /// Keeps the elements alive.
    public let storage: TensorStorage

    /// A new zero tensor.
    public init(zeros shape: [Int]) {
        let count = Tensor.elementCount(shape)
        let storage = TensorStorage(count: count)
        self.init(shape: shape, storage: storage, offset: 0)
    }

    /// A new tensor whose elements are unspecified: only for outputs that are written in full
    /// (a gemm with beta 0, an elementwise map), which saves zeroing them on the hot path.
    public init(uninitialized shape: [Int]) {
        self.init(shape: shape, storage: TensorStorage(count: Tensor.elementCount(shape), zeroed: false), offset: 0)
    }

    /// A new tensor holding `values` (row-major).
    public init(shape: [Int], values: [Float]) {
        precondition(Tensor.elementCount(shape) == values.count,
                     "Tensor shape \(shape) needs \(Tensor.elementCount(shape)) values, got \(values.count)")
        self.init(zeros: shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A view of `Tensor.elementCount(shape)` elements of `storage` starting at `offset`.
    public init(shape: [Int], storage: TensorStorage, offset: Int) {
        let count = Tensor.elementCount(shape)
        precondition(offset >= 0 && offset + count <= storage.count,
                     "Tensor view \(shape) at \(offset) exceeds storage of \(storage.count)")
        self.shape = shape
        self.count = count
        self.storage = storage
        self.data = storage.pointer + offset
    }

    public static func elementCount(_ shape: [Int]) -> Int {
        shape.reduce(1) { count, dimension in
            precondition(dimension >= 0, "Tensor dimensions must be non-negative, got \(shape)")
            return count * dimension
        }
    }

    public var rank: Int { shape.count }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }
    public var scalars: [Float] { Array(buffer) }

    /// Rows when seen as a matrix: the product of all dimensions but the last.
    public var rowCount: Int { shape.isEmpty ? 1 : count / max(shape[shape.count - 1], 1) }
    /// Columns when seen as a matrix: the last dimension.
    public var columnCount: Int { shape.last ?? 1 }

    public subscript(index: Int) -> Float {
        get { data[index] }
        nonmutating set { data[index] = newValue }
    }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(Tensor.elementCount(newShape) == count, "Cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: newShape, storage: storage, offset: data - storage.pointer)
    }

    /// An independent copy.
    public func copy() -> Tensor {
        let result = Tensor(zeros: shape)
        result.data.update(from: data, count: count)
        return result
    }

    public func fill(_ value: Float) { data.update(repeating: value, count: count) }
    public func zero() { fill(0) }

    /// Copies `other`'s elements into this tensor (same element count).
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }
}

extension Tensor {
    /// The rows `rows` of this matrix, in that order. [N, W] -> [rows.count, W]
    public func gatheringRows(_ rows: [Int32]) -> Tensor {
        let W = columnCount
        let result = Tensor(uninitialized: [rows.count, W])
        for (index, row) in rows.enumerated() {
            (result.data + index * W).update(from: data + Int(row) * W, count: W)
        }
        return result
    }

    /// Writes row k of this matrix into row rows[k] of `target`. [rows.count, W] into [N, W]
    public func scatterRows(_ rows: [Int32], into target: Tensor) {
        let W = columnCount
        precondition(target.columnCount == W && rowCount == rows.count, "scatterRows: \(shape) into \(target.shape)")
        for (index, row) in rows.enumerated() {
            (target.data + Int(row) * W).update(from: data + index * W, count: W)
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = (0..<min(count, 8)).map { "\(data[$0])" }.joined(separator: ", ")
        return "Tensor(\(shape): [\(preview)\(count > 8 ? ", ..." : "")])"
    }
}
