"""What the server holds while it runs: the model (loaded in the background), metrics."""

from __future__ import annotations

import logging
import socket
import threading
import time

from edgeinf.config import Settings
from edgeinf.errors import EdgeinfError
from edgeinf.route.dispatch import Dispatcher
from edgeinf.server.errors import RETRY_AFTER_S, ApiError
from edgeinf.server.metrics import Metrics
from edgeinf.service import ChatService

log = logging.getLogger("edgeinf.server")


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
    def __init__(self, settings: Settings, model_ref: str | None) -> None:
        self.settings, self.model_ref = settings, model_ref
        self.service: ChatService | None = None
        self.dispatcher: Dispatcher | None = None
        self.error: str | None = None
        self.started = time.time()
        self.metrics = Metrics(self.depth)
        self._loader = threading.Thread(target=self._load, name="edgeinf-load", daemon=True)

    def start(self) -> None:
        self._loader.start()

    def _load(self) -> None:
        try:
            # Requests are decoded together in batches; speculation is for single streams
            # (`run`, `chat`), so no draft model is loaded here.
            settings = self.settings.model_copy(update={"speculative": "off"})
            service = ChatService(settings, self.model_ref, parallel=self.settings.parallel)
            _ = service.keeper  # opened once here, before two threads could race to open it
            service.start_batching(self.settings.max_queue)
            dispatcher = Dispatcher(settings, service.model.name, service.identity.model_sha256)
            if dispatcher.remote is not None and settings.route == "auto":
                _ = dispatcher.router  # loaded now, not on the first request
            self.dispatcher = dispatcher
            self.service = service
            log.info("model %s ready", service.model.name)
            sd_notify("READY=1")
        except EdgeinfError as exc:
            self.error = str(exc)
            log.error("model failed to load: %s", exc)

    def depth(self) -> tuple[int, int]:
        if self.service is None or self.service.batcher is None:
            return 0, 0
        return self.service.batcher.depth()

    def ready_service(self) -> ChatService:
        if self.service is not None:
            return self.service
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

    def stop(self, drain_s: float) -> None:
        sd_notify("STOPPING=1")
        self._loader.join(timeout=60)
        if self.service is not None:
            if self.service.batcher is not None:
                self.service.batcher.stop(drain_s)
            self.service.flush()
            self.service.close()
        if self.dispatcher is not None:
            self.dispatcher.close()
