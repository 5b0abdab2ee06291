"""The models one server holds: loaded on demand by name, at most `max_loaded` at once and
never more than their memory budget admits, evicted least recently used, unloaded after
their keep-alive. One decode thread runs every model's llama.cpp work (engine.decoder)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from edgeinf.catalog import open_store, verified
from edgeinf.catalog.store import LocalModel
from edgeinf.config import Settings
from edgeinf.engine.decoder import DecodeThread
from edgeinf.engine.embedder import Embedded, GgufEmbedder
from edgeinf.engine.engine import footprint
from edgeinf.errors import (
    EdgeinfError,
    InsufficientMemoryError,
    ModelFileError,
    ModelNotFoundError,
)
from edgeinf.guard import GIB, available_memory, physical_cores
from edgeinf.route.dispatch import encoder_files
from edgeinf.route.encoder import ENCODER_MODEL, SentenceEncoder
from edgeinf.server.wire import FOREVER_S
from edgeinf.service.local import ChatService, engine_options
from edgeinf.service.turn import TurnPipeline
from edgeinf.sessions.store import SessionStore

log = logging.getLogger("edgeinf.server")
MARGIN = 256 << 20  # kept free beside what the models take (as guard.check_fits does)
GRACE_S = 0.25  # a model that just handed out its pipeline is not evicted before its request starts
EMBED_OVERHEAD = 64 << 20  # an embedding model's memory beside its weights
EVICT_WAIT_S = 60.0  # how long a load waits for a busy model to finish before giving up
UNLOAD_DRAIN_S = 10.0  # what an unload asked for lets running answers finish in

Build = Callable[[ChatService], TurnPipeline]


Kind = Literal["chat", "embed"]


class Embedder(Protocol):
    dims: int

    def embed(self, texts: list[str], truncate: bool = True) -> Embedded: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class Resident:
    """One model in the server, for chat or for embeddings: loading, loaded, failed to
    load, or gone (evicted)."""

    model: LocalModel
    kind: Kind
    settings: Settings  # the server's, with the model's preset applied
    need: int = 0  # bytes admitted for it: weights + KV cache
    pipeline: TurnPipeline | None = None  # a chat model's
    embedder: Embedder | None = None  # an embedding model's
    embedding: int = 0  # embedding requests being answered
    error: str | None = None
    gone: bool = False
    draining: bool = False  # to be evicted once idle: new requests wait for its next load
    keep_alive_s: float | None = None  # the last request's; None: the settings'
    last_used: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def key(self) -> tuple[Kind, str]:
        return self.kind, self.model.name

    @property
    def loaded(self) -> bool:
        return self.pipeline is not None or self.embedder is not None

    @property
    def busy(self) -> bool:
        if not self.loaded:
            return False
        if time.monotonic() - self.last_used < GRACE_S or self.embedding:
            return True
        return self.pipeline is not None and self.pipeline.service.depth() != (0, 0)

    @property
    def keep_s(self) -> float:
        """Idle seconds before it is unloaded (inf: never; 0: once its answers end)."""
        if self.keep_alive_s is not None:
            return self.keep_alive_s
        return self.settings.keep_alive_s or math.inf

    def expires(self) -> float | None:
        """When it will be unloaded for idleness (time.time()); None: never."""
        if self.keep_s >= FOREVER_S:
            return None
        return time.time() + max(0.0, self.keep_s - (time.monotonic() - self.last_used))


class Fleet:
    """The residents of one server, by kind and name, and the one decode thread they share."""

    def __init__(
        self,
        settings: Settings,
        default: LocalModel | None,
        default_ref: str,
        sessions: SessionStore,
        build: Build,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """`default` is the model a request that names none gets (None: it failed to
        resolve), `default_ref` what named it (a path, perhaps); `build` makes a loaded
        service's turn pipeline; `on_change` is told after every load and unload."""
        self.settings, self.default, self.sessions = settings, default, sessions
        self.default_ref = default_ref
        self.build, self.on_change = build, on_change
        self.decoder = DecodeThread()
        self.residents: dict[tuple[Kind, str], Resident] = {}
        self.ever_loaded: set[str] = set()  # names loaded at least once
        self._stopped = False
        self._lock = threading.Lock()
        self._transition = threading.Lock()  # one load or unload at a time

    # -- names --

    def model(self, name: str | None) -> LocalModel:
        """The local model a request names (None or "": the default); never a path."""
        default = self.default
        if not name or (default is not None and name.removesuffix(":latest") == default.name):
            if default is None:
                raise ModelNotFoundError("the server's default model failed to resolve")
            return default
        with self._lock:  # a loaded model is named without reading the store
            held = [r.model for r in self.residents.values() if r.name == name and not r.gone]
        return held[0] if held else open_store(self.settings).named(name)

    def local_models(self) -> list[LocalModel]:
        """Every model a request may name: the default first, then the store's."""
        store = open_store(self.settings).servable()
        first = [self.default] if self.default is not None else []
        return [*first, *(m for m in store if not first or m.name != first[0].name)]

    # -- loading --

    def want(self, model: LocalModel, kind: Kind = "chat") -> Resident:
        """The model's resident, its load started in the background when it has none."""
        with self._lock:
            found = self.residents.get((kind, model.name))
            if found is not None and not found.gone:
                return found
            settings = self.settings.for_model(model.name)
            if self.default is None or model.name != self.default.name:
                settings = settings.model_copy(update={"draft_model": None})
            resident = Resident(model, kind, settings)
            self.residents[resident.key] = resident
        threading.Thread(
            target=self._load, args=(resident,), name="edgeinf-load", daemon=True
        ).start()
        return resident

    def _load(self, resident: Resident) -> None:
        with self._transition:
            if self._stopped:
                return
            try:
                self._admit(resident)
                model = resident.model
                if resident.kind == "chat":
                    pipeline = self._chat(resident)
                else:
                    embedder = self._embedder(resident)
                with self._lock:
                    if resident.kind == "chat":
                        resident.pipeline = pipeline
                    else:
                        resident.embedder = embedder
                    resident.last_used = time.monotonic()
                    self.ever_loaded.add(model.name)
                log.info("model %s ready (%s)", model.name, resident.kind)
            except Exception as exc:
                if isinstance(exc, EdgeinfError):
                    resident.error = str(exc)
                    log.error("model %s failed to load: %s", resident.name, exc)
                else:  # not ours: the traceback is for the operator
                    resident.error = "internal error (see the server log); restart"
                    log.error("model %s failed to load", resident.name, exc_info=exc)
                with self._lock:
                    default = ("chat", self.default_name)
                    if resident.key != default or self.default_name in self.ever_loaded:
                        self._forget(resident)  # the next request tries again
                    # else: the default model never loaded; /ready reports why
            self.on_change()

    def _chat(self, resident: Resident) -> TurnPipeline:
        settings = resident.settings
        service = ChatService(
            settings,
            self.default_ref if resident.model is self.default else resident.name,
            parallel=settings.parallel,
            store=self.sessions,
            max_queue=settings.max_queue,
            decoder=self.decoder,
        )
        _ = service.keeper  # opened once here, before two threads could race to open it
        return self.build(service)

    def _embedder(self, resident: Resident) -> Embedder:
        model, settings = resident.model, resident.settings
        verified(open_store(settings), model)
        threads = settings.threads or physical_cores()
        if model.path.suffix == ".onnx":
            if model.name != ENCODER_MODEL:
                raise ModelFileError(
                    f"{model.name} is an ONNX file edgeinf cannot run; embed with "
                    f"{ENCODER_MODEL} or a GGUF model"
                )
            onnx, tokenizer = encoder_files(settings, lambda note: log.info("%s", note))
            return SentenceEncoder(onnx, tokenizer, threads)
        return GgufEmbedder(model.path, threads, self.decoder)

    @property
    def default_name(self) -> str | None:
        return self.default.name if self.default is not None else None

    def _admit(self, resident: Resident) -> None:
        """Make room for the resident: evict the least recently used idle models while the
        count or the memory budget would be exceeded; refuse, with the numbers, a model
        that does not fit even alone."""
        s = resident.settings
        if resident.kind == "chat":
            weights, kv = footprint(resident.model.path, engine_options(s, n_seq_max=s.parallel))
        else:  # a context of one decode's tokens; onnxruntime's arena is about the weights
            weights, kv = resident.model.path.stat().st_size, EMBED_OVERHEAD
        need = resident.need = weights + kv
        budget = self.settings.models_memory_bytes
        if need > budget:
            raise InsufficientMemoryError(
                f"{resident.name} needs {need / GIB:.2f} GiB ({weights / GIB:.2f} GiB weights "
                f"+ {kv / GIB:.2f} GiB KV cache) but the models' memory budget is "
                f"{budget / GIB:.2f} GiB; raise models_memory_mb, lower its n_ctx, or use a "
                "smaller quantization"
            )
        deadline = time.monotonic() + EVICT_WAIT_S
        try:
            while True:
                with self._lock:
                    others = [r for r in self.loaded_now() if r is not resident]
                    held = sum(r.need for r in others)
                    crowded = len(others) >= self.settings.max_loaded
                    short = held + need > budget or need + MARGIN > available_memory()
                    if not others or not (crowded or short):
                        return  # alone, memory is the engine's own check (guard.check_fits)
                    others.sort(key=lambda r: r.last_used)
                    victim = next((r for r in others if not r.busy), None)
                    if victim is not None:
                        self._forget(victim)
                    else:
                        for r in others:
                            r.draining = True  # finish what runs, admit nothing new
                if victim is not None:
                    log.info("unloading %s to make room for %s", victim.name, resident.name)
                    self._close(victim)
                    continue
                if time.monotonic() > deadline:
                    raise InsufficientMemoryError(
                        f"no room for {resident.name} beside the models loaded now, which are "
                        "busy answering; retry shortly"
                    )
                time.sleep(0.05)
        finally:
            with self._lock:
                for r in self.residents.values():
                    r.draining = False

    def _forget(self, resident: Resident) -> None:
        """Under the lock: the resident leaves the fleet."""
        resident.gone = True
        if self.residents.get(resident.key) is resident:
            del self.residents[resident.key]

    def _close(self, resident: Resident, drain_s: float = 0.0) -> None:
        pipeline, resident.pipeline = resident.pipeline, None
        if pipeline is not None:
            service = pipeline.service
            service.stop_batching(drain_s)
            service.flush()
            service.close()
        embedder, resident.embedder = resident.embedder, None
        if embedder is not None:
            deadline = time.monotonic() + drain_s
            while resident.embedding and time.monotonic() < deadline:
                time.sleep(0.05)
            embedder.close()

    # -- unloading --

    def unload(self, name: str) -> bool:
        """Unload a model now, for chat and embeddings (what runs ends first); False when it
        is not loaded."""
        with self._transition:
            with self._lock:
                found = [r for r in self.residents.values() if r.name == name and r.loaded]
                for resident in found:
                    self._forget(resident)
            for resident in found:
                self._close(resident, drain_s=UNLOAD_DRAIN_S)
        if found:
            self.on_change()
            log.info("model %s unloaded", name)
        return bool(found)

    def unload_idle(self) -> None:
        """Unload the models idle past their keep-alive; the next request loads them again."""
        now = time.monotonic()
        for resident in list(self.residents.values()):
            if resident.pipeline is not None and resident.pipeline.service.depth() != (0, 0):
                resident.last_used = now  # idle time counts from the end of its answers
            if not resident.loaded or resident.busy:
                continue
            if now - resident.last_used < (keep := resident.keep_s):
                continue
            with self._transition:
                with self._lock:
                    if resident.busy or resident.gone:
                        continue
                    self._forget(resident)
                self._close(resident)
            self.on_change()
            log.info("model %s unloaded after %g s idle", resident.name, keep)

    def loaded(self) -> list[Resident]:
        with self._lock:
            return self.loaded_now()

    def loaded_now(self) -> list[Resident]:
        """Under the lock: the residents whose model is in memory."""
        return [r for r in self.residents.values() if r.loaded]

    def stop(self, drain_s: float) -> None:
        with self._transition, self._lock:
            self._stopped = True
            residents = list(self.residents.values())
            for r in residents:
                self._forget(r)
        for r in residents:
            self._close(r, drain_s)
        self.decoder.close()
