import Foundation
import Testing
import _ReplicaTestSupport

/// Every train task estimates its memory before allocating and refuses a configuration that
/// cannot fit (docs/memory.md): exit 1, one message with the estimate next to the memory
/// available and the options to lower, at once (no data is tokenised, no model built).
@Suite struct MemoryPreflightCommandTests {
    /// Sizes no machine has, each with the option the advice must name.
    static let absurd: [(arguments: [String], option: String)] = [
        // 10⁶ heads of 8: about 1,200 GiB of activations on Cora and 86 GiB of parameters.
        (["train", "gat", "--heads", "1000000"], "--heads (1000000)"),
        (["train", "gat", "--model", "gcn", "--hidden", "1000000000"], "--hidden (1000000000)"),
        (["train", "graphmae", "--hidden", "1000000", "--heads", "1"], "--hidden (1000000)"),
        // A budget of 10⁹ padded tokens a rank: about 275 TiB of activations, most of them logits.
        (["train", "translate", "--batch-size", "1000000000"], "--batch-size (1000000000 tokens)"),
        (["train", "mlm", "--batch-size", "100000000"], "--batch-size (100000000 sentences)"),
        (["train", "mlm", "--layers", "100000000"], "--layers (100000000)"),
        (["train", "cbow", "--batch-size", "100000000000"], "--batch-size (100000000000 windows)"),
    ]

    @Test(arguments: absurd.indices)
    func aConfigurationThatCannotFitIsRefusedWithTheEstimate(index: Int) throws {
        let (arguments, option) = Self.absurd[index]
        let result = try runProcess(replicaExecutable, arguments + ["--threads", "1"], timeout: 60)
        expectUserFailure(result, naming: "needs about", noOutput: true)
        #expect(result.standardError.contains("available") && result.standardError.contains(option), "\(result.standardError)")
    }
}
