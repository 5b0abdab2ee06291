"""The context policies that keep a long conversation going over the 270M's real tokenizer
and chat template: when summarize summarizes and what it puts in the prompt (the summaries
written by a stand-in that records what it was asked; the model's own are exercised in
tests/server/test_summarize.py), and what shift keeps of a prompt."""

from __future__ import annotations

import inspect
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgeinf.errors import EdgeinfError
from edgeinf.service.context import shifted
from edgeinf.service.summary import HEADING, Compactor, digest
from edgeinf.sessions.index import SessionIndex
from edgeinf.types import Message

SOURCE = inspect.getsource(textwrap)


class Writer:
    """Summaries numbered in order, and what each was asked to summarize."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[str] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, owner: str, messages: tuple[Message, ...]) -> str:
        if self.fail:
            raise EdgeinfError("the model is gone")
        with self.lock:
            self.asked.append(messages[-1].content)
            return f"summary {len(self.asked)} for {owner}"


def grown(turns: int) -> list[Message]:
    messages = [Message("system", "You review code."), Message("user", "I am Ada.")]
    messages.append(Message("assistant", "Hello Ada."))
    for i in range(turns):
        messages.append(Message("user", f"Code:\n{SOURCE[i * 500 : (i + 1) * 500]}"))
        messages.append(Message("assistant", f"Read part {i}."))
    return [*messages, Message("user", "Anything wrong?")]


def settled(writer: Writer, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(writer.asked) < count:
        assert time.monotonic() < deadline, writer.asked
        time.sleep(0.01)
    time.sleep(0.05)  # its summary is stored after it was written


@pytest.fixture
def index(tmp_path: Path) -> SessionIndex:
    return SessionIndex(tmp_path / "index.sqlite", tmp_path / "quarantine")


def test_a_growing_conversation_is_compacted_ahead_of_need_and_its_start_holds(
    tiny_engine: Any, index: SessionIndex
) -> None:
    writer = Writer()
    compactor = Compactor(tiny_engine, index, writer)
    ctx = tiny_engine.seq_ctx
    seen: list[tuple[int, int, int]] = []  # (whole prompt, prompt, messages summarized)
    for turns in range(1, 13):
        messages = grown(turns)
        before = len(writer.asked)
        prompt, trimmed = compactor.fit("ada", messages, (), 8)
        whole = len(tiny_engine.chat_prompt(messages).tokens)
        seen.append((whole, len(prompt.tokens), trimmed.summarized))
        assert len(prompt.tokens) + 8 <= ctx  # always fits
        if whole + 8 <= ctx:
            assert (
                trimmed.summarized == 0
                and prompt.tokens == tiny_engine.chat_prompt(messages).tokens
            )
        if len(writer.asked) > before:
            pytest.fail("a request waited for a summary that the background should have written")
        if len(prompt.tokens) + 8 > ctx * 3 // 4:
            assert len(writer.asked) == before  # not before the answer is written
            compactor.release()  # the answer ended
            settled(writer, before + 1)
    summarized = [s for _, _, s in seen]
    assert summarized[0] == 0 and summarized[-1] > 0
    assert summarized == sorted(summarized)  # each compaction covers more turns
    # Between two compactions the prompt only grows at its end: its start is the same.
    for a in range(1, 12):
        b = a + 1
        pa, ta = compactor.fit("ada", grown(a), (), 8)
        pb, tb = compactor.fit("ada", grown(b), (), 8)
        compactor.release()
        if ta.summarized == tb.summarized:
            assert pb.tokens[: len(pa.tokens) - 8] == pa.tokens[: len(pa.tokens) - 8]
    last = grown(12)
    prompt, trimmed = compactor.fit("ada", last, (), 8)
    text = tiny_engine.vocab.piece  # the summary sits in the system prompt, turns after it
    rendered = b"".join(text(t) for t in prompt.tokens).decode(errors="ignore")
    assert HEADING in rendered and "You review code." in rendered
    assert rendered.index("You review code.") < rendered.index(HEADING)
    assert "I am Ada." not in rendered and "Anything wrong?" in rendered
    # A later compaction was asked to summarize the earlier summary with the turns after it.
    assert any(a.count("Earlier summary: summary") == 1 for a in writer.asked[1:])


def test_an_oversized_conversation_waits_for_its_summary_in_readable_steps(
    tiny_engine: Any, index: SessionIndex
) -> None:
    writer = Writer()
    compactor = Compactor(tiny_engine, index, writer)
    messages = grown(30)  # about four times the context
    prompt, trimmed = compactor.fit("ada", messages, (), 8)
    assert len(prompt.tokens) + 8 <= tiny_engine.seq_ctx and trimmed.summarized > 0
    assert len(writer.asked) >= 2  # too long to read at once: summarized in steps
    for asked in writer.asked:
        assert len(tiny_engine.vocab.tokenize(asked)) + 200 < tiny_engine.seq_ctx
    # Each step's summary is kept: another principal finds none of them, this one all.
    rest = messages[1:]
    assert index.find_summary("mallory", [digest(rest[: trimmed.summarized])]) is None
    assert index.find_summary("ada", [digest(rest[: trimmed.summarized])]) is not None
    again, same = compactor.fit("ada", messages, (), 8)
    assert again.tokens == prompt.tokens and same == trimmed
    assert len(writer.asked) == len(set(writer.asked))  # nothing summarized twice


def test_when_the_model_cannot_summarize_the_oldest_turns_go_as_truncate_drops_them(
    tiny_engine: Any, index: SessionIndex
) -> None:
    compactor = Compactor(tiny_engine, index, Writer(fail=True))
    prompt, trimmed = compactor.fit("ada", grown(12), (), 8)
    assert trimmed.summarized == 0 and trimmed.messages >= 2  # reported as dropped
    assert len(prompt.tokens) + 8 <= tiny_engine.seq_ctx


def test_shift_keeps_the_system_prompt_and_erases_whole_blocks_after_it(tiny_engine: Any) -> None:
    messages = grown(12)
    whole = tiny_engine.chat_prompt(messages)
    prompt, trimmed, keep = shifted(tiny_engine, messages, (), 8)
    ctx = tiny_engine.seq_ctx
    system = tiny_engine.chat_prompt(messages[:1]).tokens
    assert keep == whole.ends[0] and whole.tokens[:keep] == system[:keep]
    assert trimmed.policy == "shift" and trimmed.messages == 0
    assert trimmed.tokens % ((ctx - keep) // 2) == 0 and len(prompt.tokens) + 8 <= ctx
    assert prompt.tokens == whole.tokens[:keep] + whole.tokens[keep + trimmed.tokens :]
    assert len(prompt.ends) < len(whole.ends) and all(e <= len(prompt.tokens) for e in prompt.ends)
    short = grown(1)
    assert shifted(tiny_engine, short, (), 8)[0] == tiny_engine.chat_prompt(short)
