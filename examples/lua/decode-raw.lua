-- Decodes the raw payload bytes when the application has no payload formatter.
-- Format (example sensor): byte 1 = flags, bytes 2-3 = temperature * 100 (signed, big endian).
setMessageHandler(function()
  local m = getLastMessage()
  local up = m.uplink_message
  if not up or up.decoded_payload or not up.frm_payload then return end
  local b = ttn.payloadBytes(m)
  if #b < 3 then
    ttn.log(m.end_device_ids.device_id .. ": " .. #b .. " byte(s), too short: " .. ttn.hex.encode(ttn.base64.decode(up.frm_payload)))
    return
  end
  local raw = b[2] * 256 + b[3]
  if raw >= 32768 then raw = raw - 65536 end
  ttn.log(string.format("%s: flags=0x%02X temperature=%.2f C", m.end_device_ids.device_id, b[1], raw / 100))
end)
