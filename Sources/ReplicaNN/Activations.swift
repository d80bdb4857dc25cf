import ReplicaCore
import ReplicaAVX512

// Element-wise activations. Each sees its input as a flat run of elements, so any shape works
// ([N, C] or [B, T, C]); each caches in `forward` what its backward needs (its input; ReLU its
// output, GELU its derivative) and has no parameters.
// Loops are branch-free over raw pointers so the optimiser vectorises them.

/// An element-wise layer that writes into a tensor it is given, its argument included: the
/// `overwriting:` forms save a buffer (and the cache misses of writing a cold one) where the
/// caller no longer needs the argument.
public protocol ElementwiseLayer: Layer {
    /// forward, written into `output` (`input` itself allowed); returns `output`.
    func forward(_ input: Tensor, into output: Tensor) -> Tensor
    /// backward, written into `inputGradient` (`outputGradient` itself allowed); returns `inputGradient`.
    func backward(_ outputGradient: Tensor, into inputGradient: Tensor) -> Tensor
}

extension ElementwiseLayer {
    public func forward(_ input: Tensor) -> Tensor { forward(input, into: Tensor(uninitialized: input.shape)) }

    /// `forward` with the output written over `input`, which the caller must not need again.
    public func forward(overwriting input: Tensor) -> Tensor { forward(input, into: input) }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        backward(outputGradient, into: Tensor(uninitialized: outputGradient.shape))
    }

    /// `backward` with the input's gradient written over `outputGradient`.
    public func backward(overwriting outputGradient: Tensor) -> Tensor { backward(outputGradient, into: outputGradient) }
}

/// An element-wise kernel's destination holds as many elements as its source.
func checkElementwise(_ source: Tensor, _ destination: Tensor) {
    precondition(source.count == destination.count, "element-wise layer: \(source.shape) into \(destination.shape)")
}

/// max(x, 0), with gradient 0 at x ≤ 0 as PyTorch. [...] -> [...]
///
/// Backward needs only where the output is positive (x > 0 exactly when max(x, 0) > 0), so the
/// output is what it keeps, and `forward(overwriting:)` can write it over its input.
public final class ReLU: ElementwiseLayer {
    var output: Tensor?                   // [...], cached by forward

    public init() {}

    public func forward(_ input: Tensor, into output: Tensor) -> Tensor {
        checkElementwise(input, output)
        let x = input.data, y = output.data
        // In place, one pointer: the vectoriser's overlap check would send x == y to its scalar loop.
        if x == y {
            for i in 0..<input.count { x[i] = Swift.max(x[i], 0) }
        } else {
            for i in 0..<input.count { y[i] = Swift.max(x[i], 0) }
        }
        self.output = output
        return output
    }

    public func backward(_ outputGradient: Tensor, into inputGradient: Tensor) -> Tensor {
        checkElementwise(outputGradient, inputGradient)
        let output = cachedInput(output, matching: outputGradient, layer: "ReLU")
        let y = output.data, dy = outputGradient.data, dx = inputGradient.data
        if dx == dy {
            for i in 0..<output.count { dy[i] = y[i] > 0 ? dy[i] : 0 }
        } else {
            for i in 0..<output.count { dx[i] = y[i] > 0 ? dy[i] : 0 }
        }
        return inputGradient
    }
}

/// x for x > 0, slope·x otherwise (GAT uses 0.2; PyTorch's default is 0.01). [...] -> [...]
public final class LeakyReLU: Layer {
    public let slope: Float
    var input: Tensor?                    // [...], cached by forward

    public init(slope: Float = 0.2) { self.slope = slope }

    public func forward(_ input: Tensor) -> Tensor {
        self.input = input
        let output = Tensor(uninitialized: input.shape)
        let x = input.data, y = output.data, slope = slope
        for i in 0..<input.count { let v = x[i]; y[i] = v > 0 ? v : slope * v }
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = cachedInput(input, matching: outputGradient, layer: "LeakyReLU")
        let inputGradient = Tensor(uninitialized: input.shape)
        let x = input.data, dy = outputGradient.data, dx = inputGradient.data, slope = slope
        for i in 0..<input.count { let g = dy[i]; dx[i] = x[i] > 0 ? g : slope * g }
        return inputGradient
    }
}

/// x for x > 0, α·(eˣ − 1) otherwise, as PyTorch's nn.ELU. [...] -> [...]
public final class ELU: Layer {
    public let alpha: Float
    var input: Tensor?                    // [...], cached by forward

    public init(alpha: Float = 1) { self.alpha = alpha }

    public func forward(_ input: Tensor) -> Tensor {
        self.input = input
        let output = Tensor(uninitialized: input.shape)
        let x = input.data, y = output.data, alpha = alpha
        for i in 0..<input.count {
            let v = x[i]
            let negative = alpha * (fastExp(v) - 1)
            y[i] = v > 0 ? v : negative
        }
        return output
    }

    public func backward(_ outputGradient: Tensor) -> Tensor {
        let input = cachedInput(input, matching: outputGradient, layer: "ELU")
        let inputGradient = Tensor(uninitialized: input.shape)
        let x = input.data, dy = outputGradient.data, dx = inputGradient.data, alpha = alpha
        for i in 0..<input.count {
            let v = x[i], g = dy[i]
            let negative = g * alpha * fastExp(v)
            dx[i] = v > 0 ? g : negative
        }
        return inputGradient
    }
}

/// x·Φ(x) with Φ the standard normal CDF: the exact (erf) GELU, PyTorch's default nn.GELU(). [...] -> [...]
///
/// Φ comes from `normalCDF`, a vectorisable approximation with absolute error ≤ 1e-7 (erff's
/// own rounding gives ~6e-8) and relative error ≤ 5e-6 in the left tail, where the textbook
/// ½·(1 + erf(x/√2)) cancels. Forward computes the derivative Φ(x) + x·φ(x) along with the output
/// (one exp(−x²/2) serves Φ, φ and both) and caches it instead of the input, so backward is one
/// multiplication: the derivative costs two multiply-adds in forward, where recomputing it in
/// backward cost as much as the forward itself (an exp and a rational function per element).
/// The `overwriting:` forms write their result over their argument, saving a buffer (a
/// Transformer's [B·T, 4C]) and the cache misses of writing a cold one. Forward's loop runs as
/// ReplicaAVX512 compiled it on AMD's AVX-512 processors (the same results, bit for bit).
public final class GELU: ElementwiseLayer {
    var derivative: Tensor?               // [...] dy/dx, cached by forward

    public init() {}

    public func forward(_ input: Tensor, into output: Tensor) -> Tensor {
        checkElementwise(input, output)
        let derivative = Tensor(uninitialized: input.shape)
        let x = input.data, y = output.data, d = derivative.data
        let wide = ProcessorFeatures.usesAVX512Loops
        ComputePool.forEachRange(count: input.count, grain: elementsPerThread) { range in
            if wide {
                geluAndDerivativeAVX512(x, into: y, derivative: d, range: range)
            } else {
                geluAndDerivative(x, into: y, derivative: d, range: range)
            }
        }
        self.derivative = derivative
        return output
    }

    public func backward(_ outputGradient: Tensor, into inputGradient: Tensor) -> Tensor {
        checkElementwise(outputGradient, inputGradient)
        let derivative = cachedInput(derivative, matching: outputGradient, layer: "GELU")
        let d = derivative.data, dy = outputGradient.data, dx = inputGradient.data
        ComputePool.forEachRange(count: derivative.count, grain: elementsPerThread) { range in
            if dx == dy {
                for i in range { dy[i] *= d[i] }
            } else {
                for i in range { dx[i] = dy[i] * d[i] }
            }
        }
        return inputGradient
    }
}

/// The cached input, checked against the gradient coming back.
func cachedInput(_ input: Tensor?, matching outputGradient: Tensor, layer: String) -> Tensor {
    guard let input else { preconditionFailure("\(layer).backward before forward") }
    precondition(outputGradient.shape == input.shape,
                 "\(layer).backward expects a gradient of \(input.shape), got \(outputGradient.shape)")
    return input
}

// MARK: - Vectorisable kernels (the elementary functions are in ReplicaMath)

/// eˣ in float32 within 1 ulp (measured on [−87.3, 88.3]), branch-free so loops over it vectorise.
///
/// Cephes' expf: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in two for an exact product),
/// eʳ by a degree-7 polynomial, 2ⁿ assembled in the exponent bits. Gives 0 below −87.34
/// (where float32 results turn subnormal), +∞ above 88.38, NaN for NaN.
@inline(__always)
func fastExp(_ x: Float) -> Float { exponential(x) }

