"""Putting a conversation's KV state back before a turn, and keeping it after one."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

from edgeinf.engine.engine import Engine, SeqState, common_prefix
from edgeinf.sessions.kvfile import Identity, KVState
from edgeinf.sessions.saver import Saver
from edgeinf.sessions.store import SessionStore
from edgeinf.types import Message

MIN_SHARED_PREFIX = 16  # shorter system prompts cost less to prefill than to look up


@dataclass
class Restore:
    """Where a turn's cached tokens came from."""

    source: str  # "memory", "session", "prefix" or "none"
    tokens: int
    prefilled: int = 0  # tokens prefilled here to store a new shared prefix
    seconds: float = 0.0  # spent finding, reading, checking and loading saved state


class SessionKeeper:
    def __init__(self, engine: Engine, store: SessionStore, identity: Identity) -> None:
        self.engine, self.store, self.identity = engine, store, identity
        self.saver = Saver()

    def close(self) -> None:
        self.saver.close()

    def prefix_key(self, tokens: list[int]) -> str:
        blob = json.dumps([asdict(self.identity), tokens], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def restore(
        self, seq: SeqState, owner: str, session_id: str | None, prompt: list[int], prefix: int
    ) -> Restore:
        """Load into `seq` the saved state that covers most of `prompt`."""
        started = time.perf_counter()
        found = self._restore(seq, owner, session_id, prompt, prefix)
        found.seconds = time.perf_counter() - started
        return found

    def _restore(
        self, seq: SeqState, owner: str, session_id: str | None, prompt: list[int], prefix: int
    ) -> Restore:
        in_memory = common_prefix(seq.tokens, prompt)
        if session_id is not None:
            row = self.store.get(owner, session_id)
            if (
                row
                and row.kv_tokens > in_memory
                and self._load_session(seq, owner, session_id, prompt, in_memory)
            ):
                return Restore("session", common_prefix(seq.tokens, prompt))
        if in_memory >= max(prefix, 1):
            return Restore("memory", in_memory)
        if prefix >= MIN_SHARED_PREFIX:
            key = self.prefix_key(prompt[:prefix])
            state = self.store.read_kv(self.store.prefix_path(key), self.identity)
            if state and self.engine.import_seq(seq, state.payload, state.tokens):
                self.store.index.touch_prefix(key)
                return Restore("prefix", prefix)
            self._keep_prefix(seq, key, prompt[:prefix])
            return Restore("none", in_memory, prefilled=prefix - in_memory)
        return Restore("none", common_prefix(seq.tokens, prompt))

    def _load_session(
        self, seq: SeqState, owner: str, session_id: str, prompt: list[int], better_than: int
    ) -> bool:
        state = self.store.read_kv(self.store.kv_path(owner, session_id), self.identity)
        if state is None or common_prefix(state.tokens, prompt) <= better_than:
            return False
        return self.engine.import_seq(seq, state.payload, state.tokens)

    def _keep_prefix(self, seq: SeqState, key: str, tokens: list[int]) -> None:
        """Prefill the shared prefix on its own and store a copy of its state."""
        self.engine.trim(seq, common_prefix(seq.tokens, tokens))
        self.engine.prefill(seq, tokens[len(seq.tokens) :])
        state = KVState(self.identity, tuple(tokens), self.engine.export_seq(seq))
        self.saver.submit(lambda: self.store.save_prefix(key, state))

    def save(
        self,
        seq: SeqState,
        owner: str,
        session_id: str,
        model: str,
        messages: tuple[Message, ...],
        result: dict[str, int],
    ) -> None:
        """Snapshot the sequence now; write messages and state in the background."""
        state = KVState(self.identity, tuple(seq.tokens), self.engine.export_seq(seq))

        def job() -> None:
            self.store.index.put_messages(owner, session_id, model, messages)
            result["saved_bytes"] = self.store.save_session_kv(owner, session_id, state)

        self.saver.submit(job)

    def record(
        self, owner: str, session_id: str, model: str, messages: tuple[Message, ...]
    ) -> None:
        """Keep the messages of a turn answered elsewhere; the saved state still covers their
        common prefix, so the next local turn prefills only what is new."""
        self.saver.submit(lambda: self.store.index.put_messages(owner, session_id, model, messages))
