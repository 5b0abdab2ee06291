"""Server faults made to happen: keys, binding, overload, disconnects, SIGTERM, systemd."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from edgeinf.bench.server import up
from edgeinf.sessions.kvfile import decode
from tests.conftest import DRAFT, TINY, free_port
from tests.server.conftest import Server, start

KEY = "s3cret-key-for-tests"
LONG = {"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0}


@pytest.fixture(scope="module")
def key_server(tmp_path_factory: pytest.TempPathFactory, tiny_path: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("key")
    (tmp / "key").write_text(KEY + "\n")
    server = start(tmp, "--api-key-file", str(tmp / "key"), ctx=512)
    yield server
    server.stop()


@pytest.mark.reliability(8)
@pytest.mark.parametrize(
    "headers, query",
    [
        ({}, ""),
        ({"Authorization": "Bearer wrong"}, ""),
        ({"Authorization": f"Bearer  {KEY}"}, ""),
        ({"Authorization": f"Bearer {KEY}="}, ""),
        ({"Authorization": KEY}, ""),
        ({}, f"?api_key={KEY}"),
    ],
)
def test_missing_wrong_padded_or_query_keys_are_401(
    key_server: Server, headers: dict[str, str], query: str
) -> None:
    r = httpx.get(f"{key_server.url}/v1/models{query}", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    assert KEY not in r.text


@pytest.mark.reliability(8)
def test_right_key_is_served_and_never_logged(key_server: Server) -> None:
    r = httpx.get(f"{key_server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200
    assert httpx.get(f"{key_server.url}/health").status_code == 200  # liveness needs no key
    assert KEY not in key_server.log.read_text()


@pytest.mark.reliability(5)
def test_binding_beyond_loopback_without_a_key_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeinf", "serve", "--host", "0.0.0.0", "-m", TINY],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "EDGEINF_STATE_DIR": str(tmp_path)},
    )
    assert proc.returncode == 1
    assert "without an API key" in proc.stderr


def _running(server: Server) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("edgeinf_running_requests "):
            return float(line.split()[1])
    raise AssertionError("no running gauge")


@pytest.mark.reliability(15)
def test_client_disconnect_mid_stream_frees_its_sequence(tiny_server: Server) -> None:
    with httpx.stream(
        "POST", f"{tiny_server.url}/v1/completions", json={**LONG, "stream": True}, timeout=60
    ) as r:
        lines = r.iter_lines()
        next(lines)
        next(lines)
    deadline = time.monotonic() + 2.0
    while _running(tiny_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(tiny_server) == 0
    again = httpx.post(f"{tiny_server.url}/v1/completions", json={**LONG, "max_tokens": 4})
    assert again.status_code == 200


@pytest.mark.reliability(15)
def test_client_disconnect_of_a_plain_request_frees_it(tiny_server: Server) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{tiny_server.url}/v1/completions", json=LONG, timeout=0.5)
    deadline = time.monotonic() + 2.0
    while _running(tiny_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(tiny_server) == 0


@pytest.mark.reliability(16)
def test_deadline_cuts_a_long_answer(tmp_path: Path, tiny_path: Path) -> None:
    server = start(tmp_path, ctx=2048, env={"EDGEINF_REQUEST_TIMEOUT_S": "1"})
    try:
        started = time.monotonic()
        r = httpx.post(
            f"{server.url}/v1/completions", json={**LONG, "max_tokens": 1500}, timeout=30
        )
        assert time.monotonic() - started < 3
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
    finally:
        server.stop()


@pytest.mark.reliability(17)
def test_sigterm_mid_stream_ends_it_cleanly_and_exits_0(tmp_path: Path, tiny_path: Path) -> None:
    server = start(tmp_path)
    with httpx.stream(
        "POST",
        f"{server.url}/v1/completions",
        json={**LONG, "max_tokens": 200, "stream": True},
        timeout=60,
    ) as r:
        lines = r.iter_lines()
        next(lines)
        server.proc.send_signal(signal.SIGTERM)
        rest = list(lines)
    assert "data: [DONE]" in rest
    assert server.proc.wait(timeout=30) == 0


@pytest.mark.reliability(18)
def test_not_ready_while_loading_and_after_a_failed_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(100))
    server = start(tmp_path, model=str(bad), wait_ready=False)
    try:
        assert httpx.get(f"{server.url}/health").status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.get(f"{server.url}/ready")
            if "failed" in r.text:
                break
            time.sleep(0.1)
        assert r.status_code == 503 and "not a valid GGUF" in r.json()["error"]["message"]
        chat = httpx.post(f"{server.url}/v1/completions", json={"prompt": "x"})
        assert chat.status_code == 503
    finally:
        server.stop()


def test_readiness_is_notified_to_systemd(tmp_path: Path, tiny_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(60)
        server = start(tmp_path, ctx=512, env={"NOTIFY_SOCKET": str(path)})
        try:
            assert sock.recv(64) == b"READY=1"
        finally:
            server.stop()
        assert sock.recv(64) == b"STOPPING=1"


def test_socket_activation_serves_on_the_handed_over_socket(
    tmp_path: Path, tiny_path: Path
) -> None:
    port = free_port()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    os.set_inheritable(listener.fileno(), True)
    script = (
        f"exec 3<&{listener.fileno()}; LISTEN_PID=$$ LISTEN_FDS=1 exec "
        f"{sys.executable} -m edgeinf serve -m {TINY} --ctx 512 --port 1"
    )
    proc = subprocess.Popen(
        ["bash", "-c", script],
        pass_fds=(listener.fileno(),),
        text=True,
        env={**os.environ, "EDGEINF_STATE_DIR": str(tmp_path)},
    )
    listener.close()
    server = Server(proc, f"http://127.0.0.1:{port}", tmp_path / "none")
    try:
        up(server.url, proc, 60)
        assert httpx.get(f"{server.url}/ready").status_code == 200
    finally:
        assert server.stop() == 0


def turn(server: Server, body: dict[str, object]) -> httpx.Response:
    """A turn of session "s", given time for its prefill on a loaded machine."""
    return httpx.post(
        f"{server.url}/v1/chat/completions", json=body, headers={"X-Session-Id": "s"}, timeout=120
    )


@pytest.mark.reliability(17)
def test_sigterm_mid_save_exits_0_and_leaves_whole_state(
    tmp_path: Path, draft_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The session is saved right after each answer: SIGTERM lands during those saves.
    (The 0.5B model: a sliding-window model like Gemma 3 only resumes conversations whose
    saved tokens the new prompt extends, see Engine.reuse_prefix.)"""
    rng = random.Random(17)
    story = " ".join(f"Line {i} of the story goes on." for i in range(60))
    messages: list[dict[str, str]] = [{"role": "user", "content": story}]
    body = {"messages": messages, "max_tokens": 4, "temperature": 0}
    terms = 6
    for _ in range(terms):
        server = start(tmp_path, model=DRAFT, ctx=2048)
        try:
            r = turn(server, body)
            assert r.status_code == 200
            time.sleep(rng.uniform(0, 0.03))
        finally:  # also when the request fails: a server left running outlives the tests
            code = server.stop()
        assert code == 0
        states = list((tmp_path / "state").rglob("*.kv"))
        assert states and all(decode(p.read_bytes()) for p in states)
        assert not list((tmp_path / "state").rglob("*.tmp"))
        assert not list((tmp_path / "state").rglob("quarantine/*"))
        messages += [r.json()["choices"][0]["message"], {"role": "user", "content": "Go on."}]
    record_property("sigterms", terms)
    server = start(tmp_path, model=DRAFT, ctx=2048)
    try:
        r = turn(server, body)
        assert r.json()["usage"]["restored_tokens"] > 300  # resumed from the last save
    finally:
        server.stop()


@pytest.mark.reliability(5)
def test_by_default_the_server_listens_on_loopback_only(tiny_server: Server) -> None:
    port = int(tiny_server.url.rsplit(":", 1)[1])
    listening = [
        c.laddr
        for c in psutil.Process(tiny_server.proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert [addr.ip for addr in listening] == ["127.0.0.1"]
    elsewhere = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    for ip in elsewhere:  # this machine's other addresses: nothing answers there
        with pytest.raises(OSError):
            socket.create_connection((ip, port), timeout=2).close()
