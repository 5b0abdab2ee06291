"""What the router reads of a query: its sentence embedding plus length and structure signals."""

from __future__ import annotations

import math
import re

import numpy as np
import numpy.typing as npt

from edgeinf.route.encoder import SentenceEncoder
from edgeinf.types import Message

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|[{};]\s*$", re.MULTILINE)

SHAPE_FEATURES = (
    "log_chars",
    "log_words",
    "numbers",
    "sentences",
    "lines",
    "code_signs",
    "question_marks",
    "max_number_log",
)


def shape(text: str) -> list[float]:
    """Length and structure of the text, each on a scale where a linear model can use it."""
    numbers = _NUMBER.findall(text)
    biggest = max((float(n) for n in numbers), default=0.0)
    return [
        math.log1p(len(text)),
        math.log1p(len(text.split())),
        math.log1p(len(numbers)),
        math.log1p(text.count(". ") + text.count("? ") + 1),
        math.log1p(text.count("\n")),
        math.log1p(len(_CODE.findall(text))),
        float(text.count("?")),
        math.log1p(min(biggest, 1e12)),
    ]


def featurize(encoder: SentenceEncoder, texts: list[str]) -> npt.NDArray[np.float32]:
    """One row per text: embedding (384) then SHAPE_FEATURES."""
    shapes = np.asarray([shape(t) for t in texts], dtype=np.float32).reshape(len(texts), -1)
    return np.concatenate([encoder.encode(texts), shapes], axis=1)


def query_text(messages: tuple[Message, ...]) -> str:
    """The text scored: the last user message (what the router was trained on)."""
    return next((m.content for m in reversed(messages) if m.role == "user"), "")
