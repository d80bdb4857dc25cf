import ReplicaCore

/// x for x > 0, a·x otherwise, with one learnable slope a shared by every element, as PyTorch's
/// nn.PReLU() (GraphMAE's activation). [...] -> [...]
///
/// Parameter: `\(name).weight` [1], initialised to 0.25 (PyTorch's default), without weight decay.
public final class PReLU: Layer {
    public let weight: ParameterSlot      // [1]
    let arena: ParameterArena
    var input: Tensor?                    // [...], cached by forward

    public init(_ name: String, arena: ParameterArena) {
        self.arena = arena
        weight = arena.declare("\(name).weight", shape: [1], decays: false)
    }

    /// The slope a; settable for tests.
    public var slope: Float {
        get { arena.value(weight)[0] }
        set { arena.value(weight)[0] = newValue }
    }

    /// a = `slope` (PyTorch's default 0.25).
    public func initialize(slope: Float = 0.25) { self.slope = slope }

    public func forward(_ input: Tensor) -> Tensor {
        self.input = input
        let output = Tensor(uninitialized: input.shape)
        let x = input.data, y = output.data, a = slope
        for i in 0..<input.count { let v = x[i]; y[i] = v > 0 ? v : a * v }
        return output
    }

    /// Adds da += Σ_{x ≤ 0} x·dy; returns dx = dy where x > 0, a·dy elsewhere.
    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = cachedInput(input, matching: outputGradient, layer: "PReLU")
        let inputGradient = Tensor(uninitialized: input.shape)
        let x = input.data, dy = outputGradient.data, dx = inputGradient.data, a = slope
        // da: Float lanes over chunks of 4096 elements, the chunks summed in Double (vectorised,
        // and the rounding stays that of a 4096-term sum).
        var slopeGradient = 0.0
        let count = input.count, zero = SIMD8<Float>(repeating: 0), slopes = SIMD8<Float>(repeating: a)
        var start = 0
        while start < count {
            let end = Swift.min(start + 4096, count)
            var lanes = SIMD8<Float>()
            var i = start
            while i + 8 <= end {
                let v = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
                let g = UnsafeRawPointer(dy + i).loadUnaligned(as: SIMD8<Float>.self)
                let negative = v .<= zero
                UnsafeMutableRawPointer(dx + i).storeBytes(of: g.replacing(with: slopes * g, where: negative), as: SIMD8<Float>.self)
                lanes += pointwiseMin(v, zero) * g
                i += 8
            }
            var partial = Double(lanes.sum())
            while i < end {
                let v = x[i], g = dy[i]
                dx[i] = v > 0 ? g : a * g
                partial += v > 0 ? 0 : Double(v * g)
                i += 1
            }
            slopeGradient += partial
            start = end
        }
        arena.gradient(weight)[0] += Float(slopeGradient)
        return inputGradient
    }
}
