import Logging
import Testing
import TestSupport
import TTNCore
import TTNState

@testable import TTNHost

@Suite("Handler invocations on shared state")
struct HandlerInvocationTests {
    struct ScriptError: Error {}

    let store = MemoryDocumentStore()

    func state() -> SharedDocumentState { SharedDocumentState(name: "lua/a.lua", store: store) }

    @Test("a commit that conflicts with another worker's runs the handler again, on the newer state")
    func conflictRunsAgain() throws {
        let mine = state(), other = state()
        var runs = 0
        let result = HandlerInvocation.run(state: mine, work: nil) {
            runs += 1
            _ = try mine.increment("total", by: .integer(1))
            if runs == 1 {
                // Another worker commits between this invocation's read and its commit.
                _ = try other.begin(nil)
                _ = try other.increment("total", by: .integer(1))
                try other.commit()
            }
        }
        #expect(result.outcome == .succeeded)
        #expect(runs == 2)
        _ = try other.begin(nil)
        #expect(try other.get("total") == "2")
        other.rollback()
    }

    @Test("a handler run again after a conflict gives its downlinks the ids of its first run")
    func downlinkIDsRepeat() throws {
        let uplink = try Uplink(json: Array(#"{"end_device_ids":{"device_id":"dev"},"uplink_message":{"f_cnt":3}}"#.utf8), topic: "v3/app@ttn/devices/dev/up")
        let names = try #require(RepeatableDownlinkIDs(for: .uplink(uplink, nil), handler: "a.lua"))
        let mine = state(), other = state()
        var ids: [[String]] = []
        let result = RepeatableDownlinkIDs.$current.withValue(names) {
            HandlerInvocation.run(state: mine, work: nil) {
                ids.append([names.next(), names.next()])
                _ = try mine.increment("total", by: .integer(1))
                if ids.count == 1 {
                    _ = try other.begin(nil)
                    _ = try other.increment("total", by: .integer(1))
                    try other.commit()
                }
            }
        }
        #expect(result.outcome == .succeeded)
        #expect(ids.count == 2 && ids[0] == ids[1] && ids[0][0] != ids[0][1], "\(ids)")
    }

    @Test("work an earlier delivery committed is skipped; the handler does not run, and the skip is logged")
    func committedWorkSkipped() throws {
        let work = StateWork(id: "dev/as:up:1/1", deviceID: "dev")
        var runs = 0
        let body = {
            runs += 1
            _ = try self.state().increment("dev", by: .integer(1))
        }
        let first = state()
        #expect(HandlerInvocation.run(state: first, work: work) {
            runs += 1
            _ = try first.increment("dev", by: .integer(1))
        }.outcome == .succeeded)
        let second = state()
        let again = HandlerInvocation.run(state: second, work: work, body)
        guard case .skipped = again else {
            Issue.record("expected skipped, got \(again)")
            return
        }
        #expect(runs == 1)
        let capture = LogCapture()
        again.log(to: Logger(label: "test") { _ in capture }, failure: "failed", metadata: ["ttn.device_id": "dev"])
        #expect(capture.entries.map(\.level) == [.notice])
        #expect(capture.messages.first?.hasPrefix("Handler skipped a delivery again") == true, "\(capture.messages)")
    }

    @Test("a store that cannot be reached defers the work, even when the script turned the error into its own")
    func outageDefers() {
        store.setUnreachable(true)
        let state = state()
        let result = HandlerInvocation.run(state: state, work: nil) {
            do {
                _ = try state.get("x")
            } catch {
                throw ScriptError()
            }
        }
        #expect(result.outcome == .deferred)
        let atBegin = HandlerInvocation.run(state: state, work: StateWork(id: "w", deviceID: "d")) {}
        #expect(atBegin.outcome == .deferred)
    }

    @Test("a script's own error fails the invocation and discards its writes")
    func failureDiscards() throws {
        let state = state()
        let result = HandlerInvocation.run(state: state, work: nil) {
            try state.set("x", json: "1", ttl: nil)
            throw ScriptError()
        }
        #expect(result.outcome == .failed)
        _ = try state.begin(nil)
        #expect(try state.get("x") == nil)
        #expect(store.saves == 0)
    }
}
