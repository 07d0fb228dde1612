-- Counts each device's uplinks per UTC day, in ttn.store under "count:<device>:<YYYY-MM-DD>". A day's key
-- expires `keep_days` after its last uplink, so the store holds about a week of counts and never grows.
local keep_days = 8

setMessageHandler(function()
  local device = getLastMessage().end_device_ids.device_id
  local day = os.date("!%Y-%m-%d")                      -- "!" for UTC
  local key = "count:" .. device .. ":" .. day
  local count = ttn.store.incr(key)
  ttn.store.set(key, count, keep_days * 24 * 3600)      -- incr takes no TTL: give the key one here
  ttn.log(string.format("%s: uplink %d of %s (UTC)", device, count, day))
end)
