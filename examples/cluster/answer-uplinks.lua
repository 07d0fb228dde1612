-- The handler of scripts/cluster-demo, run by every `ttn-host work` process: logs each uplink's device and frame
-- counter, and answers it with a downlink that carries the frame counter (port 2, two bytes, big endian), so that
-- the network side can tell which uplink each downlink answers. Then it works on for a while (CPU time standing in
-- for, say, a slow database write): a worker killed mid-traffic is then likely to die after its answer but before
-- the stream got the acknowledgement, which is the case docs/cluster.md describes.
local work_seconds = 0.05

setMessageHandler(function()
  local m = getLastMessage()
  local device = m.end_device_ids.device_id
  local f_cnt = m.uplink_message and m.uplink_message.f_cnt or 0   -- TTN leaves out a zero f_cnt
  ttn.log(string.format("%s f_cnt=%d", device, f_cnt))
  publish({ f_port = 2, bytes = { f_cnt // 256 % 256, f_cnt % 256 } })
  local done = os.clock() + work_seconds
  while os.clock() < done do end
end)
