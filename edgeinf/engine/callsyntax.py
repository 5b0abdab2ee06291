"""How families of models write tool calls, told apart by their chat templates.

- Hermes (and Qwen2.5, Qwen3, which were trained on it): each call a JSON object
  `{"name", "arguments"}` between `<tool_call>` and `</tool_call>`. Also the markup a model is
  told to use when its template knows nothing of tools.
- Llama 3.x: one JSON object `{"name", "parameters"}`, the whole answer, after the
  `<|python_tag|>` token or without it (its template has an `ipython` role for results).
- Mistral: `[TOOL_CALLS]` and then a JSON array of `{"name", "arguments"}` objects; its
  templates require each call's id to be 9 letters or digits.

Openers that are single control tokens (`[TOOL_CALLS]`, `<|python_tag|>`) would render as
nothing; the engine writes them out as text (`Vocab.show`) so that calls can be found.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

_MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Syntax:
    family: Literal["hermes", "llama3", "mistral"]
    opener: str  # what the model writes before its call(s)
    closer: str = ""  # what it writes after each call ("": the calls end the answer)
    key: str = "arguments"  # the key of a call's arguments
    listed: bool = False  # the calls are one JSON array after the opener

    def call_id(self, given: str) -> str:
        """A call's id as this family's templates accept it: Mistral's want 9 letters or
        digits, so another id maps to one (the same for a call and for its result)."""
        if self.family != "mistral" or _MISTRAL_ID.fullmatch(given):
            return given
        n = int.from_bytes(hashlib.sha256(given.encode()).digest()[:8], "big")
        return "".join(_DIGITS[(n // 62**i) % 62] for i in range(9))


HERMES = Syntax("hermes", "<tool_call>", "</tool_call>")
LLAMA3 = Syntax("llama3", "<|python_tag|>", key="parameters")
MISTRAL = Syntax("mistral", "[TOOL_CALLS]", listed=True)
SYNTAXES = (HERMES, LLAMA3, MISTRAL)


def syntax_of(source: str) -> Syntax:
    """The call syntax a chat template that lays out tools itself asks of its model (Hermes
    when it is none of the others: the markup a model is told to use)."""
    if MISTRAL.opener in source:
        return MISTRAL
    if LLAMA3.opener in source or "<|start_header_id|>ipython<|end_header_id|>" in source:
        return LLAMA3
    return HERMES
