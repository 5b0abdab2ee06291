"""ChatService: a conversation turn, from messages to a streamed answer, over one engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.catalog.store import LocalModel
from edgeinf.config import Settings
from edgeinf.engine.batcher import Batcher, Job
from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.generate import Generation
from edgeinf.engine.native import library_version
from edgeinf.engine.options import EngineOptions
from edgeinf.sessions.ids import LOCAL_OWNER, check_session_id
from edgeinf.sessions.keeper import Restore, SessionKeeper
from edgeinf.sessions.kvfile import Identity
from edgeinf.sessions.store import SessionStore
from edgeinf.speculate import Speculation
from edgeinf.types import Completion, Message, SamplingParams


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    sampling: SamplingParams
    session_id: str | None = None
    owner: str = LOCAL_OWNER

    def __post_init__(self) -> None:
        if self.session_id is not None:
            check_session_id(self.session_id)


@dataclass
class Turn:
    """One answer and where its prompt's KV state came from."""

    request: ChatRequest
    restore: Restore
    n_prompt: int
    completion: Completion | None = None
    batched_reuse: int = 0
    saved: dict[str, int] = field(default_factory=dict)
    drafted: int = 0  # speculative tokens proposed and accepted (batched turns)
    accepted: int = 0

    @property
    def reused_tokens(self) -> int:
        return self.batched_reuse

    @property
    def restored_tokens(self) -> int:
        """Prompt tokens whose KV state came from disk rather than a prefill."""
        if self.restore.source not in ("session", "prefix"):
            return 0
        return min(self.restore.tokens, self.reused_tokens)

    @property
    def prefilled_tokens(self) -> int:
        return self.n_prompt - self.reused_tokens + self.restore.prefilled


@dataclass
class LocalTurn(Turn):
    """The in-process path: iterate `generation`, then call `ChatService.finish`."""

    generation: Generation = field(kw_only=True)

    @property
    def reused_tokens(self) -> int:
        return self.generation.reused_tokens


class ChatService:
    """Owns the loaded engine and the session store; callers never touch llama.cpp."""

    def __init__(self, settings: Settings, model_ref: str | None = None, parallel: int = 1) -> None:
        self.settings = settings
        self.model: LocalModel = resolve_verified(
            open_store(settings), model_ref or settings.default_model
        )
        self.opts = EngineOptions.from_settings(settings, n_seq_max=parallel)
        if settings.speculative != "off" and settings.speculative_exact:
            self.opts = replace(self.opts, exact=True)
        self.engine = Engine(self.model.path, self.opts)
        self.batcher: Batcher | None = None
        self._seq = SeqState(seq_id=0)
        self.speculation = self._speculation(settings)

    def _speculation(self, settings: Settings) -> Speculation:
        draft: Engine | None = None
        draft_id = "-"
        if settings.draft_model and settings.speculative in ("auto", "draft"):
            found = resolve_verified(open_store(settings), settings.draft_model)
            draft = Engine(found.path, self.opts)
            draft_id = found.sha256 or found.name
        try:
            return Speculation(
                settings, self.engine, self.model.sha256 or self.model.name, draft, draft_id
            )
        except BaseException:
            if draft is not None:
                draft.close()
            raise

    @cached_property
    def keeper(self) -> SessionKeeper:
        store = SessionStore(self.settings.state_dir, self.settings.sessions_budget_mb << 20)
        return SessionKeeper(self.engine, store, self.identity)

    @cached_property
    def identity(self) -> Identity:
        sha = self.model.digest()
        library = library_version()
        if self.engine.sliding_window:  # saved from a full-window cache (native.load)
            library += " swa-full"
        return Identity(sha, library, self.engine.seq_ctx, self.opts.kv_type)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.stop(drain_s=0)
        if "keeper" in self.__dict__:
            self.keeper.close()
            self.keeper.store.close()
        self.speculation.close()
        self.engine.close()

    def history(self, session_id: str, owner: str = LOCAL_OWNER) -> tuple[Message, ...]:
        row = self.keeper.store.get(session_id, owner)
        return row.messages if row else ()

    def respond(self, request: ChatRequest) -> LocalTurn:
        prompt, prefix = self.engine.chat_prompt(request.messages)
        self.engine.check_prompt(len(prompt), request.sampling.max_tokens)
        make_decoder = self.speculation.decoder_for(request.sampling)  # before any restore
        restore = self.keeper.restore(self._seq, request.owner, request.session_id, prompt, prefix)
        generation = Generation(
            self.engine, self._seq, prompt, self._chat_sampling(request.sampling), make_decoder
        )
        return LocalTurn(request, restore, len(prompt), generation=generation)

    def _chat_sampling(self, sampling: SamplingParams) -> SamplingParams:
        if self.engine.template.stops:  # a base model's transcript must end with its turn
            return replace(sampling, stop=(*sampling.stop, *self.engine.template.stops))
        return sampling

    def start_batching(self, max_queue: int) -> Batcher:
        """Serve many requests at once: sequences are decoded together from now on. The
        costs that decide n-gram drafting are measured first (once per device), while no
        request can be waiting on the engine."""
        if self.speculation.usable:
            self.speculation.cost()  # now: later it would run beside the engine thread
        self.batcher = Batcher(
            self.engine, self.opts.n_seq_max, max_queue, self.speculation.max_batch()
        )
        return self.batcher

    def submit(
        self,
        request: ChatRequest,
        on_text: Callable[[str], None],
        on_done: Callable[[Turn | None, BaseException | None], None],
        prompt: tuple[list[int], int] | None = None,
        deadline: float | None = None,
    ) -> Job:
        """Queue a turn for the batcher; callbacks run on its thread and must not block.

        `prompt` gives raw (tokens, shared-prefix length) instead of the chat template.
        """
        assert self.batcher is not None, "call start_batching first"
        tokens, prefix = prompt or self.engine.chat_prompt(request.messages)
        self.engine.check_prompt(len(tokens), request.sampling.max_tokens)
        turn = Turn(request, Restore("none", 0), len(tokens))

        def prepare(seq: SeqState) -> None:
            turn.restore = self.keeper.restore(
                seq, request.owner, request.session_id, tokens, prefix
            )

        def finish(seq: SeqState, completion: Completion) -> None:
            turn.completion = completion
            if request.session_id is not None:
                messages = (*request.messages, Message("assistant", completion.text))
                self.keeper.save(
                    seq, request.owner, request.session_id, self.model.name, messages, turn.saved
                )

        def done(completion: Completion | None, error: BaseException | None) -> None:
            turn.batched_reuse = job.reused_tokens
            turn.drafted, turn.accepted = job.drafted, job.accepted
            on_done(turn if completion is not None else None, error)

        sampling = request.sampling if prompt else self._chat_sampling(request.sampling)
        job = Job(tokens, sampling, on_text, done, prepare, finish, deadline)
        job.lane = self.speculation.ngram_lane(sampling)
        self.batcher.submit(job)
        return job

    def finish(self, turn: LocalTurn) -> None:
        """After the answer was delivered: keep the conversation (in the background)."""
        turn.completion = turn.generation.completion
        req, completion = turn.request, turn.completion
        if req.session_id is None or completion is None:
            return
        messages = (*req.messages, Message("assistant", completion.text))
        self.keeper.save(
            self._seq, req.owner, req.session_id, self.model.name, messages, turn.saved
        )

    def record(self, request: ChatRequest, answer: str) -> None:
        """Keep a turn the remote model answered in the session's history."""
        if request.session_id is not None:
            messages = (*request.messages, Message("assistant", answer))
            self.keeper.record(request.owner, request.session_id, self.model.name, messages)

    def flush(self) -> None:
        """Wait for background saves (before a short-lived process exits)."""
        if "keeper" in self.__dict__:
            self.keeper.saver.flush()


def conversation(
    user: str, system: str | None = None, history: tuple[Message, ...] = ()
) -> tuple[Message, ...]:
    """The messages of the next turn: history, with `system` replacing its system prompt."""
    rest = tuple(m for m in history if m.role != "system")
    head = (Message("system", system),) if system else history[: len(history) - len(rest)]
    return (*head, *rest, Message("user", user))
