import ReplicaData

// The memory of `train cbow`: V vocabulary, d embedding, B windows a micro-step, w the largest
// reach, k negatives. The rule of the count is MemoryCounting.swift's.

extension CBOWSettings {
    /// Parameters of word2vec CBOW over `vocabulary` words (`CBOW(config).arena.count`): the input
    /// and output tables, V·d each.
    public func parameterCount(vocabulary: Int) -> Int {
        saturatingCount(2 * Double(vocabulary) * Double(embedding))
    }

    /// Floats of one window: its centre, its context offset, at most 2w context words and k negatives.
    var windowFloats: Double { 2 + 2 * Double(window) + Double(negatives) }

    /// Bytes of a training micro-batch of `batch` windows over `vocabulary` words, float32: the
    /// windows (`windowFloats` each), the context means and their gradient (2·B·d) and the scores
    /// B·(k + 1). The evaluation's chunks of 512 held-out windows score each against the whole
    /// vocabulary (512·V); the larger of the two. Held for the whole run: the held-out windows,
    /// the unigram table, and the training text as ids (2 a word, its id and sentence, and 2 a
    /// sentence for its offset; `trainingWords` and `sentences` count the corpus's training split,
    /// at least the words of the vocabulary).
    public func activationBytes(vocabulary: Int, trainingWords: Int, sentences: Int, batch: Int, ranks: Int) -> Int {
        let V = Double(vocabulary), d = Double(embedding), k = Double(negatives), B = Double(batch)
        let training = B * windowFloats + B * (2 * d + k + 1)
        let chunk = min(512, (Double(evaluationWindows) / Double(max(ranks, 1))).rounded(.up))
        let evaluating = chunk * windowFloats + 2 * chunk * d + chunk * (k + 1) + chunk * V
        let held = Double(evaluationWindows) * windowFloats + Double(tableSize) + 2 * Double(trainingWords) + 2 * Double(sentences) + V
        return float32Bytes(max(training, evaluating) + held)
    }

    /// A `train cbow` rank's memory on `corpus` with a `vocabulary`-word vocabulary and these
    /// options (`batchSize` windows a rank), and what to lower when it does not fit.
    public func memoryEstimate(corpus: WordCorpus, vocabulary: Int, options: TrainingOptions, ranks: Int) -> (estimate: MemoryEstimate, advice: String) {
        let words = corpus.train.reduce(0) { $0 + $1.count }
        let estimate = MemoryEstimate.dataParallel(
            parameterCount: parameterCount(vocabulary: vocabulary),
            activations: activationBytes(vocabulary: vocabulary, trainingWords: words, sentences: corpus.train.count,
                                         batch: options.batchSize, ranks: ranks),
            ranks: ranks, options: options)
        return (estimate, "lower --batch-size (\(options.batchSize) windows), --embedding (\(embedding)) or --eval-windows (\(evaluationWindows)), "
            + "or raise --min-count (\(minimumCount), \(vocabulary) words)")
    }
}
