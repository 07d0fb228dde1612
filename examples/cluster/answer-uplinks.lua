-- The handler of scripts/cluster-demo, run by every `ttn-host work` process: counts each device's uplinks in
-- ttn.store (kept in the cluster, shared by the workers), logs the device, frame counter and count, and answers with
-- a downlink that carries the frame counter and the count (port 2, two bytes each, big endian), so that the network
-- side can tell which uplink each downlink answers and that each uplink was counted once. Then it works on for a while (CPU time standing in
-- for, say, a slow database write): a worker killed mid-traffic is then likely to die after its answer but before
-- the stream got the acknowledgement, which is the case docs/cluster.md describes.
local work_seconds = 0.05

setMessageHandler(function()
  local m = getLastMessage()
  local device = m.end_device_ids.device_id
  local f_cnt = m.uplink_message and m.uplink_message.f_cnt or 0   -- TTN leaves out a zero f_cnt
  local count = ttn.store.incr(device)
  ttn.log(string.format("%s f_cnt=%d count=%d", device, f_cnt, count))
  publish({ f_port = 2, bytes = { f_cnt // 256 % 256, f_cnt % 256, count // 256 % 256, count % 256 } })
  local done = os.clock() + work_seconds
  while os.clock() < done do end
end)
