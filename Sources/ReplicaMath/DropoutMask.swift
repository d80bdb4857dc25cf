import ReplicaCore

/// Dropped elements hash (high 32 bits) below this value: p·2³², rounded.
@inlinable
public func keepThreshold(probability: Float) -> UInt64 { UInt64((Double(probability) * 0x1p32).rounded()) }

/// Whether element `index` survives dropout under `key` and `threshold`: the high 32 bits of
/// splitMix64(key ^ index) are at least `threshold`. Dropout's and SparseLinear's masks.
@inlinable @inline(__always)
public func isKept(_ index: Int, key: UInt64, threshold: UInt64) -> Bool {
    splitMix64(key ^ UInt64(truncatingIfNeeded: index)) >> 32 >= threshold
}

/// Inverted dropout's mask over elements `range`: destination[i] = source[i] · scale where element
/// i is kept (the high 32 bits of splitMix64(key ^ i) at least `threshold`), else 0. The loop that
/// ReplicaNN compiles for AVX2 and ReplicaAVX512 for AVX-512, where the hash's 64-bit multiplies
/// are one instruction each (AVX2 builds each from 32-bit ones). source and destination must
/// not overlap.
@inlinable @inline(__always)
public func applyDropoutMask(key: UInt64, threshold: UInt64, scale: Float, to source: UnsafePointer<Float>,
                             into destination: UnsafeMutablePointer<Float>, range: Range<Int>) {
    for i in range {
        let scaled = source[i] * scale
        destination[i] = isKept(i, key: key, threshold: threshold) ? scaled : 0
    }
}
