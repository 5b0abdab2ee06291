"""Conversations longer than the context: what the model is shown of them.

`error` refuses a prompt that does not fit (400 `context_length_exceeded`). `summarize`
replaces the oldest turns with a summary the model wrote of them (service.summary). `shift`
is llama.cpp's context shift: the system prompt's tokens stay, the oldest tokens after them
go in blocks of half the rest, mid-message if need be; and an answer that fills the context
drops half of what follows the system prompt and goes on. `truncate` drops
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

__all__ = ["ContextPolicy", "Trimmed", "fit", "shifted"]


@dataclass(frozen=True)
class Trimmed:
    """What a prompt lost to fit: messages dropped from the start of the conversation, and
    tokens; or messages replaced by their summary (the summarize policy)."""

    messages: int = 0
    tokens: int = 0
    summarized: int = 0
    policy: ContextPolicy | None = None  # the one that made the prompt fit, if any did


def room(seq_ctx: int, max_tokens: int) -> int:
    """Tokens a truncated prompt leaves for the answer: its max_tokens, at most a quarter of
    the context (a larger max_tokens is cut by the context's end, as always)."""
    return max(1, min(max_tokens, seq_ctx // 4))


def fit(
    engine: Engine,
    messages: Sequence[Message],
    tools: Sequence[Tool],
    max_tokens: int,
    thinking: bool | None = None,
) -> tuple[Prompt, Trimmed]:
    """The prompt of `messages` with as few of its oldest turns dropped as make it fit
    (`thinking` as Engine.chat_prompt takes it)."""
    prompt = engine.chat_prompt(messages, tools, thinking)
    full, keep = len(prompt.tokens), room(engine.seq_ctx, max_tokens)
    head = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    rest, dropped = list(messages[head:]), 0
    while len(prompt.tokens) + keep > engine.seq_ctx:
        cut = next((i for i in range(1, len(rest)) if rest[i].role == "user"), None)
        if cut is None:  # the latest turn alone: too long to answer, as the error says
            break
        rest, dropped = rest[cut:], dropped + cut
        prompt = engine.chat_prompt((*messages[:head], *rest), tools, thinking)
    policy: ContextPolicy | None = "truncate" if dropped else None
    return prompt, Trimmed(dropped, full - len(prompt.tokens), policy=policy)


def kept_start(engine: Engine, messages: Sequence[Message], prompt: Prompt) -> int:
    """The tokens a context shift keeps: the system prompt's, else the BOS token if any."""
    if messages and messages[0].role == "system" and prompt.ends:
        return prompt.ends[0]
    return 1 if engine.vocab.add_bos else 0


def shifted(
    engine: Engine,
    messages: Sequence[Message],
    tools: Sequence[Tool],
    max_tokens: int,
    thinking: bool | None = None,
) -> tuple[Prompt, Trimmed, int]:
    """The prompt of `messages` as llama.cpp's context shift cuts it, and the tokens a shift
    keeps (the system prompt's)."""
    prompt = engine.chat_prompt(messages, tools, thinking)
    keep, ctx = kept_start(engine, messages, prompt), engine.seq_ctx
    over = len(prompt.tokens) + room(ctx, max_tokens) - ctx
    block = max(1, (ctx - keep) // 2)
    erased = -(-over // block) * block  # whole blocks, as llama.cpp erases them
    if over <= 0 or keep + erased >= len(prompt.tokens):  # fits, or nothing would be left
        return prompt, Trimmed(), keep
    tokens = prompt.tokens[:keep] + prompt.tokens[keep + erased :]
    ends = tuple(
        e if e <= keep else e - erased for e in prompt.ends if not keep < e <= keep + erased
    )
    return Prompt(tokens, ends, prompt.start), Trimmed(0, erased, policy="shift"), keep
