"""A real HTTP server on loopback that plays a model hub (files, Hugging Face's model API,
gated repositories, redirects to another host) and a package index in tests."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # what every published repository is at


@dataclass
class Served:
    """What the server holds, and what it was asked."""

    files: dict[str, bytes] = field(default_factory=dict)  # path -> body
    json_pages: dict[str, object] = field(default_factory=dict)
    cut_after: int | None = None  # close the connection after this many body bytes, once
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    tokens_seen: list[str | None] = field(default_factory=list)  # each request's Authorization
    gated: dict[str, str] = field(default_factory=dict)  # path prefix -> the token it needs
    redirects: dict[str, str] = field(default_factory=dict)  # path -> URL it moved to

    def publish(self, repo: str, files: dict[str, bytes], lie: bool = False) -> None:
        """A repository at COMMIT, in the hub's API shape: its revision, its file tree (each
        GGUF file's size and LFS sha256, a wrong one if `lie`) and its files."""
        self.json_pages[f"/api/models/{repo}/revision/main"] = {"id": repo, "sha": COMMIT}
        tree: list[dict[str, object]] = [{"type": "file", "path": "README.md", "size": 5}]
        for name, data in files.items():
            sha = "0" * 64 if lie else hashlib.sha256(data).hexdigest()
            lfs = {"oid": sha, "size": len(data)}
            tree.append({"type": "file", "path": name, "size": len(data), "lfs": lfs})
            self.files[f"/{repo}/resolve/{COMMIT}/{name}"] = data
        self.json_pages[f"/api/models/{repo}/tree/{COMMIT}?recursive=true"] = tree

    def add_wheel(
        self, package: str, version: str, member: str, data: bytes, wheel_sha: str | None = None
    ) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(member, data)
        wheel = buf.getvalue()
        name = f"{package.replace('-', '_')}-{version}-py3-none-any.whl"
        self.files[f"/packages/{name}"] = wheel
        digest = wheel_sha or hashlib.sha256(wheel).hexdigest()
        self.json_pages[f"/simple/{package}/"] = {
            "files": [
                {"filename": name, "url": f"../../packages/{name}", "hashes": {"sha256": digest}}
            ]
        }


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            served.requests.append((self.path, self.headers.get("Range")))
            given = self.headers.get("Authorization")
            served.tokens_seen.append(given)
            for prefix, token in served.gated.items():
                if self.path.startswith(prefix) and given != f"Bearer {token}":
                    self._send(
                        401, b'{"error": "Access to this model is restricted"}', "application/json"
                    )
                    return
            if self.path in served.redirects:
                self.send_response(302)
                self.send_header("Location", served.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path in served.json_pages:
                body = json.dumps(served.json_pages[self.path]).encode()
                self._send(200, body, "application/vnd.pypi.simple.v1+json")
                return
            data = served.files.get(self.path)
            if data is None:
                self._send(404, b"not found", "text/plain")
                return
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(data):
                    self._send(416, b"", "text/plain")
                    return
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if served.cut_after is not None:
                self.wfile.write(body[: served.cut_after])
                served.cut_after = None
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def model_server() -> Iterator[tuple[str, Served]]:
    served = Served()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
