import ArgumentParser
import Foundation
import ReplicaCore
import ReplicaData
import ReplicaModels
import ReplicaStudies
import ReplicaTrain

private func parseIntegers(_ text: String, option: String, minimum: Int) throws -> [Int] {
    if text.isEmpty || text == "none" { return [] }
    return try commaSeparated(text, option: option, expecting: "integers of at least \(minimum)", example: "16,32,64",
                              isValid: { $0 >= minimum }) { Int($0) }
}

private func json(_ s: AttentionStatistics) -> [String: JSONValue] {
    ["entropy": .number(s.entropy), "entropy_fraction": .number(s.entropyFraction), "max_weight": .number(s.maximumProbability),
     "score_std": .number(s.scoreStandardDeviation), "q_grad_norm": .number(s.queryGradientNorm), "k_grad_norm": .number(s.keyGradientNorm),
     "saturated_fraction": .number(s.saturatedFraction), "median_row_q_grad": .number(s.medianRowQueryGradient)]
}

private func cells(_ s: AttentionStatistics) -> String {
    String(format: "%.2f | %.3f | %.3f | %.3f | %.0f %% | %.3g | %.3g | %.3g", s.scoreStandardDeviation, s.entropy, s.entropyFraction,
           s.maximumProbability, 100 * s.saturatedFraction, s.queryGradientNorm, s.medianRowQueryGradient, s.keyGradientNorm)
}

private func csvCells(_ s: AttentionStatistics) -> String {
    "\(s.scoreStandardDeviation),\(s.entropy),\(s.entropyFraction),\(s.maximumProbability),\(s.saturatedFraction),"
        + "\(s.queryGradientNorm),\(s.medianRowQueryGradient),\(s.keyGradientNorm)"
}

struct StudyAttentionScaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention-scaling",
        abstract: "Softmax entropy and the gradient reaching Q and K with and without 1/√d_k; char-LM curves with and without it.",
        discussion: """
        Random inputs: for each d_k, q, k, v ~ N(0, 1) over --length keys (full attention, --random-heads heads), upstream gradient N(0, 1/d_k). Trained inputs: every attention layer's own Q, K, V on validation blocks (causal) — of --checkpoint if given, and of the char-LMs the curves train. Curves: the char-LM (--layers 4, --embedding 128, block 64, batch 12) trained --curve-steps steps from the same seed with and without the factor, at each --curve-head-sizes (heads = width / d_k).
          replica study attention-scaling --out docs/studies
          replica study attention-scaling --checkpoint runs/charlm --curve-steps 0 --json
        """
    )
    @Option(help: "Head sizes d_k for the random inputs, comma-separated.") var headSizes = "16,32,64,128,256,512"
    @Option(help: "Keys (and queries) per random head.") var length = 64
    @Option(help: "Random heads drawn per d_k (statistics are averaged).") var randomHeads = 8
    @Option(help: "A charlm checkpoint (step folder or --checkpoint-dir) whose queries and keys to measure.") var checkpoint: String?
    @Option(help: "Head sizes of the char-LM pairs trained with and without the factor ('none': no curves).") var curveHeadSizes = "32,128"
    @Option(help: "Training steps per curve (0: no curves).") var curveSteps = 500
    @Option(help: "Transformer blocks of the curves' char-LM.") var layers = 4
    @Option(help: "Embedding width of the curves' char-LM.") var embedding = 128
    @Option(help: "Evaluate the curves every N steps.") var evalInterval = 100
    @Option(help: "Validation batches per evaluation.") var evalBatches = 40
    @Option(help: "Text for the curves and the trained inputs (default: the embedded Tiny Shakespeare).") var data: String?
    @Option(help: "Seed of the random inputs and of the char-LMs.") var seed: UInt64 = 1337
    @Option(help: "Folder for attention-scaling.csv, attention-scaling-curves.csv and attention-scaling.svg.") var out: String?
    @OptionGroup var runtimeOptions: RuntimeOptions

    func validate() throws {
        guard !(try parseIntegers(headSizes, option: "--head-sizes", minimum: 1)).isEmpty else {
            throw ValidationError("--head-sizes needs at least one head size.")
        }
        guard layers >= 1, embedding >= 1 else { throw ValidationError("--layers and --embedding must be at least 1.") }
        for size in try parseIntegers(curveHeadSizes, option: "--curve-head-sizes", minimum: 1) where embedding % size != 0 {
            throw ValidationError("--curve-head-sizes: \(size) does not divide --embedding \(embedding); use a divisor, such as 32.")
        }
        guard length >= 2, randomHeads >= 1, curveSteps >= 0, evalInterval >= 1, evalBatches >= 1 else {
            throw ValidationError("--length must be ≥ 2, --random-heads, --eval-interval and --eval-batches ≥ 1, --curve-steps ≥ 0.")
        }
    }

    func run() throws {
        let runtime = try singleRankRuntime(runtimeOptions)
        var study = AttentionScalingStudy()
        study.headSizes = try parseIntegers(headSizes, option: "--head-sizes", minimum: 1)
        study.sequenceLength = length
        study.randomHeads = randomHeads
        study.curveHeadSizes = curveSteps > 0 ? try parseIntegers(curveHeadSizes, option: "--curve-head-sizes", minimum: 1) : []
        study.curveSteps = curveSteps
        study.evaluationInterval = evalInterval
        study.evaluationBatches = evalBatches
        study.seed = seed
        study.model.layerCount = layers
        study.model.embedding = embedding
        let started = Date()
        let text = try data.map(TextCorpus.load) ?? TextCorpus.tinyShakespeare()
        runtime.log("attention-scaling: d_k \(study.headSizes.map(String.init).joined(separator: ", ")), \(length) keys, "
            + "\(randomHeads) random heads; curves at d_k \(study.curveHeadSizes.map(String.init).joined(separator: ", ")), "
            + "\(curveSteps) steps; \(runtime.threads) thread(s)")

        let randomRows = study.randomRows()
        var trainedRows: [AttentionScalingStudy.TrainedRow] = []
        if let checkpoint {
            let generator = try TextGenerator(checkpoint: Checkpoint.folder(forPath: checkpoint))
            let tokens: [Int32]
            do { tokens = try generator.vocabulary.encode(text) } catch {
                throw UserError("--checkpoint \(checkpoint): its vocabulary cannot encode the study's text (\(error)); pass the text it was trained on with --data")
            }
            trainedRows += study.trainedRows(model: generator.model, validation: Array(tokens[(tokens.count * 9 / 10)...]),
                                             source: "checkpoint", trainedScaled: true)
        }
        var curves: [AttentionScalingStudy.Curve] = []
        let allTokens = try CharacterVocabulary(text: text).encode(text)
        let validation = Array(allTokens[(allTokens.count * 9 / 10)...])   // charlm's validation split
        for headSize in study.curveHeadSizes {
            for scaled in [true, false] {
                let curve = try study.trainCurve(text: text, headSize: headSize, scaled: scaled) { runtime.log($0) }
                curves.append(curve)
                trainedRows += study.trainedRows(model: curve.model, validation: validation,
                                                 source: "charlm \(curveSteps) steps \(scaled ? "with" : "without")",
                                                 trainedScaled: scaled)
            }
        }
        let seconds = Date().timeIntervalSince(started)

        var table = "Random inputs (q, k, v ~ N(0, 1), \(length) keys, full attention, \(randomHeads) heads):\n\n"
        table += "| d_k | 1/√d_k | score std | entropy (nats) | entropy / log n | max weight | rows > 0.99 | ‖∂L/∂Q‖ | median ‖∂L/∂q_i‖ | ‖∂L/∂K‖ |\n"
            + "|---|---|---|---|---|---|---|---|---|---|\n"
        var csv = "inputs,source,d_k,trained_with_factor,factor,score_std,entropy,entropy_fraction,max_weight,saturated_fraction,q_grad_norm,median_row_q_grad,k_grad_norm,layer\n"
        for row in randomRows {
            table += "| \(row.headSize) | \(row.scaled ? "yes" : "no") | \(cells(row.statistics)) |\n"
            csv += "random,N(0 1),\(row.headSize),,\(row.scaled),\(csvCells(row.statistics)),\n"
        }
        if trainedRows.isEmpty {
            table += "\nTrained inputs: absent (no --checkpoint and no curves).\n"
        } else {
            table += "\nTrained inputs (each layer's own Q, K, V on validation text, causal; mean over layers):\n\n"
            table += "| source | d_k | 1/√d_k | score std | entropy (nats) | entropy / log m | max weight | rows > 0.99 | ‖∂L/∂Q‖ | median ‖∂L/∂q_i‖ | ‖∂L/∂K‖ |\n"
                + "|---|---|---|---|---|---|---|---|---|---|---|\n"
            for row in trainedRows {
                table += "| \(row.source) | \(row.headSize) | \(row.scaled ? "yes" : "no") | \(cells(row.statistics)) |\n"
                let trained = row.trainedScaled.map { "\($0)" } ?? ""
                csv += "trained,\(row.source),\(row.headSize),\(trained),\(row.scaled),\(csvCells(row.statistics)),mean\n"
                for (layer, s) in row.perLayer.enumerated() {
                    csv += "trained,\(row.source),\(row.headSize),\(trained),\(row.scaled),\(csvCells(s)),\(layer)\n"
                }
            }
        }
        var curveCSV = "d_k,factor,step,val_loss\n"
        if let first = curves.first {
            table += "\nChar-LM validation loss, same seed, with and without 1/√d_k:\n\n"
            table += "| d_k | 1/√d_k | " + first.validationLoss.map { "step \($0.step)" }.joined(separator: " | ") + " | seconds |\n"
            table += "|---|---|" + String(repeating: "---|", count: first.validationLoss.count + 1) + "\n"
            for curve in curves {
                table += "| \(curve.headSize) | \(curve.scaled ? "yes" : "no") | "
                    + curve.validationLoss.map { String(format: "%.4f", $0.loss) }.joined(separator: " | ")
                    + String(format: " | %.0f |\n", curve.seconds)
                for point in curve.validationLoss { curveCSV += "\(curve.headSize),\(curve.scaled),\(point.step),\(point.loss)\n" }
            }
        }

        var panels: [LinePlot] = []
        var entropyPlot = LinePlot(title: "Attention entropy, random q, k", xLabel: "d_k", yLabel: "entropy / log n", logX: true)
        var gradientPlot = LinePlot(title: "Gradient reaching Q, random q, k", xLabel: "d_k", yLabel: "norm (log scale)", logX: true, logY: true)
        for scaled in [true, false] {
            let rows = randomRows.filter { $0.scaled == scaled }
            let name = scaled ? "with 1/√d_k" : "without"
            entropyPlot.series.append(.init(name: name, points: rows.map { (Double($0.headSize), $0.statistics.entropyFraction) }, dashed: !scaled))
            gradientPlot.series.append(.init(name: "‖∂L/∂Q‖ " + name, points: rows.map { (Double($0.headSize), $0.statistics.queryGradientNorm) },
                                             dashed: !scaled))
            gradientPlot.series.append(.init(name: "median ‖∂L/∂q_i‖ " + name,
                                             points: rows.map { (Double($0.headSize), $0.statistics.medianRowQueryGradient) }, dashed: !scaled))
        }
        panels += [entropyPlot, gradientPlot]
        if !curves.isEmpty {
            var curvePlot = LinePlot(title: "Char-LM validation loss", xLabel: "step", yLabel: "validation loss")
            for curve in curves {
                curvePlot.series.append(.init(name: "d_k \(curve.headSize) \(curve.scaled ? "with 1/√d_k" : "without")",
                                              points: curve.validationLoss.filter { $0.step > 0 }.map { (Double($0.step), $0.loss) },
                                              dashed: !curve.scaled))
            }
            panels.append(curvePlot)
        }
        var files = [("attention-scaling.csv", csv), ("attention-scaling.svg", svgDocument(panels, panelWidth: 420, panelHeight: 320))]
        if !curves.isEmpty { files.append(("attention-scaling-curves.csv", curveCSV)) }
        let written = try writeStudyFiles(files, into: out)
        runtime.log(table + String(format: "\n%.1f s", seconds) + (written.isEmpty ? "" : ", wrote " + written.joined(separator: ", ")))
        runtime.emit(summary: [
            "task": .string("study attention-scaling"), "seconds": .number(seconds), "length": .integer(length),
            "random": .array(randomRows.map { row in
                .object(json(row.statistics).merging(["d_k": .integer(row.headSize), "factor": .bool(row.scaled)]) { a, _ in a })
            }),
            "trained": .array(trainedRows.map { row in
                .object(json(row.statistics).merging([
                    "source": .string(row.source), "d_k": .integer(row.headSize), "factor": .bool(row.scaled),
                    "trained_with_factor": row.trainedScaled.map { .bool($0) } ?? .null,
                    "per_layer": .array(row.perLayer.map { .object(json($0)) }),
                ]) { a, _ in a })
            }),
            "curves": .array(curves.map { curve in .object([
                "d_k": .integer(curve.headSize), "factor": .bool(curve.scaled), "seconds": .number(curve.seconds),
                "val_loss": .array(curve.validationLoss.map { .object(["step": .integer($0.step), "loss": .number($0.loss)]) }),
            ]) }),
        ])
    }
}

struct StudyTemperature: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "temperature",
        abstract: "Entropy, distinct-n and real-word rate of text sampled from one charlm checkpoint at τ = 0.2 ... 2.0.",
        discussion: """
        For every τ, --samples samples of --tokens characters after the same prompt (sample s with seed --seed + s, as `replica generate --seed` would draw it). Reports the mean entropy of each step's sampling distribution softmax(logits/τ), word distinct-1/2/3 (distinct ÷ total word n-grams, pooled over the samples; words are runs of letters, lowercased), and the fraction of generated words that occur in the training text (--data, default Tiny Shakespeare; its first 90%, the charlm training split).
          replica study temperature --checkpoint runs/charlm --json
        """
    )
    @Option(help: "A charlm checkpoint (step folder or --checkpoint-dir).") var checkpoint: String
    @Option(help: "Temperatures, comma-separated.") var temperatures = "0.2,0.4,0.6,0.8,1.0,1.2,1.4,1.6,1.8,2.0"
    @Option(help: "Samples per temperature.") var samples = 4
    @Option(help: "Characters per sample.") var tokens = 500
    @Option(help: "Text every sample continues.") var prompt = "\n"
    @Option(help: "Seed of sample 0.") var seed: UInt64 = 1337
    @Option(help: "The checkpoint's training text (default: the embedded Tiny Shakespeare).") var data: String?
    @Option(help: "Folder for temperature.csv and temperature.svg.") var out: String?
    @OptionGroup var runtimeOptions: RuntimeOptions

    func parsedTemperatures() throws -> [Float] {
        try commaSeparated(temperatures, option: "--temperatures", expecting: "positive numbers", example: "0.5,1,1.5",
                           isValid: { $0 > 0 && $0.isFinite }) { Float($0) }
    }

    func validate() throws {
        _ = try parsedTemperatures()
        guard samples >= 1, tokens >= 1 else { throw ValidationError("--samples and --tokens must be at least 1.") }
    }

    func run() throws {
        let runtime = try singleRankRuntime(runtimeOptions)
        let started = Date()
        let generator = try TextGenerator(checkpoint: Checkpoint.folder(forPath: checkpoint))
        do { _ = try generator.vocabulary.encode(prompt) } catch {
            throw UserError("--prompt: \(error)")
        }
        let text = try data.map(TextCorpus.load) ?? TextCorpus.tinyShakespeare()
        let vocabulary = Set(WordTokenizer.words(String(text.prefix(text.count * 9 / 10)), includingDigits: false))
        var study = TemperatureStudy()
        study.temperatures = try parsedTemperatures()
        study.samples = samples
        study.characters = tokens
        study.prompt = prompt
        study.seed = seed
        runtime.log("temperature: \(study.temperatures.count) temperatures × \(samples) samples × \(tokens) characters, "
            + "\(vocabulary.count) training words, \(runtime.threads) thread(s)")
        let rows = try study.run(generator: generator, vocabulary: vocabulary) { runtime.log($0) }
        let seconds = Date().timeIntervalSince(started)
        var table = "| τ | entropy (nats/char) | distinct-1 | distinct-2 | distinct-3 | known words | sample |\n|---|---|---|---|---|---|---|\n"
        var csv = "temperature,entropy,distinct1,distinct2,distinct3,known_word_fraction,words\n"
        for r in rows {
            let sample = r.sampleLine.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "`", with: "'")
            table += String(format: "| %.1f | %.3f | %.3f | %.3f | %.3f | %.1f %% | ", r.temperature, r.meanEntropy,
                            r.distinct[0], r.distinct[1], r.distinct[2], 100 * r.knownWordFraction) + "`\(sample)` |\n"
            csv += "\(r.temperature),\(r.meanEntropy),\(r.distinct[0]),\(r.distinct[1]),\(r.distinct[2]),\(r.knownWordFraction),\(r.wordCount)\n"
        }
        var entropyPlot = LinePlot(title: "Sampling entropy", xLabel: "temperature τ", yLabel: "nats per character")
        entropyPlot.series = [.init(name: "mean entropy", points: rows.map { (Double($0.temperature), $0.meanEntropy) })]
        var wordPlot = LinePlot(title: "Distinct-n and known words", xLabel: "temperature τ", yLabel: "fraction")
        for n in 0..<3 { wordPlot.series.append(.init(name: "distinct-\(n + 1)", points: rows.map { (Double($0.temperature), $0.distinct[n]) })) }
        wordPlot.series.append(.init(name: "known words", points: rows.map { (Double($0.temperature), $0.knownWordFraction) }, dashed: true))
        let written = try writeStudyFiles([("temperature.csv", csv), ("temperature.svg", svgDocument([entropyPlot, wordPlot]))], into: out)
        runtime.log(table + String(format: "%.1f s", seconds) + (written.isEmpty ? "" : ", wrote " + written.joined(separator: ", ")))
        runtime.emit(summary: [
            "task": .string("study temperature"), "seconds": .number(seconds), "samples": .integer(samples), "tokens": .integer(tokens),
            "distinct_unit": .string("words"),
            "rows": .array(rows.map { r in .object([
                "temperature": .number(Double("\(r.temperature)") ?? Double(r.temperature)), "entropy": .number(r.meanEntropy),
                "distinct_1": .number(r.distinct[0]), "distinct_2": .number(r.distinct[1]), "distinct_3": .number(r.distinct[2]),
                "known_word_fraction": .number(r.knownWordFraction), "words": .integer(r.wordCount), "sample": .string(r.sampleLine),
            ]) }),
        ])
    }
}
