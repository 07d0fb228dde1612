-- The benchmark's store handler: the plain handler's read of decoded_payload, and one ttn.store.incr per uplink,
-- committed with the invocation.
setMessageHandler(function()
  local decoded = getLastMessage().uplink_message.decoded_payload
  if decoded.temperature then ttn.store.incr("uplinks") end
end)
