"""A scripted MQTT broker for what a real one will not do on demand: refuse a subscription in
its SUBACK (RabbitMQ does while a session queue's home node is down; mosquitto grants and
filters instead), or close the socket on an MQTT 5 CONNECT (RabbitMQ 3.x). It speaks just
enough MQTT 3.1.1 and 5 for the agent: CONNECT, SUBSCRIBE, PUBLISH QoS 0/1, PINGREQ."""

from __future__ import annotations

import socket
import threading


class FakeBroker:
    def __init__(self, *, refuse_subscribe: bool = False, close_on_v5: bool = False):
        self.refuse_subscribe, self.close_on_v5 = refuse_subscribe, close_on_v5
        self.connects = 0  # CONNECT packets received
        self._server = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self._server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        version = 4
        with conn:
            try:
                while True:
                    kind, flags, body = _read_packet(conn)
                    if kind == 1:  # CONNECT
                        self.connects += 1
                        version = body[6]
                        if version == 5 and self.close_on_v5:
                            return
                        conn.sendall(b"\x20\x03\x00\x00\x00" if version == 5 else b"\x20\x02\x00\x00")
                    elif kind == 8:  # SUBSCRIBE
                        pid, rest = body[:2], body[2:]
                        if version == 5:
                            rest = rest[1 + rest[0]:] if rest[0] < 128 else rest  # short property lengths only
                        count = 0
                        while rest:
                            n = int.from_bytes(rest[:2], "big")
                            rest, count = rest[2 + n + 1:], count + 1
                        code = b"\x87" if version == 5 else b"\x80"
                        codes = (code if self.refuse_subscribe else b"\x01") * count
                        props = b"\x00" if version == 5 else b""
                        payload = pid + props + codes
                        conn.sendall(b"\x90" + bytes([len(payload)]) + payload)
                    elif kind == 3:  # PUBLISH
                        if (flags >> 1) & 3 == 1:
                            n = int.from_bytes(body[:2], "big")
                            conn.sendall(b"\x40\x02" + body[2 + n:4 + n])
                    elif kind == 12:  # PINGREQ
                        conn.sendall(b"\xd0\x00")
                    elif kind == 14:  # DISCONNECT
                        return
            except (OSError, ConnectionError):
                return


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_packet(conn: socket.socket) -> tuple[int, int, bytes]:
    first = _read_exact(conn, 1)[0]
    length, shift = 0, 0
    while True:
        b = _read_exact(conn, 1)[0]
        length += (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first >> 4, first & 0x0F, _read_exact(conn, length)
