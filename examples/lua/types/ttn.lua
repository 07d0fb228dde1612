---@meta
-- The ttn-host script API, as annotations for the Lua language server (LuaLS, "sumneko"): completion,
-- hover and type checks in VS Code's Lua extension or Neovim's lua_ls. This file is never run: ttn-host
-- loads only the *.lua files directly in its scripts directory, not this folder. See docs/lua-handlers.md,
-- "Editor support", and the .luarc.json beside the examples.

-------------------------------------------------------------------------------------------------------------
-- Values

---The value of JSON `null` (`ttn.null`): a field that is present and null, as opposed to absent (`nil`).
---`tostring(ttn.null)` is `"null"`.
---@class TTNNull: userdata

---What `ttn.json.encode` and `ttn.store` take: a table is an object, or an array when it is a non-empty
---sequence or marked with `ttn.json.array`.
---@alias TTNJSONValue nil|boolean|number|string|table|TTNNull

---A byte string, or an array of integers 0..255.
---@alias TTNBytes string|integer[]

-------------------------------------------------------------------------------------------------------------
-- The uplink (getLastMessage, getAllMessages): the v3 JSON as TTN sent it. Any field TTN leaves out (it omits
-- zero values) is nil; 64-bit integers (`settings.frequency`, `frequency_offset`) are strings.

---@class TTNApplicationIDs
---@field application_id string The application's id, without `@tenant`.

---@class TTNEndDeviceIDs
---@field device_id string
---@field application_ids TTNApplicationIDs
---@field dev_eui? string 16 uppercase hex digits.
---@field join_eui? string 16 uppercase hex digits.
---@field dev_addr? string 8 uppercase hex digits.

---@alias TTNLocationSource
---| "SOURCE_UNKNOWN"
---| "SOURCE_GPS"
---| "SOURCE_REGISTRY"
---| "SOURCE_IP_GEOLOCATION"
---| "SOURCE_WIFI_RSSI_GEOLOCATION"
---| "SOURCE_BT_RSSI_GEOLOCATION"
---| "SOURCE_LORA_RSSI_GEOLOCATION"
---| "SOURCE_LORA_TDOA_GEOLOCATION"
---| "SOURCE_COMBINED_GEOLOCATION"

---@class TTNLocation
---@field latitude? number
---@field longitude? number
---@field altitude? number
---@field accuracy? number
---@field source? TTNLocationSource|string

---@class TTNGatewayIDs
---@field gateway_id string `"packetbroker"` for a frame that came through Packet Broker.
---@field eui? string 16 uppercase hex digits.

---Set instead of own-gateway details when the frame came through Packet Broker.
---@class TTNPacketBroker
---@field message_id? string
---@field forwarder_net_id? string
---@field forwarder_tenant_id? string
---@field forwarder_cluster_id? string
---@field forwarder_gateway_eui? string
---@field forwarder_gateway_id? string
---@field home_network_net_id? string
---@field home_network_tenant_id? string
---@field home_network_cluster_id? string

---One gateway antenna that heard the frame.
---@class TTNRxMetadata
---@field gateway_ids TTNGatewayIDs
---@field time? string Gateway time, RFC 3339.
---@field timestamp? integer The concentrator's microsecond counter (wraps at 2^32).
---@field rssi? number dBm.
---@field channel_rssi? number dBm.
---@field snr? number dB.
---@field frequency_offset? string Hz, a 64-bit integer as a string.
---@field location? TTNLocation Only for a gateway with a public location.
---@field uplink_token? string Opaque, base64.
---@field channel_index? integer
---@field gps_time? string RFC 3339.
---@field received_at? string When the Gateway Server received it, RFC 3339.
---@field packet_broker? TTNPacketBroker

---@class TTNLoRaDataRate
---@field bandwidth? integer Hz, e.g. 125000.
---@field spreading_factor? integer 7..12.
---@field coding_rate? string e.g. `"4/5"`.

---@class TTNDataRate
---@field lora? TTNLoRaDataRate
---@field fsk? { bit_rate?: integer }
---@field lrfhss? { modulation_type?: integer, operating_channel_width?: integer, coding_rate?: string }

---@class TTNTxSettings
---@field data_rate? TTNDataRate
---@field frequency? string Hz, a 64-bit integer as a string: `"868100000"`.
---@field timestamp? integer
---@field time? string RFC 3339.
---@field coding_rate? string Older messages (about 2019-2021) carry it here instead of in `data_rate.lora`.
---@field gateway_channel_index? integer Older messages only.
---@field device_channel_index? integer Older messages only.

---@class TTNVersionIDs
---@field brand_id? string
---@field model_id? string
---@field hardware_version? string
---@field firmware_version? string
---@field band_id? string

---@class TTNNetworkIDs
---@field net_id? string
---@field ns_id? string
---@field tenant_id? string `"ttn"` on The Things Network.
---@field cluster_id? string e.g. `"eu1"`.
---@field cluster_address? string
---@field tenant_address? string

---What `uplink_message` and `uplink_normalized` have in common: one frame and how it was received.
---@class TTNFrame
---@field session_key_id? string Base64; changes with every join.
---@field f_port? integer 1..223; nil for a MAC-only frame (FPort 0).
---@field f_cnt? integer
---@field frm_payload? string The application payload, base64 (`ttn.payloadBytes()` decodes it); nil if MAC-only.
---@field rx_metadata? TTNRxMetadata[]
---@field settings? TTNTxSettings
---@field received_at? string When the Network Server received the frame, RFC 3339.
---@field confirmed? boolean The device sent a confirmed uplink.
---@field consumed_airtime? string A duration: `"0.061696s"`.
---@field locations? table<string, TTNLocation> By source: `"user"` (the registry), `"frm-payload"`, or a service.
---@field version_ids? TTNVersionIDs
---@field network_ids? TTNNetworkIDs

---@class TTNUplinkMessage: TTNFrame
---@field decoded_payload? table<string, any> What the application's payload formatter returned; nil without one.
---@field decoded_payload_warnings? string[]
---@field normalized_payload? table<string, any>[]
---@field packet_error_rate? number 0..1.
---@field last_battery_percentage? { f_cnt?: integer, value?: number, received_at?: string }
---@field attributes? table<string, string> The end device's attributes.

---The uplink a message handler runs for (`getLastMessage()`): the v3 JSON as TTN sent it.
---@class TTNUplink
---@field end_device_ids TTNEndDeviceIDs
---@field correlation_ids? string[]
---@field received_at? string When the Application Server handled it, RFC 3339.
---@field uplink_message? TTNUplinkMessage
---@field simulated? boolean true for an uplink simulated in the Console or through the API.

-------------------------------------------------------------------------------------------------------------
-- Events (setEventHandler, getLastEvent)

---The kinds of event a script can handle: TTN's topic suffixes, and the host's own `down/lost`.
---@alias TTNEventKind
---| "join"              # a device joined (`join_accept`)
---| "up/normalized"     # a normalized uplink (`uplink_normalized`)
---| "down/queued"       # TTN queued a downlink (`downlink_queued`)
---| "down/sent"         # a gateway sent it (`downlink_sent`)
---| "down/ack"          # the device acknowledged a confirmed downlink (`downlink_ack`)
---| "down/nack"         # it did not; TTN sends it again until its retry limit (`downlink_nack`)
---| "down/failed"       # TTN gave up on it (`downlink_failed`)
---| "down/invalidated"  # queued downlinks became invalid (`downlink_queue_invalidated`)
---| "location/solved"   # a location was found (`location_solved`)
---| "service/data"      # an application package's data (`service_data`)
---| "down/lost"         # the host's own: no down/queued or down/failed came within --downlink-timeout

---@alias TTNPriority "LOWEST"|"LOW"|"BELOW_NORMAL"|"NORMAL"|"ABOVE_NORMAL"|"HIGH"|"HIGHEST"

---A downlink as TTN reports it in the `down/*` events.
---@class TTNApplicationDownlink
---@field session_key_id? string
---@field f_port? integer
---@field f_cnt? integer The FCntDown used (down/sent, down/ack, down/nack).
---@field frm_payload? string Base64.
---@field decoded_payload? table<string, any>
---@field confirmed? boolean
---@field priority? TTNPriority
---@field correlation_ids? string[] Includes `"ttn-host:<id>"` for a downlink `publish` sent: see `ttn.downlinkID`.
---@field confirmed_retry? { attempt?: integer, max_attempts?: integer }

---Why TTN failed a downlink.
---@class TTNErrorDetails
---@field namespace? string e.g. `"pkg/applicationserver"`.
---@field name? string e.g. `"max_retries_reached"`, `"application_downlink_too_long"`, `"no_device_session"`.
---@field message_format? string
---@field attributes? table<string, any>
---@field correlation_id? string
---@field code? integer The gRPC status code.
---@field cause? table
---@field details? table[]

---@class TTNDownlinkFailed
---@field downlink TTNApplicationDownlink
---@field error TTNErrorDetails

---@class TTNDownlinkQueueInvalidated
---@field downlinks? TTNApplicationDownlink[]
---@field last_f_cnt_down? integer
---@field session_key_id? string

---@class TTNJoinAccept
---@field session_key_id? string
---@field received_at? string
---@field pending_session? boolean
---@field attributes? table<string, string>

---@class TTNUplinkNormalized: TTNFrame
---@field normalized_payload? table<string, any>
---@field normalized_payload_warnings? string[]

---@class TTNLocationSolved
---@field service? string `"frm-payload"` or an application package's name.
---@field location? TTNLocation
---@field attributes? table<string, string>

---@class TTNServiceData
---@field service? string The application package's name.
---@field data? table<string, any>

---An event, as `getLastEvent()` returns it inside an event handler: the v3 JSON as TTN sent it, with the one
---body field of its kind. For `down/lost` it is the host's own table: see `TTNDownlinkLost`.
---@class TTNEvent
---@field end_device_ids TTNEndDeviceIDs
---@field correlation_ids? string[]
---@field received_at? string RFC 3339.
---@field join_accept? TTNJoinAccept join
---@field uplink_normalized? TTNUplinkNormalized up/normalized
---@field downlink_queued? TTNApplicationDownlink down/queued
---@field downlink_sent? TTNApplicationDownlink down/sent
---@field downlink_ack? TTNApplicationDownlink down/ack
---@field downlink_nack? TTNApplicationDownlink down/nack
---@field downlink_failed? TTNDownlinkFailed down/failed
---@field downlink_queue_invalidated? TTNDownlinkQueueInvalidated down/invalidated
---@field location_solved? TTNLocationSolved location/solved
---@field service_data? TTNServiceData service/data
---@field downlink_id? string down/lost: the id `publish` returned.
---@field downlink? TTNApplicationDownlink down/lost: the downlink as it was sent.

---The `down/lost` event: a downlink that got neither `down/queued` nor `down/failed` within the host's
---`--downlink-timeout`. Narrow to it with `getLastEvent() --[[@as TTNDownlinkLost]]`.
---@class TTNDownlinkLost: TTNEvent
---@field downlink_id string The id `publish` returned.
---@field end_device_ids { device_id: string }
---@field downlink TTNApplicationDownlink

-------------------------------------------------------------------------------------------------------------
-- Downlinks (publish)

---The table form of `publish`. It becomes the v3 `{"downlinks":[{...}]}`.
---@class TTNDownlinkRequest
---@field f_port integer 1..223.
---@field bytes? TTNBytes The payload as bytes. One of `bytes`, `frm_payload` and `decoded_payload` is required.
---@field frm_payload? string The payload, base64.
---@field decoded_payload? table For the application's downlink encoder.
---@field confirmed? boolean Default false.
---@field priority? TTNPriority Default `"NORMAL"`.
---@field correlation_ids? string[]
---@field schedule? "push"|"replace" Default `"push"` (append to the queue); `"replace"` replaces the queue.

-------------------------------------------------------------------------------------------------------------
-- Timers

---A timer made by `ttn.every` or `ttn.after`.
---@class TTNTimer
local TTNTimer = {}

---Stops the timer: it does not fire again. A script has at most 64 live timers.
function TTNTimer:cancel() end

-------------------------------------------------------------------------------------------------------------
-- Globals (as in the seed's Python API)

---Makes `fn` the script's message handler: it runs, without arguments, for every uplink. Calling it again
---replaces the handler. A script that never calls it does not load.
---@param fn fun()
function setMessageHandler(fn) end

---The uplink that triggered this call of the message handler, as a table (the same table for the whole call).
---nil inside a timer or an event handler.
---@return TTNUplink
---@nodiscard
function getLastMessage() end

---The uplinks the host keeps, oldest first (bounded by `--history-limit`), as tables.
---@return TTNUplink[]
---@nodiscard
function getAllMessages() end

---Sends a downlink and returns its id (the host adds `"ttn-host:<id>"` to its `correlation_ids`, so the
---`down/*` events about it can be recognized with `ttn.downlinkID`).
---
---`message` is a JSON string (the seed's v2 form `{"port":1,"payload_raw":"AA=="}`, which goes to
---`down/replace`, or the v3 form) or a table (`TTNDownlinkRequest`). The device is `device`, else the one
---set with `setDeviceID`, else the triggering uplink's; inside a timer or an event handler there is no
---uplink, so give one. A refused downlink, or the 11th of an invocation (`--lua-downlink-limit`), raises
---an error.
---@param message string|TTNDownlinkRequest
---@param device? string
---@return string id
function publish(message, device) end

---The device later `publish` calls of this script go to, instead of the uplink's.
---@param id string
function setDeviceID(id) end

---Makes `fn` the handler of one kind of event (nil removes it). It runs without arguments; inside it
---`getLastEvent()` is the event.
---@param kind TTNEventKind
---@param fn fun()|nil
function setEventHandler(kind, fn) end

---The event an event handler runs for, as a table; nil elsewhere.
---@return TTNEvent
---@nodiscard
function getLastEvent() end

-------------------------------------------------------------------------------------------------------------
-- The ttn table (read-only)

---@class ttnlib
ttn = {}

---The value of JSON `null`.
---@type TTNNull
ttn.null = nil

---Writes its arguments, converted with `tostring` and separated by spaces, to the host's log (level info),
---tagged with the script's file. `print` does the same.
---@param ... any
function ttn.log(...) end

---@param fn fun()
function ttn.setMessageHandler(fn) end

---@return TTNUplink
---@nodiscard
function ttn.getLastMessage() end

---@return TTNUplink[]
---@nodiscard
function ttn.getAllMessages() end

---Sends a downlink and returns its id; see the global `publish`.
---@param message string|TTNDownlinkRequest
---@param device? string
---@return string id
function ttn.publish(message, device) end

---@param id string
function ttn.setDeviceID(id) end

---@param kind TTNEventKind
---@param fn fun()|nil
function ttn.setEventHandler(kind, fn) end

---@return TTNEvent
---@nodiscard
function ttn.getLastEvent() end

---The id `publish` returned for the downlink a `down/*` event is about (found in its correlation ids), or nil
---for a downlink that someone else sent.
---@param event? TTNEvent Default: `getLastEvent()`.
---@return string?
---@nodiscard
function ttn.downlinkID(event) end

---Whether the uplink being handled was backfilled: missed live (the host was disconnected, or a gap showed in the
---device's `f_cnt`) and fetched afterwards from TTN's Storage Integration. It comes late: after a reconnect,
---before the live uplinks that arrived meanwhile; for a gap, after the uplink that showed it. A handler may
---skip acting on stale data (a downlink, an alert) for it. false for a live uplink, and inside a timer or an
---event handler.
---@return boolean
---@nodiscard
function ttn.backfilled() end

---Hands `value` (anything `ttn.json.encode` takes) to the output named `sink` in ttn-host's configuration file,
---and returns the record's id at once: the handler never waits for the network. The record is written to the
---outbox with the invocation's `ttn.store` writes, only if the invocation succeeds, and delivered at least once,
---in emit order per sink (docs/outputs.md). An unknown sink, a value over 64 KiB encoded, or the 101st emit of
---an invocation raises an error.
---@param sink string
---@param value any
---@return string id The `id` of the record's envelope, the same on every delivery attempt.
function ttn.emit(sink, value) end

---Calls `fn` every `seconds` (at least 0.1) until cancelled. It runs in turn with the script's uplinks, under
---the same limits; a tick missed while the script was busy is not made up. Inside it `getLastMessage()` is
---nil and `publish` needs a device.
---@param seconds number
---@param fn fun()
---@return TTNTimer
function ttn.every(seconds, fn) end

---Calls `fn` once, after `seconds` (0 or more).
---@param seconds number
---@param fn fun()
---@return TTNTimer
function ttn.after(seconds, fn) end

---The uplink's `frm_payload` as an array of integers 0..255 (empty for a MAC-only frame).
---@param message? TTNUplink Default: `getLastMessage()`.
---@return integer[]
---@nodiscard
function ttn.payloadBytes(message) end

---A byte string as an array of integers: `ttn.bytes("AB")` is `{65, 66}`.
---@param s string
---@return integer[]
---@nodiscard
function ttn.bytes(s) end

---@class ttnlib.json
ttn.json = {}

---JSON text to Lua: objects are tables, arrays are sequences marked as arrays, `null` is `ttn.null`, numbers
---without a fraction or exponent are integers. Malformed JSON raises an error with the byte offset.
---@param text string
---@return any
---@nodiscard
function ttn.json.decode(text) end

---Lua to JSON text.
---@param value TTNJSONValue
---@return string
---@nodiscard
function ttn.json.encode(value) end

---Marks `t` (or a new table) as an array, so that it encodes as `[]` even when empty.
---@generic T: table
---@param t? T
---@return T
function ttn.json.array(t) end

---@class ttnlib.base64
ttn.base64 = {}

---@param bytes TTNBytes
---@return string
---@nodiscard
function ttn.base64.encode(bytes) end

---@param s string Standard base64.
---@return string bytes
---@nodiscard
function ttn.base64.decode(s) end

---@class ttnlib.hex
ttn.hex = {}

---Uppercase hex digits: `ttn.hex.encode("\1\255")` is `"01FF"`.
---@param bytes TTNBytes
---@return string
---@nodiscard
function ttn.hex.encode(bytes) end

---@param s string An even number of hex digits.
---@return string bytes
---@nodiscard
function ttn.hex.decode(s) end

---What `ttn.store` keeps: anything `ttn.json.encode` takes (a table comes back as a table).
---@alias TTNStoreValue boolean|number|string|table|TTNNull

---Persistent state of this script file (no other script sees its keys). It survives reloads and restarts.
---An invocation sees its own writes at once; they land together when it ends without error, and an error
---discards them all. Keys are at most 256 bytes, values at most 64 KiB encoded, a script's total is bounded
---by `--state-limit-mb` (default 64 MiB); breaking a limit raises an error.
---@class ttnlib.store
ttn.store = {}

---The value stored under `key` (a `TTNStoreValue`), or nil.
---@param key string
---@return any
---@nodiscard
function ttn.store.get(key) end

---Stores `value` under `key`; nil deletes it. With `ttl` (seconds, > 0), the key expires that long after.
---@param key string
---@param value TTNStoreValue|nil
---@param ttl? number
function ttn.store.set(key, value, ttl) end

---@param key string
function ttn.store.delete(key) end

---Adds `by` (default 1) to the number under `key` (a missing key counts as 0) and returns the new number.
---@param key string
---@param by? number
---@return number
function ttn.store.incr(key, by) end

---The script's keys that start with `prefix` (default: all), sorted.
---@param prefix? string
---@return string[]
---@nodiscard
function ttn.store.keys(prefix) end

-------------------------------------------------------------------------------------------------------------
-- os: the sandbox keeps only these four functions. .luarc.json disables the editor's own `os` library, so
-- that os.execute, os.getenv, os.exit and the rest are flagged as undefined.

---A date as `os.date("*t")` or `os.date("!*t")` returns it, and as `os.time` takes it.
---@class TTNDate
---@field year integer
---@field month integer 1..12
---@field day integer 1..31
---@field hour? integer 0..23
---@field min? integer 0..59
---@field sec? integer 0..61
---@field wday? integer 1..7, Sunday is 1.
---@field yday? integer 1..366
---@field isdst? boolean

---@class TTNOSLib
os = {}

---The current time (or `date`'s, read as local time) in seconds since the epoch.
---@param date? TTNDate
---@return integer
---@nodiscard
function os.time(date) end

---CPU time used by the host process, in seconds.
---@return number
---@nodiscard
function os.clock() end

---Formats a time (default: now) with strftime directives; a leading `!` means UTC (`os.date("!%Y-%m-%d")`).
---`"*t"` and `"!*t"` return a table instead.
---@param format? string
---@param time? integer
---@return string|TTNDate
---@nodiscard
function os.date(format, time) end

---`t2 - t1` in seconds.
---@param t2 integer
---@param t1 integer
---@return number
---@nodiscard
function os.difftime(t2, t1) end
