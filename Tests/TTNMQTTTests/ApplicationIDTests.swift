import TestSupport
import Testing

@testable import TTNMQTT

@Suite("Application ids")
struct ApplicationIDTests {
    static let accepted = [
        "abc", "my-app", "a1-b2-c3", "123", String(repeating: "a", count: 36),
        "a-" + String(repeating: "b", count: 35), String(repeating: "a-", count: 35) + "a",
    ]
    static let refused = [
        "", "ab", "My-App", "my_app", "-app", "app-", "my--app", "my app", "my.app", "app\n", "äpp",
        String(repeating: "a", count: 37), "a\u{301}bc", "ab\u{301}c",
    ]

    @Test("v3: 3 to 36 lowercase letters and digits, single dashes between them", arguments: accepted)
    func acceptedV3(id: String) throws {
        #expect(Identifier.isApplicationID(id, legacyV2: false))
        var configuration = MQTTClient.Configuration(applicationID: id, apiKey: "NNSXS.KEY")
        try configuration.validate()
        configuration.legacyV2 = true
        try configuration.validate()
    }

    @Test("v3 refuses upper case, underscores, edge and double dashes, other characters and lengths", arguments: refused)
    func refusedV3(id: String) {
        #expect(!Identifier.isApplicationID(id, legacyV2: false))
        let configuration = MQTTClient.Configuration(applicationID: id, apiKey: "NNSXS.KEY")
        #expect(throws: TTNError.self) { try configuration.validate() }
    }

    @Test("legacy v2 also takes single underscores and ids of 2")
    func legacyV2() {
        for id in ["my_app", "ab", "a_b-c", "a1"] {
            #expect(Identifier.isApplicationID(id, legacyV2: true), "\(id)")
        }
        for id in ["a", "my__app", "_ab", "ab_", "a-_b", "A_b", String(repeating: "a", count: 37)] {
            #expect(!Identifier.isApplicationID(id, legacyV2: true), "\(id)")
        }
        #expect(!Identifier.isApplicationID("my_app", legacyV2: false))
        #expect(!Identifier.isApplicationID("ab", legacyV2: false))
    }

    @Test("the check accepts exactly what the patterns accept, on 20,000 seeded random ids")
    func agreesWithPatterns() throws {
        // The accepted sets, as patterns: what the hand-written check must agree with.
        let v3Pattern = try Regex("^[a-z0-9](?:-?[a-z0-9]){2,35}$")
        let v2Pattern = try Regex("^[0-9a-z](?:[_-]?[0-9a-z]){1,35}$")
        let pieces = ["a", "z", "0", "9", "m", "-", "_", "A", ".", " ", "é", "\u{301}", "\n"]
        var random = FuzzRandom(seed: 0x7474_6e69_6473)
        for _ in 0..<20_000 {
            let length = random.below(3) == 0 ? random.below(6) : random.below(75)
            let id = (0..<length).map { _ in random.chance(85) ? random.pick(["a", "7", "-"]) : random.pick(pieces) }
                .joined()
            #expect(
                Identifier.isApplicationID(id, legacyV2: false) == (id.wholeMatch(of: v3Pattern) != nil),
                "v3 \(id.debugDescription)"
            )
            #expect(
                Identifier.isApplicationID(id, legacyV2: true) == (id.wholeMatch(of: v2Pattern) != nil),
                "v2 \(id.debugDescription)"
            )
        }
    }
}
