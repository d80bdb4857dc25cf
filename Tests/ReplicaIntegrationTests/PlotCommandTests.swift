import Foundation
import Testing
import _ReplicaTestSupport

/// `replica plot metrics` and `replica plot timeline` (issue 21), rendered by a real SVG renderer
/// (rsvg-convert, Debian's librsvg2-bin, which launch/test.sh installs): the PNG has the chart's
/// size, and each run's series colour is drawn (the pixels decoded with Python's zlib).
@Suite(.serialized) struct PlotCommandTests {
    static let renderer = ["/usr/bin/rsvg-convert", "/usr/local/bin/rsvg-convert"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let python = CostModelTests.python
    let runs = DataParallelCommandTests()

    /// (width, height, how many pixels are exactly each colour) of a PNG, from Python's zlib.
    func pixels(_ png: URL, colours: [String]) throws -> (width: Int, height: Int, counts: [Int]) {
        let code = """
        import sys, zlib, struct
        data = open(sys.argv[1], 'rb').read()
        assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
        pos, idat, width = 8, b'', 0
        while pos < len(data):
            length, kind = struct.unpack('>I4s', data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if kind == b'IHDR':
                width, height, depth, colour = struct.unpack('>IIBB', body[:10])
                assert depth == 8 and colour in (2, 6)
                channels = 3 if colour == 2 else 4
            elif kind == b'IDAT':
                idat += body
            pos += 12 + length
        raw, stride, rows, prior = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
        for y in range(height):
            kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b, c = prior[i], (prior[i - channels] if i >= channels else 0)
                if kind == 1: line[i] = (line[i] + a) & 255
                elif kind == 2: line[i] = (line[i] + b) & 255
                elif kind == 3: line[i] = (line[i] + (a + b) // 2) & 255
                elif kind == 4:
                    p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            rows.append(line); prior = line
        wanted = [bytes.fromhex(h) for h in sys.argv[2:]]
        counts = [0] * len(wanted)
        for line in rows:
            for x in range(width):
                pixel = bytes(line[x * channels:x * channels + 3])
                for k, w in enumerate(wanted):
                    if pixel == w: counts[k] += 1
        print(width, height, *counts)
        """
        let result = try runProcess(try #require(Self.python), ["-c", code, png.path] + colours, timeout: 120)
        try #require(result.status == 0, "\(result.standardError)")
        let numbers = result.standardOutput.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        try #require(numbers.count == 2 + colours.count, "\(result.standardOutput)")
        return (numbers[0], numbers[1], Array(numbers[2...]))
    }

    func render(_ svg: URL) throws -> URL {
        let png = svg.deletingPathExtension().appendingPathExtension("png")
        let result = try runProcess(try #require(Self.renderer), [svg.path, "-o", png.path], timeout: 60)
        try #require(result.status == 0, "rsvg-convert \(svg.path): \(result.standardError)")
        return png
    }

    @Test(.enabled(if: renderer != nil && python != nil, "needs rsvg-convert (librsvg2-bin) and python3"))
    func metricsOfTwoRunsRenderWithBothSeries() throws {
        let directory = runs.temporaryDirectory("plot")
        defer { try? FileManager.default.removeItem(at: directory) }
        var files: [String] = []
        for ranks in [1, 2] {
            let metrics = directory.appendingPathComponent("ranks-\(ranks).jsonl").path
            _ = try runs.run(ranks: ranks, DataParallelCommandTests.arguments(batch: 4, steps: 30, directory: directory.appendingPathComponent("c\(ranks)"),
                                                                              extra: ["--metrics", metrics, "--eval-interval", "10"]))
            files.append(metrics)
        }
        let out = directory.appendingPathComponent("charts")
        let plot = try runProcess(replicaExecutable, ["plot", "metrics"] + files + ["--out", out.path], timeout: 60)
        try #require(plot.status == 0, "\(plot.standardError)")
        for chart in ["loss", "val_loss", "lr", "throughput", "comm_ms", "overlap_fraction"] {
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("\(chart).svg").path), "\(chart).svg")
        }
        let svg = try String(contentsOf: out.appendingPathComponent("loss.svg"), encoding: .utf8)
        #expect(svg.contains(">ranks-1<") && svg.contains(">ranks-2<"), "the legend names the files")
        let image = try pixels(try render(out.appendingPathComponent("loss.svg")), colours: ["1f77b4", "d62728"])
        #expect(image.width == 880 && image.height == 320, "\(image.width)×\(image.height)")
        #expect(image.counts.allSatisfy { $0 > 200 }, "each run's line is drawn: \(image.counts) pixels of its colour")
    }

    @Test(.enabled(if: renderer != nil && python != nil, "needs rsvg-convert (librsvg2-bin) and python3"))
    func aTimelineRendersWithEveryLane() throws {
        let directory = runs.temporaryDirectory("plot-timeline")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trace = directory.appendingPathComponent("t.json")
        _ = try runs.run(ranks: 2, DataParallelCommandTests.arguments(batch: 4, steps: 8, directory: directory.appendingPathComponent("c"),
                                                                      extra: ["--bucket-mb", "0.01", "--timeline", trace.path]))
        let out = directory.appendingPathComponent("charts")
        let plot = try runProcess(replicaExecutable, ["plot", "timeline", trace.path, "--out", out.path, "--steps", "2:4"], timeout: 60)
        try #require(plot.status == 0, "\(plot.standardError)")
        let svg = try String(contentsOf: out.appendingPathComponent("timeline.svg"), encoding: .utf8)
        for lane in ["rank 0 compute", "rank 1 communication", "rank 1 buckets"] { #expect(svg.contains(lane), "\(lane)") }
        // forward, backward, optimizer, communication, buckets
        let image = try pixels(try render(out.appendingPathComponent("timeline.svg")), colours: ["9ecae1", "1f77b4", "9467bd", "d62728", "ff7f0e"])
        #expect(image.width == 960)
        #expect(image.counts.allSatisfy { $0 > 20 }, "forward, backward, optimizer, communication and buckets drawn: \(image.counts)")
        let bad = try runProcess(replicaExecutable, ["plot", "timeline", directory.appendingPathComponent("c").path, "--out", out.path], timeout: 60)
        #expect(bad.status == 1, "a folder is not a timeline: \(bad.standardError)")
    }
}
