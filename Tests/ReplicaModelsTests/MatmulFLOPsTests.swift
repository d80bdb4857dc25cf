import Testing
import ReplicaNN
import ReplicaModels

/// The matrix-product FLOP counts behind `bench step`'s `mfu`, against counts made by hand, product
/// by product, for configurations small enough to write out.
@Suite struct MatmulFLOPsTests {
    @Test func gptCountsEveryProductOfForwardAndTwiceItBackward() {
        var config = GPTConfig()
        (config.layerCount, config.headCount, config.embedding, config.blockSize, config.vocabularySize) = (1, 2, 4, 3, 5)
        // B 2, T 3: N 6 tokens, C 4, V 5. One block forward:
        let qkv = 2 * 6 * 4 * 12              // [6, 4]·[4, 12]
        let scores = 2 * (2 * 2) * 3 * 3 * 2  // per batch and head [3, 2]·[2, 3]: 2·B·T²·C
        let values = 2 * (2 * 2) * 3 * 2 * 3  // per batch and head [3, 3]·[3, 2]
        let projection = 2 * 6 * 4 * 4
        let mlp = 2 * 6 * 4 * 16 + 2 * 6 * 16 * 4
        let head = 2 * 6 * 4 * 5              // tied [6, 4]·[4, 5]
        let forward = qkv + scores + values + projection + mlp + head
        #expect(forward == 2832)
        #expect(config.matmulFLOPs(batch: 2) == Double(3 * forward))
        // Layers add blocks, not heads.
        config.layerCount = 3
        #expect(config.matmulFLOPs(batch: 2) == Double(3 * (3 * (forward - head) + head)))
    }

    @Test func gpt2SmallIsAboutSixFLOPsAParameterATokenPlusAttention() {
        // Kaplan et al.'s 6·N·P for the non-embedding parameters and the head, plus 12·L·T·C a token for attention.
        var config = GPTPreset.gpt2Small.config
        config.vocabularySize = 65
        let (L, C, T, V) = (12.0, 768.0, 1024.0, 65.0)
        let tokens = T
        let expected = 6 * tokens * (12 * L * C * C + V * C) + 12 * L * T * C * tokens
        #expect(config.matmulFLOPs(batch: 1) == expected)
    }

    @Test func seq2seqCountsEncoderDecoderCrossAttentionAndHeadFromThePaddedShapes() {
        var config = TransformerConfig()
        (config.embedding, config.heads, config.feedForward, config.vocabularySize) = (4, 2, 8, 5)
        (config.encoderLayers, config.decoderLayers) = (1, 1)
        // B 2, S 3, T 2: 6 source and 4 target tokens.
        let encoder = 2 * 6 * 4 * 12 + 2 * 6 * 4 * 4      // qkv, output
            + 2 * (2 * 2 * 3 * 3 * 4)                     // scores and values, S×S
            + 2 * 6 * 4 * 8 + 2 * 6 * 8 * 4               // feed-forward
        let decoder = 2 * 4 * 4 * 12 + 2 * 4 * 4 * 4      // self-attention's qkv, output
            + 2 * (2 * 2 * 2 * 2 * 4)                     // T×T
            + 2 * 4 * 4 * 4 + 2 * 6 * 4 * 8 + 2 * 4 * 4 * 4  // cross-attention's query, key-value (of the memory), output
            + 2 * (2 * 2 * 2 * 3 * 4)                     // T×S
            + 2 * 4 * 4 * 8 + 2 * 4 * 8 * 4               // feed-forward
        let head = 2 * 3 * 4 * 5                          // the 3 predicted of the 4 target rows
        #expect(encoder == 1824 && decoder == 1984)
        #expect(config.matmulFLOPs(batch: 2, sourceLength: 3, targetLength: 2, predictedTokens: 3) == Double(3 * (encoder + decoder + head)))
        // The additive scorer's scores are element-wise: only the values' products remain.
        config.scorer = .additive
        let scores = 2 * 2 * 3 * 3 * 4 + 2 * 2 * 2 * 2 * 4 + 2 * 2 * 2 * 3 * 4
        #expect(config.matmulFLOPs(batch: 2, sourceLength: 3, targetLength: 2, predictedTokens: 3) == Double(3 * (encoder + decoder + head - scores)))
    }

    @Test func mlmCountsItsEncoderOverEveryTokenAndItsOutputLayerOverTheMaskedRows() {
        var config = MaskedLanguageModelConfig()
        (config.vocabularySize, config.embedding, config.heads, config.layers, config.feedForward) = (5, 4, 2, 1, 8)
        // B 2 sentences padded to T 3: 6 tokens, C 4, F 8, V 5; 2 masked rows.
        let layer = 2 * 6 * 4 * 12 + 2 * 6 * 4 * 4       // qkv, output
            + 2 * (2 * 2 * 3 * 3 * 4)                    // scores and values, T×T
            + 2 * 6 * 4 * 8 + 2 * 6 * 8 * 4              // feed-forward
        let head = 2 * 2 * 4 * 5                         // the 2 masked rows only
        #expect(config.matmulFLOPs(batch: 2, length: 3, predictedTokens: 2) == Double(3 * (layer + head)))
    }
}
