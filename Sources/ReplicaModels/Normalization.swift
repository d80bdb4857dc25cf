import ReplicaCore
import ReplicaNN

/// A per-row normalisation layer a Transformer block can use: LayerNorm, BatchNorm or none.
public protocol FeatureNormalization: Layer {
    func initialize()
    var mode: Mode { get set }
    /// backward(outputGradient) + residualGradient: a pre-norm block's skip connection. The result
    /// may be `outputGradient` itself (IdentityNormalization's backward returns its argument).
    func backward(_ outputGradient: Tensor, adding residualGradient: Tensor) -> Tensor
}

extension FeatureNormalization {
    public func backward(_ outputGradient: Tensor, adding residualGradient: Tensor) -> Tensor {
        let inputGradient = backward(outputGradient)
        add(residualGradient, into: inputGradient)
        return inputGradient
    }
}

extension LayerNorm: FeatureNormalization {
    /// LayerNorm behaves the same in training and evaluation.
    public var mode: Mode {
        get { .training }
        set {}
    }
}

extension BatchNorm: FeatureNormalization {}

/// No normalisation (for ablations).
public final class IdentityNormalization: FeatureNormalization {
    public var mode: Mode = .training
    public init() {}
    public func initialize() {}
    public func forward(_ input: Tensor) -> Tensor { input }
    public func backward(_ outputGradient: Tensor) -> Tensor { outputGradient }
}

/// The normalisation layer of `kind` named `name`: nanoGPT's bias-free LayerNorm, or BatchNorm over features.
func makeNormalization(_ kind: NormKind, _ name: String, features: Int, arena: ParameterArena) -> FeatureNormalization {
    switch kind {
    case .layer: return LayerNorm(name, features: features, bias: false, arena: arena)
    case .batch: return BatchNorm(name, features: features, arena: arena)
    case .none: return IdentityNormalization()
    }
}
