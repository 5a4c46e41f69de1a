#!/usr/bin/env python3
"""A minimal stand-in for Discord's API for `make check-observability`.

It exists so palmvalidator-discord's request, rate-limit and invalid-request
series get real samples: the first token exchange is answered 429 (a
Retry-After of 0.2 s, which the limiter waits out and counts), later ones 400
invalid_grant (the code is refused: a `discord_invalid_code` rejection);
/gateway answers 200 (the service's probe); anything else 401.
Usage: fake_discord.py PORT
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"token_calls": 0}


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.endswith("/oauth2/token"):
            state["token_calls"] += 1
            if state["token_calls"] == 1:
                self.answer(429, {"message": "You are being rate limited.", "retry_after": 0.2, "global": False},
                            {"retry-after": "0.2", "x-ratelimit-scope": "user"})
            else:
                self.answer(400, {"error": "invalid_grant", "error_description": "Invalid \"code\" in request."})
            return
        self.answer(401, {"message": "401: Unauthorized", "code": 0})

    def do_GET(self):  # noqa: N802
        if self.path.endswith("/gateway"):
            self.answer(200, {"url": "wss://gateway.discord.invalid"})
            return
        self.answer(401, {"message": "401: Unauthorized", "code": 0})

    def log_message(self, fmt, *args):
        sys.stderr.write("fake-discord: " + (fmt % args) + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
