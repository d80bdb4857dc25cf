import Foundation
import Testing
import ReplicaCore
import _ReplicaTestSupport

/// `replica bleu` on small files; expected lines are sacreBLEU 2.6.0's (`sacrebleu REF -i HYP [-lc]`).
@Suite struct BLEUCommandTests {
    static let folder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-bleu-cli-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: BLEUCommandTests.folder) }
        return folder
    }()

    static let referenceText = "The cat sat on the mat.\nA dog barked loudly at the mailman.\nThey said &quot;hello&quot; twice.\n"
    static let hypothesisText = "the cat sat on a mat.\nA dog barked at the postman!\nThey said \"hello\" twice.\n"

    func write(_ text: String, to name: String) throws -> String {
        let url = Self.folder.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func bleu(_ arguments: [String]) throws -> ProcessResult {
        try runProcess(replicaExecutable, ["bleu"] + arguments, timeout: 60)
    }

    @Test func printsSacreBLEUsLine() throws {
        let reference = try write(Self.referenceText, to: "line.ref")
        let hypothesis = try write(Self.hypothesisText, to: "line.hyp")
        let result = try bleu(["--reference", reference, "--hypothesis", hypothesis])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.lines == ["BLEU = 52.06 85.7/66.7/46.7/33.3 (BP = 0.953 ratio = 0.955 hyp_len = 21 ref_len = 22)"])
    }

    @Test func lowercaseFoldsCaseOnBothSides() throws {
        let reference = try write(Self.referenceText, to: "lower.ref")
        let hypothesis = try write(Self.hypothesisText, to: "lower.hyp")
        let result = try bleu(["--reference", reference, "--hypothesis", hypothesis, "--lowercase"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.lines == ["BLEU = 58.07 85.7/72.2/53.3/41.7 (BP = 0.953 ratio = 0.955 hyp_len = 21 ref_len = 22)"])
    }

    @Test func jsonSummaryHasTheContractKeys() throws {
        // No final newline: the last line still counts, and no empty line is added.
        let reference = try write(String(Self.referenceText.dropLast()), to: "json.ref")
        let hypothesis = try write(Self.hypothesisText, to: "json.hyp")
        let result = try bleu(["--reference", reference, "--hypothesis", hypothesis, "--json"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.lines.count == 1, "one JSON line: \(result.standardOutput)")
        let line = try #require(result.lines.last)
        let summary = try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
        for key in ["task", "ranks", "steps", "seconds", "param_count", "bleu", "precisions", "bp", "sys_len", "ref_len"] {
            #expect(summary[key] != nil, "the summary lacks \(key): \(line)")
        }
        #expect(summary["task"] as? String == "bleu")
        #expect(summary["ranks"] as? Int == 1)
        #expect(summary["steps"] as? Int == 0)
        #expect(summary["param_count"] as? Int == 0)
        #expect(summary["sys_len"] as? Int == 21)
        #expect(summary["ref_len"] as? Int == 22)
        let seconds = try #require(summary["seconds"] as? Double)
        #expect(seconds >= 0 && seconds < 60)
        #expect(summary["bleu"] as? Double == 52.06)
        let precisions = try #require(summary["precisions"] as? [Double])
        #expect(precisions.count == 4)
        for (value, expected) in zip(precisions, [85.71428571428571, 66.66666666666667, 46.666666666666664, 33.333333333333336]) {
            #expect(abs(value - expected) < 1e-9, "\(precisions)")
        }
        let bp = try #require(summary["bp"] as? Double)
        #expect(abs(bp - 0.9534969548334766) < 1e-12)
    }

    @Test func aMissingFileIsAUserError() throws {
        let reference = try write(Self.referenceText, to: "missing.ref")
        let absent = Self.folder.appendingPathComponent("no-such-hypothesis.txt").path
        expectUserFailure(try bleu(["--reference", reference, "--hypothesis", absent]), naming: absent, noOutput: true)
        expectUserFailure(try bleu(["--reference", absent, "--hypothesis", reference]), naming: absent, noOutput: true)
    }

    @Test func unequalLineCountsAreAUserError() throws {
        let reference = try write(Self.referenceText, to: "count.ref")
        let hypothesis = try write("the cat sat on a mat.\nA dog barked.\n", to: "count.hyp")
        expectUserFailure(try bleu(["--reference", reference, "--hypothesis", hypothesis]), naming: hypothesis, noOutput: true)
    }

    @Test func invalidUTF8IsAUserError() throws {
        let reference = try write(Self.referenceText, to: "utf8.ref")
        let url = Self.folder.appendingPathComponent("latin1.hyp")
        try Data([0x63, 0x61, 0x66, 0xE9, 0x0A, 0x61, 0x0A, 0x62, 0x0A]).write(to: url)   // "café" in Latin-1
        let result = try bleu(["--reference", reference, "--hypothesis", url.path])
        expectUserFailure(result, naming: url.path, noOutput: true)
        #expect(result.standardError.contains("UTF-8"))
    }
}
