import ReplicaCore
import ReplicaAVX512

/// Inverted dropout: zeroes each element with probability p, scales the rest by 1/(1 − p). [...] -> [...]
///
/// The mask is a pure function of (seed, rank, step, tag, element index): a key is derived once
/// per forward from `context` and `tag`, and element i is kept when the high 32 bits of
/// splitMix64(key ^ i) are at least p·2³². No generator state is advanced, so the mask is cheap
/// (one hash per element, no sequential dependency), reproducible, and the same for every forward
/// at the same context: advance `context.step` (for example per micro-batch) to draw a new mask.
/// Give each Dropout in a model its own tag. In evaluation mode, or with p = 0, it is the
/// identity and returns its argument itself (no copy).
public final class Dropout: Layer {
    public let probability: Float
    /// Distinguishes this layer's masks from those of the other dropout layers.
    public let tag: UInt64
    public var context: RandomContext
    public var mode: Mode

    /// The key of the last forward's mask (nil when that forward was the identity).
    var maskKey: UInt64?
    var shape: [Int]?                     // [...] of the last forward

    public init(probability: Float, tag: UInt64, context: RandomContext = RandomContext(seed: 0),
                mode: Mode = .training) {
        precondition(probability >= 0 && probability < 1, "Dropout probability must be in [0, 1), got \(probability)")
        self.probability = probability
        self.tag = tag
        self.context = context
        self.mode = mode
    }

    /// Whether this forward drops anything: training mode with p > 0.
    public var isActive: Bool { mode == .training && probability > 0 }

    /// The mask key for the current (seed, rank, step) and this layer's tag.
    var currentKey: UInt64 {
        var generator = context.generator(layer: tag)
        return generator.next()
    }

    /// Dropped elements stay at or below this value of the hash's high 32 bits.
    var threshold: UInt64 { keepThreshold(probability: probability) }

    public func forward(_ input: Tensor) -> Tensor {
        shape = input.shape
        guard isActive else {
            maskKey = nil
            return input   // the identity: no copy (callers must not mutate outputs they did not allocate)
        }
        let key = currentKey
        maskKey = key
        let output = Tensor(uninitialized: input.shape)
        applyMask(key: key, to: input.data, into: output.data, count: input.count)
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        guard let shape else { preconditionFailure("Dropout.backward before forward") }
        precondition(outputGradient.shape == shape,
                     "Dropout.backward expects a gradient of \(shape), got \(outputGradient.shape)")
        guard let maskKey else { return outputGradient }
        let inputGradient = Tensor(uninitialized: shape)
        applyMask(key: maskKey, to: outputGradient.data, into: inputGradient.data, count: outputGradient.count)
        return inputGradient
    }

    /// destination[i] = source[i] / (1 − p) where element i is kept, else 0, on the rank's threads
    /// (each element's mask depends on its index alone, so the split changes nothing). [count]
    func applyMask(key: UInt64, to source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
                   count: Int) {
        let threshold = threshold
        let scale = 1 / (1 - probability)
        let wide = ProcessorFeatures.usesAVX512Loops
        ComputePool.forEachRange(count: count, grain: elementsPerThread) { range in
            if wide {
                applyDropoutMaskAVX512(key: key, threshold: threshold, scale: scale, to: source, into: destination, range: range)
            } else {
                applyDropoutMask(key: key, threshold: threshold, scale: scale, to: source, into: destination, range: range)
            }
        }
    }
}
