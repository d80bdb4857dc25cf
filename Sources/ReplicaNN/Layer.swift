import ReplicaCore

/// A layer with an explicit forward and backward pass.
///
/// `forward` caches what `backward` needs (inside the layer, like llm.c's activation buffers);
/// `backward` *adds* parameter gradients into the arena (so accumulation is free; zero once per
/// step) and returns the input gradient. A model's backward is its forward list reversed.
public protocol Layer: AnyObject {
    /// [N, inputs] -> [N, outputs] unless the layer documents otherwise.
    func forward(_ input: Tensor) -> Tensor
    /// Takes the gradient of the loss with respect to the last forward's output; returns the input's.
    func backward(_ outputGradient: Tensor) -> Tensor
}

/// Whether layers behave as in training (dropout on, BatchNorm batch statistics) or evaluation.
public enum Mode: Sendable { case training, evaluation }

/// Where a layer's randomness comes from: a stream keyed by (seed, rank, step, micro-step, layer).
public struct RandomContext: Sendable {
    public var seed: UInt64
    public var rank: UInt64
    public var step: UInt64
    /// The micro-step within the optimizer step (`--grad-accum`), a key of its own.
    public var micro: UInt64
    public init(seed: UInt64, rank: Int = 0, step: Int = 0, micro: Int = 0) {
        self.seed = seed
        self.rank = UInt64(rank)
        self.step = UInt64(step)
        self.micro = UInt64(micro)
    }
    /// The generator for the layer tagged `layer` at this (seed, rank, step, micro).
    ///
    /// Micro-step 0 keeps the stream of (seed, rank, step, layer); a later micro-step adds its
    /// number as a fifth key, so no two (step, micro) pairs share a stream.
    public func generator(layer: UInt64) -> SeededGenerator {
        micro == 0 ? SeededGenerator(seed: seed, rank, step, layer) : SeededGenerator(seed: seed, rank, step, layer, micro)
    }
}
