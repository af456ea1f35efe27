"""A tiny Batch API stand-in that accepts reference ingests and forgets them (``python -m``).

It answers ``GET /`` with a workspace, ``POST .../bulk-upload/image-references`` with
``{"ingestId": ...}`` (the body is read in full and its references counted, never parsed into
objects), and ``GET /stats`` with what it received. It runs in its own process so its memory is
not counted in the ingest process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_INGEST_ID = re.compile(rb'"ingestId"\s*:\s*"([^"]+)"')
_LOCK = threading.Lock()
_STATS = {"requests": 0, "references": 0, "bytes": 0}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/stats":
            with _LOCK:
                self._reply(200, dict(_STATS))
            return
        self._reply(200, {"workspace": "bench"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if "bulk-upload" not in self.path:
            self._reply(404, {"error": "not here"})
            return
        match = _INGEST_ID.search(body, max(0, len(body) - 4096)) or _INGEST_ID.search(body)
        ingest_id = match.group(1).decode() if match else "ingest-sink"
        refs = body.count(b'"url"')
        with _LOCK:
            _STATS["requests"] += 1
            _STATS["references"] += refs
            _STATS["bytes"] += len(body)
        self._reply(200, {"ingestId": ingest_id, "duplicated": False})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
