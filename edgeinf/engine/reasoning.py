"""Answers of models that think first: the reasoning between `<think>` and `</think>` told
apart from the answer, as it streams and once it ended, and a grammar that starts only where
the reasoning ends.

A thinking template either opens the reasoning block itself at the end of the prompt
(DeepSeek-R1's distills, QwQ) or lets the model open it (Qwen3, which also closes an empty
block in the prompt when thinking is switched off). `Start` says which the prompt did.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from edgeinf.engine.textstream import unfinished
from edgeinf.types import SamplingParams, Thought

OPEN_THINK, CLOSE_THINK = "<think>", "</think>"
# "": the template does not think; "open": the prompt ends inside the reasoning block;
# "may": the answer may begin with one.
Start = Literal["", "open", "may"]
ROOT = "reasoned"  # the start rule of a grammar that lets the reasoning come first


def start_of(prompt: str, thinks: bool) -> Start:
    """Where a rendered prompt leaves the answer, for a template that thinks or not."""
    if not thinks:
        return ""
    opened = prompt.rfind(OPEN_THINK)
    return "open" if opened >= 0 and prompt.find(CLOSE_THINK, opened) < 0 else "may"


class Thinking:
    """One answer's text, split as it streams: feed it pieces, send what it returns, and
    what `end` returns once the answer ended. Whitespace around the reasoning and at the
    start of the answer is dropped, so the pieces join to what `split` returns."""

    def __init__(self, start: Start) -> None:
        self._state: Literal["start", "reasoning", "answer"] = (
            "reasoning" if start == "open" else "start"
        )
        self._held = ""
        self._said = False  # some reasoning was let out (leading whitespace is dropped)
        self._answered = False  # some of the answer was let out

    def feed(self, piece: str) -> list[str | Thought]:
        self._held += piece
        out: list[str | Thought] = []
        while True:
            if self._state == "start":
                head = self._held.lstrip()
                if head.startswith(OPEN_THINK):
                    self._held, self._state = head[len(OPEN_THINK) :], "reasoning"
                elif head and OPEN_THINK.startswith(head):
                    return out  # may be the tag, not yet whole
                elif head:
                    self._state = "answer"
                else:
                    return out
            elif self._state == "reasoning":
                if not self._said:
                    self._held = self._held.lstrip()
                end = self._held.find(CLOSE_THINK)
                if end >= 0:
                    self._think(self._held[:end].rstrip(), out)
                    self._held, self._state = self._held[end + len(CLOSE_THINK) :], "answer"
                    continue
                keep = unfinished(self._held, (CLOSE_THINK,))
                body = self._held[: len(self._held) - keep]
                # Whitespace that may turn out to precede the closing tag waits.
                shown = body.rstrip()
                self._think(shown, out)
                self._held = self._held[len(shown) :]
                return out
            else:
                if not self._answered:
                    self._held = self._held.lstrip()
                if self._held:
                    out.append(self._held)
                    self._answered, self._held = True, ""
                return out

    def _think(self, text: str, out: list[str | Thought]) -> None:
        if text:
            out.append(Thought(text))
            self._said = True

    def end(self) -> list[str | Thought]:
        """What was held back when the answer ended: text that turned out to be the answer,
        or reasoning cut short (by the token limit)."""
        held, self._held = self._held, ""
        if not held.strip():
            return []
        return [Thought(held.rstrip())] if self._state == "reasoning" else [held.lstrip()]


@dataclass(frozen=True)
class Split:
    reasoning: str
    answer: str


def split(text: str, start: Start) -> Split:
    """A whole answer's reasoning and the rest of it."""
    thinking = Thinking(start)
    pieces = [*thinking.feed(text), *thinking.end()]
    reasoning = "".join(p.text for p in pieces if isinstance(p, Thought))
    return Split(reasoning, "".join(p for p in pieces if isinstance(p, str)))


def _thought_rules() -> str:
    """GBNF for text that does not contain CLOSE_THINK: state i has just written its first
    i characters (the tag's first character occurs in it only once, so a mismatch falls
    back to state 0, or to 1 on that character)."""
    tag, first = CLOSE_THINK, CLOSE_THINK[0]
    assert first not in tag[1:]
    rules = []
    for i, c in enumerate(tag):
        alts = [f'"{c}" {ROOT}-thought-{i + 1}'] if i + 1 < len(tag) and c != first else []
        alts.append(f'"{first}" {ROOT}-thought-1')
        banned = first + c if c != first else first
        alts.append(f"[^{banned}] {ROOT}-thought-0")
        rules.append(f"{ROOT}-thought-{i} ::= ( " + " | ".join(alts) + " )?")
    return "\n".join(rules)


_PATTERN_HEAD = {
    "open": r"[\s\S]*?</think>",
    "may": r"(?:\s*<think>[\s\S]*?</think>)?",
}


def after_reasoning(sampling: SamplingParams, start: Start) -> SamplingParams:
    """The sampling of an answer whose grammar applies once the reasoning ended: a lazy
    grammar's patterns must first see the reasoning closed; any other grammar gets a start
    rule that lets the reasoning (any text without the closing tag) come first."""
    if not start or sampling.grammar is None:
        return sampling
    if sampling.grammar_triggers or sampling.grammar_trigger_tokens:
        head = _PATTERN_HEAD[start]
        return replace(
            sampling, grammar_triggers=tuple(head + p for p in sampling.grammar_triggers)
        )
    space = "[ \\t\\n]{0,20}"
    block = f'{ROOT}-thought-0 "{CLOSE_THINK}" {space}'
    first = block if start == "open" else f'( {space} "{OPEN_THINK}" {block} )?'
    rules = f"{ROOT} ::= {first} {sampling.grammar_root}\n{_thought_rules()}\n"
    return replace(sampling, grammar=rules + sampling.grammar, grammar_root=ROOT)
