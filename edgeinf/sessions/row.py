"""A saved conversation as the session index lists it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from edgeinf.types import Message

LABEL_CHARS = 60  # an untitled session is listed by this much of its first question


@dataclass(frozen=True)
class SessionRow:
    id: str
    owner: str
    model: str
    messages: tuple[Message, ...]
    kv_tokens: int
    kv_bytes: int
    created: float
    last_used: float
    kv_key: str = ""  # the saved sequence its last turn left, '' if none
    title: str = ""  # the name its owner gave it, '' if none

    @property
    def label(self) -> str:
        """Its title, else the start of its first question."""
        if self.title:
            return self.title
        first = next((m.content for m in self.messages if m.role == "user"), "")
        words = " ".join(first.split())
        return words if len(words) <= LABEL_CHARS else words[: LABEL_CHARS - 1] + "…"


def from_sqlite(r: sqlite3.Row) -> SessionRow:
    """A row of the index's sessions table."""
    messages = tuple(Message.from_dict(m) for m in json.loads(r["messages"]))
    return SessionRow(
        r["id"],
        r["owner"],
        r["model"],
        messages,
        r["kv_tokens"],
        r["kv_bytes"],
        r["created"],
        r["last_used"],
        r["kv_key"],
        r["title"],
    )
