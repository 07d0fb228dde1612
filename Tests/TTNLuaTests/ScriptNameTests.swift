import Testing

import TTNLua

@Suite("Which file names are scripts")
struct ScriptNameTests {
    @Test("a *.lua file is a script; hidden files, backups, editors' probe files and other suffixes are not")
    func names() {
        #expect(ScriptDirectoryWatcher.isScriptName("a.lua"))
        #expect(ScriptDirectoryWatcher.isScriptName("temperature-alert.lua"))
        #expect(!ScriptDirectoryWatcher.isScriptName(".hidden.lua"), "hidden, e.g. an editor's temporary copy")
        #expect(!ScriptDirectoryWatcher.isScriptName("a.lua~"), "a backup")
        #expect(!ScriptDirectoryWatcher.isScriptName("4913"), "vim's probe file")
        #expect(!ScriptDirectoryWatcher.isScriptName("a.txt"))
        #expect(!ScriptDirectoryWatcher.isScriptName(".a.lua.swp"))
        #expect(!ScriptDirectoryWatcher.isScriptName("a.lua.bak"))
    }
}
