"""shared room: paho-mqtt's socket, read in large chunks (the receive side of a backlog drain).

paho 2.x reads every packet with at least three `recv` calls (the command byte, each byte of
the remaining length, then the rest), and handles one packet per `select`: for a single
reading of about 300 bytes that is four system calls and a pass through paho's loop per
message. `BufferedSocket` gives paho the same socket interface (paho's own `SocketLike`, the
one its websocket transport implements) but takes whatever the kernel holds, up to
`READ_CHUNK_BYTES`, in one `recv`, and serves paho's small reads from that; it reports what it
holds through `pending()`, the hook paho already asks for TLS (paho bug #131), so paho never
waits in `select` for bytes that are already read. `BufferedClient.loop_read` then handles
the packets already buffered in one pass (at most `MAX_PACKETS_PER_READ`, so PUBACKs and the
keepalive are not held back under a long backlog).

What changes on the wire: nothing. Writes go straight through (a PUBACK is on its way when
paho says so). How paho gets the wrapper: `BufferedClient` overrides paho's `_create_socket`
(present throughout paho 2.x; `tests/unit/test_shared.py` fails if it goes away), so TLS,
reconnects and paho's own loop are unchanged. Touches: the socket paho opens.
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

# Larger than any backlog a loopback or LAN socket holds between two reads in practice, small
# enough that one `recv` copies little more than it needs.
READ_CHUNK_BYTES = 65536
MAX_PACKETS_PER_READ = 256


class BufferedSocket:
    """A socket whose reads are served from one large `recv` (paho's `SocketLike`)."""

    def __init__(self, sock: Any, read_chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self._sock = sock
        self._read_chunk = read_chunk_bytes
        self._buffer = b""
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes read from the kernel that paho has not taken yet."""
        return len(self._buffer) - self._pos

    def recv(self, buffer_size: int) -> bytes:
        held = len(self._buffer) - self._pos
        if held == 0:
            # Exceptions (BlockingIOError, TLS want-read, resets) and b"" at end of stream reach
            # paho exactly as the socket raised or returned them.
            data: bytes = self._sock.recv(max(buffer_size, self._read_chunk))
            if len(data) <= buffer_size:
                return data
            self._buffer, self._pos = data, buffer_size
            return data[:buffer_size]
        end = self._pos + min(buffer_size, held)
        chunk = self._buffer[self._pos : end]
        if end == len(self._buffer):
            self._buffer, self._pos = b"", 0
        else:
            self._pos = end
        return chunk

    def pending(self) -> int:
        """What can be read without waiting: our buffer, and a TLS socket's own."""
        inner = getattr(self._sock, "pending", None)
        return self.buffered + (inner() if inner is not None else 0)

    def send(self, buffer: bytes | bytearray) -> int:
        sent: int = self._sock.send(buffer)
        return sent

    def close(self) -> None:
        self._buffer, self._pos = b"", 0
        self._sock.close()

    def fileno(self) -> int:
        fileno: int = self._sock.fileno()
        return fileno

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    def __getattr__(self, name: str) -> Any:
        # Anything else a caller asks of the socket (getpeercert, getsockname, ...).
        return getattr(self._sock, name)


class BufferedClient(paho.Client):
    """paho's client on a `BufferedSocket`, handling every buffered packet per read."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket):  # TCP, Unix or TLS; the websocket wrapper is left be
            return BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        handled = 1
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and handled < MAX_PACKETS_PER_READ:
            sock = self.socket()
            if not isinstance(sock, BufferedSocket) or sock.buffered == 0:
                break
            rc = super().loop_read(max_packets)
            handled += 1
        return rc
