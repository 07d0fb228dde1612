-- Answers a button press with a confirmed downlink, and follows that downlink to its end: acknowledged by the
-- device, failed at TTN, or lost (TTN never took it). The downlinks in flight are kept in ttn.store under
-- "pending:<id>", so an answer that comes after a reload or a restart of the host is still recognized.
local port = 10                 -- the port and payload the device expects: here, "blink the LED"
local payload = { 0x01 }
local pending_ttl = 24 * 3600   -- forget a downlink no event ever came for, after a day

setMessageHandler(function()
  local m = getLastMessage()
  local decoded = m.uplink_message and m.uplink_message.decoded_payload
  if not decoded or decoded.pressEvent ~= 1 then return end    -- e.g. MClimate's button: 1 = pressed
  local device = m.end_device_ids.device_id
  local id = publish({ f_port = port, bytes = payload, confirmed = true })
  ttn.store.set("pending:" .. id, { device = device, sent_at = os.time() }, pending_ttl)
  ttn.log(device .. ": button pressed, confirmed downlink " .. id .. " sent")
end)

-- The pending downlink the current down/* event is about: its id and entry, or nil when another script or
-- application sent it.
local function pending()
  local id = ttn.downlinkID()
  local entry = id and ttn.store.get("pending:" .. id)
  if entry then return id, entry end
end

-- Logs how a pending downlink ended, with the time since it was sent, and forgets it.
local function finish(outcome)
  local id, entry = pending()
  if not id then return end
  ttn.log(string.format("%s: downlink %s %s after %d s", entry.device, id, outcome, os.time() - entry.sent_at))
  ttn.store.delete("pending:" .. id)
end

setEventHandler("down/ack", function() finish("acknowledged") end)

setEventHandler("down/failed", function()
  local failed = getLastEvent().downlink_failed
  finish("failed (" .. (failed and failed.error and failed.error.name or "unknown error") .. ")")
end)

setEventHandler("down/lost", function() finish("lost (TTN never queued it)") end)

-- A nack is not the end: TTN sends the downlink again, until its retry limit, then reports down/failed.
-- So the entry stays pending.
setEventHandler("down/nack", function()
  local id, entry = pending()
  if not id then return end
  local nack = getLastEvent().downlink_nack
  local attempt = nack and nack.confirmed_retry and nack.confirmed_retry.attempt or 0
  ttn.log(string.format("%s: downlink %s not acknowledged after %d s; TTN sends it again (attempt %d)",
    entry.device, id, os.time() - entry.sent_at, attempt))
end)
