-- Forwards each decoded reading to three outputs: a warehouse over HTTP, a Home Assistant broker over MQTT, and
-- an archive file. The sinks are named in ttn-host's configuration file (examples/config/ttn-host.yaml).
-- ttn.emit returns at once: the record waits in the outbox until its sink took it, across receiver outages and
-- restarts, and only if this invocation succeeds.
setMessageHandler(function()
  local m = getLastMessage()
  local up = m.uplink_message
  local decoded = up and up.decoded_payload
  if not up or type(decoded) ~= "table" then return end  -- no payload formatter on TTN's side: nothing to forward

  local reading = {
    device = m.end_device_ids.device_id,
    f_cnt = up.f_cnt,
    received_at = up.received_at,
    temperature = decoded.temperature or decoded.sensorTemperature,
    humidity = decoded.humidity,
  }
  ttn.emit("warehouse", reading)                      -- POSTed in batches, Idempotency-Key = first record's id
  ttn.emit("homeassistant", { temperature = reading.temperature, humidity = reading.humidity })
  ttn.emit("archive", reading)                        -- one JSON line per record
end)
