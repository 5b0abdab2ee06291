"""The prefix cache: putting a prompt's KV state back before an answer, keeping the sequence
after one.

After every answer (never before it) the sequence's state is kept: in the RAM tier at once,
on disk by the saver, indexed under the digests of its prefixes (see prefixes.py). Before an
answer the slot's own cells count first, then the RAM tier and then the disk are asked for a
longer start of the prompt, each within the principal's own namespace (a slot another
principal used starts empty). A saved sequence that a newer one extends is dropped: the
newer one serves every prompt the older one would. Sessions are names for conversations:
their messages live in the index, their state is found like any other prompt's.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from edgeinf.engine.engine import Engine, SeqState, common_prefix
from edgeinf.sessions.kvfile import Identity, KVState
from edgeinf.sessions.prefixes import MIN_TOKENS, covered, digests, key_of, marks, namespace
from edgeinf.sessions.ramtier import RamTier, Snapshot
from edgeinf.sessions.saver import Saver
from edgeinf.sessions.store import SessionStore
from edgeinf.types import Message

Tier = Literal["slot", "ram", "disk"]  # where a prompt's cached tokens were
TIERS: tuple[Tier, ...] = get_args(Tier)
log = logging.getLogger("edgeinf.sessions")


@dataclass
class Restore:
    """Where a prompt's cached tokens came from."""

    source: Tier | Literal["none"]
    tokens: int
    seconds: float = 0.0  # spent finding, reading, checking and loading saved state


@dataclass(frozen=True)
class Named:
    """A turn of a named session: its messages are kept with the state."""

    session_id: str
    model: str
    messages: tuple[Message, ...]


class SessionKeeper:
    def __init__(
        self, engine: Engine, store: SessionStore, identity: Identity, ram_bytes: int
    ) -> None:
        self.engine, self.store, self.identity = engine, store, identity
        self.ram = RamTier(ram_bytes)
        self.saver = Saver()
        self._last_owner: dict[int, str] = {}  # sequence id: whose tokens its cells hold
        # Bytes of states waiting for the saver: at most the RAM tier's budget (or one
        # state), so a disk slower than the answers never holds more memory than that.
        self._unwritten = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.saver.close()

    def restore(self, seq: SeqState, owner: str, prompt: list[int], ends: Sequence[int]) -> Restore:
        """Load into `seq` the saved state of `owner` that covers most of `prompt`."""
        started = time.perf_counter()
        found = self._restore(seq, owner, prompt, ends)
        found.seconds = time.perf_counter() - started
        return found

    def claim(self, seq: SeqState, owner: str) -> None:
        """Give the slot to `owner`: emptied when another principal's cells are in it (a
        reused slot would tell that another sent this prompt)."""
        if self._last_owner.get(seq.seq_id, owner) != owner:
            self.engine.forget(seq)
        self._last_owner[seq.seq_id] = owner

    def _restore(
        self, seq: SeqState, owner: str, prompt: list[int], ends: Sequence[int]
    ) -> Restore:
        self.claim(seq, owner)
        in_slot = common_prefix(seq.tokens, prompt)
        seed = namespace(owner, self.identity)
        at = digests(seed, prompt, marks(len(prompt), ends))
        wanted = {digest: n for digest, n in at.items() if n > in_slot}
        held = self.ram.find(wanted)
        if held is not None and self._load(seq, held[0].state, prompt, in_slot):
            key = held[0].key
            self.saver.submit(lambda: self.store.index.touch_snapshot(key))  # disk LRU too
            return Restore("ram", common_prefix(seq.tokens, prompt))
        try:
            found = self.store.index.find_snapshot(owner, wanted)
        except sqlite3.Error as exc:  # a failing disk: the answer is prefilled, as if missed
            log.warning("the prefix cache's index cannot be read (%s); prefilling", exc)
            found = None
        if found is not None:
            key = found[0]
            state = self.store.read_kv(self.store.snapshot_path(key), self.identity)
            if state is None:  # gone, damaged (now quarantined) or not ours: of no more use
                self.saver.submit(lambda: self.store.evict(key))
            elif self._load(seq, state, prompt, in_slot):
                self.saver.submit(lambda: self.store.index.touch_snapshot(key))
                return Restore("disk", common_prefix(seq.tokens, prompt))
        return Restore("slot" if in_slot else "none", common_prefix(seq.tokens, prompt))

    def _load(self, seq: SeqState, state: KVState, prompt: list[int], better_than: int) -> bool:
        if common_prefix(state.tokens, prompt) <= better_than:
            return False
        return self.engine.import_seq(seq, state.payload, state.tokens)

    def save(
        self,
        seq: SeqState,
        owner: str,
        ends: Sequence[int],
        named: Named | None,
        result: dict[str, float],
    ) -> None:
        """Snapshot the sequence now (on the decode thread); write it in the background.
        `result` gets the time the snapshot took, then the bytes written and the time that
        took, once they are."""
        tokens = tuple(seq.tokens)
        if len(tokens) < MIN_TOKENS:
            if named is not None:
                self.record(owner, named)
            return
        seed = namespace(owner, self.identity)
        at = digests(seed, tokens, marks(len(tokens), ends))
        key = key_of(seed, tokens)
        started = time.perf_counter()
        state = KVState(self.identity, tokens, self.engine.export_seq(seq))
        result["export_s"] = time.perf_counter() - started  # the decode loop waited this long
        snapshot = Snapshot(key, owner, state, at)
        self.ram.put(snapshot, replacing=covered(seed, tokens, self.ram.held()))
        with self._lock:
            waiting = self._unwritten
            behind = waiting > 0 and waiting + snapshot.size > self.ram.budget_bytes
            if not behind:
                self._unwritten += snapshot.size
        if behind:  # the disk cannot keep up: this state stays in RAM only
            log.info("%d bytes wait to be saved; this state is kept in RAM only", waiting)
            if named is not None:
                self.record(owner, named)
            return

        def job() -> None:
            started = time.perf_counter()
            try:
                if named is not None:
                    self._keep_messages(owner, named)
                written = self.store.save_snapshot(snapshot)
            finally:
                with self._lock:
                    self._unwritten -= snapshot.size
            result["saved_bytes"], result["write_s"] = written, time.perf_counter() - started
            if not written:
                return
            if named is not None:
                self.store.index.set_kv(owner, named.session_id, key, len(tokens), written)
            self._drop_covered(seed, snapshot)

        self.saver.submit(job)

    def _drop_covered(self, seed: bytes, snapshot: Snapshot) -> None:
        """Evict the saved sequences whose tokens all start `snapshot`'s."""
        tokens = snapshot.state.tokens
        sharing = self.store.index.sharing(snapshot.key, snapshot.marks, len(tokens))
        for key in covered(seed, tokens, sharing):
            self.store.evict(key, covered_by=snapshot.key)

    def _keep_messages(self, owner: str, named: Named) -> None:
        self.store.index.put_messages(owner, named.session_id, named.model, named.messages)

    def record(self, owner: str, named: Named) -> None:
        """Keep the messages of a turn alone (in the background): one answered elsewhere,
        whose state the saved one of the turn before still mostly covers, or one too short
        to be worth keeping the state of."""
        self.saver.submit(lambda: self._keep_messages(owner, named))
