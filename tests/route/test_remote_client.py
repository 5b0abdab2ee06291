"""The remote client against a real misbehaving server process: every fault ends within the
deadline, with the number of attempts the retry policy promises, and the key stays private."""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgeinf.errors import ConfigError
from edgeinf.route.breaker import Breaker
from edgeinf.route.remote import (
    RemoteAuthError,
    RemoteClient,
    RemoteConfig,
    RemoteError,
    retry_after_s,
)
from edgeinf.types import Message, SamplingParams
from tests.conftest import FaultRemote

ASK = (Message("user", "What is six times seven?"),)
PARAMS = SamplingParams(max_tokens=16, temperature=0)
KEY = "sk-test-0123456789abcdef"
TOTAL_S = 3.0


def client(remote: FaultRemote, retries: int = 2, breaker: Breaker | None = None) -> RemoteClient:
    config = RemoteConfig(
        remote.url, "big", api_key=KEY, total_s=TOTAL_S, connect_s=1.0, read_s=1.0, retries=retries
    )
    return RemoteClient(config, breaker)


def ask(c: RemoteClient) -> tuple[str | RemoteError, float]:
    started = time.monotonic()
    try:
        return c.chat(ASK, PARAMS).text, time.monotonic() - started
    except RemoteError as exc:
        return exc, time.monotonic() - started


@pytest.mark.reliability(30)
def test_streams_an_answer_and_sends_the_key_only_in_its_header(fault_remote: FaultRemote) -> None:
    pieces: list[str] = []
    answer = client(fault_remote).chat(ASK, PARAMS, pieces.append)
    assert answer.text == "The remote model says: forty-two."
    assert pieces == ["The remote ", "model says: ", "forty-two."]
    assert (answer.attempts, answer.prompt_tokens, answer.completion_tokens) == (1, 7, 5)
    stats = fault_remote.stats()
    assert stats["auth"] == [f"Bearer {KEY}"]
    assert KEY not in stats["bodies"][0]
    assert KEY not in repr(client(fault_remote).config)


@pytest.mark.reliability(27)
def test_a_hung_remote_is_retried_then_answers(fault_remote: FaultRemote) -> None:
    fault_remote.script("hang")
    text, took = ask(client(fault_remote))
    assert text == "The remote model says: forty-two."
    assert fault_remote.stats()["chat_requests"] == 2
    assert took < TOTAL_S


@pytest.mark.reliability(27)
def test_a_remote_that_always_hangs_gives_up_at_the_deadline(fault_remote: FaultRemote) -> None:
    fault_remote.script(default="hang")
    error, took = ask(client(fault_remote))
    assert isinstance(error, RemoteError)
    assert took < TOTAL_S + 0.5
    assert error.attempts == fault_remote.stats()["chat_requests"] >= 2


@pytest.mark.reliability(27)
def test_dripping_bytes_cannot_outlast_the_total_deadline(fault_remote: FaultRemote) -> None:
    fault_remote.script(default="drip")
    error, took = ask(client(fault_remote))
    assert isinstance(error, RemoteError)
    assert "deadline" in str(error)
    assert TOTAL_S - 0.5 < took < TOTAL_S + 0.6
    assert error.attempts == 1  # the deadline left no time for a second attempt


@pytest.mark.reliability(28)
def test_429_waits_as_long_as_retry_after_says(fault_remote: FaultRemote) -> None:
    fault_remote.script("429:1")
    text, took = ask(client(fault_remote))
    assert text == "The remote model says: forty-two."
    assert took >= 1.0
    assert fault_remote.stats()["chat_requests"] == 2


@pytest.mark.reliability(28)
def test_429_with_a_wait_past_the_deadline_gives_up_at_once(fault_remote: FaultRemote) -> None:
    fault_remote.script("429:120")
    error, took = ask(client(fault_remote))
    assert isinstance(error, RemoteError)
    assert "429" in str(error)
    assert (error.attempts, fault_remote.stats()["chat_requests"]) == (1, 1)
    assert took < 0.5


@pytest.mark.reliability(28)
def test_5xx_is_retried_up_to_the_limit(fault_remote: FaultRemote) -> None:
    fault_remote.script(default="500")
    error, _ = ask(client(fault_remote, retries=2))
    assert isinstance(error, RemoteError)
    assert error.attempts == fault_remote.stats()["chat_requests"] == 3
    fault_remote.script("500", "500")
    text, _ = ask(client(fault_remote, retries=2))
    assert text == "The remote model says: forty-two."


@pytest.mark.reliability(28, 30)
def test_401_is_reported_not_retried_and_never_echoes_the_key(fault_remote: FaultRemote) -> None:
    fault_remote.script(default="401")
    error, _ = ask(client(fault_remote))
    assert isinstance(error, RemoteAuthError)
    assert error.attempts == fault_remote.stats()["chat_requests"] == 1
    assert KEY not in str(error)
    assert "remote_api_key_file" in str(error)


@pytest.mark.reliability(28, 30)
def test_4xx_says_why_once_and_never_repeats_an_echoed_key(fault_remote: FaultRemote) -> None:
    fault_remote.script(default="400")
    error, _ = ask(client(fault_remote))
    assert type(error) is RemoteError
    assert error.attempts == fault_remote.stats()["chat_requests"] == 1
    assert "HTTP 400: no such model" in str(error) and "check remote_model" in str(error)
    assert KEY not in str(error) and "[key]" in str(error)


@pytest.mark.reliability(29)
def test_a_closed_port_fails_fast(fault_remote: FaultRemote) -> None:
    fault_remote.stop()
    error, took = ask(client(fault_remote, retries=2))
    assert isinstance(error, RemoteError)
    assert error.attempts == 3
    assert took < TOTAL_S


@pytest.mark.reliability(27)
def test_a_stream_cut_midway_is_not_retried_and_keeps_what_arrived(
    fault_remote: FaultRemote,
) -> None:
    fault_remote.script("cut")
    error, _ = ask(client(fault_remote))
    assert isinstance(error, RemoteError)
    assert error.partial == "The remote "
    assert error.attempts == fault_remote.stats()["chat_requests"] == 1


@pytest.mark.reliability(29)
def test_the_breaker_opens_after_failures_then_probes(fault_remote: FaultRemote) -> None:
    breaker = Breaker(failures=3, reset_s=0.5)
    c = client(fault_remote, retries=0, breaker=breaker)
    fault_remote.script(default="500")
    for _ in range(3):
        ask(c)
    assert breaker.is_open
    seen = fault_remote.stats()["chat_requests"]
    error, took = ask(c)
    assert isinstance(error, RemoteError)
    assert "circuit open" in str(error)
    assert fault_remote.stats()["chat_requests"] == seen  # a dead remote costs nothing
    assert took < 0.1
    time.sleep(0.6)
    fault_remote.script(default="ok")
    text, _ = ask(c)  # the half-open probe goes through and closes the circuit
    assert text == "The remote model says: forty-two."
    assert not breaker.is_open


@pytest.mark.reliability(32)
def test_redirects_are_not_followed(fault_remote: FaultRemote) -> None:
    fault_remote.script("307")
    error, _ = ask(client(fault_remote))
    assert isinstance(error, RemoteError)
    assert "redirected" in str(error)
    assert error.attempts == fault_remote.stats()["chat_requests"] == 1


@pytest.mark.reliability(32)
@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/v1",
        "http://10.0.0.5:8000/v1",
        "ftp://127.0.0.1/v1",
        "https://user:secret@api.example.com/v1",
    ],
)
def test_plain_http_off_loopback_and_keys_in_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        RemoteConfig(url, "m")


@pytest.mark.reliability(32)
def test_loopback_http_and_https_are_accepted() -> None:
    for url in ("http://127.0.0.1:9/v1", "http://localhost:9/v1", "http://[::1]:9/v1"):
        RemoteConfig(url, "m")
    RemoteConfig("https://api.example.com/v1", "m")


@pytest.mark.reliability(28)
def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_s("soon") is None


@pytest.mark.reliability(32)
def test_a_certificate_that_does_not_verify_is_refused_before_the_key_is_sent(
    tmp_path: Path,
) -> None:
    """A real TLS server on loopback with a self-signed certificate nobody trusts."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip("openssl cannot make a certificate here")
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            self.send_response(500)
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{httpd.server_address[1]}/v1"
        c = RemoteClient(RemoteConfig(url, "big", api_key=KEY, total_s=TOTAL_S, retries=2))
        error, _ = ask(c)
        assert isinstance(error, RemoteError) and "certificate that does not verify" in str(error)
        assert error.attempts == 1  # a certificate does not fix itself: not retried
        assert seen == []  # the request, and its key, never left the client
    finally:
        httpd.shutdown()
