import Foundation
import Testing
@testable import ReplicaTrain

/// The timeline's own formatting: times as "%.1f" writes them, and the watchdog's instant events
/// as valid trace-event JSON with the report in `args`.
@Suite struct TimelineTests {
    @Test func tenthsWritesWhatPercentPointOneFWrites() {
        for value in [0, 5, 1234.56, -3.14, 0.04, 987_654_321.25, 59.949, -0.01] {
            let expected = String(format: "%.1f", value)
            #expect(Timeline.tenths(value) == (expected == "-0.0" ? "0.0" : expected), "\(value)")
        }
    }

    @Test func aWatchdogReportIsAnInstantEventWithItsText() throws {
        let timeline = Timeline(path: "/dev/null", steps: 2...3)
        timeline.step = 7   // outside the window: the watchdog's events are kept all the same
        timeline.recordWatchdog(fatal: true, report: "collective timeout: #12 \"x\"\n  rank 1: never heard from")
        let text = "[" + timeline.encodedEvents(rank: 1, origin: Timeline.now() - 1) + "]"
        let events = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        let instant = try #require(events.first { $0["ph"] as? String == "i" })
        #expect(instant["name"] as? String == "watchdog: ending the job")
        #expect(instant["pid"] as? Int == 1 && instant["cat"] as? String == "communication")
        let args = try #require(instant["args"] as? [String: Any])
        #expect(args["step"] as? Int == 7)
        #expect(args["report"] as? String == "collective timeout: #12 \"x\"\n  rank 1: never heard from")
        let time = try #require(instant["ts"] as? Double)
        #expect(time > 900_000 && time < 2_000_000, "about a second after the origin: \(time) µs")
    }
}
