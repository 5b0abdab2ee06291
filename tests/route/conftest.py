"""Remotes for routing tests: a misbehaving server process, and a real edgeinf serving the 1.5B."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeinf.config import Settings
from edgeinf.route.dispatch import encoder_files
from tests.conftest import TARGET
from tests.server.conftest import Server, start


@pytest.fixture(scope="session")
def encoder(settings: Settings) -> tuple[Path, Path]:
    """The router's encoder files, pulled into the shared model store."""
    return encoder_files(settings)


@pytest.fixture(scope="session")
def remote_15b(tmp_path_factory: pytest.TempPathFactory, target_path: Path) -> Iterator[Server]:
    """A real OpenAI-compatible server process on loopback serving the 1.5B model."""
    server = start(tmp_path_factory.mktemp("remote15b"), model=TARGET, ctx=4096, parallel=2)
    yield server
    server.stop()
