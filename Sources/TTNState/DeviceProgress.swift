/// The last uplink a host handled from one device: where backfill starts after a restart, and what gap detection
/// compares the next uplink with.
public struct DeviceProgress: Sendable, Hashable {
    public var deviceID: String
    /// `session_key_id` of the uplink; nil when TTN sent none.
    public var sessionKeyID: String?
    public var fCnt: Int64
    /// `received_at` in nanoseconds since the Unix epoch; nil when the uplink had none.
    public var receivedAtNanoseconds: Int64?
    /// Its `as:up:` correlation id.
    public var uplinkID: String?

    public init(deviceID: String, sessionKeyID: String?, fCnt: Int64, receivedAtNanoseconds: Int64?, uplinkID: String?) {
        self.deviceID = deviceID
        self.sessionKeyID = sessionKeyID
        self.fCnt = fCnt
        self.receivedAtNanoseconds = receivedAtNanoseconds
        self.uplinkID = uplinkID
    }
}

/// The SQL of table `device_progress` (schema version 3): one row per application and device.
enum DeviceProgressTable {
    static let schema = """
        CREATE TABLE IF NOT EXISTS device_progress(app TEXT NOT NULL, device TEXT NOT NULL, session TEXT, f_cnt INTEGER NOT NULL,
            received_at INTEGER, uplink_id TEXT, PRIMARY KEY(app, device)) WITHOUT ROWID;
        """

    static func save(_ entries: [DeviceProgress], application: String, _ connection: SQLiteConnection) throws(StateError) {
        for entry in entries {
            try connection.query(
                "INSERT OR REPLACE INTO device_progress(app, device, session, f_cnt, received_at, uplink_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                [
                    .text(application), .text(entry.deviceID), entry.sessionKeyID.map(SQLValue.text) ?? .null, .integer(entry.fCnt),
                    entry.receivedAtNanoseconds.map(SQLValue.integer) ?? .null, entry.uplinkID.map(SQLValue.text) ?? .null,
                ]
            )
        }
    }

    static func load(application: String, _ connection: SQLiteConnection) throws(StateError) -> [DeviceProgress] {
        var entries: [DeviceProgress] = []
        try connection.query(
            "SELECT device, session, f_cnt, received_at, uplink_id FROM device_progress WHERE app = ?1 ORDER BY device",
            [.text(application)]
        ) { row in
            entries.append(DeviceProgress(
                deviceID: row.text(0), sessionKeyID: row.isNull(1) ? nil : row.text(1), fCnt: row.integer(2) ?? 0,
                receivedAtNanoseconds: row.integer(3), uplinkID: row.isNull(4) ? nil : row.text(4)
            ))
            return true
        }
        return entries
    }
}

extension StateDatabase {
    /// Records the last uplink handled from each device of `entries`, for `application`, with the commits of the
    /// invocations of the same few milliseconds (the durability of ``StateDatabase``).
    public func saveProgress(_ entries: [DeviceProgress], application: String) throws(StateError) {
        guard !entries.isEmpty else { return }
        try withStore { store throws(StateError) in try store.applyProgress(entries, application: application) }
    }

    /// The last uplink handled from each device of `application`, sorted by device id.
    public func progress(application: String) throws(StateError) -> [DeviceProgress] {
        try withStore { store throws(StateError) in try DeviceProgressTable.load(application: application, store.connection) }
    }
}
