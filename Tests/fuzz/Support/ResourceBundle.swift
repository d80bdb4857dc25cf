import Foundation

// SwiftPM generates `Bundle.module` for a target with resources; the fuzz build compiles
// ReplicaData with swiftc directly, so it supplies the accessor itself. The fuzz targets never
// read the embedded data sets, only the bytes libFuzzer hands them.
extension Foundation.Bundle {
    static let module = Bundle.main
}
