import Testing
import ReplicaTrain

@Suite struct ConfigurationHashTests {
    /// Checkpoints store this hash and resuming compares it: its value for given fields must never change.
    @Test func theHashOfGivenFieldsIsFixed() {
        #expect(configurationHash(["steps": "20", "learning_rate": "0.001"]) == "39b43418d55eadb8")
    }
}
