import Foundation
import Testing
import _ReplicaTestSupport

/// `replica bleu` against the real sacreBLEU from PyPI (in the repository's venv), on hypothesis
/// files made from the Multi30k test references: perturbed words, shuffled lines, empty lines,
/// sentences shorter than 4 tokens, and a lower-cased comparison. Scores must agree to 0.01.
@Suite(.serialized) struct SacreBLEUComparisonTests {
    /// Writes the reference and hypothesis files into `folder` and prints sacreBLEU's scores as
    /// JSON: {name: {"bleu", "precisions", "bp", "sys_len", "ref_len"}}.
    static let script = #"""
    import gzip, json, random, sys
    import sacrebleu
    folder, source = sys.argv[1], sys.argv[2]
    with gzip.open(source, "rt", encoding="utf-8") as f:
        refs = [line.rstrip("\n") for line in f][:300]
    rng = random.Random(7)
    def perturb(line, p):
        words = line.split()
        out = [w for w in words if rng.random() > p]
        if rng.random() < 0.3 and out:
            out.insert(rng.randrange(len(out) + 1), rng.choice(["the", "a", "man", ",", "."]))
        return " ".join(out)
    hyps = {
        "perturbed": [perturb(r, 0.15) for r in refs],
        "heavily-perturbed": [perturb(r, 0.5) for r in refs],
        "with-empty-lines": ["" if i % 7 == 0 else perturb(r, 0.1) for i, r in enumerate(refs)],
        "short": [" ".join(r.split()[: 1 + i % 3]) for i, r in enumerate(refs)],
        "shuffled": refs[1:] + refs[:1],
    }
    with open(f"{folder}/ref.txt", "w", encoding="utf-8") as f:
        f.write("".join(r + "\n" for r in refs))
    scores = {}
    for name, lines in hyps.items():
        with open(f"{folder}/{name}.txt", "w", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in lines))
        for lowercase in (False, True):
            b = sacrebleu.corpus_bleu(lines, [refs], lowercase=lowercase)
            scores[name + (":lc" if lowercase else "")] = {
                "bleu": b.score, "precisions": b.precisions, "bp": b.bp, "sys_len": b.sys_len, "ref_len": b.ref_len}
    print(json.dumps(scores))
    """#

    /// The python of the repository's venv with sacreBLEU importable, installed from PyPI if it was
    /// not there (CI has PyPI, not the open internet): launch/python.sh, as the bench scripts use.
    static func python() throws -> String {
        let helper = repositoryRoot.appendingPathComponent("launch/python.sh").path
        let made = try runProcess("/bin/bash", [helper, "sacrebleu"], timeout: 600)
        try #require(made.status == 0, "launch/python.sh sacrebleu failed: \(made.standardError)")
        return try #require(made.lines.last)
    }

    @Test func replicaBLEUEqualsSacreBLEUFromPyPI() throws {
        let python = try Self.python()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("replica-sacrebleu-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = folder.appendingPathComponent("make.py")
        try Data(Self.script.utf8).write(to: script)
        let source = try Fixtures.multi30kFile("test_2016_flickr.en.gz").path
        let made = try runProcess(python, [script.path, folder.path, source], timeout: 120)
        try #require(made.status == 0, "\(made.standardError)")
        let expected = try #require(JSONSerialization.jsonObject(with: Data(made.lines.last!.utf8)) as? [String: [String: Any]])
        #expect(expected.count == 10)
        for (key, sacre) in expected.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: ":")
            var arguments = ["bleu", "--reference", folder.appendingPathComponent("ref.txt").path,
                             "--hypothesis", folder.appendingPathComponent("\(parts[0]).txt").path, "--json"]
            if parts.count > 1 { arguments.append("--lowercase") }
            let result = try runProcess(replicaExecutable, arguments, timeout: 60)
            #expect(result.status == 0, "\(key): \(result.standardError)")
            let ours = try #require(JSONSerialization.jsonObject(with: Data(result.lines.last!.utf8)) as? [String: Any])
            let bleu = try #require(ours["bleu"] as? Double), theirs = try #require(sacre["bleu"] as? Double)
            #expect(abs(bleu - theirs) < 0.01, "\(key): replica \(bleu), sacreBLEU \(theirs)")
            let precisions = try #require(ours["precisions"] as? [Double]), sacrePrecisions = try #require(sacre["precisions"] as? [Double])
            #expect(zip(precisions, sacrePrecisions).allSatisfy { abs($0 - $1) < 0.01 }, "\(key): \(precisions) vs \(sacrePrecisions)")
            #expect(ours["sys_len"] as? Int == sacre["sys_len"] as? Int && ours["ref_len"] as? Int == sacre["ref_len"] as? Int, "\(key)")
            #expect(abs((ours["bp"] as? Double ?? -1) - (sacre["bp"] as? Double ?? -2)) < 1e-4, "\(key)")
        }
    }
}
