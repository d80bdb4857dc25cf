import MPIWrapper

/// Direct calls of the C wrapper with no Swift layer around them: the baseline that
/// `replica bench allreduce` reports as `raw_mpi_busbw_gbps`.
public enum RawMPIBaseline {
    /// Seconds for `iterations` back-to-back in-place float sums of `buffer`, timed with MPI_Wtime.
    public static func allReduceSeconds(_ buffer: UnsafeMutableBufferPointer<Float>, iterations: Int) -> Double {
        let base = buffer.baseAddress!
        let count = buffer.count
        let start = mpiw_wtime()
        for _ in 0..<iterations { _ = mpiw_allreduce_sum_f32(base, count) }
        return mpiw_wtime() - start
    }
}
