"""What the server holds while it runs: the model (loaded in the background), metrics."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import sqlite3
import threading
import time
from typing import Any

from edgeinf.config import Settings
from edgeinf.errors import EdgeinfError
from edgeinf.guard import CpuUse, Strain, available_memory, hottest_c, strain, team_size
from edgeinf.route.dispatch import Dispatcher
from edgeinf.server.errors import RETRY_AFTER_S, ApiError
from edgeinf.server.metrics import Metrics
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
    """The model's life in the server: loaded in the background, unloaded after `keep_alive_s`
    idle and loaded again on demand; fewer sequences, then no new requests, while the machine
    runs short of memory or overheats, and fewer decode threads while other processes keep
    cores busy (checked every UPKEEP_S)."""

    def __init__(self, settings: Settings, model_ref: str | None) -> None:
        self.settings, self.model_ref = settings, model_ref
        self.sessions = open_sessions(settings)  # the process's, loaded model or not
        self.pipeline: TurnPipeline | None = None
        self.dispatcher: Dispatcher | None = None
        self.error: str | None = None
        self.idle = False  # unloaded after keep_alive_s; the next request loads it again
        self.reloading = False
        self.strain = Strain("ok")
        self.cpu = CpuUse()
        self.threads: int | None = None  # decode threads now; None until the model loads
        self.started = time.time()
        self.last_used = time.monotonic()
        self.metrics = Metrics(self.depth, self.cache_bytes)
        self.card: dict[str, Any] | None = None  # /v1/models' entry, kept while unloaded
        self._lock = threading.Lock()
        self._transition = threading.Lock()  # a load waits for an unload to finish
        self._stopping = threading.Event()
        self._loader = threading.Thread(target=self._load, name="edgeinf-load", daemon=True)
        self._upkeep = threading.Thread(target=self._watch, name="edgeinf-upkeep", daemon=True)

    def start(self) -> None:
        self._loader.start()
        self._upkeep.start()

    def _load(self) -> None:
        with self._transition:
            self._load_now()

    def _load_now(self) -> None:
        try:
            settings = self.settings
            service = ChatService(
                settings,
                self.model_ref,
                parallel=settings.parallel,
                store=self.sessions,
                max_queue=settings.max_queue,
            )
            _ = service.keeper  # opened once here, before two threads could race to open it
            if self.dispatcher is None:
                dispatcher = Dispatcher(settings, service.model.name, service.identity.model_sha256)
                if dispatcher.remote is not None and settings.route == "auto":
                    _ = dispatcher.router  # loaded now, not on the first request
                self.dispatcher = dispatcher
            card = service.card()
            self.card = {
                "id": card["id"],
                "object": "model",
                "created": int(self.started),
                "owned_by": "edgeinf",
                **{k: v for k, v in card.items() if k != "id"},
            }
            pipeline = TurnPipeline(
                service, self.dispatcher, lambda note: log.warning("remote failed: %s", note)
            )
            with self._lock:
                self.pipeline, self.reloading, self.last_used = pipeline, False, time.monotonic()
            self.metrics.loaded.set(1)
            log.info("model %s ready", service.model.name)
            sd_notify("READY=1")
        except EdgeinfError as exc:
            self.error, self.reloading = str(exc), False
            log.error("model failed to load: %s", exc)
        except Exception as exc:  # not ours: the traceback is for the operator
            self.error, self.reloading = "internal error (see the server log); restart", False
            log.error("model failed to load", exc_info=exc)

    def depth(self) -> tuple[int, int]:
        pipeline = self.pipeline
        return (0, 0) if pipeline is None else pipeline.service.depth()

    def cache_bytes(self, tier: str) -> float:
        """What the prefix cache holds in RAM (the loaded model's) or on disk (all models');
        NaN when the index cannot be read."""
        if tier == "ram":
            pipeline = self.pipeline
            return 0 if pipeline is None else pipeline.service.cache_ram_bytes()
        try:
            return self.sessions.index.kv_usage()
        except sqlite3.Error:
            return math.nan

    def deadline(self) -> float:
        """When an answer started now is cut (time.monotonic())."""
        return time.monotonic() + self.settings.request_timeout_s

    def ready(self) -> TurnPipeline:
        with self._lock:
            self.last_used = time.monotonic()
            if self.pipeline is not None:
                if not self.pipeline.service.healthy:
                    raise ApiError(
                        503,
                        "the decode loop stopped after an internal error (see the server "
                        "log); restart the server",
                        "server_error",
                        "engine_stopped",
                    )
                return self.pipeline
            if self.idle and self.error is None and not self._stopping.is_set():  # on demand
                self.idle, self.reloading = False, True
                self._loader = threading.Thread(target=self._load, name="edgeinf-load")
                self._loader.start()
        if self.error is not None:
            raise ApiError(
                503, f"the model failed to load: {self.error}", "server_error", "model_load_failed"
            )
        raise ApiError(
            503,
            "the model is still loading; retry shortly",
            "server_busy",
            "model_loading",
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    def check_model(self, name: str | None) -> None:
        """A request may name the served model (or the remote's), or none for the default."""
        served = {self.card["id"]} if self.card else set()
        if self.settings.remote_model:
            served.add(self.settings.remote_model)
        if name and name not in served:
            raise ApiError(
                404,
                f"the model '{name}' is not served here; ask for "
                f"{' or '.join(repr(s) for s in sorted(served))} (see /v1/models)",
                "invalid_request_error",
                "model_not_found",
                param="model",
            )

    def describe(self) -> dict[str, Any]:
        """The model's card, also while it is unloaded for idleness (without loading it)."""
        if self.card is None:
            self.ready()  # raises: still loading, or failed
        assert self.card is not None
        return self.card

    async def serving(self) -> TurnPipeline:
        """The pipeline for a request that generates: waits while an idle model loads again
        (a few seconds; a first load at start-up answers 503 at once, as /ready does), and
        refuses new work while the machine is critically short of memory or too hot."""
        if self.strain.level == "critical":
            raise ApiError(
                503,
                f"the server is shedding load: {self.strain.why}; retry later",
                "server_busy",
                "overloaded",
                {"Retry-After": str(RETRY_AFTER_S * 5)},
            )
        deadline = time.monotonic() + RELOAD_WAIT_S
        while True:
            try:
                return self.ready()
            except ApiError:
                if self.error or not self.reloading or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)

    def _watch(self) -> None:
        while True:
            self._assess()
            self._unload_if_idle()
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
        pipeline = self.pipeline
        if pipeline is not None:
            configured = pipeline.service.opts.threads
            threads = team_size(configured, self.cpu.cpus, others)
            if threads != (self.threads or configured):
                log.warning(
                    "other processes keep %.1f cores busy: decoding on %d of %d threads",
                    others,
                    threads,
                    configured,
                )
            self.threads = threads
            pipeline.service.limit_load(limit, drafting=now.level == "ok", threads=threads)
            self.metrics.threads.set(threads)
        self.metrics.drafting.set(now.level == "ok")  # first: whoever sees the new limit sees this
        self.metrics.parallel.set(limit)
        self.metrics.shedding.set(now.level == "critical")

    def _unload_if_idle(self) -> None:
        keep = self.settings.keep_alive_s
        with self._transition:
            with self._lock:
                pipeline = self.pipeline
                if not keep or pipeline is None or time.monotonic() - self.last_used < keep:
                    return
                if self.depth() != (0, 0):
                    return
                self.pipeline, self.idle = None, True
            self.metrics.loaded.set(0)
            self._close(pipeline.service)
        log.info("model unloaded after %g s idle; the next request loads it again", keep)

    @staticmethod
    def _close(service: ChatService, drain_s: float = 0.0) -> None:
        service.stop_batching(drain_s)
        service.flush()
        service.close()

    def stop(self, drain_s: float) -> None:
        sd_notify("STOPPING=1")
        self._stopping.set()
        self._loader.join(timeout=60)
        with self._lock:
            pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            self._close(pipeline.service, drain_s)
        if self.dispatcher is not None:
            self.dispatcher.close()
        self.sessions.close()
