import ReplicaNN

/// Each task's optimisation defaults, in one place: `replica train`, `bench step` and the studies
/// start from these, and the command line only overrides them (as nanoGPT's config block).
extension TrainingOptions {
    /// `train charlm`: nanoGPT's CPU configuration (AdamW lr 1e-3, 100 warmup steps, cosine to
    /// lr/10, β2 0.99, weight decay 0.1, batch 12, 2000 steps).
    public static func characterLanguageModel() -> TrainingOptions { TrainingOptions() }

    /// `train gat` (the GAT paper's Cora settings: Adam lr 0.005, L2 5e-4, constant rate, early
    /// stopping within a cap of 100,000 epochs) or, with `gcn`, Kipf & Welling's (lr 0.01, 200 epochs).
    public static func nodeClassification(gcn: Bool) -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = gcn ? 200 : 100_000
        options.learningRate = gcn ? 0.01 : 0.005
        options.weightDecay = 5e-4
        options.warmupSteps = 0
        options.schedule = .constant
        options.optimizer = .adam
        options.beta2 = 0.999
        options.evaluationInterval = 1
        options.clip = 0
        return options
    }

    /// `train graphmae`: the authors' Cora settings (Adam lr 1e-3, weight decay 2e-4, cosine to 0
    /// over 1500 epochs, the reconstruction loss evaluated at the end only).
    public static func graphMAE() -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = 1500
        options.learningRate = 1e-3
        options.weightDecay = 2e-4
        options.warmupSteps = 0
        options.schedule = .cosine          // lr·(1 + cos(π·epoch/epochs))/2, the authors' LambdaLR
        options.minimumLearningRate = 0
        options.optimizer = .adam
        options.beta2 = 0.999
        options.evaluationInterval = 0      // the reconstruction loss at the end; the probe after
        options.clip = 0
        return options
    }

    /// `train mlm`: AdamW lr 1e-3, 200 warmup steps, cosine, weight decay 0.01, batch 64 sentences, 3000 steps.
    public static func maskedLanguageModel() -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = 3000
        options.batchSize = 64
        options.learningRate = 1e-3
        options.warmupSteps = 200
        options.schedule = .cosine
        options.weightDecay = 0.01
        options.beta2 = 0.99
        return options
    }

    /// `train cbow`: Adam lr 1e-2, 100 warmup steps, cosine, batch 512 windows, 3000 steps.
    public static func continuousBagOfWords() -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = 3000
        options.batchSize = 512
        options.optimizer = .adam
        options.learningRate = 1e-2
        options.warmupSteps = 100
        options.schedule = .cosine
        options.weightDecay = 0
        options.beta2 = 0.999
        options.clip = 0
        return options
    }

    /// `train translate`: the inverse-square-root schedule of Vaswani et al. (β2 0.98, no weight
    /// decay), 2000 padded tokens per rank; a preset sets steps, warmup, rate and evaluation.
    public static func translation(preset: TranslatePreset?) -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = preset?.steps ?? 2500
        options.batchSize = preset?.globalBatchTokens ?? 2000
        options.learningRate = preset?.learningRate ?? 1e-3
        options.warmupSteps = preset?.warmup ?? 500
        options.schedule = .inverseSquareRoot
        options.weightDecay = 0
        options.beta2 = 0.98
        options.evaluationInterval = preset?.evaluationInterval ?? 0
        return options
    }
}
