"""Small frozen value types shared by every layer."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from edgeinf.errors import InvalidRequestError

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for: a function's name and its arguments as JSON text."""

    id: str
    name: str
    arguments: str

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's shape."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Tool:
    """A function the model may call; `parameters` is its arguments' JSON schema."""

    name: str
    description: str = ""
    parameters: Any = None

    def as_dict(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name, "description": self.description}
        function["parameters"] = self.parameters or {"type": "object", "properties": {}}
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class Choice:
    """What `tool_choice` asks: calls maybe, a call surely, none, or one named function."""

    mode: Literal["auto", "required", "none"] = "auto"
    name: str | None = None  # with mode "required": the function that must be called
    parallel: bool = True  # several calls in one answer


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls
    tool_call_id: str | None = None  # a tool's result: the call it answers

    def as_dict(self) -> dict[str, Any]:
        """OpenAI's shape (what sessions keep and the remote is sent)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.as_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        calls = tuple(
            ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in d.get("tool_calls") or ()
        )
        return cls(d["role"], d.get("content") or "", calls, d.get("tool_call_id"))


def arguments_object(arguments: str) -> Any:
    """A call's arguments as the object chat templates expect (the text if it is not JSON)."""
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidRequestError(what)


@dataclass(frozen=True)
class Insertion:
    """Where a fill-in-the-middle answer goes, for ending it as an editor wants
    (engine.insertion): at the end of the cursor's block, before text the suffix already
    has, or at the first line break after a time budget."""

    cursor_line: str = ""  # the text before the cursor on its line
    next_line: str = ""  # the suffix's first line that is not blank, stripped
    indent: int | None = None  # lines indented less end the answer; None: the cursor's block
    # The cursor is on a blank line inside a block: the answer's first line, too, must reach
    # `indent`.
    inside: bool = False
    budget_s: float | None = None  # from the first token; None: no time budget

    def __post_init__(self) -> None:
        _check(self.indent is None or self.indent >= 0, "n_indent must be >= 0")
        _check(self.budget_s is None or self.budget_s > 0, "the time budget must be > 0")


Shaper = Literal["top_k", "top_p", "min_p", "temperature", "infill"]
SHAPERS: tuple[Shaper, ...] = get_args(Shaper)
DEFAULT_CHAIN: tuple[Shaper, ...] = ("top_k", "top_p", "min_p", "temperature")


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. temperature 0 means greedy (deterministic)."""

    max_tokens: int = 512
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF the answer must match (engine.grammar checks it)
    # A lazy grammar applies once one of these patterns matches all the text written so far
    # (from its first group on), or one of these tokens is written.
    grammar_triggers: tuple[str, ...] = ()
    grammar_trigger_tokens: tuple[int, ...] = ()
    grammar_root: str = "root"  # the rule the grammar starts with
    insertion: Insertion | None = None  # a fill-in-the-middle answer's stopping rules
    # The samplers before the draw, in this order (llama.cpp's names; "infill" merges the
    # chances of tokens that start alike, for FIM); None: DEFAULT_CHAIN.
    chain: tuple[Shaper, ...] | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token, added to its logit)
    logprobs: int | None = None  # each written token's log-probability and this many rivals

    def __post_init__(self) -> None:
        for name in (
            "temperature",
            "top_p",
            "min_p",
            "repeat_penalty",
            "frequency_penalty",
            "presence_penalty",
        ):
            value = getattr(self, name)
            _check(math.isfinite(value), f"{name} must be a finite number, got {value}")
        _check(self.max_tokens >= 1, f"max_tokens must be at least 1, got {self.max_tokens}")
        _check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")
        _check(0 <= self.min_p <= 1, f"min_p must be in [0, 1], got {self.min_p}")
        _check(self.top_k >= 0, f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        _check(self.repeat_penalty > 0, f"repeat_penalty must be > 0, got {self.repeat_penalty}")
        _check(self.repeat_last_n >= 0, f"repeat_last_n must be >= 0, got {self.repeat_last_n}")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            _check(-2 <= value <= 2, f"{name} must be in [-2, 2], got {value}")
        _check(
            self.seed is None or 0 <= self.seed < 2**32,
            f"seed must be in [0, 2^32), got {self.seed}",
        )
        _check(all(self.stop), "stop strings must not be empty")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalized(self) -> bool:
        """Whether repetition penalties apply (they need the token history)."""
        return (
            self.repeat_penalty != 1.0
            or self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
        )


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Timings:
    """Seconds from the start of the request; decode speed excludes the first token."""

    ttft_s: float
    total_s: float
    decode_tok_s: float
    stall_s: float = 0.0  # the longest wait between two of the answer's tokens


@dataclass(frozen=True)
class Chunk:
    """One streamed piece of text; always whole UTF-8 characters."""

    text: str


@dataclass(frozen=True)
class TokenLogprob:
    """A written token's log-probability under the model (its raw logits, before any
    sampler), with the likeliest tokens at that place: (token, bytes, log-probability)."""

    token: int
    piece: bytes
    logprob: float
    top: tuple[tuple[int, bytes, float], ...] = ()


@dataclass(frozen=True)
class Scored:
    """In a stream that reports log-probabilities: those of the tokens behind the text
    that comes next."""

    tokens: tuple[TokenLogprob, ...]


@dataclass(frozen=True)
class Thought:
    """A piece of a thinking model's reasoning (a plain `str` piece is its answer's text)."""

    text: str


@dataclass(frozen=True)
class Completion:
    """What a finished generation returns after its stream."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    token_ids: tuple[int, ...] = field(default=(), repr=False)
    logprobs: tuple[TokenLogprob, ...] = field(default=(), repr=False)  # when asked for
