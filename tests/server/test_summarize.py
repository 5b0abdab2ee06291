"""context_policy summarize through the official `openai` client, no session id: a
conversation nearing the context's end has its oldest turns summarized in the background;
once it outgrows the context the summary takes their place, the start of the prompt stays the
same from turn to turn (cached), the summary outlives a restart, and a conversation that
outgrows the context at once waits for its summary. Every time, the response says so."""

from __future__ import annotations

import inspect
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.conftest import TINY
from tests.server.conftest import Server, start

CTX = 1024
SOURCE = inspect.getsource(textwrap)


def turns(first: int, count: int, chars: int = 700) -> list[Any]:
    """`count` turns of the user showing code (textwrap's, from piece `first` on)."""
    out: list[Any] = []
    for i in range(first, first + count):
        piece = SOURCE[i * chars : (i + 1) * chars]
        out += [
            {"role": "user", "content": f"Keep this code in mind:\n```python\n{piece}\n```"},
            {"role": "assistant", "content": f"Noted, part {i + 1}."},
        ]
    return out


def summaries(server: Server, when: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found = re.search(rf'edgeinf_context_summaries{{when="{when}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def ask(
    server: Server, messages: list[Any], policy: str = "summarize"
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(answer, usage, context) of a greedy turn of 8 tokens under the context `policy`."""
    client = OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0, timeout=300)
    r = client.chat.completions.create(
        model=TINY,
        messages=messages,
        max_tokens=8,
        temperature=0,
        extra_body={"context_policy": policy},
    )
    extra = r.model_extra or {}
    assert r.usage is not None
    return r.choices[0].message.content or "", r.usage.model_dump(), extra.get("context") or {}


@pytest.mark.reliability(44)
@pytest.mark.slow
def test_older_turns_give_way_to_a_summary_written_before_it_is_needed(
    tmp_path: Path, tiny_path: Path
) -> None:
    server = start(tmp_path, ctx=CTX, parallel=1)
    system = {"role": "system", "content": "You are a careful code reviewer."}
    intro = [
        {"role": "user", "content": "I am Ada; my project is called Pixelwrap."},
        {"role": "assistant", "content": "Hello Ada, glad to help with Pixelwrap."},
    ]
    try:
        # Near the end of the context, still whole: nothing summarized yet, one is started.
        near = [system, *intro, *turns(0, 4), {"role": "user", "content": "Any bugs so far?"}]
        answer, usage, context = ask(server, near)
        assert CTX * 3 // 4 < usage["prompt_tokens"] + 8 <= CTX, usage
        assert context == {}
        deadline = time.monotonic() + 180
        while summaries(server, "background") < 1:
            assert time.monotonic() < deadline, "no summary was written in the background"
            time.sleep(0.5)

        # Past the end: the summary (ready) takes the oldest turns' place; nobody waited.
        over = [*near, {"role": "assistant", "content": answer}, *turns(4, 3)]
        over.append({"role": "user", "content": "And now?"})
        answer, usage, context = ask(server, over)
        assert context["policy"] == "summarize" and context["dropped_messages"] == 0
        assert context["summarized_messages"] >= 2 and context["dropped_tokens"] > 0
        assert usage["prompt_tokens"] + 8 <= CTX
        assert summaries(server, "waited") == 0

        # The next turn starts the same way: its prompt is found in the slot, not prefilled.
        then = [*over, {"role": "assistant", "content": answer}]
        then.append({"role": "user", "content": "Thanks."})
        _, usage_then, same = ask(server, then)
        assert same["summarized_messages"] == context["summarized_messages"]
        assert usage_then["prompt_tokens_details"]["cached_tokens"] >= usage["prompt_tokens"] - 8

        # That prompt is near the end again: the summary and the turns after it are
        # summarized in turn, and the next ask uses the newer summary, covering more.
        deadline = time.monotonic() + 180
        while summaries(server, "background") < 2:
            assert time.monotonic() < deadline, "no second summary in the background"
            time.sleep(0.5)
        _, usage_then, newer = ask(server, then)
        assert newer["summarized_messages"] > context["summarized_messages"]

        # A conversation that outgrows the context at once waits for its summary.
        other = [*turns(10, 7), {"role": "user", "content": "Summarize all of it."}]
        _, usage_other, context_other = ask(server, other)
        assert context_other["summarized_messages"] >= 2
        assert usage_other["prompt_tokens"] + 8 <= CTX
        assert summaries(server, "waited") == 1
    finally:
        server.stop()

    # After a restart the summary is still there: the same prompt, restored from disk.
    server = start(tmp_path, ctx=CTX, parallel=1)
    try:
        _, usage_after, context_after = ask(server, then)
        assert context_after == newer
        assert usage_after["prompt_tokens"] == usage_then["prompt_tokens"]
        assert usage_after["restored_tokens"] > 0 and usage_after["cached_from"] == "disk"
        assert summaries(server, "waited") == 0
    finally:
        server.stop()
