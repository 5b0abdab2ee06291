"""ChatService: the loaded model and its local answers, from messages to streamed text."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.catalog.store import LocalModel
from edgeinf.config import Settings
from edgeinf.engine.batcher import Batcher
from edgeinf.engine.callsyntax import Syntax
from edgeinf.engine.decoder import DecodeThread
from edgeinf.engine.engine import Engine, Prompt, SeqState, footprint
from edgeinf.engine.grammar import check_grammar
from edgeinf.engine.jobs import Job, QueueFullError
from edgeinf.engine.native import library_version
from edgeinf.engine.options import EngineOptions, default_gpu_layers
from edgeinf.engine.reasoning import after_reasoning
from edgeinf.engine.sampling import check_bias
from edgeinf.engine.template import read_template
from edgeinf.engine.toolcalls import shape, triggers
from edgeinf.engine.vocab import Vocab
from edgeinf.errors import InvalidRequestError
from edgeinf.guard import check_fits, physical_cores
from edgeinf.service.context import Trimmed, fit, shifted
from edgeinf.service.fill import Fill, fill_prompt, insertion
from edgeinf.service.local_answer import ChatRequest, LocalAnswer, LocalResult
from edgeinf.service.summary import SUMMARY_TOKENS, Compactor
from edgeinf.sessions.ids import LOCAL_OWNER
from edgeinf.sessions.keeper import Named, SessionKeeper
from edgeinf.sessions.kvfile import Identity
from edgeinf.sessions.row import SessionRow
from edgeinf.sessions.store import SessionStore
from edgeinf.speculate import Speculation
from edgeinf.types import Message, SamplingParams, ToolCall


class ChatService:
    """Owns the loaded engine; keeps conversations in the process's session store."""

    def __init__(
        self,
        settings: Settings,
        model_ref: str | None = None,
        parallel: int = 1,
        store: SessionStore | None = None,
        max_queue: int = 4,
        decoder: DecodeThread | None = None,
    ) -> None:
        """`parallel` answers are decoded together, `max_queue` more wait for a slot; the
        decode loop runs on `decoder` (shared with other models) or a thread of its own."""
        self.settings = settings
        self.model: LocalModel = resolve_verified(
            open_store(settings), model_ref or settings.default_model
        )
        self.opts = engine_options(settings, n_seq_max=parallel)
        if (file := settings.preset(self.model.name).chat_template_file) is not None:
            self.opts = replace(self.opts, chat_template=read_template(file))
        if settings.speculative != "off" and settings.speculative_exact:
            self.opts = replace(self.opts, exact=True)
        check_fits(*footprint(self.model.path, self.opts))  # refused with the numbers
        self._store, self._owns_store = store, store is None
        self.batcher = Batcher.owning(
            lambda: self._make_engines(settings), self.opts.n_seq_max, max_queue, decoder
        )
        self.batcher.prefill_chunk = settings.prefill_chunk or None
        if self.speculation.drafter is not None:
            self.batcher.companions = [self.speculation.drafter.engine]

    def _make_engines(self, settings: Settings) -> tuple[Engine, int | None]:
        """On the decode loop's own thread (see Batcher.owning): the engine, the draft model,
        and the costs that decide drafting (measured once per device)."""
        engine = Engine(self.model.path, self.opts)
        try:
            speculation = self._speculation(settings, engine)
            try:
                if speculation.usable:
                    speculation.cost()
            except BaseException:
                speculation.close()
                raise
        except BaseException:
            engine.close()
            raise
        self.engine, self.speculation = engine, speculation
        return engine, speculation.max_batch()

    def _speculation(self, settings: Settings, engine: Engine) -> Speculation:
        draft: Engine | None = None
        draft_id = "-"
        if settings.draft_model and settings.speculative in ("auto", "draft"):
            found = resolve_verified(open_store(settings), settings.draft_model)
            check_fits(*footprint(found.path, self.opts))
            draft = Engine(found.path, self.opts)
            draft_id = found.sha256 or found.name
        try:
            return Speculation(
                settings, engine, self.model.sha256 or self.model.name, draft, draft_id
            )
        except BaseException:
            if draft is not None:
                draft.close()
            raise

    @cached_property
    def keeper(self) -> SessionKeeper:
        if self._store is None:
            self._store = open_sessions(self.settings)
        return SessionKeeper(self.engine, self._store, self.identity, self.settings.cache_ram_bytes)

    @cached_property
    def compactor(self) -> Compactor:
        return Compactor(self.engine, self.keeper.store.index, self._summarize)

    def _summarize(self, owner: str, messages: tuple[Message, ...]) -> str:
        """The model's greedy answer to `messages`, not kept: a summary of older turns."""
        sampling = SamplingParams(max_tokens=SUMMARY_TOKENS, temperature=0.0)
        ask = ChatRequest(messages, sampling, owner=owner, context_policy="error", kept=False)
        return "".join(self.local(ask))

    @cached_property
    def identity(self) -> Identity:
        sha = self.model.digest()
        library = library_version()
        if self.engine.sliding_window:  # saved from a full-window cache (native.load)
            library += " swa-full"
        return Identity(sha, library, self.engine.seq_ctx, self.opts.kv_type)

    @property
    def load_s(self) -> float:
        return self.engine.load_s

    @property
    def context_length(self) -> int:
        return self.engine.seq_ctx

    def card(self) -> dict[str, object]:
        """What a client may know of the loaded model."""
        info = self.engine.info
        return {
            "id": self.model.name,
            "architecture": info.architecture,
            "quantization": info.quantization,
            "context_length": self.engine.seq_ctx,
        }

    @property
    def syntax(self) -> Syntax:
        """How the model writes tool calls (engine.callsyntax)."""
        return self.engine.template.syntax

    def check_thinking(self, thinking: bool | None, param: str) -> None:
        """Refuse, naming the request's `param`, reasoning switched on for a model that does
        not reason, or off for one whose template cannot switch it off."""
        template = self.engine.template
        if thinking and not template.thinks:
            raise InvalidRequestError(
                f"{param}: {self.model.name} does not reason before it answers (its chat "
                "template has no <think> block); leave it out",
                param=param,
            )
        if thinking is False and template.thinks and not template.switchable:
            raise InvalidRequestError(
                f"{param}: {self.model.name} always reasons before it answers (its chat "
                "template cannot switch it off); leave it out, the reasoning comes apart "
                "from the answer",
                param=param,
            )

    def close(self) -> None:
        self.batcher.stop(drain_s=0)
        if "keeper" in self.__dict__:
            self.keeper.close()
            if self._owns_store and self._store is not None:
                self._store.close()
        self.speculation.close()
        self.engine.close()

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        vocab = self.engine.vocab
        return vocab.tokenize(text, add_bos=add_special and vocab.add_bos, special=parse_special)

    def piece(self, token: int) -> bytes:
        """The bytes of one token of this model's (control tokens as their text)."""
        if not 0 <= token < self.engine.vocab.n_tokens:
            raise InvalidRequestError(
                f"tokens: {token} is not a token of {self.model.name} (0 to "
                f"{self.engine.vocab.n_tokens - 1}); tokenize the text with the same model",
                param="tokens",
            )
        return self.engine.vocab.piece(token, special=True)

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode(errors="replace")

    def sessions(self, owner: str = LOCAL_OWNER) -> list[SessionRow]:
        return self.keeper.store.owned_by(owner)

    def history(self, session_id: str, owner: str = LOCAL_OWNER) -> tuple[Message, ...]:
        row = self.keeper.store.get(owner, session_id)
        return row.messages if row else ()

    def local(
        self,
        request: ChatRequest,
        raw_prompt: str | None = None,
        deadline: float | None = None,
        fill: Fill | None = None,
    ) -> LocalAnswer:
        """Start a local answer; `raw_prompt` is text to continue instead of the chat
        template's rendering of the messages, `fill` text to fill in (the model's FIM
        prompt; its slot is all its cache, kept runs of it may move: see Fill)."""
        trimmed, n_keep = Trimmed(), None
        sampling, thinking = request.sampling, request.thinking
        if fill is not None:
            tokens, cut = fill_prompt(self.engine, self.model.name, fill, sampling.max_tokens)
            prompt, trimmed = Prompt(tokens), Trimmed(0, cut)
            sampling = replace(sampling, insertion=insertion(fill))
        elif raw_prompt is not None:
            vocab = self.engine.vocab
            prompt = Prompt(vocab.tokenize(raw_prompt, add_bos=vocab.add_bos))
        elif (policy := request.context_policy or self.settings.context_policy) == "truncate":
            prompt, trimmed = fit(
                self.engine, request.messages, request.tools, sampling.max_tokens, thinking
            )
        elif policy == "summarize":
            prompt, trimmed = self.compactor.fit(
                request.owner, request.messages, request.tools, sampling.max_tokens, thinking
            )
        elif policy == "shift":
            if not self.engine.can_shift:
                raise InvalidRequestError(
                    "context_policy: this model's cache cannot shift; use truncate or summarize",
                    param="context_policy",
                )
            prompt, trimmed, n_keep = shifted(
                self.engine, request.messages, request.tools, sampling.max_tokens, thinking
            )
        else:
            prompt = self.engine.chat_prompt(request.messages, request.tools, thinking)
        self.engine.check_prompt(len(prompt.tokens), sampling.max_tokens)
        sampling = with_tools(replace(request, sampling=sampling), self.engine.vocab, self.syntax)
        sampling = after_reasoning(sampling, prompt.start)
        check_bias(sampling, self.engine.vocab.n_tokens)  # refused here, not on the decode loop
        check_grammar(self.engine.vocab, sampling)
        if raw_prompt is None and fill is None and self.engine.template.stops:
            # A base model's transcript must end with its turn.
            sampling = replace(sampling, stop=(*sampling.stop, *self.engine.template.stops))
        return LocalAnswer(self, request, prompt, trimmed, sampling, deadline, fill, n_keep)

    def warm(self, request: ChatRequest) -> Job | None:
        """Prefill a slot with the prompt of a message being typed, all but its last token
        (which the answer evaluates for its logits), so that sending it costs one token;
        if more is typed, only what changed is prefilled again. Cancel the job when the
        text changes. None when there is nothing to do or no room for it now."""
        prompt = self.engine.chat_prompt(request.messages, request.tools, request.thinking)
        tokens = prompt.tokens[:-1]
        if len(tokens) < 2 or len(tokens) + 1 > self.engine.seq_ctx:
            return None

        def prepare(seq: SeqState) -> None:
            self.keeper.restore(seq, request.owner, tokens, prompt.ends)

        job = Job(
            tokens, request.sampling, lambda _: None, lambda *_: None, prepare, warm=True,
            owner=request.owner,
        )  # fmt: skip
        try:
            self.batcher.submit(job)
        except QueueFullError:  # answers come first
            return None
        return job

    def stop_batching(self, drain_s: float) -> None:
        """Admit nothing more; running answers get `drain_s` to finish, then end."""
        self.batcher.stop(drain_s)

    @property
    def healthy(self) -> bool:
        """False once the decode loop stopped for good (an error outside any request)."""
        return self.batcher.alive

    def depth(self) -> tuple[int, int]:
        """(running, waiting) answers."""
        return self.batcher.depth()

    def limit_load(self, parallel: int, *, drafting: bool, threads: int | None = None) -> None:
        """Decode at most `parallel` sequences together, drafting or not (the machine strains),
        on `threads` threads (other processes use some of the cores; None: as configured)."""
        self.batcher.limit, self.batcher.drafting = parallel, drafting
        self.batcher.threads = threads

    def keep(
        self, seq: SeqState, request: ChatRequest, prompt: Prompt, result: LocalResult
    ) -> None:
        """After a local answer: keep its KV state in the prefix cache, and a named session's
        messages (in the background)."""
        named = self._named(request, result.said.answer)
        if request.kept and (named is not None or self.settings.prefix_cache):
            self.keeper.save(seq, request.owner, prompt.ends, named, result.saved)

    def record(self, request: ChatRequest, answer: str, calls: tuple[ToolCall, ...] = ()) -> None:
        """Keep a turn the remote model answered (its text and calls) in the session."""
        if (named := self._named(request, answer, calls)) is not None:
            self.keeper.record(request.owner, named)

    def _named(
        self, request: ChatRequest, answer: str, calls: tuple[ToolCall, ...] = ()
    ) -> Named | None:
        if request.session_id is None:
            return None
        messages = (*request.messages, Message("assistant", answer, calls))
        return Named(request.session_id, self.model.name, messages)

    def summaries(self) -> dict[str, int]:
        """Summaries of older turns written so far, by whether a request waited for them."""
        return dict(self.compactor.written) if "compactor" in self.__dict__ else {}

    def draft_history(self) -> tuple[int, int]:
        """(tokens of earlier answers n-gram drafts may copy from, their index's windows)."""
        return self.speculation.histories.size()

    def cache_ram_bytes(self) -> int:
        """KV state the prefix cache's RAM tier holds now."""
        return self.keeper.ram.used_bytes if "keeper" in self.__dict__ else 0

    def flush(self) -> None:
        """Wait for background saves (before a short-lived process exits)."""
        if "keeper" in self.__dict__:
            self.keeper.saver.flush()


def with_tools(request: ChatRequest, vocab: Vocab, syntax: Syntax) -> SamplingParams:
    """The sampling of an answer that may call the request's tools: through the grammar of
    their calls, from the first token or once the model opens a call."""
    sampling = request.sampling
    calls = shape(request.tools, request.tool_choice, syntax)
    if calls is None:
        return sampling
    if sampling.grammar is not None:
        raise InvalidRequestError(
            "tools: a request with tools may not also bring response_format or grammar; "
            "send one or the other",
            param="tools",
        )
    patterns, tokens = triggers(vocab, syntax) if calls.lazy else ((), ())
    return replace(
        sampling, grammar=calls.grammar, grammar_triggers=patterns, grammar_trigger_tokens=tokens
    )


def engine_options(settings: Settings, n_seq_max: int = 1) -> EngineOptions:
    """The engine's plain options from the app's settings."""
    threads = settings.threads or physical_cores()
    return EngineOptions(
        n_ctx=settings.n_ctx * n_seq_max,  # each sequence gets the configured context
        n_batch=settings.n_batch,
        n_seq_max=n_seq_max,
        threads=threads,
        threads_batch=threads,
        n_gpu_layers=(
            settings.n_gpu_layers if settings.n_gpu_layers is not None else default_gpu_layers()
        ),
        kv_type=settings.kv_type,
    )


def open_sessions(settings: Settings) -> SessionStore:
    """The session store of this user's state directory."""
    return SessionStore(settings.state_dir, settings.sessions_budget_mb << 20)


def conversation(
    user: str, system: str | None = None, history: tuple[Message, ...] = ()
) -> tuple[Message, ...]:
    """The messages of the next turn: history, with `system` replacing its system prompt."""
    rest = tuple(m for m in history if m.role != "system")
    head = (Message("system", system),) if system else history[: len(history) - len(rest)]
    return (*head, *rest, Message("user", user))
