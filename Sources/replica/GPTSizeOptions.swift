import ArgumentParser
import ReplicaModels

/// The GPT's shape, as `train charlm` and `bench step --model charlm` take it: a preset, and
/// explicit options that override it.
struct GPTSizeOptions: ParsableArguments {
    @Option(help: "Model size: baby (nanoGPT's CPU Shakespeare model, 4 layers × 128, block 64) or gpt2-small (12 layers × 768, 12 heads, block 1024). Explicit size options override it.")
    var preset: GPTPreset?
    @Option(help: "Transformer blocks (default: the preset's).") var layers: Int?
    @Option(help: "Attention heads (default: the preset's).") var heads: Int?
    @Option(help: "Embedding width (default: the preset's).") var embedding: Int?
    @Option(help: "Context length (default: the preset's).") var blockSize: Int?
    @Option(help: "Dropout probability.") var dropout: Float = 0
    @Option(help: "Normalisation.") var norm = TransformerNorm.layer

    /// The preset's config with the explicit options applied.
    var config: GPTConfig {
        var config = (preset ?? .baby).config
        config.layerCount = layers ?? config.layerCount
        config.headCount = heads ?? config.headCount
        config.embedding = embedding ?? config.embedding
        config.blockSize = blockSize ?? config.blockSize
        config.dropout = dropout
        config.norm = norm.kind
        return config
    }

    /// Whether any size option was given (they are charlm's only).
    var isGiven: Bool { preset != nil || layers != nil || heads != nil || embedding != nil || blockSize != nil }

    func validate() throws {
        let c = config
        guard c.layerCount >= 1, c.headCount >= 1, c.embedding >= 1, c.blockSize >= 1 else {
            throw ValidationError("--layers, --heads, --embedding and --block-size must be at least 1.")
        }
        guard c.embedding % c.headCount == 0 else {
            throw ValidationError("--embedding \(c.embedding) is not divisible by --heads \(c.headCount).")
        }
        guard (0..<1).contains(dropout) else { throw ValidationError("--dropout \(dropout) must be in [0, 1).") }
    }
}
