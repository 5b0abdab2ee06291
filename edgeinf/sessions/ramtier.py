"""The prefix cache's RAM tier: the latest saved sequences, kept in host memory within a budget.

Every state saved to disk passes through here first, so a conversation that lost its slot to
another one comes back at memory speed; what the budget cannot hold is still on disk.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from edgeinf.sessions.kvfile import KVState


@dataclass(frozen=True)
class Snapshot:
    """A saved sequence: its key (the digest of all its tokens) and the digests it is
    indexed under, position by digest."""

    key: str
    owner: str
    state: KVState
    marks: dict[str, int]  # digest: position

    @property
    def size(self) -> int:
        return len(self.state.payload)


class RamTier:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._held: OrderedDict[str, Snapshot] = OrderedDict()  # least recently used first
        self._by_digest: dict[str, str] = {}  # digest: the key of the snapshot indexed under it
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._held)

    def held(self) -> list[tuple[str, int]]:
        """(key, token count) of every snapshot held."""
        with self._lock:
            return [(key, len(held.state.tokens)) for key, held in self._held.items()]

    def put(self, snapshot: Snapshot, replacing: Iterable[str] = ()) -> None:
        """Hold `snapshot` in place of the held ones it covers (`replacing`: their tokens
        start its own), dropping the least recently used until the budget holds."""
        if snapshot.size > self.budget_bytes:
            return
        with self._lock:
            for key in replacing:
                self._remove(key)
            self._held[snapshot.key] = snapshot
            self._by_digest.update(dict.fromkeys(snapshot.marks, snapshot.key))
            self._used += snapshot.size
            while self._used > self.budget_bytes:
                self._remove(next(iter(self._held)))

    def find(self, wanted: dict[str, int]) -> tuple[Snapshot, int] | None:
        """The held snapshot indexed under the longest of the `wanted` digests (digest:
        position; the namespace is in the digest), with that position."""
        with self._lock:
            for digest, n in sorted(wanted.items(), key=lambda item: -item[1]):
                key = self._by_digest.get(digest)
                if key is not None:
                    self._held.move_to_end(key)
                    return self._held[key], n
        return None

    def _remove(self, key: str) -> None:
        gone = self._held.pop(key, None)
        if gone is None:
            return
        self._used -= gone.size
        for digest in gone.marks:
            if self._by_digest.get(digest) == key:
                del self._by_digest[digest]
