import Foundation
import Testing
import _ReplicaTestSupport

/// `--progress`: plain lines whenever the output reaches a file or a pipe, the bar on a terminal,
/// under mpirun as alone.
@Suite(.serialized) struct ProgressCommandTests {
    static let textFile = Result { try Fixtures.tinyShakespeareFile(prefix: 20_000) }

    /// 120 steps of a tiny model: enough for lines at steps 1, 50, 100 and 120.
    static func arguments(_ extra: [String] = []) throws -> [String] {
        try ["train", "charlm", "--data", textFile.get().path, "--steps", "120", "--layers", "1", "--heads", "2",
             "--embedding", "16", "--block-size", "16", "--batch-size", "4", "--eval-interval", "0", "--eval-batches", "1",
             "--threads", "1"] + extra
    }

    static let escape = "\u{1B}", carriageReturn = "\r"

    static func progressLines(_ output: String) -> [String] {
        output.split(separator: "\n").map(String.init).filter { $0.hasPrefix("step ") && $0.contains("/120 |") }
    }

    @Test(arguments: [1, 2])
    func autoWritesPlainLinesIntoAFile(ranks: Int) throws {
        // runProcess sends stdout and stderr to files; under mpirun each rank still gets a pseudo-terminal.
        let result = ranks == 1
            ? try runProcess(replicaExecutable, Self.arguments())
            : try runProcess(mpirunPath, mpirunArguments(ranks: ranks) + [replicaExecutable] + Self.arguments())
        #expect(result.status == 0, "\(result.standardError)")
        let output = result.standardOutput + result.standardError
        #expect(!output.contains(Self.escape) && !output.contains(Self.carriageReturn), "\(output.debugDescription)")
        #expect(Self.progressLines(result.standardOutput).map { $0.prefix(13) }
                == ["step 1/120 | ", "step 50/120 |", "step 100/120 ", "step 120/120 "], "\(result.standardOutput)")
    }

    @Test func autoDrawsTheBarWhenMpirunWritesToATerminal() throws {
        // script(1) gives mpirun a pseudo-terminal as its output: what a user at a terminal sees.
        let command = ([mpirunPath] + mpirunArguments(ranks: 2) + [replicaExecutable] + (try Self.arguments()))
            .map { "'\($0)'" }.joined(separator: " ")
        let result = try runProcess("/usr/bin/script", ["-q", "-e", "-c", command, "/dev/null"])
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        #expect(result.standardOutput.contains("\r\(Self.escape)[2K"), "\(result.standardOutput.debugDescription)")
        #expect(result.standardOutput.contains("step 120/120"))
    }

    @Test func eachModeCanBeForced() throws {
        let bar = try runProcess(replicaExecutable, Self.arguments(["--progress", "bar"]))
        #expect(bar.status == 0 && bar.standardOutput.contains("\r\(Self.escape)[2K"), "\(bar.standardError)")
        for quiet in [["--progress", "none"], ["--quiet"]] {
            let none = try runProcess(replicaExecutable, Self.arguments(quiet + ["--json"]))
            #expect(none.status == 0, "\(none.standardError)")
            #expect(Self.progressLines(none.standardOutput + none.standardError).isEmpty, "\(none.standardError)")
            #expect(none.lines.last?.hasPrefix("{") == true)
        }
        let lines = try runProcess(replicaExecutable, Self.arguments(["--progress", "lines", "--json"]))
        #expect(Self.progressLines(lines.standardError).count == 4, "\(lines.standardError)")
        #expect(lines.lines.last?.hasPrefix("{") == true)
    }

    @Test func anUnknownModeIsRefusedWithTheValidOnes() throws {
        let result = try runProcess(replicaExecutable, Self.arguments(["--progress", "fancy"]))
        #expect(result.status != 0)
        #expect(result.standardError.contains("auto") && result.standardError.contains("lines"), "\(result.standardError)")
    }
}
