"""The cascade, the same in every shell: when two local samples disagree, the remote answers.
(`edgeinf run`'s own test is in test_run_routing.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest

from edgeinf.service.turn import CASCADE_NOTICE
from tests.cli.test_chat import PROMPT, say, spawn
from tests.conftest import DRAFT, TARGET, FaultRemote
from tests.server.conftest import start

CASCADE = {"EDGEINF_ROUTE_CASCADE": "1", "EDGEINF_ROUTE_ESCALATION_RATE": "0"}
UNSURE = "Write a random six-digit number and nothing else."
REMOTE_TEXT = "The remote model says: forty-two."


@pytest.mark.slow
def test_the_server_escalates_when_two_local_samples_disagree(
    tmp_path: Path, fault_remote: FaultRemote, draft_path: Path, encoder: tuple[Path, Path]
) -> None:
    server = start(
        tmp_path,
        "--remote-url",
        fault_remote.url,
        "--remote-model",
        TARGET,
        model=DRAFT,
        env=CASCADE,
    )
    try:
        body = {"messages": [{"role": "user", "content": UNSURE}], "max_tokens": 16}
        url = f"{server.url}/v1/chat/completions"
        reply = httpx.post(url, json={**body, "temperature": 0}, timeout=120).json()
        streamed = httpx.post(url, json={**body, "temperature": 0, "stream": True}, timeout=120)
    finally:
        server.stop()
    assert reply["choices"][0]["message"]["content"] == REMOTE_TEXT
    assert (reply["route"]["target"], reply["route"]["reason"]) == ("remote", "cascade")
    assert reply["model"] == TARGET
    # Streamed: the local answer went out first, then the notice, then the remote's.
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in map(_event, streamed.text.split("\n\n"))
        if c and c["choices"]
    )
    assert CASCADE_NOTICE in text and text.endswith(REMOTE_TEXT)
    assert text.index(CASCADE_NOTICE) > 0
    assert fault_remote.stats()["chat_requests"] == 2


def _event(block: str) -> dict[str, Any] | None:
    if not block.startswith("data: {"):
        return None
    event: dict[str, Any] = json.loads(block[6:])
    return event


@pytest.mark.slow
def test_chat_escalates_when_two_local_samples_disagree(
    tmp_path: Path, fault_remote: FaultRemote, draft_path: Path, encoder: tuple[Path, Path]
) -> None:
    child = spawn(tmp_path, "--remote-url", fault_remote.url, "--remote-model", TARGET, env=CASCADE)
    say(child, UNSURE)
    child.expect_exact("two samples disagreed")
    child.expect_exact(REMOTE_TEXT)
    child.expect_exact("remote (cascade)")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    assert fault_remote.stats()["chat_requests"] == 1
