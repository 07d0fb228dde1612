-- The benchmark's emit handler: the plain handler's read of decoded_payload, and one ttn.emit per uplink of a small
-- reading to the file sink "archive", written to the outbox with the invocation's commit and delivered from there.
setMessageHandler(function()
  local up = getLastMessage().uplink_message
  local decoded = up.decoded_payload
  ttn.emit("archive", { f = up.f_cnt, temperature = decoded.temperature, battery = decoded.batteryVoltage })
end)
