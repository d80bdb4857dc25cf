import ReplicaMath

// Loops compiled for AVX-512 (Package.swift: Skylake-SP's set, sixteen lanes a vector), called
// only where the processor has it and gains from it (`ProcessorFeatures.usesAVX512Loops`);
// every other build of them is ReplicaNN's, for AVX2. The same inlinable code, so the same
// results bit for bit: each lane's operations are the same, in the same order. Only the two
// functions below are compiled here (no generic or closure copies that the linker could share
// with the AVX2 modules): check with `nm` on this module's object after a change.

/// GELU's forward, `geluAndDerivative(_:into:derivative:range:)`, for AVX-512. Its loop is bound
/// by how many of its 75 instructions a vector are in flight: AVX2's sixteen registers cannot
/// hold its 30 constants, so it reloads 18 an iteration, and each instruction does eight lanes.
/// With AVX-512's 32 registers and sixteen lanes, on a Zen 4: 0.97 → 0.62 ns an element
/// (768 × 512, best of 200), and the baby model's step 44.5 → 44.1 ms (ten rounds alternating).
@inline(never)      // never inlined into a caller compiled for AVX2
public func geluAndDerivativeAVX512(_ x: UnsafeMutablePointer<Float>, into y: UnsafeMutablePointer<Float>,
                                    derivative d: UnsafeMutablePointer<Float>, range: Range<Int>) {
    geluAndDerivative(x, into: y, derivative: d, range: range)
}

/// Inverted dropout's mask, `applyDropoutMask(key:threshold:scale:to:into:range:)`, for AVX-512:
/// its hash's 64-bit multiplies are one instruction each (vpmullq); AVX2 has none.
@inline(never)
public func applyDropoutMaskAVX512(key: UInt64, threshold: UInt64, scale: Float, to source: UnsafePointer<Float>,
                                   into destination: UnsafeMutablePointer<Float>, range: Range<Int>) {
    applyDropoutMask(key: key, threshold: threshold, scale: scale, to: source, into: destination, range: range)
}
