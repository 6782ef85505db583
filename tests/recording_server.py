"""A local HTTP server standing in for what Dockyard calls out to (forge APIs, chat webhooks):
it records every call."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class RecordedCall:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class RecordingServer:
    url: str
    calls: list[RecordedCall] = field(default_factory=list)
    # Answer this many requests with 503 first, as a server having a bad day would.
    failures_left: int = 0

    def accepted(self) -> list[RecordedCall]:
        return [call for call in self.calls if call.headers.get("x-recorded-status") == "201"]


@contextmanager
def recording_server(*, failures: int = 0) -> Iterator[RecordingServer]:
    server_state = RecordingServer(url="", failures_left=failures)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                failing = server_state.failures_left > 0
                if failing:
                    server_state.failures_left -= 1
                status = 503 if failing else 201
                headers = {name.lower(): value for name, value in self.headers.items()}
                headers["x-recorded-status"] = str(status)
                server_state.calls.append(RecordedCall("POST", self.path, headers, body))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
