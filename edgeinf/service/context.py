"""Conversations longer than the context: what the model is shown of them.

`error` refuses a prompt that does not fit (400 `context_length_exceeded`). `truncate` drops
the oldest turns, each a user message with everything that answered it, until the prompt
leaves room to answer; the system prompt and the latest turn always stay. Whole turns go,
and only when they must, so the kept start of the conversation stays the same from one turn
to the next and its state stays in the prefix cache. What was dropped is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgeinf.config import ContextPolicy
from edgeinf.engine.engine import Engine, Prompt
from edgeinf.types import Message, Tool

__all__ = ["ContextPolicy", "Trimmed", "fit"]


@dataclass(frozen=True)
class Trimmed:
    """What a prompt lost to fit: messages from the start of the conversation, and tokens."""

    messages: int = 0
    tokens: int = 0


def room(seq_ctx: int, max_tokens: int) -> int:
    """Tokens a truncated prompt leaves for the answer: its max_tokens, at most a quarter of
    the context (a larger max_tokens is cut by the context's end, as always)."""
    return max(1, min(max_tokens, seq_ctx // 4))


def fit(
    engine: Engine, messages: Sequence[Message], tools: Sequence[Tool], max_tokens: int
) -> tuple[Prompt, Trimmed]:
    """The prompt of `messages` with as few of its oldest turns dropped as make it fit."""
    prompt = engine.chat_prompt(messages, tools)
    full, keep = len(prompt.tokens), room(engine.seq_ctx, max_tokens)
    head = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    rest, dropped = list(messages[head:]), 0
    while len(prompt.tokens) + keep > engine.seq_ctx:
        cut = next((i for i in range(1, len(rest)) if rest[i].role == "user"), None)
        if cut is None:  # the latest turn alone: too long to answer, as the error says
            break
        rest, dropped = rest[cut:], dropped + cut
        prompt = engine.chat_prompt((*messages[:head], *rest), tools)
    return prompt, Trimmed(dropped, full - len(prompt.tokens))
