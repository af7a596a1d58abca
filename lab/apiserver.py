"""The kube-apiserver stand-ins: a small HTTP server that answers every GET with its name.

The cluster runs one in each kube-mast0N namespace on :6443 (a stopped one refuses
connections, as an apiserver that is down on a running machine), and one in every node on
:80, so a GET through the VIP tells which node answered. It runs inside a namespace as
`python3 -IS lab/apiserver.py NAME PORT`: by path, so it imports nothing but the standard
library.
"""
from __future__ import annotations

import os
import sys

def serve(name: str, port: int) -> None:
    """Answer every GET with name."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer(("", port), Handler).serve_forever()


def command(name: str, port: int) -> list[str]:
    """The argv that runs the stand-in name on port."""
    return [sys.executable, "-IS", os.path.abspath(__file__), name, str(port)]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: apiserver.py NAME PORT")
    serve(sys.argv[1], int(sys.argv[2]))
