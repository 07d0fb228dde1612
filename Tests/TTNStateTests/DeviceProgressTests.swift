import CSQLite
import Foundation
import Testing

import TTNState

@Suite("Device progress")
struct DeviceProgressTests {
    @Test("progress is kept per application and device, replaced by newer entries, and survives a reopen")
    func roundTrip() throws {
        try withStateDirectory { directory in
            let first = DeviceProgress(deviceID: "b", sessionKeyID: "s1", fCnt: 7, receivedAtNanoseconds: 1_000, uplinkID: "as:up:1")
            let other = DeviceProgress(deviceID: "a", sessionKeyID: nil, fCnt: 0, receivedAtNanoseconds: nil, uplinkID: nil)
            do {
                let database = try StateDatabase(directory: directory)
                try database.saveProgress([first, other], application: "app-1")
                try database.saveProgress([DeviceProgress(deviceID: "b", sessionKeyID: "s9", fCnt: 1, receivedAtNanoseconds: 5, uplinkID: nil)], application: "app-2")
                var newer = first
                newer.fCnt = 8
                try database.saveProgress([newer], application: "app-1")
                #expect(try database.progress(application: "app-1") == [other, newer], "sorted by device, the newer entry kept")
                database.close()
            }
            let database = try StateDatabase(directory: directory)
            var expected = first
            expected.fCnt = 8
            #expect(try database.progress(application: "app-1") == [other, expected])
            #expect(try database.progress(application: "app-2").map(\.sessionKeyID) == ["s9"])
            #expect(try database.progress(application: "app-3").isEmpty)
        }
    }

    @Test("a database of schema version 2 gains the progress table, keeping its keys and outbox")
    func migration() throws {
        try withStateDirectory { directory in
            do {
                let database = try StateDatabase(directory: directory)
                let state = database.namespace("n")
                try state.set("kept", json: "7")
                _ = try state.emit(to: "s", value: "1", application: "a", script: "x", device: nil)
                try state.commit()
                database.close()
            }
            var handle: OpaquePointer?
            #expect(sqlite3_open(directory + "/state.sqlite", &handle) == SQLITE_OK)
            #expect(sqlite3_exec(handle, "DROP TABLE device_progress; PRAGMA user_version = 2", nil, nil, nil) == SQLITE_OK)
            sqlite3_close(handle)
            let database = try StateDatabase(directory: directory)
            #expect(try database.namespace("n").get("kept") == "7")
            #expect(try database.outbox.pending(sink: "s", limit: 5).count == 1)
            try database.saveProgress([DeviceProgress(deviceID: "d", sessionKeyID: nil, fCnt: 3, receivedAtNanoseconds: 9, uplinkID: nil)], application: "a")
            #expect(try database.progress(application: "a").map(\.fCnt) == [3])
        }
    }
}
