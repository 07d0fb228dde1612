local host_publish, host_log, host_set_device, host_all = __ttn_publish, __ttn_log, __ttn_set_device, __ttn_all
__ttn_publish, __ttn_log, __ttn_set_device, __ttn_all = nil, nil, nil, nil
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
  local refusal = host_publish(body, device, schedule) -- nil, or why the host did not send (a refused downlink, the downlink limit)
  if refusal then error(refusal, 3) end -- raised at the script's line
end
function publish(message, device)
  if device ~= nil and type(device) ~= 'string' then error('publish: the device id must be a string', 2) end
  if type(message) == 'string' then send(message, device, nil) return end
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
  send(json.encode({ downlinks = { item } }), device, schedule)
end
ttn.setMessageHandler, ttn.getLastMessage, ttn.getAllMessages = setMessageHandler, getLastMessage, getAllMessages
ttn.publish, ttn.setDeviceID = publish, setDeviceID
-- The Lua half of the API: sandbox.c compiles this file in with #embed and runs it as chunk "=ttn", with the real
-- globals as its environment, before any script. Errors and tracebacks inside it name "ttn:<line>", a line of this
-- file; that is why its comments sit at line ends and down here, where they move no line of code.
