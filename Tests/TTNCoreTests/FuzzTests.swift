import Foundation
import TestSupport
import Testing

@testable import TTNCore

/// Fuzzing the uplink and downlink parsers through their entry points: `Uplink(json:topic:legacyV2:)`,
/// `DownlinkRequest.parse` (behind `publish(_:)`) and `Downlink.validate()`.
///
/// Each run draws a seed (printed; `TTN_FUZZ_SEED` replays it, `TTN_FUZZ_CASES` sets the count, default 100,000
/// per test). Inputs are real messages mutated at the byte level, and generated messages with random types in
/// the known fields, written with random whitespace and escapes. Every input must either parse or be refused
/// with the documented error; generated messages must parse to exactly the generated model, or be refused when
/// a field had the wrong type; what parses must read back the same after encoding the typed value again.
@Suite("Fuzzing the parsers")
struct FuzzTests {
    static let uplinkFixtures = ["v3-up-decoded.json", "v3-up-legacy-shape.json", "v3-up-no-decoder.json", "v3-up-multi-gateway.json",
                                 "v3-up-mac-only.json", "v3-up-normalized.json"]
    static let legacyFixtures = ["v2-up.json", "v2-up-quickstart-2016.json"]
    static let downlinkFixtures: [(String, DownlinkQueue?)] = [
        ("v2-down.json", nil), ("v2-down-fields.json", nil), ("v3-down-push.json", nil), ("v3-down-push-decoded.json", nil),
        ("v3-down-push-multi.json", nil), ("v3-down-push-from-v2.json", nil), ("v3-down-replace-clear.json", .replace),
    ]
    static let allFixtures: [[UInt8]] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: Fixtures.directory.path)) ?? []
        return names.filter { $0.hasSuffix(".json") }.sorted().compactMap { try? Fixtures.bytes($0) }
    }()
    /// Nesting for the mutator: shallow, deep, and beyond the parser's limit (`JSONTape.maximumDepth`, tested
    /// exactly in `JSONTapeTests.depth`). The few levels just under the limit are left out: translating between v2
    /// and v3 nests the payload up to three levels deeper, so such a message is accepted while its translation,
    /// read again, is not (noted in docs/reliability.md).
    static let nestingDepths = [2, 20, 100, JSONTape.maximumDepth - 10, JSONTape.maximumDepth + 1, 2000, 30000]
    static let topics = ["v3/my-app@ttn/devices/dev-1/up", "", "my-app/devices/dev-1/up", "v3/a@b/devices/é😀\u{FFFD}/up"]

    @Test("every fixture parses unmutated")
    func fixtures() throws {
        #expect(Self.allFixtures.count >= 20)
        for name in Self.uplinkFixtures { _ = try Uplink(json: Fixtures.bytes(name), topic: "v3/a@ttn/devices/d/up") }
        for name in Self.legacyFixtures { _ = try Uplink(json: Fixtures.bytes(name), topic: "a/devices/d/up", legacyV2: true) }
        for (name, queue) in Self.downlinkFixtures { _ = try DownlinkRequest.parse(Fixtures.text(name), queue: queue) }
        // Every fixture is a JSON object, so every one is a (mostly empty) v3 uplink: unknown fields are ignored.
        for bytes in Self.allFixtures { _ = try Uplink(json: bytes) }
    }

    @Test("v3 uplinks: mutated fixtures and generated messages")
    func v3Uplinks() {
        fuzzUplinks(FuzzRun("FuzzTests/v3Uplinks"), legacyV2: false)
    }

    @Test("v2 uplinks (legacyV2): mutated fixtures and generated messages")
    func v2Uplinks() {
        fuzzUplinks(FuzzRun("FuzzTests/v2Uplinks"), legacyV2: true)
    }

    private func fuzzUplinks(_ run: FuzzRun, legacyV2: Bool) {
        let corpus = legacyV2 ? Self.allFixtures.filter { String(decoding: $0, as: UTF8.self).contains("\"dev_id\"") } : Self.allFixtures
        let mutator = FuzzMutator(corpus: corpus, nestingDepths: Self.nestingDepths)
        var failures = FuzzFailures()
        var parsed = 0, refused = 0, generatedParsed = 0, generatedRefused = 0
        for index in run.indices {
            var random = run.random(case: index)
            let topic = random.pick(Self.topics)
            let bytes: [UInt8]
            var expectation: (Uplink, mustFail: Bool)?
            switch random.below(100) {
            case 0..<45:
                bytes = mutator.mutant(&random)
            case 45..<85:
                let generator = ModelGenerator(random)
                let (model, json) = legacyV2 ? generator.legacyUplink() : generator.uplink()
                var writer = FuzzJSONWriter()
                writer.write(json, &generator.random)
                bytes = writer.bytes
                if !generator.ambiguous { expectation = (model, generator.mustFail) }
                random = generator.random
            default:
                let generator = ModelGenerator(random)
                var writer = FuzzJSONWriter()
                writer.write((legacyV2 ? generator.legacyUplink() : generator.uplink()).1, &generator.random)
                random = generator.random
                bytes = mutator.mutate(writer.bytes, &random)
            }
            let context = { "case \(index), \(run.replay(index)), topic '\(topic)', input: \(fuzzDescribe(bytes))" }
            switch checkUplink(bytes, topic: topic, legacyV2: legacyV2) {
            case .broken(let problem):
                failures.add("\(problem); \(context())")
            case .parsed(let uplink):
                parsed += 1
                guard let expectation else { break }
                generatedParsed += 1
                if expectation.mustFail {
                    failures.add("a field of the wrong type was accepted; \(context())")
                } else if !same(uplink, expectation.0) {
                    failures.add("parsed \(uplink) but the message says \(expectation.0); \(context())")
                }
            case .refused(let reason):
                refused += 1
                guard let expectation else { break }
                generatedRefused += 1
                if !expectation.mustFail { failures.add("a well-formed message was refused (\(reason)); \(context())") }
            }
        }
        report(run, failures)
        // The mix must exercise both outcomes, or the fuzzer has stopped testing anything.
        let minimum = run.indices.count / 20
        #expect(parsed >= minimum && refused >= minimum, "parsed \(parsed), refused \(refused); \(run)")
        #expect(generatedParsed >= minimum / 2 && generatedRefused >= minimum / 2, "generated: parsed \(generatedParsed), refused \(generatedRefused); \(run)")
    }

    /// The generic properties of one uplink input: the result (nil when refused as documented) or what is wrong.
    private func checkUplink(_ bytes: [UInt8], topic: String, legacyV2: Bool) -> Outcome<Uplink> {
        let uplink: Uplink
        do {
            uplink = try Uplink(json: bytes, topic: topic, legacyV2: legacyV2)
        } catch {
            guard error.kind == .invalidMessage, !error.message.isEmpty, topic.isEmpty || error.message.contains(topic) else {
                return .broken(Problem("refused with \(error.kind) '\(error.message)', not invalidMessage naming the topic"))
            }
            return .refused(error.message)
        }
        guard uplink.json == String(decoding: bytes, as: UTF8.self), uplink.topic == topic else {
            return .broken(Problem("the JSON or topic was not kept"))
        }
        // The typed value, written again as v3 JSON, reads back the same. Numbers beyond a Double are refused on
        // arrival, so every accepted uplink encodes.
        let encoded: Data
        do {
            encoded = try JSONEncoder().encode(uplink)
        } catch {
            return .broken(Problem("the parsed uplink does not encode: \(error)"))
        }
        do {
            let reread = try Uplink(json: [UInt8](encoded))
            guard same(reread, uplink) else {
                return .broken(Problem("re-encoded as \(String(decoding: encoded, as: UTF8.self)) it reads back as \(reread), not \(uplink)"))
            }
        } catch {
            return .broken(Problem("re-encoded as \(String(decoding: encoded, as: UTF8.self)) it is refused: \(error)"))
        }
        return .parsed(uplink)
    }

    /// Equal typed content; the kept JSON and topic are compared elsewhere.
    private func same(_ a: Uplink, _ b: Uplink) -> Bool {
        a.endDeviceIDs == b.endDeviceIDs && a.correlationIDs == b.correlationIDs && a.receivedAt == b.receivedAt
            && a.simulated == b.simulated && a.uplinkMessage == b.uplinkMessage
    }

    @Test("downlinks: mutated fixtures and generated v2 and v3 bodies")
    func downlinks() throws {
        let run = FuzzRun("FuzzTests/downlinks")
        let corpus = try Self.downlinkFixtures.map { try Fixtures.bytes($0.0) } + [Fixtures.bytes("v3-down-queued.json")]
        let mutator = FuzzMutator(corpus: corpus, nestingDepths: Self.nestingDepths)
        var failures = FuzzFailures()
        var parsed = 0, refused = 0, generatedParsed = 0, generatedRefused = 0
        for index in run.indices {
            var random = run.random(case: index)
            let queue: DownlinkQueue? = random.pick([nil, nil, .push, .replace])
            let text: String
            var expectation: (ModelGenerator.DownlinkOutcome, mustFail: Bool)?
            switch random.below(100) {
            case 0..<45:
                text = String(decoding: mutator.mutant(&random), as: UTF8.self)
            case 45..<85:
                let generator = ModelGenerator(random)
                let (json, outcome) = generator.downlinkBody(queue: queue)
                var writer = FuzzJSONWriter()
                writer.write(json, &generator.random)
                text = String(decoding: writer.bytes, as: UTF8.self)
                if !generator.ambiguous { expectation = (outcome, generator.mustFail) }
                random = generator.random
            default:
                let generator = ModelGenerator(random)
                var writer = FuzzJSONWriter()
                writer.write(generator.downlinkBody(queue: queue).0, &generator.random)
                random = generator.random
                text = String(decoding: mutator.mutate(writer.bytes, &random), as: UTF8.self)
            }
            let context = { "case \(index), \(run.replay(index)), queue \(queue.map(\.rawValue) ?? "nil"), input: \(fuzzDescribe(Array(text.utf8)))" }
            switch checkDownlink(text, queue: queue, checkLegacy: index % 4 == 0) {
            case .broken(let problem):
                failures.add("\(problem); \(context())")
            case .parsed(let request):
                parsed += 1
                guard let expectation else { break }
                generatedParsed += 1
                switch expectation {
                case (_, true), (.refused, _):
                    failures.add("parsed a body that must be refused: \(request); \(context())")
                case (.parsed(_, let expectedQueue, let downlinks, let v2), false):
                    if request.queue != expectedQueue || request.downlinks != downlinks || (request.v2Text != nil) != v2 {
                        failures.add("parsed \(request) but the body says queue \(expectedQueue), v2 \(v2), \(downlinks); \(context())")
                    }
                }
            case .refused(let reason):
                refused += 1
                guard let expectation else { break }
                generatedRefused += 1
                if case (.parsed, false) = expectation { failures.add("a valid downlink was refused (\(reason)); \(context())") }
            }
        }
        report(run, failures)
        let minimum = run.indices.count / 20
        #expect(parsed >= minimum && refused >= minimum, "parsed \(parsed), refused \(refused); \(run)")
        #expect(generatedParsed >= minimum / 2 && generatedRefused >= minimum / 2, "generated: parsed \(generatedParsed), refused \(generatedRefused); \(run)")
    }

    /// The generic properties of one downlink body: the request (nil when refused as documented) or what is wrong.
    private func checkDownlink(_ text: String, queue: DownlinkQueue?, checkLegacy: Bool) -> Outcome<DownlinkRequest> {
        if let disagreement = downlinkReaderDisagreement(text) { return .broken(Problem("the downlink reader \(disagreement)")) }
        let request: DownlinkRequest
        do {
            request = try DownlinkRequest.parse(text, queue: queue)
        } catch {
            guard error.kind == .invalidDownlink, !error.message.isEmpty, !error.hint.isEmpty else {
                return .broken(Problem("refused with \(error.kind) '\(error.message)' hint '\(error.hint)', not invalidDownlink with a hint"))
            }
            return .refused(error.message)
        }
        if let queue, request.queue != queue { return .broken(Problem("the requested queue \(queue) was not kept")) }
        for downlink in request.downlinks {
            do { try downlink.validate() } catch { return .broken(Problem("a parsed downlink does not validate: \(error)")) }
        }
        if request.queue == .push && request.downlinks.isEmpty { return .broken(Problem("an empty list went to down/push")) }
        if let v2Text = request.v2Text {
            // A v2 body is translated; the translation is a v3 body that parses to the same downlink.
            guard v2Text == text, request.downlinks.count == 1 else { return .broken(Problem("a v2 body was not kept or not one downlink")) }
            do {
                let translated = try DownlinkRequest.parse(request.body, queue: request.queue)
                guard translated.downlinks == request.downlinks else {
                    return .broken(Problem("the v3 translation \(request.body) reads back as \(translated.downlinks)"))
                }
            } catch {
                return .broken(Problem("the v3 translation \(request.body) is refused: \(error)"))
            }
        } else if request.body != text {
            return .broken(Problem("a v3 body was not sent unchanged"))
        }
        // The typed downlinks, encoded again, read back the same (on replace, where an empty list is allowed). The
        // body of a v2 request is that encoding, and was read back above.
        let encoded = DownlinkRequest.encode(request.downlinks)
        if request.v2Text != nil {
            guard encoded == request.body else { return .broken(Problem("the v3 translation is not the encoding of its downlinks")) }
        } else {
            guard let reread = try? DownlinkRequest.parse(encoded, queue: .replace), reread.downlinks == request.downlinks else {
                return .broken(Problem("encoded again as \(encoded) the downlinks do not read back the same"))
            }
        }
        // The legacy v2 body of a single downlink carries its port, payload and confirmation (checked in one case
        // of four, chosen by case number so a replay checks it too).
        if checkLegacy, request.downlinks.count == 1, let legacy = try? request.legacyV2Body() {
            guard let back = try? DownlinkRequest.parse(legacy), let original = request.downlinks.first, let downlink = back.downlinks.first,
                  downlink.fPort == original.fPort, downlink.frmPayload == original.frmPayload,
                  downlink.decodedPayload == original.decodedPayload, downlink.confirmed == (original.confirmed ?? false)
            else { return .broken(Problem("the legacy v2 body \(String(describing: try? request.legacyV2Body())) does not carry the downlink")) }
        }
        return .parsed(request)
    }

    @Test("typed downlinks: validate() keeps exactly TTN's rules")
    func typedDownlinks() {
        let run = FuzzRun("FuzzTests/typedDownlinks")
        var failures = FuzzFailures()
        var accepted = 0, rejected = 0
        for index in run.indices {
            let generator = ModelGenerator(run.random(case: index))
            var port = generator.fPort()
            if generator.random.chance(20) {
                let value = Int(bitPattern: UInt(truncatingIfNeeded: generator.random.next()))
                port = (value, (1...223).contains(value))
            }
            var downlink = Downlink(fPort: port.value, payload: [])
            var valid = port.valid
            switch generator.random.below(3) {
            case 0:
                let payload = generator.base64().0
                downlink.frmPayload = payload.text
                valid = valid && payload.valid
            case 1:
                downlink.frmPayload = nil
                downlink.decodedPayload = generator.any().0
            default:
                downlink.frmPayload = nil
                valid = false
            }
            if generator.random.chance(50) {
                let ids = (0..<generator.random.below(3)).map { _ in generator.correlationID().0 }
                downlink.correlationIDs = ids.map(\.text)
                valid = valid && ids.allSatisfy(\.valid)
            }
            do {
                try downlink.validate()
                accepted += 1
                if !valid { failures.add("accepted \(downlink); case \(index), \(run.replay(index))") }
            } catch {
                rejected += 1
                if valid { failures.add("refused \(downlink): \(error); case \(index), \(run.replay(index))") }
                if error.kind != .invalidDownlink || error.message.isEmpty || error.hint.isEmpty {
                    failures.add("refused with \(error.kind) '\(error.message)' hint '\(error.hint)'; case \(index)")
                }
            }
        }
        report(run, failures)
        let minimum = run.indices.count / 20
        #expect(accepted >= minimum && rejected >= minimum, "accepted \(accepted), rejected \(rejected); \(run)")
    }

    private func report(_ run: FuzzRun, _ failures: FuzzFailures) {
        for message in failures.messages { Issue.record("\(run.name): \(message)") }
        #expect(failures.count == 0, "\(failures.count) failing cases of \(run.indices.count); \(run)")
    }
}

/// What one input did: parsed, refused as documented (with the reason), or broke a property.
enum Outcome<Value> {
    case parsed(Value)
    case refused(String)
    case broken(Problem)
}

struct Problem: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
