import Foundation
import Testing
import ReplicaCore
import ReplicaData
import _ReplicaTestSupport

@Suite struct SyntheticGraphTests {
    /// A small graph: 3,000 nodes, 24,000 edges, 6 features, 5 classes.
    static func small(seed: UInt64 = 1, homophily: Double = 0.65) -> SyntheticGraphConfig {
        var config = SyntheticGraphConfig()
        config.nodeCount = 3000
        config.edgeCount = 24_000
        config.featureCount = 6
        config.classCount = 5
        config.homophily = homophily
        config.seed = seed
        return config
    }

    /// Same-class edges are Binomial(E, H): at E = 24,000 their fraction's standard deviation is
    /// at most √(0.25 / 24,000) = 0.0032; 0.02 is over 6 of them.
    static let homophilyTolerance = 0.02

    /// Every file's bytes, by path under `directory`.
    func files(_ directory: URL) throws -> [String: Data] {
        var result: [String: Data] = [:]
        for path in ["raw/edge.csv.gz", "raw/node-feat.csv.gz", "raw/node-label.csv.gz", "raw/num-node-list.csv.gz",
                     "raw/num-edge-list.csv.gz", "split/public/train.csv.gz", "split/public/valid.csv.gz", "split/public/test.csv.gz"] {
            result[path] = try Data(contentsOf: directory.appendingPathComponent(path))
        }
        return result
    }

    @Test func theSameSeedWritesTheSameBytesAndAnotherSeedOthers() throws {
        try withTemporaryDirectory { directory in
            let first = directory.appendingPathComponent("first"), again = directory.appendingPathComponent("again")
            let other = directory.appendingPathComponent("other")
            _ = try SyntheticGraph(config: Self.small(seed: 7)).write(to: first)
            _ = try SyntheticGraph(config: Self.small(seed: 7)).write(to: again)
            _ = try SyntheticGraph(config: Self.small(seed: 8)).write(to: other)
            let a = try files(first), b = try files(again), c = try files(other)
            #expect(a == b)
            for path in ["raw/edge.csv.gz", "raw/node-feat.csv.gz", "raw/node-label.csv.gz", "split/public/train.csv.gz"] {
                #expect(a[path] != c[path], "\(path) does not depend on the seed")
            }
            #expect(a["raw/num-edge-list.csv.gz"] == c["raw/num-edge-list.csv.gz"])
        }
    }

    @Test(arguments: [0.2, 0.65, 0.9])
    func theGraphLoadsWithExactlyItsSizesAndItsHomophilyIsNearH(homophily: Double) throws {
        try withTemporaryDirectory { directory in
            let config = Self.small(homophily: homophily)
            let summary = try SyntheticGraph(config: config).write(to: directory.appendingPathComponent("g"))
            let dataset = try NodePropertyDataset.load(directory: directory.appendingPathComponent("g"), name: "g")
            #expect(dataset.nodeCount == 3000 && summary.nodeCount == 3000)
            #expect(dataset.edgeCount == 24_000 && summary.edgeCount == 24_000)
            #expect(dataset.featureCount == 6 && dataset.classCount == 5)
            #expect(dataset.labels.allSatisfy { $0 >= 0 && $0 < 5 }, "every node is labelled")
            #expect(zip(dataset.edgeSources, dataset.edgeTargets).allSatisfy { $0 != $1 }, "no self-loops")
            let same = zip(dataset.edgeSources, dataset.edgeTargets).filter { dataset.labels[Int($0)] == dataset.labels[Int($1)] }.count
            let measured = Double(same) / Double(dataset.edgeCount)
            #expect(measured == summary.measuredHomophily, "the summary measures the written edges")
            #expect(abs(measured - homophily) < Self.homophilyTolerance, "homophily \(measured), asked \(homophily)")
        }
    }

    @Test func thePresetsHaveOGBsExactSizes() {
        let arxiv = SyntheticGraphPreset.arxiv.config, products = SyntheticGraphPreset.products.config
        #expect((arxiv.nodeCount, arxiv.edgeCount, arxiv.featureCount, arxiv.classCount) == (169_343, 1_166_243, 128, 40))
        #expect((products.nodeCount, products.edgeCount, products.featureCount, products.classCount) == (2_449_029, 61_859_140, 100, 47))
        #expect(arxiv.splitCounts == (90_941, 29_799, 48_603))
        #expect(products.splitCounts == (196_615, 39_323, 2_213_091))
        #expect(arxiv.problem == nil && products.problem == nil)
    }

    @Test func theSplitsAreDisjointAndCoverEveryNode() throws {
        try withTemporaryDirectory { directory in
            let config = Self.small()
            _ = try SyntheticGraph(config: config).write(to: directory.appendingPathComponent("g"))
            let dataset = try NodePropertyDataset.load(directory: directory.appendingPathComponent("g"), name: "g")
            let all = dataset.train + dataset.validation + dataset.test
            #expect(all.count == 3000 && Set(all) == Set((0..<3000).map { Int32($0) }))
            #expect((dataset.train.count, dataset.validation.count, dataset.test.count) == config.splitCounts)
            #expect(dataset.train == dataset.train.sorted() && dataset.test == dataset.test.sorted())
        }
    }

    /// θ has a Pareto tail (α = 2.5): the largest of 3,000 weights is about 3000^(2/3) ≈ 200 times
    /// the smallest, so the busiest node has some 70 times the mean degree; 10 times leaves room.
    @Test func degreesAreHeavyTailed() throws {
        try withTemporaryDirectory { directory in
            _ = try SyntheticGraph(config: Self.small()).write(to: directory.appendingPathComponent("g"))
            let dataset = try NodePropertyDataset.load(directory: directory.appendingPathComponent("g"), name: "g")
            var degree = [Int](repeating: 0, count: dataset.nodeCount)
            for (s, t) in zip(dataset.edgeSources, dataset.edgeTargets) { degree[Int(s)] += 1; degree[Int(t)] += 1 }
            let mean = Double(2 * dataset.edgeCount) / Double(dataset.nodeCount)
            let sorted = degree.sorted()
            #expect(Double(sorted.last!) > 10 * mean, "max degree \(sorted.last!), mean \(mean)")
            #expect(Double(sorted[sorted.count / 2]) < mean, "the median \(sorted[sorted.count / 2]) is below the mean \(mean)")
        }
    }

    /// Each class's average feature vector is its mean, 0.1 · μ_c with μ_c ~ N(0, I), plus averaged
    /// noise: squared norm about 0.01 · 64 = 0.64 (±0.11) plus 64 / (400 to 900 nodes) ≤ 0.16.
    /// Without the class signal it would be the noise's alone, under 0.3.
    @Test func featuresDependOnTheClass() throws {
        try withTemporaryDirectory { directory in
            var config = Self.small()
            config.featureCount = 64
            _ = try SyntheticGraph(config: config).write(to: directory.appendingPathComponent("g"))
            let dataset = try NodePropertyDataset.load(directory: directory.appendingPathComponent("g"), name: "g")
            var sums = [[Double]](repeating: [Double](repeating: 0, count: 64), count: 5)
            var counts = [Int](repeating: 0, count: 5)
            let features = dataset.features
            for node in 0..<dataset.nodeCount {
                let label = Int(dataset.labels[node])
                counts[label] += 1
                for entry in features.range(ofRow: node) { sums[label][Int(features.columnIndices[entry])] += Double(features.values[entry]) }
            }
            for c in 0..<5 {
                let norm = sums[c].reduce(0) { $0 + ($1 / Double(counts[c])) * ($1 / Double(counts[c])) }
                #expect(norm > 0.3 && norm < 1.5, "class \(c): squared norm of the mean features \(norm)")
            }
        }
    }

    @Test func anExistingFolderWithFilesIsRefusedAndLeftAsItWas() throws {
        try withTemporaryDirectory { directory in
            let out = directory.appendingPathComponent("out")
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            try Data("keep".utf8).write(to: out.appendingPathComponent("notes.txt"))
            let error = #expect(throws: UserError.self) { try SyntheticGraph(config: Self.small()).write(to: out) }
            #expect(error?.description.contains(out.path) == true && error?.description.contains("not an empty folder") == true,
                    "\(error?.description ?? "")")
            #expect(try FileManager.default.contentsOfDirectory(atPath: out.path) == ["notes.txt"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["out"], "no temporary folder is left")

            let file = directory.appendingPathComponent("file")
            try Data().write(to: file)
            #expect(throws: UserError.self) { try SyntheticGraph(config: Self.small()).write(to: file) }

            let empty = directory.appendingPathComponent("empty")
            try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
            _ = try SyntheticGraph(config: Self.small()).write(to: empty)
            #expect(try NodePropertyDataset.load(directory: empty, name: "empty").nodeCount == 3000)
        }
    }

    @Test func badSizesAreNamedByTheirOption() {
        var config = Self.small()
        config.classCount = 1
        #expect(config.problem?.contains("--classes") == true)
        config = Self.small()
        config.nodeCount = 9
        #expect(config.problem?.contains("--nodes") == true)
        config = Self.small()
        config.homophily = 1.5
        #expect(config.problem?.contains("--homophily") == true)
        config = Self.small()
        config.edgeCount = SyntheticGraphConfig.maximumEdgeCount + 1
        #expect(config.problem?.contains("--avg-degree") == true)
    }
}
