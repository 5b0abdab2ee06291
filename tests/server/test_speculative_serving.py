"""Speculation inside the server's batches (n-gram drafts, a draft model): greedy answers are
those of plain decoding."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from edgeinf.engine.engine import Engine
from edgeinf.engine.once import answer_once
from edgeinf.types import Message, SamplingParams
from tests.conftest import TINY
from tests.integration.test_speculative import OPTS, PROMPTS
from tests.server.conftest import start
from tests.server.test_disconnects import gauge

COPYING = PROMPTS[:2]  # edits that return their input: n-gram drafts get accepted


@pytest.mark.slow
def test_greedy_answers_drafted_in_a_batch_equal_plain_decoding(
    tmp_path: Path, tiny_path: Path
) -> None:
    server = start(
        tmp_path,
        ctx=2048,
        parallel=2,
        env={"EDGEINF_SPECULATIVE": "ngram", "EDGEINF_SPECULATIVE_EXACT": "true"},
    )
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0)

        drafts: list[int] = []  # drafted tokens each answer's usage reports

        def ask(prompt: str) -> list[str | None]:
            reply = client.chat.completions.create(
                model=TINY,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=96,
                temperature=0,
            )
            details = reply.usage.completion_tokens_details if reply.usage else None
            assert details is not None and details.accepted_prediction_tokens is not None
            assert details.rejected_prediction_tokens is not None
            drafts.append(details.accepted_prediction_tokens + details.rejected_prediction_tokens)
            return [reply.choices[0].message.content, reply.choices[0].finish_reason]

        with ThreadPoolExecutor(2) as pool:  # decoded together, drafts and all
            served = list(pool.map(ask, COPYING))
        drafted = gauge(server, "edgeinf_speculative_drafted_total")
        accepted = gauge(server, "edgeinf_speculative_accepted_total")
        assert drafted > accepted > 10  # drafts were checked, and some were cut back
        assert sum(drafts) == drafted  # and each answer says how many of them were its own

        client.chat.completions.create(  # sampled: drafts accepted by speculative sampling
            model=TINY,
            messages=[{"role": "user", "content": COPYING[0]}],
            max_tokens=32,
            temperature=0.8,
        )
        assert gauge(server, "edgeinf_speculative_drafted_total") > drafted
    finally:
        assert server.stop() == 0
    assert served == plain_answers(tiny_path, COPYING, 96)


def plain_answers(path: Path, prompts: list[str], max_tokens: int) -> list[list[str | None]]:
    with Engine(path, OPTS) as engine:
        # The server ends a transcript-style answer at the template's turn markers.
        params = SamplingParams(max_tokens=max_tokens, temperature=0, stop=engine.template.stops)
        out: list[list[str | None]] = []
        for prompt in prompts:
            tokens = engine.chat_tokens([Message("user", prompt)])
            plain = answer_once(engine, tokens, params).completion
            out.append([plain.text, plain.finish_reason])
        return out


@pytest.mark.slow
def test_the_server_drafts_with_a_draft_model_when_the_mode_says_so(
    tmp_path: Path, tiny_path: Path
) -> None:
    # The model as its own draft: same tokenizer, and cheap enough to run here.
    server = start(
        tmp_path,
        "--speculative",
        "draft",
        "--draft",
        TINY,
        ctx=2048,
        env={"EDGEINF_SPECULATIVE_EXACT": "true"},
    )
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0)
        reply = client.chat.completions.create(
            model=TINY,
            messages=[{"role": "user", "content": PROMPTS[3]}],
            max_tokens=48,
            temperature=0,
        )
        served = [[reply.choices[0].message.content, reply.choices[0].finish_reason]]
        drafted = gauge(server, "edgeinf_speculative_drafted_total")
        accepted = gauge(server, "edgeinf_speculative_accepted_total")
    finally:
        assert server.stop() == 0
    assert drafted > 0 and accepted > 0
    assert served == plain_answers(tiny_path, [PROMPTS[3]], 48)


def test_an_answer_given_before_is_drafted_from_the_principals_history(
    tmp_path: Path,
) -> None:
    """The same question again (a client retrying, an agent loop): the prompt does not hold
    the answer, the principal's history of answers does."""
    server = start(
        tmp_path,
        ctx=2048,
        env={"EDGEINF_SPECULATIVE": "ngram", "EDGEINF_SPECULATIVE_EXACT": "true"},
    )
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0)
        accepted = []
        answers = []
        written = 0
        for _ in range(2):
            before = gauge(server, "edgeinf_speculative_accepted_total")
            reply = client.completions.create(
                model=TINY, prompt="The printing press changed Europe because", max_tokens=48,
                temperature=0,
            )  # fmt: skip
            answers.append(reply.choices[0].text)
            assert reply.usage is not None
            written = reply.usage.completion_tokens
            accepted.append(gauge(server, "edgeinf_speculative_accepted_total") - before)
        kept = gauge(server, "edgeinf_draft_history_tokens")
        # The same answer twice: its windows were indexed once.
        assert kept / 2 < gauge(server, "edgeinf_draft_history_windows") < 3 * kept
    finally:
        assert server.stop() == 0
    assert answers[0] == answers[1]
    assert kept >= 2 * written - 2
    assert accepted[1] > 0.6 * written > accepted[0]
