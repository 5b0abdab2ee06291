"""A misbehaving OpenAI-compatible chat server, run as its own process on loopback.

    python -m tests.fault_remote PORT

POST /_script with {"steps": [...], "default": "ok"} sets what the next chat requests get, one
step each: ok, hang, drip, cut, escapes, 429:SECONDS, 500, 401, 400, 307. GET /_stats says
what it saw: chat requests, connections, bytes received, Authorization headers.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = ["The remote ", "model says: ", "forty-two."]
# An answer that tries to retitle the window, write the clipboard and hide text on a terminal.
ESCAPES = ["Hello \x1b]0;pwned-title\x07", "\x1b]52;c;cHduZWQ=\x07there, ", "\x1b[8mfriend."]
FORGED = "2026-01-01 00:00:00,000 CRITICAL edgeinf: forged"
_lock = threading.Lock()
state: dict[str, Any] = {
    "steps": [],
    "default": "ok",
    "chat_requests": 0,
    "connections": 0,
    "bytes": 0,
    "auth": [],
    "bodies": [],
}


def _chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    event = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fault",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if finish:
        event["usage"] = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    return f"data: {json.dumps(event)}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with _lock:
            state["connections"] += 1

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        with _lock:
            state["bytes"] += n + len(str(self.headers))
        return data

    def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        with _lock:
            state["connections"] -= 1  # this one is the test asking, not a client
            stats = {k: v for k, v in state.items() if k not in ("steps", "default")}
        self._send(200, json.dumps(stats).encode())

    def do_POST(self) -> None:
        data = self._body()
        if self.path == "/_script":
            script = json.loads(data)
            with _lock:
                state["steps"] = list(script.get("steps", []))
                state["default"] = script.get("default", "ok")
                for k in ("chat_requests", "bytes"):
                    state[k] = 0
                state["auth"], state["bodies"] = [], []
                state["connections"] = 0  # the test asking is not a client
            self._send(200, b"{}")
            return
        with _lock:
            state["chat_requests"] += 1
            state["auth"].append(self.headers.get("Authorization"))
            state["bodies"].append(data.decode(errors="replace"))
            step = state["steps"].pop(0) if state["steps"] else state["default"]
        self._play(step)

    def _play(self, step: str) -> None:
        if step == "hang":
            time.sleep(3600)
            return
        if step.startswith("429"):
            after = step.split(":", 1)[1] if ":" in step else "1"
            self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": after})
            return
        if step == "307":  # to another host: a client must not carry its key there
            self._send(307, b"{}", {"Location": "http://127.0.0.2:9/v1/chat/completions"})
            return
        if step == "400":  # a refusal whose text tries to forge a log line and echoes the key
            auth = self.headers.get("Authorization")
            said = f"no such model\r\n{FORGED}\x1b[2J\x1b]0;title\x07 {auth}"
            self._send(400, json.dumps({"error": {"message": said}}).encode())
            return
        if step in ("500", "401"):
            self._send(int(step), b'{"error": {"message": "no"}}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        if step == "drip":
            for _ in range(3600):
                self.wfile.write(b":")  # an SSE comment, one byte at a time, forever
                self.wfile.flush()
                time.sleep(0.5)
            return
        pieces = ANSWER[:1] if step == "cut" else ESCAPES if step == "escapes" else ANSWER
        for piece in pieces:
            self.wfile.write(_chunk(piece))
            self.wfile.flush()
        if step == "cut":
            self.close_connection = True
            return
        self.wfile.write(_chunk(None, "stop") + b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
