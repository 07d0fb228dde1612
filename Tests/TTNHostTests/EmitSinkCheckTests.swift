import Testing

@testable import TTNHost

@Suite("Literal sink names in scripts")
struct EmitSinkCheckTests {
    @Test("finds ttn.emit's literal sink names with their lines, skipping comments and computed names")
    func literals() {
        let source = """
            local sink = "computed"
            ttn.emit("warehouse", 1)
            ttn.emit( 'archive' , {})  ttn.emit(sink, 2)
            -- ttn.emit("commented", 3)
            x = 1 -- ttn.emit("trailing", 4)
            ttn.emit("escaped\\"", 5)
            """
        let found = HandlerHost.literalEmitSinks(in: Array(source.utf8))
        #expect(found.map(\.name) == ["warehouse", "archive"])
        #expect(found.map(\.line) == [2, 3])
    }
}
