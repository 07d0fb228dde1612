-- Warns once when a device has been silent for more than `silent_minutes`, and again only after it was heard
-- from in between. The last-seen times live in ttn.store, so they survive a reload of this script and a
-- restart of the host.
local silent_minutes = 15

-- Every uplink: the device is alive. Clear a warning it had, and say that it is back.
setMessageHandler(function()
  local device = getLastMessage().end_device_ids.device_id
  local now = os.time()
  if ttn.store.get("warned:" .. device) then
    local last = ttn.store.get("seen:" .. device) or now
    ttn.log(string.format("%s is back after %d minutes of silence", device, (now - last) // 60))
    ttn.store.delete("warned:" .. device)
  end
  ttn.store.set("seen:" .. device, now)
end)

-- Once a minute: warn about each device silent for too long that has not been warned about yet.
ttn.every(60, function()
  local now = os.time()
  for _, key in ipairs(ttn.store.keys("seen:")) do
    local device = key:sub(#"seen:" + 1)
    local last = ttn.store.get(key)
    if now - last > silent_minutes * 60 and not ttn.store.get("warned:" .. device) then
      ttn.log(string.format("WARNING: %s silent for %d minutes (last uplink %s UTC)",
        device, (now - last) // 60, os.date("!%Y-%m-%d %H:%M", last)))
      ttn.store.set("warned:" .. device, true)
    end
  end
end)
