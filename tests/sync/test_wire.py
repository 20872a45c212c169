"""The link's socket (wire.py): reads served from one recv(), a turn's writes in one send(),
nothing lost or reordered when the kernel's buffer is full, errors handed to paho. Real
sockets (socketpairs) and, for paho's side, a real mosquitto."""

from __future__ import annotations

import socket
import threading

import paho.mqtt.client as mqtt
import pytest

from agent.sync.netloop import Wakeup, pump
from agent.sync.wire import TurnClient, TurnSocket


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    yield TurnSocket(ours), peer
    ours.close()
    peer.close()


def read_all(peer: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_small_reads_come_from_one_recv_and_the_rest_is_pending(pair):
    sock, peer = pair
    peer.sendall(b"\x40\x02\x00\x01" * 3)  # three PUBACKs
    assert sock.recv(1) == b"\x40"
    assert sock.pending() == 11  # read ahead, invisible to select(): the pump must not wait
    assert sock.recv(1) == b"\x02"
    assert sock.recv(2) == b"\x00\x01"
    assert sock.recv(100) == b"\x40\x02\x00\x01" * 2  # what is buffered, no more
    assert sock.pending() == 0
    with pytest.raises(BlockingIOError):
        sock.recv(1)  # nothing buffered, nothing in the kernel: as a plain socket says
    peer.close()
    assert sock.recv(1) == b""  # the end of the stream reaches paho as it is


def test_a_batch_goes_out_in_one_piece_at_its_end(pair):
    sock, peer = pair
    with sock.batch():
        for i in range(5):
            assert sock.send(b"publish %d;" % i) == len(b"publish %d;" % i)
        assert read_all(peer) == b""  # nothing sent yet
    assert read_all(peer) == b"".join(b"publish %d;" % i for i in range(5))
    assert sock.send(b"outside") == 7 and read_all(peer) == b"outside"  # outside a batch: at once


def test_a_full_kernel_buffer_keeps_the_bytes_in_order_until_the_socket_takes_them(pair):
    sock, peer = pair
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sent = [bytes([i]) * 1000 for i in range(200)]  # 200 KB: far more than the buffer holds
    with sock.batch():
        for data in sent:
            sock.send(data)
    assert sock.unsent()  # the pump selects for writable while this holds
    sock.send(b"after")  # a later send goes behind what is held, never before it
    received = read_all(peer)
    while sock.unsent():
        sock.flush()
        received += read_all(peer)
    assert received == b"".join(sent) + b"after"


def test_a_failed_send_reaches_paho_after_what_was_read_before_it(pair):
    sock, peer = pair
    peer.sendall(b"\x40\x02\x00\x01\xe0\x00")  # a PUBACK, then the broker's DISCONNECT
    peer.close()
    assert sock.recv(1) == b"\x40"  # the rest is read ahead
    with sock.batch():
        sock.send(b"x" * 100)  # the peer is gone: this send fails at the end of the batch
    assert sock.pending() > 0  # so paho reads now
    assert sock.recv(3) == b"\x02\x00\x01" and sock.recv(2) == b"\xe0\x00"  # nothing read is lost
    with pytest.raises(OSError):
        sock.recv(1)  # then the failure, which paho handles as a lost connection
    with pytest.raises(OSError):
        sock.send(b"y")


class StalledBroker:
    """A broker that answers CONNECT, then reads nothing until `resume()`: a hung broker,
    or one behind a saturated link. Everything it reads later is in `received`."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._resume = threading.Event()
        self.received = b""
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            first = conn.recv(2)  # CONNECT: its fixed header, then its body
            conn.recv(first[1], socket.MSG_WAITALL)
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, MQTT 3.1.1
            self._resume.wait(30)
            while chunk := conn.recv(65536):
                self.received += chunk
        self.closed.set()

    def resume(self) -> None:
        self._resume.set()

    def close(self) -> None:
        self._server.close()


def test_held_bytes_go_out_before_the_disconnect_when_paho_drives_the_loop():
    """paho's own loop() (the link's goodbye) must still write what the socket holds, and the
    DISCONNECT after it: without it the broker publishes the lane's will."""
    broker = StalledBroker()
    client = TurnClient(mqtt.CallbackAPIVersion.VERSION2, client_id="wire-stalled", protocol=mqtt.MQTTv311)
    client.on_socket_register_write = lambda *_: None
    wake = Wakeup()
    try:
        client.connect("127.0.0.1", broker.port)
        client.socket().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        while not client.is_connected():
            pump(client, wake, 0.1)
        payloads = [b"%06d" % i + b"." * 2000 for i in range(300)]  # 600 KB: far beyond both buffers
        for payload in payloads:
            client.publish("wire/stalled", payload, qos=0)
        pump(client, wake, 0.1)
        assert client.socket().unsent() and client.want_write()  # held, and paho knows to write
        broker.resume()
        client.disconnect()
        for _ in range(200):  # as goodbye() does: paho's own loop
            if client.socket() is None:
                break
            client.loop(timeout=0.05)
        assert broker.closed.wait(10)
        body = b"".join(b"\x30" + _length(len(p) + 14) + b"\x00\x0cwire/stalled" + p for p in payloads)
        assert broker.received == body + b"\xe0\x00"  # every publish, in order, then DISCONNECT
    finally:
        broker.close()
        wake.close()


def _length(n: int) -> bytes:
    """MQTT's variable byte integer."""
    out = b""
    while True:
        n, digit = divmod(n, 128)
        out += bytes([digit | (0x80 if n else 0)])
        if not n:
            return out


def test_paho_publishes_through_the_pump_on_a_turn_socket(broker):
    """The hook into paho (its private `_create_socket`) still holds: if a paho release stops
    calling it, this fails, and the link still works, one system call per packet."""
    received: list[bytes] = []
    done = threading.Event()
    n = 500
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wire-sub", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: (received.append(m.payload), len(received) == n and done.set())
    sub.connect(broker.host, broker.port)
    sub.subscribe("wire/test", qos=1)
    sub.loop_start()
    client = TurnClient(mqtt.CallbackAPIVersion.VERSION2, client_id="wire-pub", protocol=mqtt.MQTTv5)
    client.on_socket_register_write = lambda *_: None
    acked = []
    client.on_publish = lambda c, u, mid, rc, props: acked.append(mid)
    wake = Wakeup()
    try:
        client.connect(broker.host, broker.port)
        assert isinstance(client.socket(), TurnSocket)
        while not client.is_connected():
            pump(client, wake, 0.1)
        for i in range(n):
            client.publish("wire/test", b"%06d" % i + b"." * 1200, qos=1)
        for _ in range(2000):
            if len(acked) == n:
                break
            pump(client, wake, 0.05)
        assert len(acked) == n
        assert done.wait(10)
        assert [p[:6] for p in received] == [b"%06d" % i for i in range(n)]  # all, in order
    finally:
        client.disconnect()
        pump(client, wake, 0.1)
        sub.loop_stop()
        sub.disconnect()
        wake.close()
