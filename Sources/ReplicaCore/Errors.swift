/// A problem the user can fix (bad option, missing or malformed file, bad checkpoint): exit status 1.
///
/// The message names the file and what is wrong, and what to do where that is not obvious.
public struct UserError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A training run that stopped because it was asked to (a signal), after writing its checkpoint:
/// exit status 3, and `description` says where to go on from.
public struct StoppedOnRequest: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
