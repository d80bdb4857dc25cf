import Foundation

/// Creates `path` as a folder (and those above it) while the options are parsed, on every rank
/// before MPI starts, so that a folder rank 0 alone could not make (`--checkpoint-dir`, the folder
/// of `--timeline`) ends every rank with exit 1 instead of leaving the others to the watchdog.
/// Returns what is wrong, or nil.
func outputFolderProblem(_ path: String) -> String? {
    var isDirectory: ObjCBool = false
    var ancestor = URL(fileURLWithPath: path)
    while !FileManager.default.fileExists(atPath: ancestor.path, isDirectory: &isDirectory) && ancestor.path != "/" {
        ancestor.deleteLastPathComponent()
    }
    if !isDirectory.boolValue { return "\(ancestor.path) is a file, not a folder" }
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        let posix = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) }
        return "cannot create it (\(posix ?? error.localizedDescription))"
    }
    guard access(path, W_OK) == 0 else { return "it is not writable" }
    return nil
}
