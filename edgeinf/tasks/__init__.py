"""Gradable tasks: the Task every kind shares, and GSM8K (HumanEval is in edgeinf.research)."""

from __future__ import annotations

from dataclasses import dataclass

from edgeinf.types import Message


@dataclass(frozen=True)
class Task:
    """One problem: the conversation to send, and what grading needs."""

    id: str
    kind: str  # "gsm8k", "humaneval", or a task of the mixed set (edgeinf.research.mix)
    messages: tuple[Message, ...]
    max_tokens: int
    reference: str  # gsm8k: the gold number; humaneval: the test code
    entry_point: str = ""
    prefix: str = ""  # humaneval: the prompt, which holds the imports
    steps: int = 0  # gsm8k: calculations in the reference solution, a difficulty no router sees
    metric: str = ""  # the mixed set's grading rule; "" = the kind's own
    options: tuple[str, ...] = ()  # multiple choice: the option letters
