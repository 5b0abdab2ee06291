"""Fill-in-the-middle on the real 0.5B coder: prompts from its markers, and moved runs of a
slot's cells reused when an edit shifts the prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import llama_cpp as ll
import pytest

from edgeinf.config import load_settings
from edgeinf.engine.batcher import Batcher
from edgeinf.engine.chunks import FRESH, Parked
from edgeinf.engine.engine import Engine
from edgeinf.engine.fim import Extra, Markers, fim_tokens
from edgeinf.engine.jobs import Job
from edgeinf.errors import InvalidRequestError
from edgeinf.service.fill import Fill
from edgeinf.service.local import ChatService
from edgeinf.service.local_answer import ChatRequest
from edgeinf.types import Completion, SamplingParams
from tests.conftest import DRAFT

# A file long enough that a moved run is worth keeping, cut at a function body.
HEAD = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n\n" for i in range(12))
PREFIX = HEAD + "def add(a, b):\n    "
SUFFIX = "\n\n\n" + "".join(f"print(helper_{i}(add({i}, 1)))\n" for i in range(12))


def fim(engine: Any, prefix: str, suffix: str, **kw: Any) -> list[int]:
    markers = Markers.of(engine.vocab, "the model")
    tokens, cut = fim_tokens(engine.vocab, markers, prefix, suffix, 900, **kw)
    assert cut == 0
    return tokens


def answer(
    batcher: Batcher, prompt: list[int], runs: int = 0, cache: bool = True
) -> tuple[str, int]:
    out: dict[str, Any] = {}

    def done(c: Completion | None, err: BaseException | None) -> None:
        out["c"], out["err"] = c, err

    job = Job(prompt, SamplingParams(max_tokens=12, temperature=0), lambda _: None, done)
    job.runs, job.cache = runs, cache
    batcher.submit(job)
    batcher.run_until_idle()
    assert out["err"] is None
    return out["c"].text, job.reused_tokens


def test_the_prompt_is_built_from_the_models_own_markers(chat_engine: Any) -> None:
    vocab = chat_engine.vocab
    markers = Markers.of(vocab, "the model")
    assert [vocab.text_of(t) for t in (markers.pre, markers.suf, markers.mid)] == [
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
    ]
    plain = fim(chat_engine, "a = ", "\nb = 2\n")
    assert plain[0] == markers.pre and plain[-1] == markers.mid
    assert markers.suf in plain and markers.rep not in plain  # no other files: no repository
    files = fim(chat_engine, "a = ", "\n", extra=[Extra("X = 1\n", "consts.py")], filename="a.py")
    assert files[0] == markers.rep and files.count(markers.sep) == 2
    spelled = fim(chat_engine, "s = '<|fim_suffix|>'\n", "")
    assert spelled.count(markers.suf) == 1  # code that spells a marker stays text


def test_text_is_cut_from_the_far_ends_to_fit(chat_engine: Any) -> None:
    markers = Markers.of(chat_engine.vocab, "the model")
    tokens, cut = fim_tokens(chat_engine.vocab, markers, "x = 1\n" * 400, "y = 2\n" * 400, 300)
    assert len(tokens) <= 300 and cut > 0
    before = tokens[1 : tokens.index(markers.suf)]
    after = tokens[tokens.index(markers.suf) + 1 : -1]
    assert len(before) > 2 * len(after) > 0  # the cursor's side of each kept, about 3:1


def test_a_model_without_markers_is_refused_with_what_to_use(tiny_engine: Any) -> None:
    with pytest.raises(InvalidRequestError, match=r"qwen2\.5-coder"):
        Markers.of(tiny_engine.vocab, "gemma-3-270m-q4_k_m")


def test_an_edit_before_the_cursor_reuses_the_moved_suffix(chat_engine: Engine) -> None:
    assert chat_engine.can_move
    batcher = Batcher.inline(chat_engine, 1)
    cold_text, _ = answer(batcher, fim(chat_engine, PREFIX, SUFFIX), cache=False)
    assert cold_text.startswith("return a + b")
    edited = fim(chat_engine, PREFIX.replace("def add", "# sums\ndef add"), SUFFIX)
    text, reused = answer(batcher, edited, runs=16)
    # Only the typed line and the tail are prefilled: the suffix moved down with its cells.
    assert reused > len(edited) - 20 - FRESH
    assert text.startswith("return a + b")
    seq = batcher.slots[0].seq
    mem = ll.llama_get_memory(chat_engine.ctx)
    assert ll.llama_memory_seq_pos_max(mem, seq.seq_id) == len(seq.tokens) - 1
    assert seq.tokens[: len(edited)] == edited  # the cells hold the new prompt, in order
    parked = range(chat_engine.opts.n_seq_max, chat_engine.opts.n_seq_max * 9)
    assert all(ll.llama_memory_seq_pos_max(mem, s) == -1 for s in parked)  # nothing left behind


def test_without_runs_only_the_unchanged_start_is_reused(chat_engine: Engine) -> None:
    batcher = Batcher.inline(chat_engine, 1)
    answer(batcher, fim(chat_engine, PREFIX, SUFFIX), cache=False)
    edited = fim(chat_engine, PREFIX.replace("def add", "# sums\ndef add"), SUFFIX)
    _, reused = answer(batcher, edited, runs=0)
    assert reused < len(edited) - 100  # the suffix is prefilled again


def test_an_answer_cancelled_while_runs_wait_leaves_nothing_parked(chat_engine: Engine) -> None:
    batcher = Batcher.inline(chat_engine, 1)
    answer(batcher, fim(chat_engine, PREFIX, SUFFIX), cache=False)
    edited = fim(chat_engine, PREFIX.replace("def add", "# sums\ndef add"), SUFFIX)
    ended: list[object] = []
    job = Job(edited, SamplingParams(max_tokens=4), lambda _: None, lambda *a: ended.append(a))
    job.runs = 16
    batcher.submit(job)
    with batcher._wake:
        assert batcher.ready()  # started: the suffix's run is parked
    assert any(isinstance(p, Parked) for p in batcher.slots[0].prefill)
    job.cancelled.set()
    batcher.run_until_idle()
    mem = ll.llama_get_memory(chat_engine.ctx)
    parked = range(chat_engine.opts.n_seq_max, chat_engine.opts.n_seq_max * 9)
    assert ended and all(ll.llama_memory_seq_pos_max(mem, s) == -1 for s in parked)


def test_a_slot_another_principal_filled_starts_empty(tmp_path: Path, draft_path: Path) -> None:
    settings = load_settings(default_model=DRAFT, n_ctx=2048, threads=2, state_dir=tmp_path)
    service = ChatService(settings)
    try:
        fill = Fill(PREFIX, SUFFIX)
        sampling = SamplingParams(max_tokens=4, temperature=0)

        def reused(owner: str) -> int:
            local = service.local(ChatRequest((), sampling, owner=owner), fill=fill)
            "".join(local)
            assert local.result is not None
            return local.result.reused_tokens

        assert reused("alice") == 0
        assert reused("alice") > 100  # her own slot: all but the last token
        assert reused("bob") == 0  # the time would tell him what she had sent
    finally:
        service.close()
