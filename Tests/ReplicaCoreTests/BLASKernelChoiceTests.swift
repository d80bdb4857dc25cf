import Testing
@testable import ReplicaCore

/// Which CPUs get OpenBLAS's Haswell kernels instead of its own choice: Zen 4 (AMD family 19h with
/// AVX-512) only, read from /proc/cpuinfo's first processor. The switch itself is checked on the
/// `replica` executable (MPIRunTests), where it happens at start-up.
struct BLASKernelChoiceTests {
    static func cpuinfo(vendor: String, family: Int, flags: String) -> String {
        """
        processor\t: 0
        vendor_id\t: \(vendor)
        cpu family\t: \(family)
        model\t\t: 17
        flags\t\t: \(flags)

        processor\t: 1
        vendor_id\t: SomethingElse
        cpu family\t: 1
        flags\t\t: fpu

        """
    }

    @Test func zen4IsAMDFamily19hWithAVX512() throws {
        let zen4 = try #require(CPUDescription.parse(Self.cpuinfo(vendor: "AuthenticAMD", family: 25, flags: "fpu avx2 fma avx512f avx512bw")))
        #expect(zen4 == CPUDescription(vendor: "AuthenticAMD", family: 25, flags: ["fpu", "avx2", "fma", "avx512f", "avx512bw"]))
        #expect(zen4.isZen4)
    }

    @Test func otherCPUsKeepOpenBLASsChoice() throws {
        let zen3 = try #require(CPUDescription.parse(Self.cpuinfo(vendor: "AuthenticAMD", family: 25, flags: "fpu avx2 fma")))
        let zen5 = try #require(CPUDescription.parse(Self.cpuinfo(vendor: "AuthenticAMD", family: 26, flags: "avx2 avx512f")))
        let sapphireRapids = try #require(CPUDescription.parse(Self.cpuinfo(vendor: "GenuineIntel", family: 6, flags: "avx2 avx512f")))
        #expect(!zen3.isZen4 && !zen5.isZen4 && !sapphireRapids.isZen4)
    }

    /// ReplicaAVX512's loops run only where all five of Skylake-SP's AVX-512 subsets are listed.
    @Test func avx512NeedsSkylakeSPsFiveSubsets() throws {
        let all = "fpu avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16"
        #expect(try #require(CPUDescription.parse(Self.cpuinfo(vendor: "AuthenticAMD", family: 25, flags: all))).hasAVX512)
        for missing in ["avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"] {
            let flags = all.split(separator: " ").filter { $0 != missing }.joined(separator: " ")
            #expect(try #require(CPUDescription.parse(Self.cpuinfo(vendor: "GenuineIntel", family: 6, flags: flags))).hasAVX512 == false,
                    "without \(missing)")
        }
    }

    /// The element-wise kernels take their AVX-512 loops on AMD's AVX-512 processors only (the
    /// kind measured); Intel's keep the AVX2 ones, and so does an AMD processor without AVX-512.
    @Test func onlyAMDsAVX512ProcessorsRunTheAVX512Loops() throws {
        let flags = "avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl"
        #expect(try #require(CPUDescription.parse(Self.cpuinfo(vendor: "AuthenticAMD", family: 25, flags: flags))).prefersAVX512Loops)
        #expect(try #require(CPUDescription.parse(Self.cpuinfo(vendor: "AuthenticAMD", family: 26, flags: flags))).prefersAVX512Loops)
        #expect(try #require(CPUDescription.parse(Self.cpuinfo(vendor: "GenuineIntel", family: 6, flags: flags))).prefersAVX512Loops == false)
        #expect(try #require(CPUDescription.parse(Self.cpuinfo(vendor: "AuthenticAMD", family: 25, flags: "avx2 fma"))).prefersAVX512Loops == false)
    }

    @Test func aTextWithoutTheFieldsDescribesNoCPU() {
        #expect(CPUDescription.parse("") == nil)
        #expect(CPUDescription.parse("processor\t: 0\nvendor_id\t: AuthenticAMD\n") == nil)
        #expect(CPUDescription.parse(Self.cpuinfo(vendor: "AuthenticAMD", family: 25, flags: "x").replacingOccurrences(of: "cpu family\t: 25", with: "cpu family\t: zen")) == nil)
    }
}
