#!/usr/bin/env python3
"""A tiny webhook receiver for trying out the webhook plugin (the README's tour, scripts/demo).

Usage: scripts/receiver.py [PORT]   (default 8080; listens on 127.0.0.1 only)

Prints every request (path, Idempotency-Key, whether it had an Authorization
header, body) and answers by its path:
  /status/<code>   that status, e.g. /status/503, /status/429 (with Retry-After: 2), /status/400
  /fail/<n>        503 for the first <n> requests to it with a given Idempotency-Key, then 200
  anything else    200
"""
import sys
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen = Counter()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode("utf-8", "replace")
        key = self.headers.get("Idempotency-Key", "-")
        seen[self.path, key] += 1
        parts = self.path.split("?")[0].strip("/").split("/")
        status = 200
        if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
            status = int(parts[1])
        elif len(parts) == 2 and parts[0] == "fail" and parts[1].isdigit() and seen[self.path, key] <= int(parts[1]):
            status = 503
        auth = "yes" if "Authorization" in self.headers else "no"
        print(f"receiver: {self.command} {self.path} idempotency-key={key} (#{seen[self.path, key]}) authorization={auth} body={body} -> {status}", flush=True)
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "2")
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"received\n" if status < 300 else b"try again\n" if status in (429, 503) else b"rejected\n")

    def log_message(self, *args):  # the print above is the log
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
print(f"receiver: listening on 127.0.0.1:{port}", flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
