"""Uplink-to-downlink latency through ttn-host: publishes uplinks at a fixed rate as the network, and times
each downlink the handler sends back (every 10th uplink) on the same clock. Prints p50/p99/max in ms."""
import json, sys, threading, time
import paho.mqtt.client as mqtt

host, port, user, password, count, rate, template_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
template = json.load(open(template_path))
template["end_device_ids"]["device_id"] = "bench-device"
sent, latencies, done = {}, [], threading.Event()
expected = len(range(0, count, 10))

def on_message(client, userdata, message):
    received = time.perf_counter()
    body = json.loads(message.payload)
    for cid in body["downlinks"][0].get("correlation_ids", []):
        if cid.startswith("bench:"):
            latencies.append(received - sent[int(cid[6:])])
    if len(latencies) >= expected:
        done.set()

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-network")
client.username_pw_set(user, password)
client.on_message = on_message
client.connect(host, port, 30)
# QoS 1, so that the broker queues rather than drops downlinks while this process is busy publishing.
client.subscribe("v3/my-app@ttn/devices/+/down/#", qos=1)
client.loop_start()
time.sleep(0.5)
topic = "v3/my-app@ttn/devices/bench-device/up"
start = time.perf_counter()
for n in range(count):
    template["uplink_message"]["f_cnt"] = n
    payload = json.dumps(template, separators=(",", ":"))
    target = start + n / rate
    # Sleep most of the wait (a busy loop would starve paho's network thread of the GIL), spin the rest.
    remaining = target - time.perf_counter()
    if remaining > 0.002:
        time.sleep(remaining - 0.001)
    while time.perf_counter() < target:
        pass
    sent[n] = time.perf_counter()
    client.publish(topic, payload, qos=0)
done.wait(timeout=30)
client.loop_stop()
if len(latencies) < expected:
    print(f"LATENCY missing={expected - len(latencies)} of {expected}")
    sys.exit(1)
latencies.sort()
ms = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
print(f"LATENCY n={len(latencies)} p50_ms={ms(0.5):.3f} p99_ms={ms(0.99):.3f} max_ms={latencies[-1] * 1000:.3f}")
