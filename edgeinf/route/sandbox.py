"""Running a program written by a model: a child process in a scratch directory, with no
environment, a time limit and a memory limit."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import tempfile

TIMEOUT_S = 10.0
MEMORY_BYTES = 1 << 30
_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def blocks(text: str) -> list[str]:
    """The fenced Python (or unmarked) code blocks of a text."""
    return list(_BLOCK.findall(text))


def code_of(text: str) -> str:
    """The longest fenced Python block of a text, else the text itself."""
    found = blocks(text)
    return max(found, key=len) if found else text


def _limits() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    os.setsid()


def passes(program: str) -> bool:
    """True when the program runs to its end within the limits (its asserts hold). Its end
    is a line printing a token drawn now: code that exits early with status 0 (`sys.exit`,
    `os._exit`) before the tests ran does not pass."""
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="edgeinf-sandbox-") as tmp:
        path = os.path.join(tmp, "solution.py")
        with open(path, "w") as fh:
            fh.write(f"{program}\nprint({token!r})\n")
        try:
            done = subprocess.run(
                [sys.executable, "-I", path],
                cwd=tmp,
                capture_output=True,
                timeout=TIMEOUT_S,
                preexec_fn=_limits if os.name == "posix" else None,
                env={"PATH": os.environ.get("PATH", "")},
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0 and token.encode() in done.stdout
