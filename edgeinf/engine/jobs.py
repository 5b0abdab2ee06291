"""What the decode loop is asked to do (a Job), and why it may refuse."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeinf.engine.emitter import Emitter
from edgeinf.engine.engine import SeqState
from edgeinf.engine.lanes import Lane
from edgeinf.errors import EdgeinfError
from edgeinf.types import Completion, SamplingParams, TokenLogprob

STOPPED = "the decode loop stopped after an internal error (see the log); restart the server"


class QueueFullError(EdgeinfError):
    code = "server_busy"


class EngineStoppedError(EdgeinfError):
    """The decode loop stopped after an unexpected error; nothing more can be answered."""

    code = "engine_stopped"


@dataclass
class Job:
    """A request for the batcher; callbacks run on the engine thread and must not block."""

    prompt: list[int]
    params: SamplingParams
    on_text: Callable[[str], None]
    on_done: Callable[[Completion | None, BaseException | None], None]
    # Runs on the engine thread before prefill (restore saved state into the slot) and
    # after the answer (save it); both may be None.
    prepare: Callable[[SeqState], None] | None = None
    finish: Callable[[SeqState, Completion], None] | None = None
    deadline: float | None = None  # time.monotonic() after which the answer is cut
    cancelled: threading.Event = field(default_factory=threading.Event)
    reused_tokens: int = 0
    lanes: list[Lane] = field(default_factory=list)  # where its drafts may come from
    drafted: int = 0
    accepted: int = 0
    # Only prefill the prompt into a slot, generating nothing, for a later job that starts
    # the same way (a message being typed): it ends without a completion.
    warm: bool = False
    # Cached runs of at least this many tokens may move to where the prompt has them
    # (engine.chunks: fast, not exact); 0: only the cached start of the prompt is reused.
    runs: int = 0
    cache: bool = True  # False: prefill the whole prompt, whatever the slot holds
    # Context shift (llama.cpp's): when the answer fills the context, half of the cells after
    # the first `n_keep` go and the rest move back; None: the answer ends there (length).
    n_keep: int | None = None
    shifted: int = 0  # tokens the shifts discarded
    # The log-probabilities of the tokens behind each piece of text, handed over before it
    # (a stream that reports them); None: nobody reads them while the answer is written.
    on_scored: Callable[[tuple[TokenLogprob, ...]], None] | None = None
    # Jobs of one owner (a principal) may share the cells of their prompts' common start
    # (engine.sharing); None: this job shares with none.
    owner: str | None = None

    def write(self, text: str, emitter: Emitter) -> None:
        """Hand over text the answer let out, after its tokens' log-probabilities."""
        if self.on_scored is not None and (scored := emitter.scored()):
            self.on_scored(scored)
        self.on_text(text)
