#!/usr/bin/env python3
"""A loopback stand-in for Telegram's Bot API and a Slack-compatible webhook,
for `make check-observability`'s Alertmanager run.

Every POST is appended to LOG as one JSON line {"path", "body"}; Telegram's
sendMessage gets the answer its client expects, anything else `ok`.
Usage: notification_sink.py PORT LOG
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode("utf-8", "replace")
        with open(sys.argv[2], "a", encoding="utf-8") as log:
            log.write(json.dumps({"path": self.path, "body": body}) + "\n")
        if self.path.endswith("/sendMessage"):
            answer = {"ok": True, "result": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "group"}}}
            data = json.dumps(answer).encode()
            ctype = "application/json"
        else:
            data, ctype = b"ok", "text/plain"
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("sink: " + (fmt % args) + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
