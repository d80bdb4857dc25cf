/// Where one parameter tensor lives in the arena.
public struct ParameterSlot: Sendable, Hashable {
    public let name: String        // "transformer.h.3.attn.c_attn.weight"
    public let range: Range<Int>   // element offsets
    public let shape: [Int]        // [3C, C]
    /// Whether AdamW's decoupled weight decay applies (weights of matrices yes; biases, norms no).
    public let decays: Bool
}

/// One flat buffer each for parameter values and gradients, one layout (llm.c's
/// `malloc_and_point_parameters`). Layers hold slots; all-reduce buckets are ranges.
///
/// Declare every parameter (in forward order), then call `allocate()` once.
public final class ParameterArena: @unchecked Sendable {
    public private(set) var slots: [ParameterSlot] = []
    public private(set) var count = 0
    public private(set) var values = TensorStorage(count: 0)
    public private(set) var gradients = TensorStorage(count: 0)
    public private(set) var isAllocated = false
    /// Non-trained state (BatchNorm running statistics): saved in checkpoints, broadcast at
    /// start-up, never all-reduced as gradients.
    public private(set) var bufferSlots: [ParameterSlot] = []
    public private(set) var bufferCount = 0
    public private(set) var buffers = TensorStorage(count: 0)

    public init() {}

    /// Reserves a parameter of `shape`; its values and gradients exist after `allocate()`.
    @discardableResult
    public func declare(_ name: String, shape: [Int], decays: Bool) -> ParameterSlot {
        precondition(!isAllocated, "ParameterArena: declare \(name) before allocate()")
        precondition(!slots.contains { $0.name == name }, "ParameterArena: \(name) declared twice")
        let size = Tensor.elementCount(shape)
        let slot = ParameterSlot(name: name, range: count..<(count + size), shape: shape, decays: decays)
        slots.append(slot)
        count += size
        return slot
    }

    /// Reserves a buffer (state that is not trained) of `shape`, zero until set.
    @discardableResult
    public func declareBuffer(_ name: String, shape: [Int]) -> ParameterSlot {
        precondition(!isAllocated, "ParameterArena: declare buffer \(name) before allocate()")
        precondition(!bufferSlots.contains { $0.name == name }, "ParameterArena: buffer \(name) declared twice")
        let size = Tensor.elementCount(shape)
        let slot = ParameterSlot(name: name, range: bufferCount..<(bufferCount + size), shape: shape, decays: false)
        bufferSlots.append(slot)
        bufferCount += size
        return slot
    }

    public func buffer(_ slot: ParameterSlot) -> Tensor {
        Tensor(shape: slot.shape, storage: buffers, offset: slot.range.lowerBound)
    }

    /// All buffers as one tensor [bufferCount].
    public var allBuffers: Tensor { Tensor(shape: [bufferCount], storage: buffers, offset: 0) }

    public func allocate() {
        precondition(!isAllocated, "ParameterArena allocated twice")
        values = TensorStorage(count: count)
        gradients = TensorStorage(count: count)
        buffers = TensorStorage(count: bufferCount)
        isAllocated = true
    }

    public func value(_ slot: ParameterSlot) -> Tensor {
        Tensor(shape: slot.shape, storage: values, offset: slot.range.lowerBound)
    }

    public func gradient(_ slot: ParameterSlot) -> Tensor {
        Tensor(shape: slot.shape, storage: gradients, offset: slot.range.lowerBound)
    }

    public func slot(named name: String) -> ParameterSlot? { slots.first { $0.name == name } }

    /// All values as one tensor [count].
    public var allValues: Tensor { Tensor(shape: [count], storage: values, offset: 0) }
    /// All gradients as one tensor [count].
    public var allGradients: Tensor { Tensor(shape: [count], storage: gradients, offset: 0) }

    public func zeroGradients() {
        let pointer = gradients.pointer
        ComputePool.forEachRange(count: count, grain: 1 << 16) { range in (pointer + range.lowerBound).update(repeating: 0, count: range.count) }
    }

    /// Contiguous ranges of at most `maxBytes` (at least one slot each), last parameter first,
    /// as PyTorch DDP buckets gradients: the first bucket is the first one backward completes.
    public func buckets(maxBytes: Int) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var upper = count
        var lower = count
        for slot in slots.reversed() {
            let wouldBe = (upper - slot.range.lowerBound) * MemoryLayout<Float>.stride
            if lower < upper && wouldBe > maxBytes {
                result.append(lower..<upper)
                upper = lower
            }
            lower = slot.range.lowerBound
        }
        if lower < upper { result.append(lower..<upper) }
        return result
    }
}
