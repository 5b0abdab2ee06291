"""N-gram speculation inside the server's batches: same answers as plain decoding."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from edgeinf.engine.engine import Engine
from edgeinf.engine.generate import generate_once
from edgeinf.types import Message, SamplingParams
from tests.conftest import TINY
from tests.integration.test_speculative import OPTS, PROMPTS
from tests.server.conftest import start
from tests.server.test_disconnects import gauge

COPYING = PROMPTS[:2]  # edits that return their input: n-gram drafts get accepted


def test_greedy_answers_drafted_in_a_batch_equal_plain_decoding(
    tmp_path: Path, tiny_path: Path
) -> None:
    server = start(
        tmp_path,
        "-m",
        TINY,
        "--ctx",
        "2048",
        "--parallel",
        "2",
        env={"EDGEINF_SPECULATIVE": "ngram", "EDGEINF_SPECULATIVE_EXACT": "true"},
    )
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0)

        def ask(prompt: str) -> list[str | None]:
            reply = client.chat.completions.create(
                model=TINY,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=96,
                temperature=0,
            )
            return [reply.choices[0].message.content, reply.choices[0].finish_reason]

        with ThreadPoolExecutor(2) as pool:  # decoded together, drafts and all
            served = list(pool.map(ask, COPYING))
        drafted = gauge(server, "edgeinf_speculative_drafted_total")
        accepted = gauge(server, "edgeinf_speculative_accepted_total")
        assert drafted > accepted > 10  # drafts were checked, and some were cut back

        client.chat.completions.create(  # sampled: no drafts, whatever the mode
            model=TINY,
            messages=[{"role": "user", "content": COPYING[0]}],
            max_tokens=32,
            temperature=0.8,
        )
        assert gauge(server, "edgeinf_speculative_drafted_total") == drafted
    finally:
        assert server.stop() == 0

    with Engine(tiny_path, OPTS) as engine:
        # The server ends a transcript-style answer at the template's turn markers.
        params = SamplingParams(max_tokens=96, temperature=0, stop=engine.template.stops)
        for prompt, (text, finish) in zip(COPYING, served, strict=True):
            tokens = engine.chat_tokens([Message("user", prompt)])
            plain = generate_once(engine, tokens, params).completion
            assert plain is not None
            assert (text, finish) == (plain.text, plain.finish_reason)
