"""`edgeinf serve`: the OpenAI-compatible server, on loopback unless told otherwise."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import os
import socket
from collections.abc import Iterator

from edgeinf.config import Settings, read_api_key
from edgeinf.errors import ConfigError
from edgeinf.server.security import is_loopback


def _activation_socket() -> socket.socket | None:
    """A listening socket handed over by systemd socket activation (LISTEN_FDS), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        return None
    return socket.socket(fileno=3)


def check_bind(settings: Settings) -> None:
    if not is_loopback(settings.host) and read_api_key(settings) is None:
        raise ConfigError(
            f"refusing to listen on {settings.host} without an API key: anyone on the network "
            "could use the model. Set api_key_file (or --api-key-file), or bind 127.0.0.1"
        )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    # A native crash (llama.cpp, SQLite) then leaves every thread's stack in the log.
    faulthandler.enable()

    class Server(uvicorn.Server):
        """uvicorn, except that a SIGTERM or SIGINT answered by a clean drain exits 0 (what
        systemd and launchd expect) instead of being re-raised once the server stopped."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    from edgeinf.cli.main import settings_from
    from edgeinf.server.app import create_app

    settings = settings_from(
        args,
        host=args.host,
        port=args.port,
        parallel=args.parallel,
        api_key_file=args.api_key_file,
    )
    check_bind(settings)
    sock = _activation_socket()
    config = uvicorn.Config(
        create_app(settings, args.model),
        host=settings.host,
        port=settings.port,
        fd=sock.fileno() if sock else None,
        log_level="info" if args.verbose else "warning",
        log_config=None,  # uvicorn's records go through our escaping handler (edgeinf.logs)
        timeout_graceful_shutdown=15,
        server_header=False,
    )
    Server(config).run()
    return 0
