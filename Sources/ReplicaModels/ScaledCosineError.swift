import Foundation
import ReplicaCore

// Legend: N nodes, F features, M rows the loss covers.

/// GraphMAE's scaled cosine error (`sce_loss`): Σ_i (1 − cos(x̂_i, x_i))^γ over the given rows,
/// divided by `normalizer` (the global number of rows, so summed gradients give the mean).
///
/// Vectors are normalised as F.normalize does (by max(‖v‖, 1e-12)). The reconstruction x̂ is
/// dense [N, F], the target x sparse [N, F]; sums are taken in Double.
public final class ScaledCosineError {
    public let gamma: Float
    static let epsilon = 1e-12
    /// What `backward` needs.
    struct Cache {
        var reconstruction: Tensor        // x̂ [N, F]
        var targets: CSRMatrix            // x [N, F]
        var rows: [Int32]                 // [M]
        var cosines: [Double]             // cos(x̂_i, x_i) [M]
        var norms: [Double]               // max(‖x̂_i‖, ε) [M]
        var targetNorms: [Double]         // max(‖x_i‖, ε) [M]
        var normalizer: Double
    }
    var cache: Cache?

    public init(gamma: Float = 3) {
        precondition(gamma >= 1, "ScaledCosineError needs γ ≥ 1, got \(gamma)")
        self.gamma = gamma
    }

    /// Σ over `rows` of (1 − cos(x̂_r, x_r))^γ / normalizer. reconstruction [N, F], targets [N, F]
    public func forward(reconstruction: Tensor, targets: CSRMatrix, rows: [Int32], normalizer: Float) -> Double {
        let F = reconstruction.columnCount
        precondition(reconstruction.rowCount == targets.rowCount && F == targets.columnCount,
                     "ScaledCosineError: reconstruction \(reconstruction.shape) for targets [\(targets.rowCount), \(targets.columnCount)]")
        var cosines: [Double] = [], norms: [Double] = [], targetNorms: [Double] = []
        cosines.reserveCapacity(rows.count)
        var total = 0.0
        for row in rows {
            let x = reconstruction.data + Int(row) * F
            var squares = 0.0
            for f in 0..<F { squares += Double(x[f]) * Double(x[f]) }
            var product = 0.0, targetSquares = 0.0
            for k in targets.range(ofRow: Int(row)) {
                let value = targets.values.isEmpty ? 1 : Double(targets.values[k])
                product += value * Double(x[Int(targets.columnIndices[k])])
                targetSquares += value * value
            }
            let norm = max(squares.squareRoot(), Self.epsilon), targetNorm = max(targetSquares.squareRoot(), Self.epsilon)
            let cosine = product / (norm * targetNorm)
            cosines.append(cosine)
            norms.append(norm)
            targetNorms.append(targetNorm)
            total += pow(max(1 - cosine, 0), Double(gamma))
        }
        cache = Cache(reconstruction: reconstruction, targets: targets, rows: rows, cosines: cosines, norms: norms,
                      targetNorms: targetNorms, normalizer: Double(normalizer))
        return total / Double(normalizer)
    }

    /// d loss / d x̂: −γ(1 − c)^(γ−1)·(x/(‖x̂‖‖x‖) − c·x̂/‖x̂‖²)/normalizer on the rows, 0 elsewhere. [N, F]
    public func backward() -> Tensor {
        guard let cache else { preconditionFailure("ScaledCosineError.backward before forward") }
        let reconstruction = cache.reconstruction, targets = cache.targets
        let F = reconstruction.columnCount
        let gradient = Tensor(zeros: reconstruction.shape)
        for (index, row) in cache.rows.enumerated() {
            let c = cache.cosines[index], norm = cache.norms[index], targetNorm = cache.targetNorms[index]
            let dCosine = -Double(gamma) * pow(max(1 - c, 0), Double(gamma) - 1) / cache.normalizer
            let x = reconstruction.data + Int(row) * F, g = gradient.data + Int(row) * F
            // Below ε the norm is the constant ε, so the x̂ term drops out (F.normalize's clamp).
            let isClamped = norm <= Self.epsilon
            let selfScale = Float(isClamped ? 0 : -dCosine * c / (norm * norm))
            for f in 0..<F { g[f] = selfScale * x[f] }
            let targetScale = dCosine / (norm * targetNorm)
            for k in targets.range(ofRow: Int(row)) {
                let value = targets.values.isEmpty ? 1 : Double(targets.values[k])
                g[Int(targets.columnIndices[k])] += Float(targetScale * value)
            }
        }
        return gradient
    }
}
