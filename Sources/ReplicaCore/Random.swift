import Foundation

/// SplitMix64: a 64-bit mixer, used to derive independent streams from (seed, rank, epoch, step).
@inlinable
public func splitMix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// A seeded xoshiro256** generator. Every random choice in Replica comes from one of these,
/// keyed by what it is for, so a run is reproducible from its seed.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    @usableFromInline var state: (UInt64, UInt64, UInt64, UInt64)

    /// A stream keyed by `seed` and any further keys (rank, epoch, step, a purpose tag).
    public init(seed: UInt64, _ keys: UInt64...) {
        var h = splitMix64(seed)
        for key in keys { h = splitMix64(h ^ splitMix64(key &+ 0x632B_E59B_D9B4_E019)) }
        let s0 = splitMix64(h), s1 = splitMix64(s0), s2 = splitMix64(s1), s3 = splitMix64(s2)
        state = (s0, s1, s2, s3 == 0 && s0 == 0 ? 1 : s3)
    }

    /// Restores a generator from `state` (for checkpoints).
    public init(state: [UInt64]) {
        precondition(state.count == 4, "SeededGenerator state has 4 words, got \(state.count)")
        self.state = (state[0], state[1], state[2], state[3])
    }

    public var stateWords: [UInt64] { [state.0, state.1, state.2, state.3] }

    @inlinable
    public mutating func next() -> UInt64 {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return result
    }

    @inlinable func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 bits of precision.
    @inlinable
    public mutating func nextUniform() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Standard normal (Box–Muller).
    public mutating func nextNormal() -> Float {
        let u1 = max(Double(next() >> 11) * 0x1p-53, 1e-300)
        let u2 = Double(next() >> 11) * 0x1p-53
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }

    /// Uniform integer in 0..<bound.
    public mutating func nextInt(below bound: Int) -> Int { Int.random(in: 0..<bound, using: &self) }
}

extension Tensor {
    /// Fills with N(0, std²) draws.
    public func fillNormal(standardDeviation: Float, using generator: inout SeededGenerator) {
        for i in 0..<count { data[i] = generator.nextNormal() * standardDeviation }
    }

    /// Fills with U(-bound, bound) draws.
    public func fillUniform(bound: Float, using generator: inout SeededGenerator) {
        for i in 0..<count { data[i] = (generator.nextUniform() * 2 - 1) * bound }
    }
}
