-- The benchmark's Lua handler: reads decoded_payload and accumulates a field.
total = 0
setMessageHandler(function()
  local decoded = getLastMessage().uplink_message.decoded_payload
  total = total + (decoded.temperature or 0)
end)
