"""`edgeinf chat` in a real pseudo-terminal, driven as a person would (pexpect)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest

from tests.conftest import DRAFT

PROMPT = ">>> "


def spawn(tmp: Path, *args: str) -> pexpect.spawn:
    env = {
        **os.environ,
        "EDGEINF_STATE_DIR": str(tmp / "state"),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
        "LINES": "40",
    }
    child = pexpect.spawn(
        sys.executable,
        ["-m", "edgeinf", "chat", "-m", DRAFT, "--ctx", "2048", "--temperature", "0", *args],
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 100),
    )
    child.expect_exact(PROMPT)
    return child


@pytest.mark.slow
def test_chat_answers_survives_ctrl_c_and_resumes(tmp_path: Path, draft_path: Path) -> None:
    child = spawn(tmp_path)
    child.sendline("What is the capital of France? One word.")
    child.expect("Paris")
    child.expect(r"local · ttft [\d.]+s · \d+ tok/s")
    child.expect_exact(PROMPT)

    child.sendline("Write a very long essay about the history of Europe.")
    child.expect(r"\w+ \w+ \w+")  # the answer has started streaming
    child.sendcontrol("c")
    child.expect("stopped")
    child.expect_exact(PROMPT)

    child.sendline("/help")
    child.expect("/resume ID")
    child.expect_exact(PROMPT)
    child.sendline("And of Italy? One word.")
    child.expect("Rome")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)

    again = spawn(tmp_path, "--resume")
    again.sendline("And of Spain? One word.")
    again.expect("Madrid")
    again.expect(r"restored ([\d,]+) tok")
    restored = int(again.match.group(1).replace(",", ""))
    assert restored > 20
    ttft = float(re.search(r"ttft ([\d.]+)s", again.before + again.after).group(1))  # type: ignore[union-attr]
    assert ttft < 2.0
    again.sendline("/exit")
    again.expect(pexpect.EOF)
