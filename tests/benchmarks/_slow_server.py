"""A slow stand-in for Klar, for the upload benchmark: every POST waits, then answers 201 ``VALID``.

Run it as a separate process (``python tests/benchmarks/_slow_server.py --delay-ms 50``) so its CPU is
not the client's; it prints ``PORT <n>`` once listening on 127.0.0.1. It does not parse or validate
bodies (that would spend the shared cores on the server), it only reads them and counts bytes.
``GET /stats`` answers ``{"requests": n, "bytes": n}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ANSWER = b'{"status":"VALID"}'


def serve(delay: float, port: int = 0) -> ThreadingHTTPServer:
    """Return a started server answering each POST after ``delay`` seconds."""
    stats = {"requests": 0, "bytes": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Klar's load balancer offers

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            with lock:
                stats["requests"] += 1
                stats["bytes"] += len(body)
            self._send(201, _ANSWER)

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(stats).encode()
            self._send(200, body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    """Serve until stdin closes (the parent process ends or closes the pipe)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()
    server = serve(args.delay_ms / 1000)
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
