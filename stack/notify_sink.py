"""stack room: the demo's local notification receiver, so an operator sees what would page.

A JSON webhook endpoint on 127.0.0.1 (the alerter posts to it through Apprise's json://)
that appends one line per notification to a log file, and keeps each idempotency key once:
a resend of a delivered notification is logged as a duplicate, not as a second page.
Touches: its port and its log file.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from stack.processes import free_port


class NotificationSink:
    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.log_path = log_path
        self.port = port or free_port()
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def apprise_url(self) -> str:
        return f"json://127.0.0.1:{self.port}/notify"

    def _record(self, key: str, payload: dict[str, Any]) -> None:
        with self._lock:
            duplicate = key in self._seen
            self._seen.add(key)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            what = "DUPLICATE (already processed) " if duplicate else ""
            title = str(payload.get("title", "")).replace("\n", " ")
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(f"{stamp} {what}{title} [key {key}]\n")

    def start(self) -> None:
        sink = self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    payload = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                key = self.headers.get("X-Edgewatch-Key") or str(payload.get("idempotency_key"))
                sink._record(key, payload if isinstance(payload, dict) else {})
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
