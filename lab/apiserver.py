"""The kube-apiserver stand-ins: a small HTTP server that answers every GET with its name,
and GET /watch with a stream that never ends, as a Kubernetes watch: a line naming the
server every WATCH_INTERVAL seconds.

The cluster runs one in each kube-mast0N namespace on :6443 (a stopped one refuses
connections, as an apiserver that is down on a running machine), and one in every node on
:80, so a GET through the VIP tells which node answered. It runs inside a namespace as
`python3 -IS lab/apiserver.py NAME PORT`: by path, so it imports nothing but the standard
library.
"""
from __future__ import annotations

import os
import sys
import time

WATCH_PATH = "/watch"
WATCH_INTERVAL = 0.5  # seconds between two messages of a watch stream

def serve(name: str, port: int) -> None:
    """Answer every GET with name."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == WATCH_PATH:
                self.watch()
                return
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def watch(self) -> None:
            """Headers, then a line every WATCH_INTERVAL until the client goes (HTTP/1.0:
            the body ends with the connection)."""
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            number = 0
            try:
                while True:
                    number += 1
                    self.wfile.write(f"{name} {number}\n".encode())
                    self.wfile.flush()
                    time.sleep(WATCH_INTERVAL)
            except OSError:
                pass  # the client left, or its connection was cut

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        allow_reuse_address = True

        def handle_error(self, request: object, client_address: object) -> None:
            """A client that goes while being answered (a cut connection, a reset from a
            failover) is what the lab does all day: no traceback on the harness's stderr."""
            if not isinstance(sys.exc_info()[1], OSError):
                super().handle_error(request, client_address)  # type: ignore[arg-type]

    Server(("", port), Handler).serve_forever()


def command(name: str, port: int) -> list[str]:
    """The argv that runs the stand-in name on port."""
    return [sys.executable, "-IS", os.path.abspath(__file__), name, str(port)]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: apiserver.py NAME PORT")
    serve(sys.argv[1], int(sys.argv[2]))
