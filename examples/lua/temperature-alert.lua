-- Answers a hot device with a downlink: payload 01 on port 1 ("turn the fan on").
local threshold = 30

setMessageHandler(function()
  local m = getLastMessage()
  local decoded = m.uplink_message and m.uplink_message.decoded_payload
  local t = decoded and (decoded.temperature or decoded.sensorTemperature)
  -- A backfilled reading is from the past (fetched after an outage): too old to switch the fan on.
  if type(t) == "number" and t > threshold and not ttn.backfilled() then
    ttn.log(string.format("%s is at %.1f C, above %d: sending fan-on", m.end_device_ids.device_id, t, threshold))
    publish('{"port": 1, "confirmed": false, "payload_raw": "AQ=="}')  -- to the uplink's device
  end
end)
