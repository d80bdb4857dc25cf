import Testing
import _ReplicaTestSupport

/// A user error as docs/interface.md says: exit 1, exactly one stderr line starting "Error:" that names
/// `path`, and no crash report; with `noOutput`, nothing on stdout either.
func expectUserFailure(_ result: ProcessResult, naming path: String, noOutput: Bool = false,
                       sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status == 1, "status \(result.status): \(result.standardError)", sourceLocation: sourceLocation)
    let lines = result.standardError.split(separator: "\n", omittingEmptySubsequences: true)
    #expect(lines.count == 1 && lines.first?.hasPrefix("Error:") == true,
            "stderr must be one Error: line, got: \(result.standardError)", sourceLocation: sourceLocation)
    #expect(result.standardError.contains(path), "the message must name \(path): \(result.standardError)",
            sourceLocation: sourceLocation)
    if noOutput {
        #expect(result.standardOutput.isEmpty, "no output on error: \(result.standardOutput)", sourceLocation: sourceLocation)
    }
    for marker in ["Fatal error", "Stack dump", "backtrace", "Current stack trace", "Illegal instruction"] {
        #expect(!result.standardError.contains(marker), sourceLocation: sourceLocation)
    }
}
