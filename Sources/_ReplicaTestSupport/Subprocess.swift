import Foundation

/// What a finished child process printed and returned.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let standardOutput: String
    public let standardError: String
    public var lines: [String] { standardOutput.split(separator: "\n").map(String.init) }
}

/// Runs `executable` with `arguments` and waits; the launcher variables of any enclosing MPI job are removed.
/// `whileRunning(pid)` is called every 20 ms until the child ends (to signal it, for instance).
///
/// posix_spawn and waitpid rather than Foundation's Process: once MPI is initialised in the test
/// process it owns SIGCHLD, and Process would never learn that its child ended.
public func runProcess(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
                       timeout: TimeInterval = 300, whileRunning: (pid_t) -> Void = { _ in }) throws -> ProcessResult {
    var environment = ProcessInfo.processInfo.environment.filter {
        !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") && !$0.key.hasPrefix("PMI_")
    }
    environment.merge(extra) { $1 }
    let directory = FileManager.default.temporaryDirectory
    let outputPath = directory.appendingPathComponent("replica-test-\(UUID().uuidString).out").path
    let errorPath = directory.appendingPathComponent("replica-test-\(UUID().uuidString).err").path
    defer {
        try? FileManager.default.removeItem(atPath: outputPath)
        try? FileManager.default.removeItem(atPath: errorPath)
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (argv + envp).forEach { free($0) } }
    // The child starts with no signal blocked and every signal at its default: the test runner
    // blocks some in its threads, and a blocked SIGTERM would never reach mpirun.
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var none = sigset_t(), all = sigset_t()
    sigemptyset(&none)
    sigfillset(&all)
    sigdelset(&all, SIGKILL)
    sigdelset(&all, SIGSTOP)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setsigdefault(&attributes, &all)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    var pid: pid_t = 0
    let spawned = posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
    guard spawned == 0 else {
        throw SubprocessTimeout(command: "\(executable): posix_spawn failed with \(spawned)", seconds: 0)
    }
    var status: Int32 = 0
    let deadline = Date().addingTimeInterval(timeout)
    while waitpid(pid, &status, WNOHANG) == 0 {
        if Date() > deadline {
            kill(pid, SIGTERM)
            Thread.sleep(forTimeInterval: 2)
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
            throw SubprocessTimeout(command: ([executable] + arguments).joined(separator: " "), seconds: timeout)
        }
        whileRunning(pid)
        Thread.sleep(forTimeInterval: 0.02)
    }
    // WIFEXITED / WEXITSTATUS; a signal death reports 128 + signal, as shells do.
    let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return ProcessResult(status: exitStatus,
                         standardOutput: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
                         standardError: (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")
}

public struct SubprocessTimeout: Error, CustomStringConvertible {
    public let command: String
    public let seconds: TimeInterval
    public var description: String { "\(command) did not finish within \(seconds) s" }
}

/// The built `replica` binary beside the test bundle (`.build/<config>/replica`).
public var replicaExecutable: String {
    let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var directory = testBinary.deletingLastPathComponent()
    // On Linux the test binary is .build/<triple>/<config>/ReplicaPackageTests.xctest.
    if directory.lastPathComponent.hasSuffix(".xctest") { directory = directory.deletingLastPathComponent() }
    return directory.appendingPathComponent("replica").path
}

/// `mpirun` and the flags this machine needs: root, more ranks than cores.
public func mpirunArguments(ranks: Int) -> [String] {
    var arguments = ["-np", "\(ranks)", "--oversubscribe", "--mca", "btl", "self,vader,tcp"]
    if getuid() == 0 { arguments.insert("--allow-run-as-root", at: 0) }
    return arguments
}

public var mpirunPath: String {
    ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "mpirun"
}

/// The repository's root (two levels above Sources/_ReplicaTestSupport).
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
