"""Plain chat through simonw's `llm` CLI, configured for an OpenAI-compatible model as its
users configure a local server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY
from tests.server.conftest import Server

LLM = Path(sys.executable).parent / "llm"  # installed beside the interpreter by the dev extra


def test_the_llm_cli_chats_with_the_server(tiny_server: Server, tmp_path: Path) -> None:
    (tmp_path / "extra-openai-models.yaml").write_text(
        f"- model_id: edgeinf-tiny\n  model_name: {TINY}\n  api_base: {tiny_server.url}/v1\n"
    )
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path)}
    run = subprocess.run(
        [str(LLM), "-m", "edgeinf-tiny", "--key", "unused", "--no-log",
         "-o", "temperature", "0", "-o", "max_tokens", "12", "Name a colour."],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip()
