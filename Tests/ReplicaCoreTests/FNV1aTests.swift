import Testing
import ReplicaCore

@Suite struct FNV1aTests {
    /// The published 64-bit FNV-1a test vectors: checkpoints store these hashes, so they must never change.
    @Test func stringsHashToThePublishedValues() {
        #expect(fnv1a("") == 0xcbf2_9ce4_8422_2325)
        #expect(fnv1a("a") == 0xaf63_dc4c_8601_ec8c)
        #expect(fnv1a("foobar") == 0x8594_4171_f739_67e8)
    }

    /// A hash table hashes its keys a word at a time: combining bytes one by one is the string hash.
    @Test func combiningByteByByteIsTheStringHash() {
        let bytes = Array("foobar".utf8)
        #expect(bytes.reduce(FNV1a.offsetBasis) { FNV1a.combine($0, UInt64($1)) } == fnv1a("foobar"))
    }
}
