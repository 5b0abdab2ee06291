"""`edgeinf chat` in a real pseudo-terminal, driven as a person would (pexpect)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.conftest import DRAFT, FaultRemote

PROMPT = ">>>"


def say(child: pexpect.spawn, line: str) -> None:
    """Type a line and press Enter (a terminal sends CR for Enter)."""
    child.send(line + "\r")


def spawn(tmp: Path, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    environment = {
        **os.environ,
        "EDGEINF_STATE_DIR": str(tmp / "state"),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
        "LINES": "40",
        # pexpect is not a terminal emulator: it never answers cursor-position requests.
        "PROMPT_TOOLKIT_NO_CPR": "1",
        **(env or {}),
    }
    child = pexpect.spawn(
        sys.executable,
        ["-m", "edgeinf", "chat", "-m", DRAFT, "--ctx", "2048", "--temperature", "0", *args],
        env=environment,
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 100),
    )
    child.logfile_read = (tmp / "terminal.log").open("a")  # what the user saw, for failures
    child.expect_exact(PROMPT)
    return child


@pytest.mark.slow
def test_chat_answers_survives_ctrl_c_and_resumes(tmp_path: Path, draft_path: Path) -> None:
    child = spawn(tmp_path)
    say(child, "What is the capital of France? Answer in a full sentence.")
    child.expect("Paris")
    child.expect(r"local · ttft [\d.]+s · \d+ tok/s")
    child.expect_exact(PROMPT)

    say(child, "Write a very long essay about the history of Europe.")
    child.expect_exact("history of Europe.")  # the echo of what was typed
    # The echo is redrawn as the line is accepted; only after that does the answer stream.
    # A long greedy essay is still streaming 3 s later, well past the first token.
    time.sleep(3)
    child.expect(r"[A-Za-z]+ [A-Za-z]+ [A-Za-z]+ [A-Za-z]+")
    child.sendcontrol("c")
    try:
        child.expect("stopped")
    except pexpect.TIMEOUT:
        raise AssertionError((tmp_path / "terminal.log").read_text()[-3000:]) from None
    child.expect_exact(PROMPT)

    say(child, "/help")
    child.expect("/resume ID")
    child.expect_exact(PROMPT)
    say(child, "And of Italy? Answer in a full sentence.")
    child.expect("Rome")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)

    again = spawn(tmp_path, "--resume")
    say(again, "And of Spain? Answer in a full sentence.")
    again.expect("Madrid")
    again.expect(r"cached ([\d,]+) tok")
    cached = int(again.match.group(1).replace(",", ""))
    assert cached > 20  # the conversation's state came back (its speed: edgeinf bench resume)
    say(again, "/exit")
    again.expect(pexpect.EOF)


@pytest.mark.slow
@pytest.mark.reliability(13)
def test_escapes_in_an_answer_never_reach_the_terminal(
    tmp_path: Path, draft_path: Path, fault_remote: FaultRemote
) -> None:
    fault_remote.script(default="escapes")
    child = spawn(
        tmp_path, "--route", "remote", "--remote-url", fault_remote.url, "--remote-model", "big"
    )
    say(child, "Say hello.")
    child.expect("Hello there, friend.")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    seen = (tmp_path / "terminal.log").read_text()
    assert "pwned-title" not in seen and "]52;" not in seen and "\x1b[8m" not in seen


def _typed_turn(tmp: Path, env: dict[str, str]) -> tuple[int, int]:
    """Resume the conversation `typed`, type a question at a person's pace, pause, press
    Enter: (cached, prefilled) tokens of the answer, from the status line."""
    child = spawn(tmp, "--resume", "typed", env=env)
    for ch in "Which function in that code is the longest one?":
        child.send(ch)
        time.sleep(0.06)
    time.sleep(1.5)  # a pause before Enter: long enough for the last prefill
    child.send("\r")
    child.expect(r"cached ([\d,]+) tok · prefilled ([\d,]+) tok")
    cached, prefilled = (int(g.replace(",", "")) for g in child.match.groups())
    say(child, "/exit")
    child.expect(pexpect.EOF)
    return cached, prefilled


@pytest.mark.slow
def test_a_message_is_prefilled_while_it_is_typed(tmp_path: Path, draft_path: Path) -> None:
    import inspect
    import textwrap

    from tests.cli.test_cli import edgeinf

    state = {"EDGEINF_STATE_DIR": str(tmp_path / "state")}
    code = inspect.getsource(textwrap)[:3000]
    made = edgeinf(
        "run", "-m", DRAFT, "--ctx", "2048", "--max-tokens", "8", "--session", "typed",
        f"Read this code:\n```python\n{code}\n```", env=state,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    cached, prefilled = _typed_turn(tmp_path, {})
    assert cached > 700 and prefilled == 1  # all but the prompt's last token, before Enter
    cached_off, prefilled_off = _typed_turn(tmp_path, {"EDGEINF_CHAT_PREFILL": "false"})
    assert cached_off > 700 and prefilled_off >= 12  # restored at Enter, then the question
