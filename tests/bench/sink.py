"""`python -m tests.bench.sink HOST PORT TOPIC CLIENT_ID N`: a back end's subscriber, in its own process.

A persistent MQTT session (it survives the broker's restart, as a back end's does), QoS 1,
reconnecting every 0.2 s (paho's loop) while the broker is away. Counts distinct payloads (a retry is
not a new event). Prints `{"ready": true}` once first subscribed, `{"done": WALL_TIME}` when N
distinct payloads have arrived, and on SIGTERM `{"unique": U, "total": T, "last": WALL}`.
Its CPU is its own, not the peer's under measurement.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main(host: str, port: int, topic: str, client_id: str, target: int) -> int:
    seen: set[bytes] = set()
    state = {"total": 0, "last": None, "done": False}
    stop = threading.Event()

    def say(doc: dict) -> None:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe(topic, qos=1)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if not state.get("ready"):  # once: a reconnect subscribes again
            state["ready"] = True
            say({"ready": True})

    def on_message(client, userdata, msg):
        state["total"] += 1
        digest = hashlib.blake2b(msg.payload, digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            state["last"] = time.time()
            if len(seen) >= target and not state["done"]:
                state["done"] = True
                say({"done": state["last"]})

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.reconnect_delay_set(0.1, 0.2)  # paho's own loop reconnects; the session keeps what came meanwhile
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.connect(host, port, keepalive=30)
    client.loop_start()
    stop.wait()
    client.loop_stop()
    say({"unique": len(seen), "total": state["total"], "last": state["last"]})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])))
