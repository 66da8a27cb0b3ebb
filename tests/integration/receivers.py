"""Real notification receivers for the alerter tests: an SMTP server and a webhook server.

The SMTP server is aiosmtpd's (in-process, on a free port); the webhook receiver is a
`http.server` that keeps every request and processes each idempotency key once, as the
README asks of a receiver. Both stop and free their ports on exit.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from aiosmtpd.controller import Controller

from stack.processes import free_port


@dataclass
class Received:
    key: str
    title: str
    body: str


@dataclass
class WebhookReceiver:
    """JSON webhooks on 127.0.0.1:port; `processed` has each key once, `requests` all."""

    port: int = field(default_factory=free_port)
    # A slow receiver (seconds per request), to catch the alerter mid-delivery.
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    processed: dict[str, Received] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                length = int(self.headers.get("Content-Length") or 0)
                body: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
                key = self.headers.get("X-Edgewatch-Key") or str(body.get("idempotency_key"))
                item = Received(key, str(body.get("title")), str(body.get("message")))
                with receiver._lock:
                    receiver.requests.append(item)
                    receiver.processed.setdefault(key, item)
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except BrokenPipeError:
                    pass  # the sender died mid-request (the kill -9 test): it was processed

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def titles(self) -> list[str]:
        with self._lock:
            return [r.title for r in self.processed.values()]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _MailHandler:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1:port, plain SMTP; `messages` holds what arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self._handler = _MailHandler()
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?mode=insecure"
            "&from=edgewatch@example.com&to=oncall@example.com"
        )

    def subjects(self) -> list[str]:
        with self._handler.lock:
            return [str(m["Subject"]) for m in self._handler.messages]

    def keys(self) -> list[str]:
        with self._handler.lock:
            return [str(m["X-Edgewatch-Key"]) for m in self._handler.messages]

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
