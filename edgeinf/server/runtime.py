"""What the server holds while it runs: its models (loaded in the background and on demand),
the session store, the remote dispatcher, its upkeep and metrics."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import sqlite3
import threading
import time
from typing import Any

from edgeinf.catalog import open_store
from edgeinf.catalog.store import LocalModel
from edgeinf.config import Settings
from edgeinf.engine.embedder import Embedded
from edgeinf.errors import EdgeinfError, InvalidRequestError, ModelNotFoundError
from edgeinf.gguf.info import inspect_cached
from edgeinf.guard import CpuUse, Strain, available_memory, hottest_c, strain, team_size
from edgeinf.route.dispatch import Dispatcher
from edgeinf.route.encoder import MAX_TOKENS as ENCODER_TOKENS
from edgeinf.server.errors import RETRY_AFTER_S, ApiError
from edgeinf.server.fleet import Fleet, Kind, Resident
from edgeinf.server.metrics import Metrics
from edgeinf.service.fill import Latest
from edgeinf.service.local import ChatService, open_sessions
from edgeinf.service.turn import TurnPipeline

log = logging.getLogger("edgeinf.server")
UPKEEP_S = 1.0  # how often memory, temperature and idleness are checked
RELOAD_WAIT_S = 60.0  # how long a request waits for an idle model to load again


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about readiness or stopping; a no-op elsewhere."""
    import os

    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError as exc:
            log.warning("could not notify systemd: %s", exc)


class Runtime:
    """The server's life: models loaded by name (fleet.Fleet), the default one in the
    background at start; fewer sequences, then no new requests, while the machine runs short
    of memory or overheats, and fewer decode threads while other processes keep cores busy
    (checked every UPKEEP_S, when idle models are also unloaded)."""

    def __init__(self, settings: Settings, model_ref: str | None) -> None:
        self.settings = settings
        self.sessions = open_sessions(settings)  # the process's, loaded model or not
        self.dispatcher: Dispatcher | None = None
        self.error: str | None = None  # the default model's, when it cannot be resolved
        default: LocalModel | None = None
        ref = model_ref or settings.default_model
        try:
            default = open_store(settings).resolve(ref)
        except EdgeinfError as exc:
            self.error = str(exc)
        self.strain = Strain("ok")
        self.cpu = CpuUse()
        self.threads: int | None = None  # decode threads now; None until a model loads
        self.started = time.time()
        self.metrics = Metrics(self.depth, self.cache_bytes, self.draft_history, self.summaries)
        self.fills = Latest()  # each client's newest fill-in-the-middle turn
        self.fleet = Fleet(settings, default, ref, self.sessions, self._pipeline, self._changed)
        self._stopping = threading.Event()
        self._told_ready = False  # systemd hears READY=1 once, when the default model loaded
        self._upkeep = threading.Thread(target=self._watch, name="edgeinf-upkeep", daemon=True)

    def start(self) -> None:
        if self.fleet.default is not None:
            self.fleet.want(self.fleet.default)
        self._upkeep.start()

    def _pipeline(self, service: ChatService) -> TurnPipeline:
        """A loaded model's turns; the remote dispatcher is made with the first one."""
        if self.dispatcher is None:
            dispatcher = Dispatcher(
                self.settings, service.model.name, service.identity.model_sha256
            )
            if dispatcher.remote is not None and self.settings.route == "auto":
                _ = dispatcher.router  # loaded now, not on the first request
            self.dispatcher = dispatcher
        return TurnPipeline(
            service, self.dispatcher, lambda note: log.warning("remote failed: %s", note)
        )

    def _changed(self) -> None:
        loaded = self.fleet.loaded()
        self.metrics.loaded.set(len(loaded))
        self.metrics.admitted.set(sum(r.need for r in loaded))
        default = self._default()
        if not self._told_ready and default is not None and default.pipeline is not None:
            self._told_ready = True
            sd_notify("READY=1")

    def _default(self) -> Resident | None:
        name = self.fleet.default_name
        return None if name is None else self.fleet.residents.get(("chat", name))

    def services(self) -> list[ChatService]:
        """The loaded chat models' services."""
        return [r.pipeline.service for r in self.fleet.loaded() if r.pipeline is not None]

    def depth(self) -> tuple[int, int]:
        running = waiting = 0
        for service in self.services():
            a, b = service.depth()
            running, waiting = running + a, waiting + b
        return running, waiting

    def draft_history(self) -> tuple[int, int]:
        """Over the loaded models: see ChatService.draft_history."""
        sizes = [service.draft_history() for service in self.services()]
        return sum(s[0] for s in sizes), sum(s[1] for s in sizes)

    def summaries(self, when: str) -> int:
        """Over the loaded models: see ChatService.summaries."""
        return sum(service.summaries().get(when, 0) for service in self.services())

    def cache_bytes(self, tier: str) -> float:
        """What the prefix cache holds in RAM (the loaded models') or on disk (all models');
        NaN when the index cannot be read."""
        if tier == "ram":
            return sum(service.cache_ram_bytes() for service in self.services())
        try:
            return self.sessions.index.kv_usage()
        except sqlite3.Error:
            return math.nan

    def deadline(self) -> float:
        """When an answer started now is cut (time.monotonic())."""
        return time.monotonic() + self.settings.request_timeout_s

    def model(self, name: str | None) -> LocalModel:
        """The local model a request names; 404 for a name the server does not have."""
        if not name and self.error is not None:
            raise self._failed(self.error)
        try:
            return self.fleet.model(name)
        except ModelNotFoundError as exc:
            known = [m.name for m in self.fleet.local_models()]
            if self.settings.remote_model:
                known.append(self.settings.remote_model)
            raise ApiError(
                404,
                f"{exc}; this server has {', '.join(repr(k) for k in known)} (see /v1/models)",
                "invalid_request_error",
                "model_not_found",
                param="model",
            ) from None

    def is_remote(self, name: str | None) -> bool:
        """A request naming the remote's model, when it is not also a local one."""
        return bool(name) and name == self.settings.remote_model

    def routes(self, service: ChatService) -> bool:
        """Whether the router decides for this model's requests (the default model's: the
        router was trained on its failures); the others' answers stay local unless a
        request asks for the remote."""
        return service.model.name == self.fleet.default_name

    def cards(self) -> list[dict[str, Any]]:
        """/v1/models: every local model a request may name, and whether it is loaded."""
        loaded = {r.name: r for r in self.fleet.loaded()}
        out = []
        for model in self.fleet.local_models():
            resident = loaded.get(model.name)
            try:
                if model.path.suffix == ".onnx":  # the sentence encoder: embeddings only
                    facts = ("onnx", "int8", ENCODER_TOKENS)
                else:
                    info = inspect_cached(model.path)
                    context = (
                        resident.pipeline.service.context_length
                        if resident is not None and resident.pipeline is not None
                        else self.settings.for_model(model.name).n_ctx
                    )
                    facts = (info.architecture, info.quantization, context)
                created = int(model.path.stat().st_mtime)
            except (OSError, EdgeinfError):  # a file gone or damaged is not listed
                continue
            out.append(
                {
                    "id": model.name,
                    "object": "model",
                    "created": created,
                    "owned_by": "edgeinf",
                    "architecture": facts[0],
                    "quantization": facts[1],
                    "context_length": facts[2],
                    "loaded": resident is not None,
                }
            )
        return out

    @staticmethod
    def _failed(error: str) -> ApiError:
        return ApiError(
            503, f"the model failed to load: {error}", "server_error", "model_load_failed"
        )

    def ready(self) -> dict[str, object]:
        """/ready: the default model loaded, or unloaded for idleness (the next request
        loads it again); 503 while it loads at start, or after it failed to."""
        default = self.fleet.default
        if self.error is not None or default is None:
            raise self._failed(self.error or "no default model")
        resident = self._default()
        if resident is not None and resident.error is not None:
            raise self._failed(resident.error)
        if resident is not None and resident.pipeline is not None:
            if not resident.pipeline.service.healthy:
                raise self._stopped()
            return {"status": "ready", "model": default.name, "loaded": True}
        if resident is None and default.name in self.fleet.ever_loaded:
            return {"status": "ready", "model": default.name, "loaded": False}
        raise self._loading()

    def _shedding(self) -> ApiError:
        return ApiError(
            503,
            f"the server is shedding load: {self.strain.why}; retry later",
            "server_busy",
            "overloaded",
            {"Retry-After": str(RETRY_AFTER_S * 5)},
        )

    @staticmethod
    def _stopped() -> ApiError:
        return ApiError(
            503,
            "the decode loop stopped after an internal error (see the server log); restart "
            "the server",
            "server_error",
            "engine_stopped",
        )

    @staticmethod
    def _loading() -> ApiError:
        return ApiError(
            503,
            "the model is still loading; retry shortly",
            "server_busy",
            "model_loading",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    async def serving(self, name: str | None, keep_alive_s: float | None = None) -> TurnPipeline:
        """The pipeline of the model a request names: waits while it loads on demand (a
        few seconds; the first load at start-up answers 503 at once, as /ready does), and
        refuses new work while the machine is critically short of memory or too hot.
        `keep_alive_s` (the request's) replaces the model's idle time before unloading."""
        if self.strain.level == "critical":
            raise self._shedding()
        resident = await self.resident(name, "chat", keep_alive_s)
        assert resident.pipeline is not None
        if not resident.pipeline.service.healthy:
            raise self._stopped()
        return resident.pipeline

    async def resident(
        self, name: str | None, kind: Kind, keep_alive_s: float | None = None
    ) -> Resident:
        """The named model, loaded for chat or for embeddings, waiting while it loads."""
        model = self.model(name)
        if kind == "chat" and model.path.suffix != ".gguf":
            raise InvalidRequestError(
                f"{model.name} is an embedding model; send it texts to embed (/v1/embeddings)",
                param="model",
            )
        deadline = time.monotonic() + RELOAD_WAIT_S
        resident = self.fleet.want(model, kind)
        while True:
            if resident.loaded and not resident.draining:
                resident.last_used = time.monotonic()
                if keep_alive_s is not None:
                    resident.keep_alive_s = keep_alive_s
                return resident
            if resident.error is not None:
                raise self._failed(resident.error)
            if resident.gone:
                resident = self.fleet.want(model, kind)
                continue
            starting = model is self.fleet.default and model.name not in self.fleet.ever_loaded
            if (kind == "chat" and starting) or time.monotonic() > deadline:
                raise self._loading()  # starting up: as /ready says
            await asyncio.sleep(0.05)

    async def embed(
        self, name: str | None, texts: list[str], truncate: bool, keep_alive_s: float | None
    ) -> tuple[Resident, Embedded]:
        """Vectors of `texts` from the named model (loaded for embeddings on demand)."""
        if self.strain.level == "critical":
            raise self._shedding()
        resident = await self.resident(name, "embed", keep_alive_s)
        assert resident.embedder is not None
        resident.embedding += 1
        try:
            return resident, await asyncio.to_thread(resident.embedder.embed, texts, truncate)
        finally:
            resident.embedding -= 1
            resident.last_used = time.monotonic()

    def _watch(self) -> None:
        while True:
            self._assess()
            self.fleet.unload_idle()
            if self._stopping.wait(UPKEEP_S):
                return

    def _assess(self) -> None:
        s = self.settings
        room_mb = available_memory() / (1 << 20)
        now = strain(
            room_mb,
            hottest_c(),
            (s.memory_low_mb, s.memory_critical_mb),
            (s.temperature_high_c, s.temperature_critical_c),
        )
        if now != self.strain:
            log.warning("machine %s%s", now.level, f": {now.why}" if now.why else "")
        self.strain = now
        limit = s.parallel if now.level == "ok" else 1
        others = self.cpu.others()
        for service in self.services():
            configured = service.opts.threads
            threads = team_size(configured, self.cpu.cpus, others)
            if threads != (self.threads or configured):
                log.warning(
                    "other processes keep %.1f cores busy: decoding on %d of %d threads",
                    others,
                    threads,
                    configured,
                )
            self.threads = threads
            service.limit_load(
                min(limit, service.settings.parallel), drafting=now.level == "ok", threads=threads
            )
            self.metrics.threads.set(threads)
        self.metrics.drafting.set(now.level == "ok")  # first: whoever sees the new limit sees this
        self.metrics.parallel.set(limit)
        self.metrics.shedding.set(now.level == "critical")

    def stop(self, drain_s: float) -> None:
        sd_notify("STOPPING=1")
        self._stopping.set()
        self.fleet.stop(drain_s)
        if self.dispatcher is not None:
            self.dispatcher.close()
        self.sessions.close()
