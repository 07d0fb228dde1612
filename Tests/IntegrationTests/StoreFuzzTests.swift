import Foundation
import Logging
import Testing
import TestSupport
import TTNLua
import TTNState

@testable import TTNHost

/// Random JSON values through a script's `ttn.store` on a real state database: what goes in comes out, after the
/// commit and in a later invocation, and a failed invocation leaves it as it was. Broker-free; here because it
/// joins TTNLua and TTNState as the host does.
@Suite("ttn.store with random values")
struct StoreFuzzTests {
    /// A script's host side with a real store and nothing else.
    struct StoreBridge: LuaHostBridge {
        let store: (any LuaStore)?
        func allMessages() -> [[UInt8]] { [] }
        func publish(_ downlink: String, deviceID: String, queue: DownlinkQueue?) throws -> String { "" }
    }

    /// Stores the message (any JSON value) under "k" and reads it back in the same invocation.
    static let store = luaSame + """
        setMessageHandler(function()
          ttn.store.set("k", getLastMessage())
          assert(same(ttn.store.get("k"), getLastMessage()), "differs within the invocation")
        end)
        """
    /// Reads "k" in a later invocation.
    static let check = luaSame + """
        setMessageHandler(function() assert(same(ttn.store.get("k"), getLastMessage()), "differs after the commit") end)
        """
    /// Overwrites "k", writes "other", and fails: none of it may stay.
    static let clobber = """
        setMessageHandler(function()
          ttn.store.set("k", "clobbered")
          ttn.store.set("other", getLastMessage())
          error("clobber")
        end)
        """

    @Test("values round-trip through the store, and a failed invocation leaves none of its writes")
    func roundTrip() throws {
        let run = FuzzRun("StoreFuzzTests/roundTrip", defaultCases: 2_000)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("store-fuzz-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = try StateDatabase(directory: directory.path)
        defer { database.close() }
        let state = database.namespace("lua/fuzz.lua")
        func script(_ source: String) throws -> LuaScript {
            try LuaScript(
                name: "fuzz.lua", source: Array(source.utf8), limits: LuaLimits(),
                bridge: StoreBridge(store: ScriptStore(state: state)), logger: Logger(label: "fuzz")
            )
        }
        let (store, check, clobber) = (try script(Self.store), try script(Self.check), try script(Self.clobber))
        var failures = FuzzFailures()
        var stored = 0, refused = 0
        for index in run.indices {
            var random = run.random(case: index)
            var writer = FuzzJSONWriter()
            writer.write(FuzzJSON.random(&random, depth: random.below(5)), &random)
            let message = LuaMessage(json: writer.bytes, deviceID: nil)
            let context = { "case \(index), \(run.replay(index)), value: \(fuzzDescribe(writer.bytes))" }
            do {
                try store.handle(message)
            } catch {
                // A number too large for a double decodes to infinity, which JSON cannot hold.
                if !error.message.contains("cannot encode NaN or infinity") { failures.add("store: \(error) \(context())") }
                state.rollback()
                refused += 1
                continue
            }
            try state.commit()
            stored += 1
            do { try check.handle(message) } catch { failures.add("check: \(error) \(context())") }
            #expect(throws: LuaError.self) { try clobber.handle(message) }
            state.rollback()
            do { try check.handle(message) } catch { failures.add("after a failed invocation: \(error) \(context())") }
            if try state.get("other") != nil { failures.add("a failed invocation's write stayed: \(context())") }
        }
        #expect(failures.count == 0, "\(failures.count) failures; \(run): \(failures.messages.joined(separator: "\n"))")
        #expect(stored > run.indices.count / 2, "most random values can be stored (\(stored) stored, \(refused) refused)")
    }
}
