local host_publish, host_log, host_set_device, host_all, host_backfilled = __ttn_publish, __ttn_log, __ttn_set_device, __ttn_all, __ttn_backfilled
__ttn_publish, __ttn_log, __ttn_set_device, __ttn_all, __ttn_backfilled = nil, nil, nil, nil, nil
local store_get, store_set, store_delete, store_incr, store_keys = __ttn_store_get, __ttn_store_set, __ttn_store_delete, __ttn_store_incr, __ttn_store_keys
__ttn_store_get, __ttn_store_set, __ttn_store_delete, __ttn_store_incr, __ttn_store_keys = nil, nil, nil, nil, nil
local timer_add, timer_cancel, want_event, set_dispatcher = __ttn_timer_add, __ttn_timer_cancel, __ttn_want_event, __ttn_set_dispatcher
__ttn_timer_add, __ttn_timer_cancel, __ttn_want_event, __ttn_set_dispatcher = nil, nil, nil, nil
local json = ttn.json
local b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local b64index = {}
for i = 1, 64 do b64index[b64:byte(i)] = i - 1 end
local function b64encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = { b64:sub((n >> 18) + 1, (n >> 18) + 1), b64:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1),
      b and b64:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or '=', c and b64:sub((n & 63) + 1, (n & 63) + 1) or '=' }
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end
local function b64decode(s)
  if type(s) ~= 'string' then error('base64.decode: expected a string', 2) end
  s = s:gsub('=+$', '')
  local out, bits, count = {}, 0, 0
  for i = 1, #s do
    local v = b64index[s:byte(i)]
    if not v then error('base64.decode: invalid character at position ' .. i, 2) end
    bits, count = (bits << 6) | v, count + 6
    if count >= 8 then count = count - 8; out[#out + 1] = string.char((bits >> count) & 255) end
  end
  return table.concat(out)
end
local function bytes_to_string(bytes, who)
  if type(bytes) == 'string' then return bytes end
  if type(bytes) ~= 'table' then error(who .. ': bytes must be a string or an array of integers 0..255', 3) end
  local chars = {}
  for i, v in ipairs(bytes) do
    if math.type(v) ~= 'integer' or v < 0 or v > 255 then error(who .. ': bytes[' .. i .. '] is not an integer 0..255', 3) end
    chars[i] = string.char(v)
  end
  return table.concat(chars)
end
ttn.base64 = { encode = function(s) return b64encode(bytes_to_string(s, 'base64.encode')) end, decode = b64decode }
ttn.hex = {
  encode = function(s) return (bytes_to_string(s, 'hex.encode'):gsub('.', function(c) return string.format('%02X', c:byte()) end)) end,
  decode = function(s)
    if type(s) ~= 'string' or #s % 2 ~= 0 or s:find('[^%x]') then error('hex.decode: expected an even number of hex digits', 2) end
    return (s:gsub('%x%x', function(h) return string.char(tonumber(h, 16)) end))
  end,
}
function ttn.bytes(s) return { s:byte(1, -1) } end
function ttn.payloadBytes(m)
  m = m or getLastMessage()
  local up = m and m.uplink_message
  if not up or not up.frm_payload then return {} end
  return { b64decode(up.frm_payload):byte(1, -1) }
end
local function log(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  host_log(table.concat(parts, ' ', 1, parts.n))
end
ttn.log, print = log, log
function getAllMessages()
  local all = host_all()
  for i = 1, #all do all[i] = json.decode(all[i]) end
  return all
end
function setDeviceID(id)
  if type(id) ~= 'string' or id == '' then error('setDeviceID: expected a device id string', 2) end
  host_set_device(id)
end
local priorities = { LOWEST = true, LOW = true, BELOW_NORMAL = true, NORMAL = true, ABOVE_NORMAL = true, HIGH = true, HIGHEST = true }
local function send(body, device, schedule)
  local id, refusal = host_publish(body, device, schedule) -- the downlink's id, or nil and why the host did not send it
  if refusal then error(refusal, 3) end -- raised at the script's line
  return id
end
function publish(message, device)
  if device ~= nil and type(device) ~= 'string' then error('publish: the device id must be a string', 2) end
  if type(message) == 'string' then local id = send(message, device, nil) return id end
  if type(message) ~= 'table' then error('publish: expected a JSON string or a table {f_port=, bytes= | frm_payload= | decoded_payload=}', 2) end
  local port = message.f_port
  if math.type(port) ~= 'integer' or port < 1 or port > 223 then error('publish: f_port must be an integer from 1 to 223', 2) end
  local item = { f_port = port, confirmed = message.confirmed == true, priority = message.priority or 'NORMAL' }
  if not priorities[item.priority] then error('publish: priority must be one of LOWEST, LOW, BELOW_NORMAL, NORMAL, ABOVE_NORMAL, HIGH, HIGHEST', 2) end
  if message.bytes ~= nil then item.frm_payload = b64encode(bytes_to_string(message.bytes, 'publish'))
  elseif message.frm_payload ~= nil then item.frm_payload = message.frm_payload
  elseif message.decoded_payload ~= nil then item.decoded_payload = message.decoded_payload
  else error('publish: give the payload as bytes=, frm_payload= (base64) or decoded_payload=', 2) end
  if message.correlation_ids ~= nil then item.correlation_ids = message.correlation_ids end
  local schedule = message.schedule or 'push'
  if schedule ~= 'push' and schedule ~= 'replace' then error('publish: schedule must be "push" or "replace"', 2) end
  local id = send(json.encode({ downlinks = { item } }), device, schedule)
  return id
end
function ttn.backfilled() return host_backfilled() end
ttn.setMessageHandler, ttn.getLastMessage, ttn.getAllMessages = setMessageHandler, getLastMessage, getAllMessages
ttn.publish, ttn.setDeviceID = publish, setDeviceID
local function check_key(key, who)
  if type(key) ~= 'string' then error(who .. ': the key must be a string', 3) end
end
local function checked(value, failure) -- raises a host function's failure at the line of the script that called its caller (callers never tail-call it)
  if failure then error(failure, 3) end
  return value
end
local store = {}
function store.get(key)
  check_key(key, 'ttn.store.get')
  local text = checked(store_get(key))
  if text == nil then return nil end
  return json.decode(text)
end
function store.set(key, value, ttl)
  check_key(key, 'ttn.store.set')
  if ttl ~= nil and (type(ttl) ~= 'number' or ttl <= 0) then error('ttn.store.set: ttl must be a number of seconds > 0', 2) end
  if value == nil then checked(store_delete(key)) return end
  local ok, text = pcall(json.encode, value)
  if not ok then error('ttn.store.set: ' .. tostring(text), 2) end
  checked(store_set(key, text, ttl))
end
function store.delete(key)
  check_key(key, 'ttn.store.delete')
  checked(store_delete(key))
end
function store.incr(key, by)
  check_key(key, 'ttn.store.incr')
  if by == nil then by = 1 elseif type(by) ~= 'number' then error('ttn.store.incr: by must be a number', 2) end
  local value = checked(store_incr(key, by))
  return value
end
function store.keys(prefix)
  if prefix ~= nil and type(prefix) ~= 'string' then error('ttn.store.keys: the prefix must be a string', 2) end
  local keys = checked(store_keys(prefix))
  return keys
end
ttn.store = store
local timers = {}
local timer_methods = {}
function timer_methods.cancel(self)
  if timers[self.id] then timers[self.id] = nil; timer_cancel(self.id) end
end
local timer_meta = { __index = timer_methods, __name = 'ttn.timer', __metatable = false }
local function start_timer(who, seconds, fn, repeating)
  if type(seconds) ~= 'number' or seconds ~= seconds then error(who .. ': seconds must be a number', 3) end
  if repeating and seconds < 0.1 then error(who .. ': seconds must be at least 0.1', 3) end
  if seconds < 0 then error(who .. ': seconds must not be negative', 3) end
  if type(fn) ~= 'function' then error(who .. ': expected a function as the second argument', 3) end
  local id, failure = timer_add(seconds, repeating)
  if failure then error(failure, 3) end
  timers[id] = { fn = fn, repeating = repeating }
  return setmetatable({ id = id }, timer_meta)
end
function ttn.every(seconds, fn) local t = start_timer('ttn.every', seconds, fn, true) return t end
function ttn.after(seconds, fn) local t = start_timer('ttn.after', seconds, fn, false) return t end
local event_kinds = {}
for _, kind in ipairs({ 'join', 'up/normalized', 'down/queued', 'down/sent', 'down/ack', 'down/nack', 'down/failed',
  'down/invalidated', 'location/solved', 'service/data', 'down/lost' }) do event_kinds[kind] = true end
local event_handlers = {}
function setEventHandler(kind, fn)
  if not event_kinds[kind] then error('setEventHandler: unknown event kind ' .. tostring(kind) .. '; one of join, up/normalized, down/queued, down/sent, down/ack, down/nack, down/failed, down/invalidated, location/solved, service/data, down/lost', 2) end
  if fn ~= nil and type(fn) ~= 'function' then error('setEventHandler: expected a function or nil as the second argument', 2) end
  event_handlers[kind] = fn
  want_event(kind, fn ~= nil)
end
local function find_downlink_id(ids)
  if type(ids) ~= 'table' then return nil end
  for _, id in ipairs(ids) do
    if type(id) == 'string' and id:sub(1, 9) == 'ttn-host:' then return id:sub(10) end
  end
end
function ttn.downlinkID(event)
  event = event or getLastEvent()
  if type(event) ~= 'table' then return nil end
  if type(event.downlink_id) == 'string' then return event.downlink_id end
  local found = find_downlink_id(event.correlation_ids)
  if found then return found end
  for _, field in pairs(event) do
    if type(field) == 'table' then
      found = find_downlink_id(field.correlation_ids)
      if found then return found end
    end
  end
end
set_dispatcher(function(timer, kind)
  if timer then
    local t = timers[timer]
    if not t then return end
    if not t.repeating then timers[timer] = nil end
    t.fn()
  else
    local fn = event_handlers[kind]
    if fn then fn() end
  end
end)
ttn.setEventHandler, ttn.getLastEvent = setEventHandler, getLastEvent
local host_emit = __ttn_emit
__ttn_emit = nil
function ttn.emit(sink, value)
  if type(sink) ~= 'string' then error('ttn.emit: the sink must be a string, the name of a sink in the configuration', 2) end
  local ok, text = pcall(json.encode, value)
  if not ok then error('ttn.emit: ' .. tostring(text), 2) end
  local id = checked(host_emit(sink, text))
  return id
end
-- The Lua half of the API: sandbox.c compiles this file in with #embed and runs it as chunk "=ttn", with the real
-- globals as its environment, before any script. Errors and tracebacks inside it name "ttn:<line>", a line of this
-- file; that is why its comments sit at line ends and down here, where they move no line of code.
