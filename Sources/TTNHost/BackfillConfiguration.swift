/// Where a host fetches the uplinks it missed: TTN's Storage Integration, and how far back and how often it asks.
public struct BackfillConfiguration: Sendable, Hashable {
    /// The Things Stack's API address: `https://<cluster>.cloud.thethings.network` on The Things Network.
    public var apiURL: String
    /// The API key; nil: the application's MQTT key (it needs the right "Read application traffic").
    public var apiKey: String?
    /// The furthest back a catch-up at start reaches. Default 24 hours: what The Things Network's storage keeps.
    public var maxAge: Duration = .seconds(24 * 3600)
    /// TTN writes its storage in batches: a gap and a catch-up are asked about again this much later, and a gap
    /// still open then is given up. Default 60 s.
    public var recheckDelay: Duration = .seconds(60)
    /// How long live uplinks wait for a catch-up's fetch before they are handled anyway. Default 30 s.
    public var holdLimit: Duration = .seconds(30)
    /// Uplinks asked for per request. Default 1000.
    public var pageLimit = 1000

    public init(apiURL: String, apiKey: String? = nil) {
        self.apiURL = apiURL
        self.apiKey = apiKey
    }

    /// The API address of a TTN cluster (`eu1`, `nam1`, `au1`), or of the server `host` when no cluster is given.
    public static func apiURL(region: String?, host: String?) -> String? {
        if let region { return "https://\(region).cloud.thethings.network" }
        return host.map { "https://\($0)" }
    }
}
