import Foundation
import ReplicaCore
@testable import ReplicaData

// Fuzz target: NodePropertyDataset.load, the OGB raw-layout reader (Cora, ogbn-arxiv) behind
// `replica train gat|graphmae --data`. The input is eight files joined by "\n#FILE\n" lines, in
// this order (a file left out is missing); each may be plain CSV or gzip.
private let names = [
    "raw/num-node-list.csv", "raw/num-edge-list.csv", "raw/node-feat.csv", "raw/node-label.csv", "raw/edge.csv",
    "split/public/train.csv", "split/public/valid.csv", "split/public/test.csv",
]

// Oracles: a data set it accepts is consistent (features [N, F] in CSR form, labels in
// -1..<classCount, edge ends and split ids in 0..<N, splits disjoint and non-empty, the
// symmetric graph builds); and the field parsers agree with the C library on every field of
// every line: ASCIINumber.parseFloat with strtof (same span, same bits), parseInteger with Int().

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let data = inputData(start, count)
    checkNumberParsers(data)
    writeParts(data, names: names)
    guard let dataset = expectingUserErrors({ try NodePropertyDataset.load(directory: scratch, name: "fuzz") }) else { return 0 }

    let n = dataset.nodeCount
    let features = dataset.features
    check(features.rowCount == n && features.columnCount == dataset.featureCount, "features shape")
    check(features.rowOffsets.count == n + 1 && features.rowOffsets.first == 0
          && features.rowOffsets.last == features.columnIndices.count, "feature row offsets")
    check(zip(features.rowOffsets, features.rowOffsets.dropFirst()).allSatisfy { $0 <= $1 }, "row offsets decrease")
    check(features.columnIndices.allSatisfy { $0 >= 0 && Int($0) < dataset.featureCount }, "feature column out of range")
    check(features.values.count == features.columnIndices.count && !features.values.contains(0), "feature values")
    check(dataset.labels.count == n, "label count")
    check(dataset.labels.allSatisfy { $0 >= -1 && Int($0) < dataset.classCount }, "label out of range")
    check(dataset.edgeSources.allSatisfy { $0 >= 0 && Int($0) < n }, "edge source out of range")
    check(dataset.edgeTargets.allSatisfy { $0 >= 0 && Int($0) < n }, "edge target out of range")
    let splits = [dataset.train, dataset.validation, dataset.test]
    check(splits.allSatisfy { !$0.isEmpty }, "an empty split")
    let listed = splits.joined()
    check(listed.allSatisfy { $0 >= 0 && Int($0) < n } && Set(listed).count == listed.count, "split ids out of range or repeated")
    let graph = dataset.symmetricGraphWithSelfLoops
    _ = graph
    return 0
}

/// Every comma-separated field of every line, through both parsers and their references.
private func checkNumberParsers(_ data: Data) {
    let bytes = [UInt8](data)
    bytes.withUnsafeBufferPointer { all in
        var lineStart = 0
        while lineStart <= all.count {
            var lineEnd = lineStart
            while lineEnd < all.count && all[lineEnd] != 0x0A { lineEnd += 1 }
            let line = UnsafeBufferPointer(rebasing: all[lineStart..<lineEnd])
            var fieldStart = 0
            while fieldStart <= line.count {
                var fieldEnd = fieldStart
                while fieldEnd < line.count && line[fieldEnd] != UInt8(ascii: ",") { fieldEnd += 1 }
                checkField(UnsafeBufferPointer(rebasing: line[fieldStart..<fieldEnd]))
                fieldStart = fieldEnd + 1
            }
            lineStart = lineEnd + 1
        }
    }
}

private func checkField(_ field: UnsafeBufferPointer<UInt8>) {
    let text = field.map { String(UnicodeScalar($0)) }.joined()
    var position = 0
    if let value = ASCIINumber.parseFloat(field, at: &position) {
        check(position > 0 && position <= field.count, "parseFloat moved to \(position) in \(field.count) bytes")
        let span = Array(field[0..<position]).map { CChar(bitPattern: $0) } + [0]
        var stop: UnsafeMutablePointer<CChar>?
        let reference = span.withUnsafeBufferPointer { buffer -> (Float, Int) in
            let value = strtof(buffer.baseAddress!, &stop)
            return (value, buffer.baseAddress!.distance(to: stop!))
        }
        check(reference.1 == position, "parseFloat took \(position) bytes of \(String(reflecting: text)), strtof \(reference.1)")
        check(value.bitPattern == reference.0.bitPattern,
              "parseFloat(\(String(reflecting: text))) = \(value) (\(value.bitPattern)), strtof = \(reference.0) (\(reference.0.bitPattern))")
    }
    position = 0
    if let value = ASCIINumber.parseInteger(field, at: &position) {
        let span = String(decoding: field[0..<position], as: UTF8.self).trimmingCharacters(in: CharacterSet(charactersIn: " \t"))
        check(Int(span) == value, "parseInteger(\(String(reflecting: text))) = \(value), Int(\(String(reflecting: span))) = \(String(describing: Int(span)))")
    }
}
