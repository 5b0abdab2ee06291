"""The prefix cache and the context policy as OpenAI clients meet them: the whole conversation
sent each turn, no session id, through the official `openai` client."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import DRAFT
from tests.server.conftest import Server, start


def code_review(chars: int) -> list[Any]:
    """A conversation over real code (the standard library's), about chars/3 tokens long."""
    source = inspect.getsource(textwrap)
    messages: list[Any] = [{"role": "system", "content": "You help with Python code."}]
    for start_at in range(0, chars, 1200):
        piece = source[start_at : start_at + 1200]
        messages += [
            {"role": "user", "content": f"Read this code:\n```python\n{piece}\n```"},
            {"role": "assistant", "content": "Read. What next?"},
        ]
    last = {"role": "user", "content": "Which function is the longest?"}
    return [*messages[:-1], last]


def client(server: Server) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.mark.reliability(43)
def test_a_conversation_resent_whole_resumes_from_disk_after_a_restart(
    tmp_path: Path, draft_path: Path
) -> None:
    messages = code_review(2400)
    first = start(tmp_path, model=DRAFT, ctx=2048)
    try:
        one = client(first).chat.completions.create(
            model=DRAFT, messages=messages, max_tokens=8, temperature=0
        )
    finally:
        assert first.stop() == 0  # a clean stop: the state written on the way out
    assert one.usage is not None and one.usage.prompt_tokens > 600
    follow: list[Any] = [
        *messages,
        {"role": "assistant", "content": one.choices[0].message.content or ""},
        {"role": "user", "content": "And the shortest?"},
    ]
    second = start(tmp_path, model=DRAFT, ctx=2048)  # nothing in its slots or RAM
    try:
        two = client(second).chat.completions.create(
            model=DRAFT, messages=follow, max_tokens=8, temperature=0
        )
        metrics = httpx.get(f"{second.url}/metrics").text
    finally:
        second.stop()
    usage = two.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens
    assert cached is not None and cached >= one.usage.prompt_tokens
    assert (usage.model_extra or {})["cached_from"] == "disk"
    restored = (usage.model_extra or {})["restored_tokens"]
    assert f'edgeinf_cached_tokens_total{{tier="disk"}} {float(restored)}' in metrics
    held = re.search(r'edgeinf_cache_bytes\{tier="(ram|disk)"\} (\S+)', metrics)
    assert held is not None and float(held.group(2)) > 0  # this turn's state, in both tiers


@pytest.mark.reliability(44)
def test_truncate_drops_the_oldest_turns_and_says_so(chat_server: Server) -> None:
    messages = code_review(9000)  # about 3,000 tokens, over the 2,048 of the context
    with pytest.raises(openai.BadRequestError) as refused:
        client(chat_server).chat.completions.create(model=DRAFT, messages=messages, max_tokens=8)
    assert "context_policy truncate" in str(refused.value)
    r = httpx.post(
        f"{chat_server.url}/v1/chat/completions",
        json={"messages": messages, "max_tokens": 8, "context_policy": "truncate"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    dropped = body["context"]
    assert dropped["policy"] == "truncate" and dropped["dropped_messages"] % 2 == 0
    assert 2 <= dropped["dropped_messages"] < len(messages) - 2
    assert (
        body["usage"]["prompt_tokens"] + 8
        <= 2048
        < body["usage"]["prompt_tokens"] + (dropped["dropped_tokens"])
    )
    r = httpx.post(
        f"{chat_server.url}/v1/chat/completions",
        json={"messages": messages, "max_tokens": 8, "context_policy": "forget"},
        timeout=30,
    )
    assert r.status_code == 400 and "context_policy" in r.text and "summarize" in r.text
