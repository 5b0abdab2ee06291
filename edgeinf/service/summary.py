"""The `summarize` context policy: a conversation's oldest turns compacted by the local model
into a summary that takes their place in the prompt.

A conversation whose prompt passes three quarters of the context (with room for its answer)
has its oldest turns summarized in the background, beside its answer: as many as leave the
rest within half of the context. By the time the conversation no longer fits, the summary
is there and takes the place of those turns, added to the system prompt. The turns it
replaces stay the same from one turn to the next until the next compaction, so the prompt's
start stays the same and its state stays in the prefix cache. A later compaction summarizes
the earlier summary with the turns after it. A conversation that outgrows the context before
a summary is ready is summarized while its request waits. Summaries are kept in the session
index, per principal, under the digest of the messages they replace, so a client that
resends the whole conversation (no session id) finds them too, across restarts. When
summarizing fails, the oldest turns are dropped as `truncate` drops them; the response says
what happened either way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeinf.engine.engine import Engine, Prompt
from edgeinf.errors import EdgeinfError
from edgeinf.service.context import Trimmed, fit, room
from edgeinf.sessions.index import SessionIndex
from edgeinf.types import Message, Tool

log = logging.getLogger("edgeinf.summary")

SUMMARY_TOKENS = 200  # the longest summary the model may write
# The conversation first, the task after it: small models follow the last thing they read
# (with the task first, the 270M and 0.5B continue the conversation instead).
OPENING = "Here is a conversation between a user and an assistant.\n\n<conversation>\n"
TASK = (
    "\n</conversation>\n\nWrite a short summary of the conversation above (at most 120 "
    "words), as notes for whoever continues it: who the user is, what they asked for, facts, "
    "names, numbers, code identifiers, decisions and open questions. Reply with the summary "
    "only."
)
HEADING = "Summary of the earlier conversation:"
# A summarizer: (owner, messages) -> the model's answer, greedy, at most SUMMARY_TOKENS.
Summarize = Callable[[str, tuple[Message, ...]], str]


def digest(messages: Sequence[Message]) -> str:
    """The name of a run of messages, whatever client sent it."""
    data = json.dumps([m.as_dict() for m in messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def cuts(rest: Sequence[Message]) -> list[int]:
    """Where a conversation (without its system prompt) may be cut: before each user message
    but the first, so that whole turns go and the latest one stays."""
    return [i for i in range(1, len(rest)) if rest[i].role == "user"]


def transcript(earlier: str | None, turns: Sequence[Message]) -> str:
    lines = [f"Earlier summary: {earlier}"] if earlier else []
    for m in turns:
        text = m.content
        for call in m.tool_calls:
            text += f"\n(calls {call.name} with {call.arguments})"
        lines.append(f"{m.role.capitalize()}: {text}")
    return "\n\n".join(lines)


def summarized(head: Sequence[Message], summary: str, rest: Sequence[Message]) -> list[Message]:
    """The conversation with the summary in place of the turns it covers, in the system
    prompt (templates allow one system message, at the start)."""
    note = f"{HEADING}\n{summary}"
    if head:
        system = head[0]
        return [Message("system", f"{system.content}\n\n{note}"), *head[1:], *rest]
    return [Message("system", note), *rest]


@dataclass(frozen=True)
class _Conversation:
    owner: str
    head: tuple[Message, ...]  # the system prompt, if any
    rest: tuple[Message, ...]
    tools: tuple[Tool, ...]
    thinking: bool | None  # as Engine.chat_prompt takes it
    keep: int  # tokens kept for the answer


class Compactor:
    """Summaries for one loaded model: found, written in the background, or written now."""

    def __init__(self, engine: Engine, index: SessionIndex, summarize: Summarize) -> None:
        self.engine, self.index, self.summarize = engine, index, summarize
        self._pending: set[tuple[str, str]] = set()
        self._queued: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.written = {"background": 0, "waited": 0}  # summaries, by whether a request waited

    def fit(
        self,
        owner: str,
        messages: Sequence[Message],
        tools: Sequence[Tool],
        max_tokens: int,
        thinking: bool | None = None,
    ) -> tuple[Prompt, Trimmed]:
        """The prompt of `messages`, its oldest turns replaced by their summary if it must."""
        n = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
        c = _Conversation(
            owner,
            tuple(messages[:n]),
            tuple(messages[n:]),
            tuple(tools),
            thinking,
            room(self.engine.seq_ctx, max_tokens),
        )
        full = self.engine.chat_prompt(messages, tools, thinking)
        prompt, trimmed = full, Trimmed()
        if not self._fits(full, c):
            found = self._latest(c)
            if found is None or not self._fits(prompt := self._with(found, c), c):
                # No summary yet, or it covers too few turns now: one is written at once.
                found = self._write(c, self._target(c, found[0] if found else 0), found)
                if found is None:  # the model could not summarize: let the oldest turns go
                    return fit(self.engine, messages, tools, max_tokens, thinking)
                prompt = self._with(found, c)
            trimmed = Trimmed(0, len(full.tokens) - len(prompt.tokens), found[0], "summarize")
        if len(prompt.tokens) + c.keep > self.engine.seq_ctx * 3 // 4:
            self._later(c, trimmed.summarized)
        return prompt, trimmed

    def _with(self, summary: tuple[int, str], c: _Conversation) -> Prompt:
        cut, text = summary
        rest = summarized(c.head, text, c.rest[cut:])
        return self.engine.chat_prompt(rest, c.tools, c.thinking)

    def _fits(self, prompt: Prompt, c: _Conversation) -> bool:
        return len(prompt.tokens) + c.keep <= self.engine.seq_ctx

    def _latest(self, c: _Conversation) -> tuple[int, str] | None:
        """The summary that covers the most of the oldest turns, if there is one."""
        covering = {digest(c.rest[:i]): i for i in reversed(cuts(c.rest))}  # longest first
        found = self.index.find_summary(c.owner, list(covering))
        return None if found is None else (covering[found[0]], found[1])

    def _target(self, c: _Conversation, done: int = 0) -> int:
        """The fewest oldest turns (more than the `done` ones an earlier summary covers)
        whose summary leaves the rest within half of the context; all but the latest turn
        when nothing less does."""
        points = [i for i in cuts(c.rest) if i > done]
        if not points:
            return done
        half = self.engine.seq_ctx // 2 - c.keep - SUMMARY_TOKENS
        tail = {i: len(self.engine.vocab.tokenize(transcript(None, c.rest[i:]))) for i in points}
        fits = [i for i in points if tail[i] <= half]
        return fits[0] if fits else points[-1]

    def _write(
        self,
        c: _Conversation,
        cut: int,
        earlier: tuple[int, str] | None = None,
        when: str = "waited",
    ) -> tuple[int, str] | None:
        """Summarize the turns before `cut` now, on top of the `earlier` summary: in steps of
        as many turns as the model can read at once, each step's summary kept."""
        done, text = earlier if earlier is not None else (0, None)
        if cut <= done:
            return None
        took = time.perf_counter()
        while done < cut:
            points = [i for i in cuts(c.rest) if done < i <= cut]
            fitting = [i for i in points if self._readable(text, c.rest[done:i])]
            step = fitting[-1] if fitting else points[0]  # one turn too long: its start
            ask = (Message("user", OPENING + self._clip(text, c.rest[done:step]) + TASK),)
            try:
                summary = self.summarize(c.owner, ask).strip()
            except EdgeinfError as exc:
                log.warning("could not summarize %d messages: %s", step, exc)
                return None
            if not summary:
                return None
            self.index.put_summary(c.owner, digest(c.rest[:step]), summary)
            done, text = step, summary
        with self._lock:
            self.written[when] += 1
        log.info("summarized %d messages (%s) in %.1f s", cut, when, time.perf_counter() - took)
        return (cut, text) if text else None

    def _budget(self) -> int:
        """Tokens of conversation the summarizer may read at once."""
        task = len(self.engine.vocab.tokenize(OPENING + TASK))
        return self.engine.seq_ctx - SUMMARY_TOKENS - task - 32  # 32: the template's own

    def _readable(self, earlier: str | None, turns: Sequence[Message]) -> bool:
        return len(self.engine.vocab.tokenize(transcript(earlier, turns))) <= self._budget()

    def _clip(self, earlier: str | None, turns: Sequence[Message]) -> str:
        """The transcript, cut to what the summarizer may read (a single turn may be longer)."""
        text = transcript(earlier, turns)
        tokens = self.engine.vocab.tokenize(text)
        if len(tokens) <= self._budget():
            return text
        return b"".join(self.engine.vocab.piece(t) for t in tokens[: self._budget()]).decode(
            errors="ignore"
        )

    def _later(self, c: _Conversation, done: int) -> None:
        """Compact more of the conversation in the background once its answer is written
        (`release`), once per run of turns."""
        cut = self._target(c, done)
        if cut <= done:
            return
        key = (c.owner, digest(c.rest[:cut]))
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        earlier = self._latest(c) if done else None

        def run() -> None:
            try:
                self._write(c, cut, earlier, "background")
            except Exception as exc:  # a background summary is an optimisation
                log.warning("background summary failed: %s", exc, exc_info=exc)
            finally:
                with self._lock:
                    self._pending.discard(key)

        with self._lock:
            self._queued.append(run)

    def release(self) -> None:
        """An answer ended: start the summaries that waited for it (never before it: on two
        cores a summary decoding ahead of an answer would delay it by seconds)."""
        with self._lock:
            queued, self._queued = self._queued, []
        for run in queued:
            threading.Thread(target=run, name="edgeinf-summary", daemon=True).start()
