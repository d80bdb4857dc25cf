import ArgumentParser
import ReplicaTrain

// Fixed-choice options: the parser lists their values in --help and rejects any other.

extension ProgressMode: ExpressibleByArgument {}
