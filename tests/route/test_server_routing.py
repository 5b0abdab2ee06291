"""The server with a remote behind it: official `openai` client, real processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import DRAFT, FaultRemote
from tests.fault_remote import FORGED
from tests.server.conftest import Server, start

QUESTION = "What is two plus two?"
ASK = [{"role": "user", "content": QUESTION}]


@pytest.fixture()
def routed_server(tmp_path: Path, fault_remote: FaultRemote, draft_path: Path) -> Iterator[Server]:
    server = start(
        tmp_path,
        "--remote-url",
        fault_remote.url,
        "--remote-model",
        "big",
        model=DRAFT,
        parallel=2,
        env={"EDGEINF_REMOTE_TIMEOUT_S": "3", "EDGEINF_REMOTE_READ_TIMEOUT_S": "1"},
    )
    yield server
    server.stop()


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def stream(server: Server, **extra: Any) -> tuple[str, dict[str, Any]]:
    text = ""
    route: dict[str, Any] = {}
    chunks = client(server).chat.completions.create(
        model=DRAFT,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        temperature=0,
        stream=True,
        extra_body=extra,
    )
    for chunk in chunks:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        route = (chunk.model_extra or {}).get("route") or route
    return text, route


@pytest.mark.slow
def test_remote_answers_stream_through_the_openai_client(
    routed_server: Server, fault_remote: FaultRemote
) -> None:
    text, route = stream(routed_server, route="remote")
    assert text == "The remote model says: forty-two."
    assert (route["target"], route["reason"], route["attempts"]) == ("remote", "override", 1)
    reply = client(routed_server).chat.completions.create(
        model=DRAFT,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        extra_body={"route": "remote"},
    )
    assert reply.choices[0].message.content == "The remote model says: forty-two."
    assert reply.model == "big"


@pytest.mark.reliability(27)
@pytest.mark.slow
def test_a_stream_cut_midway_is_finished_by_the_local_model(
    routed_server: Server, fault_remote: FaultRemote
) -> None:
    fault_remote.script("cut")
    text, route = stream(routed_server, route="remote")
    assert text.startswith("The remote \n\n[the remote answer was cut off")
    assert len(text) > len("The remote ") + 70  # the local answer follows the notice
    assert (route["target"], route["fallback"]) == ("local", True)


@pytest.mark.reliability(27, 29)
@pytest.mark.slow
def test_a_dead_remote_costs_a_fallback_not_an_error(
    routed_server: Server, fault_remote: FaultRemote
) -> None:
    fault_remote.script(default="500")
    reply = httpx.post(
        f"{routed_server.url}/v1/chat/completions",
        json={"messages": ASK, "max_tokens": 8, "route": "remote"},
        timeout=60,
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["model"] == DRAFT and body["choices"][0]["message"]["content"]
    assert body["route"]["fallback"] is True and body["route"]["attempts"] == 3
    metrics = httpx.get(f"{routed_server.url}/metrics").text
    assert 'edgeinf_route_decisions_total{reason="offline_fallback",target="local"} 1.0' in metrics


@pytest.mark.reliability(31)
@pytest.mark.slow
def test_private_requests_send_zero_bytes_to_the_remote(
    routed_server: Server, fault_remote: FaultRemote
) -> None:
    for extra, headers in (
        ({"route": "remote", "private": True}, {}),
        ({"route": "remote"}, {"X-Edgeinf-Private": "1"}),
    ):
        reply = httpx.post(
            f"{routed_server.url}/v1/chat/completions",
            json={"messages": ASK, "max_tokens": 8, **extra},
            headers=headers,
            timeout=60,
        )
        assert reply.json()["route"]["reason"] == "private"
    text, route = stream(routed_server, route="remote", private=True)
    assert text and route["reason"] == "private"
    stats = fault_remote.stats()
    assert (stats["connections"], stats["bytes"], stats["chat_requests"]) == (0, 0, 0)


@pytest.mark.reliability(13, 30)
def test_what_a_remote_says_cannot_forge_log_lines_or_leak_the_key(
    tmp_path: Path, fault_remote: FaultRemote, draft_path: Path
) -> None:
    key = "sk-remote-secret-for-tests"
    server = start(
        tmp_path,
        "--route",
        "remote",
        "--remote-url",
        fault_remote.url,
        "--remote-model",
        "big",
        model=DRAFT,
        env={"EDGEINF_REMOTE_API_KEY": key},
        verbose=True,
    )
    try:
        fault_remote.script(default="400")
        text, route = stream(server)
        assert text and route["fallback"] is True
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    log = server.log.read_text()
    assert "remote failed: " in log and "; answering locally" in log and "no such model" in log
    assert not any(line.startswith(FORGED) for line in log.splitlines())
    assert "\\r\\n" + FORGED in log and "\x1b" not in log
    assert key not in log and key not in metrics
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
