/// A task that knows the matrix-product FLOPs of its training micro-steps, counted from the shapes
/// its model multiplies (`replica bench step`'s model FLOPs utilisation, `mfu`).
///
/// Tasks whose work is mostly not sgemm (GAT's sparse aggregation) do not conform.
public protocol MatmulCounting {
    /// Forward and backward matrix-product FLOPs of this rank's micro-step `micro` of step `step`.
    func matmulFLOPs(step: Int, micro: Int) -> Double
}
