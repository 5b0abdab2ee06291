"""The cascade's signal: does a second, sampled answer of the local model agree with its first?
Disagreement says the local model is unsure, which predicts a gain from escalating."""

from __future__ import annotations

import difflib
import re

from edgeinf.tasks.gsm8k import final_number

_BLOCK = re.compile(r"```(?:\w+)?\s*\n(.*?)```", re.DOTALL)
SAME_TEXT = 0.9  # similarity ratio above which two answers without a number count as agreeing

SECOND_SAMPLE_TEMPERATURE = 0.7


def _core(answer: str) -> str:
    blocks = _BLOCK.findall(answer)
    text = max(blocks, key=len) if blocks else answer
    return " ".join(text.split())


def agree(first: str, second: str) -> bool:
    """Same final number when both give one; otherwise nearly the same code or text."""
    a, b = final_number(first), final_number(second)
    if a is not None and b is not None:
        return abs(a - b) < 1e-6
    return difflib.SequenceMatcher(None, _core(first), _core(second)).ratio() >= SAME_TEXT
