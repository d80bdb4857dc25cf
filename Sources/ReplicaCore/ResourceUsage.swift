import Foundation

/// What this process has used of the machine.
public enum ResourceUsage {
    /// The peak resident set of this process so far, in MiB (getrusage's ru_maxrss, which Linux
    /// reports in KiB): the figure `peak_rss_mb` reports.
    public static var peakResidentMegabytes: Double {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
        return Double(usage.ru_maxrss) / 1024
    }
}
