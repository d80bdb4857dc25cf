import Foundation
import ReplicaCore

/// Where the data sets built into the program live: the package resources of ReplicaData.
///
/// The program's defaults and the tests read them through these URLs, so a clone of the
/// repository needs nothing beside it.
public enum EmbeddedData {
    /// Tiny Shakespeare (Karpathy's char-rnn data), plain UTF-8, 1,115,394 characters.
    public static func tinyShakespeareFile() throws -> URL {
        try resource("tinyshakespeare", withExtension: "txt", what: "Tiny Shakespeare")
    }

    /// Multi30k task 1 (Elliott et al. 2016): `train`, `val`, `test_2016_flickr` `.de.gz` and `.en.gz`.
    public static func multi30kDirectory() throws -> URL {
        try resource("multi30k", what: "Multi30k",
                     advice: "rebuild replica, or pass --data with a folder of train/val/test_2016_flickr .de and .en files")
    }

    /// Cora, Planetoid public split, in the OGB raw layout (`raw/`, `split/public/`).
    public static func coraDirectory() throws -> URL {
        try resource("cora", what: "Cora")
    }

    private static func resource(_ name: String, withExtension pathExtension: String? = nil, what: String,
                                advice: String = "rebuild replica") throws -> URL {
        guard let url = Bundle.module.url(forResource: name, withExtension: pathExtension) else {
            throw UserError("the embedded \(what) is missing from the package resources; \(advice)")
        }
        return url
    }
}
