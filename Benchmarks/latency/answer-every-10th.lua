-- The latency benchmark's handler: answers every 10th uplink with a downlink carrying its f_cnt.
setMessageHandler(function()
  local m = getLastMessage()
  local n = m.uplink_message.f_cnt
  if n % 10 == 0 then
    publish({ f_port = 1, bytes = { 1 }, correlation_ids = { "bench:" .. n } })
  end
end)
