import ArgumentParser
import ReplicaData
import ReplicaModels
import ReplicaNN
import ReplicaDistributed
import ReplicaTrain

// Fixed-choice options: the parser lists their values in --help and rejects any other.

extension ProgressMode: ExpressibleByArgument {}
extension LearningRateSchedule: ExpressibleByArgument {}
extension AttentionScorer: ExpressibleByArgument {}
extension PositionKind: ExpressibleByArgument {}
extension GPTPreset: ExpressibleByArgument {}
extension GradientCompression: ExpressibleByArgument {}
extension AllReduceAlgorithm: ExpressibleByArgument {}
extension SyntheticGraphPreset: ExpressibleByArgument {}

/// `--norm` of the Transformer tasks.
enum TransformerNorm: String, CaseIterable, ExpressibleByArgument {
    case layer, batch
    var kind: NormKind { self == .layer ? .layer : .batch }
}

/// `--norm` of the graph tasks.
enum GraphNorm: String, CaseIterable, ExpressibleByArgument {
    case none, batch
    var kind: NormKind { self == .none ? .none : .batch }
}

/// `train gat --model`.
enum NodeClassifierKind: String, CaseIterable, ExpressibleByArgument { case gat, gcn }

/// `train cbow --corpus`: an embedded text.
enum WordCorpusChoice: String, CaseIterable, ExpressibleByArgument { case multi30k, shakespeare }

/// `bench step --model`.
enum BenchModel: String, CaseIterable, ExpressibleByArgument { case charlm, gat, translate, mlm }
