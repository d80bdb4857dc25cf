// How the per-model estimates (GraphMemory.swift, TransformerMemory.swift, CBOWMemory.swift)
// count: in floats, as Doubles, so that an absurd configuration gives an absurd estimate rather
// than an overflow trap; converted to bytes (or to a parameter count) once, saturating.
//
// Every estimate follows one rule, the one of `GPTConfig.activationBytes`: what forward keeps
// for backward (each cached tensor once, however many layers hold it), plus the largest buffers
// backward allocates while those are still held, plus one layer more, since the next forward (the
// next step's or the evaluation's) allocates a layer's new tensors before that layer's old ones
// are released. Integer arrays (token ids, graph indices) count as floats: 4 bytes an entry, 8
// for an `Int` offset.

/// Bytes of `floats` float32 values, saturating at 10^18.
func float32Bytes(_ floats: Double) -> Int {
    let bytes = 4 * floats
    return bytes < 1e18 ? Int(bytes) : Int(1e18)
}

/// A parameter count computed in Double, saturating at 10^17 (so that 16 bytes of model states
/// a parameter still fit in an Int). Exact below 2^53.
func saturatingCount(_ count: Double) -> Int {
    count < 1e17 ? Int(count) : Int(1e17)
}
