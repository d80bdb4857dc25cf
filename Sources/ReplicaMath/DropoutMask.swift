import ReplicaCore

/// Inverted dropout's mask over elements `range`: destination[i] = source[i] · scale where element
/// i is kept (the high 32 bits of splitMix64(key ^ i) at least `threshold`), else 0. The loop that
/// ReplicaNN compiles for AVX2 and ReplicaAVX512 for AVX-512, where the hash's 64-bit multiplies
/// are one instruction each (AVX2 builds each from 32-bit ones). source and destination must
/// not overlap.
@inlinable @inline(__always)
public func applyDropoutMask(key: UInt64, threshold: UInt64, scale: Float, to source: UnsafePointer<Float>,
                             into destination: UnsafeMutablePointer<Float>, range: Range<Int>) {
    for i in range {
        let kept = splitMix64(key ^ UInt64(truncatingIfNeeded: i)) >> 32 >= threshold
        let scaled = source[i] * scale
        destination[i] = kept ? scaled : 0
    }
}
