/// Where a model says how far its forward pass has come (`--timeline`'s compute segments): each
/// call ends the segment since the previous mark and names it. Models hold one weakly, set by the
/// task for the training step it times; with none set, a mark costs one nil check.
public protocol PhaseMarker: AnyObject {
    /// The work since the previous mark was `name` ("forward: block 3").
    func phaseEnded(_ name: @autoclosure () -> String)
}
