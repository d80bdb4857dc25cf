import CBLAS
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Which of OpenBLAS's per-CPU kernels this process multiplies with.
///
/// OpenBLAS (built with DYNAMIC_ARCH, as Debian's is) picks its kernels when it is loaded, from
/// the CPU's features: on an AMD Zen 4 (family 19h with AVX-512) it takes its Intel AVX-512 ones
/// (Cooper Lake, SkylakeX). Zen 4 runs each 512-bit FMA as two 256-bit halves, so those kernels
/// gain no width, and its Haswell (AVX2) kernels are faster there: 109–110 against 100–104
/// GFLOP/s on one thread, both at 1024³ and at the baby model's 768 × 384 × 128 (docs/performance.md).
/// `preferFasterKernels()` switches to them, before any product runs. Setting OPENBLAS_CORETYPE
/// (OpenBLAS's own variable) to a kernel's name keeps that one; other CPUs keep OpenBLAS's choice.
extension BLAS {
    /// OpenBLAS's name of the kernels in use ("Haswell", "Cooperlake", ...).
    public static var kernelName: String { openblas_get_corename().map { String(cString: $0) } ?? "?" }

    /// Switches OpenBLAS to its Haswell kernels on a Zen 4 unless OPENBLAS_CORETYPE is set; returns
    /// whether it did. Call once at start-up, before any product and any other thread.
    @discardableResult
    public static func preferFasterKernels() -> Bool {
        #if os(Linux)
        let named = getenv("OPENBLAS_CORETYPE").map { $0.pointee != 0 } ?? false   // empty: none, as for OpenBLAS
        // The kernel name first: /proc/cpuinfo is read only where OpenBLAS chose AVX-512 kernels.
        guard !named, ["Cooperlake", "SkylakeX", "Sapphirerapids"].contains(kernelName),
              CPUDescription.current?.isZen4 == true else { return false }
        return switchKernels(to: "Haswell")
        #else
        return false
        #endif
    }

    #if os(Linux)
    /// OpenBLAS reads OPENBLAS_CORETYPE when it (re)initialises its dispatch table; the two entry
    /// points exist only in DYNAMIC_ARCH builds, so they are looked up, not linked.
    private static func switchKernels(to core: String) -> Bool {
        typealias Entry = @convention(c) () -> Void
        guard let quit = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gotoblas_dynamic_quit"),
              let initialise = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "gotoblas_dynamic_init") else { return false }
        unsafeBitCast(quit, to: Entry.self)()
        setenv("OPENBLAS_CORETYPE", core, 1)
        unsafeBitCast(initialise, to: Entry.self)()
        unsetenv("OPENBLAS_CORETYPE")        // not passed on to the programs this one starts
        return kernelName == core
    }
    #endif
}

/// The first processor's vendor, family and flags from /proc/cpuinfo.
struct CPUDescription: Equatable {
    var vendor: String
    var family: Int
    var flags: Set<String>

    /// AMD family 19h with AVX-512: Zen 4 (Zen 3, the same family, has no AVX-512; Zen 5 is 1Ah).
    var isZen4: Bool { vendor == "AuthenticAMD" && family == 0x19 && flags.contains("avx512f") }

    static var current: CPUDescription? {
        (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)).flatMap(parse)
    }

    /// The fields of the first processor of a /proc/cpuinfo text; nil when one is missing.
    static func parse(_ text: String) -> CPUDescription? {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { if !fields.isEmpty { break } else { continue } }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            if fields[key] == nil { fields[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces) }
        }
        guard let vendor = fields["vendor_id"], let family = fields["cpu family"].flatMap({ Int($0) }),
              let flags = fields["flags"] else { return nil }
        return CPUDescription(vendor: vendor, family: family, flags: Set(flags.split(separator: " ").map(String.init)))
    }
}
