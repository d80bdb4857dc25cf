import MPIWrapper

/// A 16-bit floating-point format for gradients on the wire (`--grad-compression fp16|bf16`).
///
/// fp16 (IEEE binary16): 10 mantissa bits, largest finite value 65504, normal numbers from 6.1e-5,
/// subnormal ones down to 6.0e-8. bf16 (bfloat16): float32's 8 exponent bits and 7 mantissa bits,
/// so the same range as float32 at about 2–3 significant digits. Both round to nearest, ties to
/// even; the conversions are MPIWrapper's (half.c), the same on every rank and machine.
public enum HalfPrecision: String, CaseIterable, Sendable {
    case fp16, bf16

    var format: Int32 { self == .fp16 ? Int32(MPIW_FORMAT_F16) : Int32(MPIW_FORMAT_BF16) }

    /// `output[i]` = `input[i]` × `scale`, rounded to this format.
    public func compress(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<UInt16>, scale: Float = 1) {
        precondition(input.count == output.count, "compress: \(input.count) floats into \(output.count) halves")
        guard let source = input.baseAddress, let target = output.baseAddress else { return }
        mpiw_compress16(source, target, input.count, format, scale)
    }

    /// `output[i]` = `input[i]` as a float × `scale`.
    public func decompress(_ input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>, scale: Float = 1) {
        precondition(input.count == output.count, "decompress: \(input.count) halves into \(output.count) floats")
        guard let source = input.baseAddress, let target = output.baseAddress else { return }
        mpiw_decompress16(source, target, input.count, format, scale)
    }

    /// `total[i]` = round(`input[i]` + `total[i]`), the sum in float32: the all-reduce's operation.
    public func accumulate(_ input: UnsafeBufferPointer<UInt16>, into total: UnsafeMutableBufferPointer<UInt16>) {
        precondition(input.count == total.count, "accumulate: \(input.count) and \(total.count) halves")
        guard let source = input.baseAddress, let target = total.baseAddress else { return }
        mpiw_sum16(source, target, input.count, format)
    }

    /// Whether fp16 may use x86's F16C instructions where the processor has them (the default);
    /// false forces the scalar conversions, which give the same bits (for tests).
    public static func useVectorInstructions(_ enabled: Bool) { mpiw_half_use_vector_instructions(enabled ? 1 : 0) }

    /// One value through the format (for tests and for the documentation's error bounds).
    public func round(_ value: Float) -> Float {
        var input = value, half: UInt16 = 0, output: Float = 0
        mpiw_compress16(&input, &half, 1, format, 1)
        mpiw_decompress16(&half, &output, 1, format, 1)
        return output
    }
}
