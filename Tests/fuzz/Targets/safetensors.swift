import Foundation
import ReplicaCore

// Fuzz target: SafeTensors.read, the reader of every checkpoint's model.safetensors and
// optimizer.safetensors. The input is one file. A file it accepts must also survive a round
// trip: written back with SafeTensors.write and read again, it gives the same names, order,
// shapes, bits and metadata.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let file = writeScratch(inputData(start, count), "model.safetensors")
    guard let read = expectingUserErrors({ try SafeTensors.read(from: file) }) else { return 0 }

    var total = 0
    for name in read.order {
        guard let tensor = read.tensors[name] else { fatalError("fuzz invariant: \(name) is in order but not in tensors") }
        check(tensor.count == Tensor.elementCount(tensor.shape), "\(name): count \(tensor.count), shape \(tensor.shape)")
        total += tensor.count * MemoryLayout<Float>.stride
    }
    check(read.order.count == read.tensors.count, "order lists \(read.order.count) names for \(read.tensors.count) tensors")
    check(total <= count, "\(total) bytes of tensors from a \(count)-byte file")

    let copy = scratch.appendingPathComponent("copy.safetensors")
    do {
        try SafeTensors.write(read.order.map { ($0, read.tensors[$0]!) }, metadata: read.metadata, to: copy)
    } catch {
        fatalError("fuzz: writing back what was read failed: \(error)")
    }
    guard let again = expectingUserErrors({ try SafeTensors.read(from: copy) }) else {
        fatalError("fuzz invariant: SafeTensors.read rejects what SafeTensors.write wrote from an accepted file")
    }
    check(again.order == read.order, "round trip changed the order: \(read.order) -> \(again.order)")
    check(again.metadata == read.metadata, "round trip changed the metadata")
    for name in read.order {
        let (before, after) = (read.tensors[name]!, again.tensors[name]!)
        check(before.shape == after.shape, "\(name): round trip changed the shape")
        check(memcmp(before.data, after.data, before.count * MemoryLayout<Float>.stride) == 0, "\(name): round trip changed the bits")
    }
    return 0
}
