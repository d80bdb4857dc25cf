import Foundation
import ReplicaCore

/// Softmax cross-entropy over the last dimension, with label smoothing and an ignored target id.
///
/// The loss is a *sum* over counted rows divided by `normalizer`, which the caller sets to the
/// global number of counted targets (over all ranks and micro-steps), so that summed gradients
/// equal the gradient of the global mean (DESIGN-NOTES, loss normalisation).
public final class CrossEntropy {
    public let labelSmoothing: Float
    public let ignoreIndex: Int32
    var probabilities: Tensor?           // [N, V], cached by forward
    var targets: [Int32] = []
    var normalizer: Float = 1

    public init(labelSmoothing: Float = 0, ignoreIndex: Int32 = -100) {
        self.labelSmoothing = labelSmoothing
        self.ignoreIndex = ignoreIndex
    }

    /// Rows whose target is not `ignoreIndex`.
    public func countedRows(_ targets: [Int32]) -> Int { targets.reduce(0) { $0 + ($1 == ignoreIndex ? 0 : 1) } }

    /// Σ over counted rows of −Σ_v q_v log p_v, divided by `normalizer`. logits [N, V], targets [N].
    /// q puts 1 − ε + ε/V on the target and ε/V elsewhere (PyTorch's label_smoothing).
    public func forward(logits: Tensor, targets: [Int32], normalizer: Float) -> Double {
        let V = logits.columnCount, N = logits.rowCount
        precondition(targets.count == N, "CrossEntropy: \(targets.count) targets for \(N) rows")
        self.targets = targets
        self.normalizer = normalizer
        let probabilities = Tensor(uninitialized: logits.shape)
        let epsilon = labelSmoothing, ignoreIndex = ignoreIndex
        for target in targets where target != ignoreIndex {
            precondition(target >= 0 && Int(target) < V, "CrossEntropy: target \(target) outside 0..<\(V)")
        }
        // Rows are independent: split across the rank's threads, one partial loss a range, added in range order.
        let total = ComputePool.sum(count: N, grain: rowsPerThread(width: V)) { rows in
            var total = 0.0
            for row in rows {
                let z = logits.data + row * V, p = probabilities.data + row * V
                let maximum = rowMaximum(z, count: V)
                // the exponentials and their sum in one pass; the sum in Double, so that the loss's
                // rounding error stays far below its changes
                let sum = exponentiateRow(z, into: p, count: V, minus: maximum)
                scaleRow(p, count: V, by: Float(1 / sum))
                let target = targets[row]
                if target == ignoreIndex { continue }
                let logSum = Double(maximum) + log(sum)
                var loss = (1 - Double(epsilon)) * (logSum - Double(z[Int(target)]))
                if epsilon > 0 {
                    let meanLogit = rowSumInDouble(z, count: V)
                    loss += Double(epsilon) * (logSum - meanLogit / Double(V))
                }
                total += loss
            }
            return total
        }
        self.probabilities = probabilities
        return total / Double(normalizer)
    }

    /// d loss / d logits: (p − q) / normalizer on counted rows, 0 on ignored rows. [N, V]
    ///
    /// Written over the probabilities, which forward kept for this alone (translate's are 1,800 ×
    /// 8,000: a cold buffer of that size cost more than the arithmetic); a second backward needs
    /// another forward.
    public func backward() -> Tensor {
        guard let probabilities else { preconditionFailure("CrossEntropy.backward before forward") }
        self.probabilities = nil
        let V = probabilities.columnCount
        let gradient = probabilities
        let scale = 1 / normalizer
        let off = labelSmoothing / Float(V), onTarget = (1 - labelSmoothing) * scale
        let targets = targets, ignoreIndex = ignoreIndex
        ComputePool.forEachRange(count: targets.count, grain: rowsPerThread(width: V)) { rows in
            for row in rows {
                let g = gradient.data + row * V
                let target = targets[row]
                if target == ignoreIndex {
                    g.update(repeating: 0, count: V)
                    continue
                }
                for v in 0..<V { g[v] = (g[v] - off) * scale }     // g is p: one pointer, so it vectorises
                g[Int(target)] -= onTarget
            }
        }
        return gradient
    }

    /// Softmax probabilities of the last forward, until backward writes the gradient over them. [N, V]
    public var lastProbabilities: Tensor? { probabilities }
}
