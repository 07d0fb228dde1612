-- Logs every uplink: device, frame counter, port and the decoded payload (if the app has a formatter), and
-- "(backfilled)" for an uplink the host fetched from TTN's Storage Integration because it was missed live.
setMessageHandler(function()
  local m = getLastMessage()
  local up = m.uplink_message or {}
  local decoded = up.decoded_payload and ttn.json.encode(up.decoded_payload) or "-"
  ttn.log(string.format("%s f_cnt=%s f_port=%s decoded=%s%s",
    m.end_device_ids.device_id, tostring(up.f_cnt), tostring(up.f_port), decoded,
    ttn.backfilled() and " (backfilled)" or ""))
end)
