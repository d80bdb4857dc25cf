import Foundation
import ReplicaCore

// Optimisers update the flat arena in one pass per slot (llm.c's `gpt2_update`), 8 lanes at a
// time; a slot's only role is whether weight decay applies to it (`ParameterSlot.decays`).
// State buffers are flat, allocated on the first step or load: [arena.count] in arena order, or,
// under ZeRO-1, only the ranges this rank owns, back to back.

/// Updates the parameters of an arena from their gradients, in one pass over the flat buffers.
public protocol Optimizer: AnyObject {
    /// Applies one update with `learningRate` to `arena.values` from `arena.gradients` at `ranges`
    /// (ascending, disjoint arena ranges: ZeRO-1's shard), whose state this optimizer holds back
    /// to back in that order. The same ranges every step.
    func step(arena: ParameterArena, learningRate: Float, ranges: [Range<Int>])
    /// Updates applied so far (PyTorch's `state["step"]`).
    var stepCount: Int { get }
    /// The state itself, not a copy: flat buffers (one element per parameter it updates) and
    /// "step" [1]. Valid until the next `step` or `load`; read it, do not change it (a checkpoint
    /// streams it to its file without holding a second copy).
    func stateBuffers() -> [String: Tensor]
    /// Restores what `state()` returned; throws `UserError` when a tensor is missing or mis-sized.
    func load(state: [String: Tensor]) throws
}

extension Optimizer {
    /// Copies of the state: what `stateBuffers()` holds, kept intact by later steps.
    public func state() -> [String: Tensor] { stateBuffers().mapValues { $0.copy() } }

    /// One update of every parameter of `arena`.
    public func step(arena: ParameterArena, learningRate: Float) {
        step(arena: arena, learningRate: learningRate, ranges: [0..<arena.count])
    }

    /// Like `load(state:)`, first checking that every buffer has one element per parameter of `arena`.
    public func load(state: [String: Tensor], arena: ParameterArena) throws {
        for (name, tensor) in state.sorted(by: { $0.key < $1.key }) where name != stepStateName {
            guard tensor.count == arena.count else {
                throw UserError("optimizer state \"\(name)\" has \(tensor.count) elements but the model has "
                    + "\(arena.count) parameters; the checkpoint belongs to a different model configuration.")
            }
        }
        try load(state: state)
    }
}

// MARK: - SGD

/// Stochastic gradient descent with optional momentum and Nesterov (torch.optim.SGD, dampening 0).
///
/// Per element: g += wd·θ (slots with `decays` only); buf = μ·buf + g; d = nesterov ? g + μ·buf : buf;
/// θ -= lr·d. State: "momentum" [count] (only when μ ≠ 0), "step" [1].
public final class SGD: Optimizer {
    public let momentum: Float
    public let nesterov: Bool
    public let weightDecay: Float
    public private(set) var stepCount = 0
    var momentumBuffer: Tensor?   // [count]

    public init(momentum: Float = 0, nesterov: Bool = false, weightDecay: Float = 0) {
        precondition(momentum >= 0 && weightDecay >= 0, "SGD: momentum \(momentum) and weight decay \(weightDecay) must be non-negative")
        precondition(!nesterov || momentum > 0, "SGD: Nesterov momentum requires momentum > 0")
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
    }

    public func step(arena: ParameterArena, learningRate: Float, ranges: [Range<Int>]) {
        precondition(arena.isAllocated, "SGD.step before ParameterArena.allocate()")
        let stateCount = ranges.reduce(0) { $0 + $1.count }
        if momentum != 0 && momentumBuffer == nil { momentumBuffer = Tensor(zeros: [stateCount]) }
        if let momentumBuffer {
            precondition(momentumBuffer.count == stateCount,
                         "SGD state has \(momentumBuffer.count) elements, the parameters to update \(stateCount)")
        }
        stepCount += 1
        let values = arena.values.pointer, gradients = arena.gradients.pointer
        let buffer = momentumBuffer?.data
        let mu = SIMD8<Float>(repeating: momentum), lr = SIMD8<Float>(repeating: learningRate)
        let nesterov = self.nesterov
        forEachSegmentInParallel(of: arena, in: ranges) { slot, segment, stateOffset in
            let decay = SIMD8<Float>(repeating: slot.decays ? weightDecay : 0)
            let base = segment.lowerBound
            let state = buffer.map { $0 + stateOffset }
            forEachChunk(count: segment.count) { offset, lanes in
                let i = base + offset
                let theta = loadChunk(values + i, lanes)
                var g = loadChunk(gradients + i, lanes) + decay * theta
                if let state {
                    let b = mu * loadChunk(state + offset, lanes) + g
                    storeChunk(b, state + offset, lanes)
                    g = nesterov ? g + mu * b : b
                }
                storeChunk(theta - lr * g, values + i, lanes)
            }
        }
    }

    public func stateBuffers() -> [String: Tensor] {
        var result = [stepStateName: stepTensor(stepCount)]
        if let momentumBuffer { result["momentum"] = momentumBuffer }
        return result
    }

    public func load(state: [String: Tensor]) throws {
        let step = try decodeStep(state, optimizer: "SGD")
        if momentum != 0 {
            momentumBuffer = try step == 0 && state["momentum"] == nil ? nil
                : restoredBuffer("momentum", from: state, optimizer: "SGD", replacing: momentumBuffer)
        }
        stepCount = step
    }
}

// MARK: - Adam and AdamW

/// Adam with L2 weight decay added to the gradient (torch.optim.Adam, bias correction included).
///
/// Per element: g += wd·θ (slots with `decays` only); m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
/// θ -= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε). State: "exp_avg", "exp_avg_sq" [count], "step" [1].
public class Adam: Optimizer {
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    public let weightDecay: Float
    /// AdamW: θ *= 1 − lr·wd before the update instead of adding wd·θ to the gradient.
    public let decouplesWeightDecay: Bool
    public private(set) var stepCount = 0
    var firstMoment: Tensor?    // m [count], PyTorch's exp_avg
    var secondMoment: Tensor?   // v [count], PyTorch's exp_avg_sq

    public convenience init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.init(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay, decouplesWeightDecay: false)
    }

    init(beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float, decouplesWeightDecay: Bool) {
        precondition((0..<1).contains(beta1) && (0..<1).contains(beta2), "Adam: betas must lie in [0, 1), got \(beta1), \(beta2)")
        precondition(epsilon >= 0 && weightDecay >= 0, "Adam: epsilon \(epsilon) and weight decay \(weightDecay) must be non-negative")
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decouplesWeightDecay = decouplesWeightDecay
    }

    var name: String { decouplesWeightDecay ? "AdamW" : "Adam" }

    public func step(arena: ParameterArena, learningRate: Float, ranges: [Range<Int>]) {
        precondition(arena.isAllocated, "\(name).step before ParameterArena.allocate()")
        let stateCount = ranges.reduce(0) { $0 + $1.count }
        if firstMoment == nil { firstMoment = Tensor(zeros: [stateCount]) }
        if secondMoment == nil { secondMoment = Tensor(zeros: [stateCount]) }
        guard let firstMoment, let secondMoment else { return }
        precondition(firstMoment.count == stateCount && secondMoment.count == stateCount,
                     "\(name) state has \(firstMoment.count) elements, the parameters to update \(stateCount)")
        stepCount += 1
        // Scalars in Double as PyTorch computes them in Python, then rounded to Float once.
        let t = Double(stepCount)
        let biasCorrection1 = 1 - pow(Double(beta1), t)
        let biasCorrection2 = 1 - pow(Double(beta2), t)
        let stepSize = SIMD8<Float>(repeating: Float(Double(learningRate) / biasCorrection1))
        let correction2Root = SIMD8<Float>(repeating: Float(biasCorrection2.squareRoot()))
        let b1 = SIMD8<Float>(repeating: 1 - beta1), b2 = SIMD8<Float>(repeating: beta2)
        let oneMinusB2 = SIMD8<Float>(repeating: 1 - beta2), eps = SIMD8<Float>(repeating: epsilon)
        let values = arena.values.pointer, gradients = arena.gradients.pointer
        forEachSegmentInParallel(of: arena, in: ranges) { slot, segment, stateOffset in
            let decay = slot.decays ? weightDecay : 0
            let l2 = SIMD8<Float>(repeating: decouplesWeightDecay ? 0 : decay)
            let shrink = SIMD8<Float>(repeating: decouplesWeightDecay ? Float(1 - Double(learningRate) * Double(decay)) : 1)
            let base = segment.lowerBound
            let m = firstMoment.data + stateOffset, v = secondMoment.data + stateOffset
            forEachChunk(count: segment.count) { offset, lanes in
                let i = base + offset
                var theta = loadChunk(values + i, lanes)
                let g = loadChunk(gradients + i, lanes) + l2 * theta
                theta = theta * shrink
                var mi = loadChunk(m + offset, lanes)
                mi = mi + b1 * (g - mi)                                  // lerp, as torch's exp_avg.lerp_
                let vi = b2 * loadChunk(v + offset, lanes) + oneMinusB2 * (g * g)
                let denominator = squareRoot8(vi) / correction2Root + eps
                storeChunk(mi, m + offset, lanes)
                storeChunk(vi, v + offset, lanes)
                storeChunk(theta - stepSize * (mi / denominator), values + i, lanes)
            }
        }
    }

    public func stateBuffers() -> [String: Tensor] {
        var result = [stepStateName: stepTensor(stepCount)]
        if let firstMoment { result["exp_avg"] = firstMoment }
        if let secondMoment { result["exp_avg_sq"] = secondMoment }
        return result
    }

    public func load(state: [String: Tensor]) throws {
        let step = try decodeStep(state, optimizer: name)
        if step == 0 && state["exp_avg"] == nil && state["exp_avg_sq"] == nil {
            firstMoment = nil
            secondMoment = nil
            stepCount = 0
            return
        }
        let m = try restoredBuffer("exp_avg", from: state, optimizer: name, replacing: firstMoment)
        let v = try restoredBuffer("exp_avg_sq", from: state, optimizer: name, replacing: secondMoment)
        guard m.count == v.count else {
            throw UserError("\(name) state: exp_avg has \(m.count) elements but exp_avg_sq \(v.count); "
                + "the optimizer checkpoint is corrupt.")
        }
        firstMoment = m
        secondMoment = v
        stepCount = step
    }
}

/// AdamW: Adam with decoupled weight decay θ *= 1 − lr·wd on slots with `decays` (torch.optim.AdamW).
public final class AdamW: Adam {
    public init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        super.init(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay, decouplesWeightDecay: true)
    }
}

// MARK: - Gradient norm

/// The global L2 norm of all gradients, accumulated in Double.
public func gradientNorm(arena: ParameterArena) -> Float {
    Float(gradientSquaredSum(arena: arena, ranges: [0..<arena.count]).squareRoot())
}

/// Σ g² over the gradients at `ranges`, in Double, 8 lanes at a time (ZeRO-1: one rank's shard,
/// whose sums the ranks then add).
public func gradientSquaredSum(arena: ParameterArena, ranges: [Range<Int>]) -> Double {
    let gradients = arena.gradients.pointer
    // One partial sum a thread (its part of the elements), added in order.
    let total = ranges.reduce(0) { $0 + $1.count }
    return ComputePool.sum(count: total, grain: elementsPerThread) { share in
        var sums = SIMD8<Double>()
        for piece in pieces(of: ranges, within: share) {
            forEachChunk(count: piece.count) { i, lanes in
                let g = SIMD8<Double>(loadChunk(gradients + piece.lowerBound + i, lanes))
                sums += g * g
            }
        }
        return sums.sum()
    }
}

/// Scales all gradients by maxNorm/(norm + 1e-6) when that is below 1; returns the norm before clipping.
///
/// As torch.nn.utils.clip_grad_norm_; a non-finite norm is returned and the gradients scaled by
/// it, so the caller decides whether to skip the step.
@discardableResult
public func clipGradientNorm(arena: ParameterArena, maxNorm: Float) -> Float {
    let norm = gradientNorm(arena: arena)
    clipGradients(arena: arena, ranges: [0..<arena.count], norm: norm, maxNorm: maxNorm)
    return norm
}

/// Scales the gradients at `ranges` by maxNorm/(norm + 1e-6) when that is below 1, given the
/// global `norm` (ZeRO-1 clips each rank's shard by the norm of all of them).
public func clipGradients(arena: ParameterArena, ranges: [Range<Int>], norm: Float, maxNorm: Float) {
    precondition(maxNorm > 0, "clipGradients: maxNorm must be positive, got \(maxNorm)")
    let coefficient = Float(Double(maxNorm) / (Double(norm) + 1e-6))
    guard !(coefficient >= 1) else { return }
    let gradients = arena.gradients.pointer, scale = SIMD8<Float>(repeating: coefficient)
    forEachSegmentInParallel(of: arena, in: ranges) { _, segment, _ in
        forEachChunk(count: segment.count) { i, lanes in
            let g = gradients + segment.lowerBound + i
            storeChunk(loadChunk(g, lanes) * scale, g, lanes)
        }
    }
}

// MARK: - Helpers

/// The key under which `state()` stores the step count, as a [1] tensor.
private let stepStateName = "step"

/// The step count as a [1] tensor; exact below 2²⁴ steps, as PyTorch's float32 `state["step"]`.
private func stepTensor(_ step: Int) -> Tensor { Tensor(shape: [1], values: [Float(step)]) }

private func decodeStep(_ state: [String: Tensor], optimizer: String) throws -> Int {
    guard let tensor = state[stepStateName] else {
        throw UserError("\(optimizer) state has no \"step\" tensor; the optimizer checkpoint is incomplete.")
    }
    guard tensor.count == 1, tensor[0] >= 0, tensor[0] < 0x1p62, tensor[0].rounded() == tensor[0] else {
        throw UserError("\(optimizer) state: \"step\" must be one non-negative integer, got \(tensor).")
    }
    return Int(tensor[0])
}

/// A copy of `state[name]`, checked against the buffer it replaces (when there is one).
private func restoredBuffer(_ name: String, from state: [String: Tensor], optimizer: String, replacing current: Tensor?) throws -> Tensor {
    guard let tensor = state[name] else {
        let present = state.keys.sorted().joined(separator: ", ")
        throw UserError("\(optimizer) state has no \"\(name)\" tensor (found: \(present)); "
            + "was the checkpoint written with another optimizer?")
    }
    if let current, current.count != tensor.count {
        throw UserError("\(optimizer) state \"\(name)\" has \(tensor.count) elements but the optimizer holds \(current.count).")
    }
    return tensor.copy().reshaped([tensor.count])
}

/// `forEachSegment` with the state split across the rank's threads: each takes a contiguous part
/// of the elements (an element-wise update, so the result does not depend on the split).
func forEachSegmentInParallel(of arena: ParameterArena, in ranges: [Range<Int>], _ body: (ParameterSlot, Range<Int>, Int) -> Void) {
    let total = ranges.reduce(0) { $0 + $1.count }
    ComputePool.forEachRange(count: total, grain: elementsPerThread) { part in
        forEachSegment(of: arena, in: pieces(of: ranges, within: part)) { slot, segment, stateOffset in
            body(slot, segment, part.lowerBound + stateOffset)
        }
    }
}

/// The arena ranges that hold elements `share` of `ranges` laid back to back (a thread's part of
/// the state, in arena offsets).
private func pieces(of ranges: [Range<Int>], within share: Range<Int>) -> [Range<Int>] {
    var pieces: [Range<Int>] = [], offset = 0
    for range in ranges {
        let lower = max(share.lowerBound, offset), upper = min(share.upperBound, offset + range.count)
        if lower < upper { pieces.append((range.lowerBound + lower - offset)..<(range.lowerBound + upper - offset)) }
        offset += range.count
    }
    return pieces
}

/// Calls `body(slot, segment, stateOffset)` for every part of `ranges` (ascending, disjoint) that
/// lies in one slot, in arena order; `stateOffset` is where that part's state begins in buffers
/// that hold `ranges` back to back.
func forEachSegment(of arena: ParameterArena, in ranges: [Range<Int>], _ body: (ParameterSlot, Range<Int>, Int) -> Void) {
    var stateOffset = 0, slotIndex = 0
    let slots = arena.slots
    for range in ranges {
        precondition(range.lowerBound >= 0 && range.upperBound <= arena.count, "optimizer range \(range) outside the arena of \(arena.count)")
        while slotIndex < slots.count && slots[slotIndex].range.upperBound <= range.lowerBound { slotIndex += 1 }
        var index = slotIndex
        while index < slots.count && slots[index].range.lowerBound < range.upperBound {
            let segment = max(range.lowerBound, slots[index].range.lowerBound)..<min(range.upperBound, slots[index].range.upperBound)
            if !segment.isEmpty { body(slots[index], segment, stateOffset + segment.lowerBound - range.lowerBound) }
            index += 1
        }
        stateOffset += range.count
    }
}
