/// What the processor this process runs on executes beyond the build's baseline (AVX2 and FMA),
/// for the loops compiled for more (ReplicaAVX512).
public enum ProcessorFeatures {
    /// /proc/cpuinfo's first processor, read once for both answers.
    static let processor = CPUDescription.current

    /// AVX-512 F, CD, BW, DQ and VL, Skylake-SP's set, which every AVX-512 processor since has
    /// (Zen 4 included): what ReplicaAVX512 is compiled for. Linux lists them in /proc/cpuinfo
    /// only when it saves the 512-bit registers.
    public static let avx512: Bool = processor?.hasAVX512 ?? false

    /// Whether the element-wise kernels run their AVX-512 loops: on AMD's processors with AVX-512
    /// (Zen 4 and later), where they were measured faster. Intel's AVX-512 processors keep the
    /// AVX2 loops: on some (Skylake-SP to Cascade Lake) 512-bit instructions lower the clock for
    /// what follows them, sgemm included, and none was measured here.
    public static let usesAVX512Loops: Bool = processor?.prefersAVX512Loops ?? false
}

extension CPUDescription {
    var hasAVX512: Bool { ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) }
    var prefersAVX512Loops: Bool { hasAVX512 && vendor == "AuthenticAMD" }
}
