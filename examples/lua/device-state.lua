-- Keeps per-device state between messages (globals persist in a script's own Lua state):
-- counts uplinks and reports frame-counter gaps, i.e. uplinks the network never delivered.
seen = seen or {}

setMessageHandler(function()
  local m = getLastMessage()
  local id = m.end_device_ids.device_id
  local fcnt = m.uplink_message and m.uplink_message.f_cnt or 0
  local state = seen[id] or { count = 0 }
  if state.last and fcnt > state.last + 1 then
    ttn.log(string.format("%s: %d uplink(s) missing before f_cnt %d", id, fcnt - state.last - 1, fcnt))
  end
  state.count = state.count + 1
  state.last = fcnt
  seen[id] = state
  ttn.log(string.format("%s: %d uplink(s) so far", id, state.count))
end)
