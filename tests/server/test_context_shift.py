"""context_policy shift (llama.cpp's context shift) through the official `openai` client: an
answer longer than the context goes on past it, a prompt longer than the context loses its
oldest tokens after the system prompt, and both say so."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.conftest import TINY
from tests.server.conftest import start
from tests.server.test_summarize import ask

CTX = 256
COUNT = [{"role": "user", "content": "Write the numbers 1 to 200."}]


@pytest.mark.reliability(44)
@pytest.mark.slow
def test_an_answer_goes_on_past_the_context_when_it_shifts(tmp_path: Path, tiny_path: Path) -> None:
    server = start(tmp_path, ctx=CTX, parallel=1)
    client = OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0, timeout=300)

    def ask(policy: str, max_tokens: int = 600) -> Any:
        return client.chat.completions.create(
            model=TINY,
            messages=COUNT,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0,
            extra_body={"context_policy": policy},
        )

    try:
        cold = ask("error", 16).choices[0].message.content
        ended = ask("error")  # the context's end ends the answer
        assert ended.usage is not None and ended.choices[0].finish_reason == "length"
        assert ended.usage.prompt_tokens + ended.usage.completion_tokens <= CTX
        assert (ended.model_extra or {}).get("context") is None
        went_on = ask("shift")  # shifted, it runs to max_tokens
        assert went_on.usage is not None and went_on.usage.completion_tokens == 600
        context = (went_on.model_extra or {})["context"]
        assert context["policy"] == "shift" and context["shifted_tokens"] > CTX // 2
        assert context["dropped_tokens"] == 0  # the prompt itself fitted
        numbers = [int(n) for n in re.findall(r"\d+", went_on.choices[0].message.content or "")]
        assert max(numbers) > 120  # it kept counting after the shifts
        # What the shifted sequence's cells saw is not kept: the next answer is a cold one.
        again = ask("error", 16)
        assert again.choices[0].message.content == cold
    finally:
        server.stop()


def test_a_prompt_past_the_context_keeps_its_system_prompt_and_newest_tokens(
    tmp_path: Path, tiny_path: Path
) -> None:
    server = start(tmp_path, ctx=CTX, parallel=1)
    story = " ".join(f"Day {i}: the river rose and the town kept watch." for i in range(40))
    messages: Any = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": story},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Which day came last?"},
    ]
    try:
        _, usage, context = ask(server, messages, "shift")
        assert usage["prompt_tokens"] + 8 <= CTX
        assert context["policy"] == "shift" and context["dropped_messages"] == 0
        assert context["dropped_tokens"] > 0 and context["shifted_tokens"] == 0
    finally:
        server.stop()
