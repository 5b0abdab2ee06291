"""`edgeinf chat` in a real terminal: from Enter to the first token of the answer, with the
message prefilled while it was typed and without (EDGEINF_CHAT_PREFILL=false).

    python tools/chattyping.py -m qwen2.5-coder-1.5b-instruct-q4_k_m --tokens 2000 --repeat 3

A conversation of about --tokens tokens is made with `edgeinf run --session`, then resumed
in `edgeinf chat` under a pseudo-terminal, where a 15-word message is typed one key at a
time (--key-s apart, a person's pace), Enter pressed after a short pause, and the status
line read: its time to first token (measured by the service from the moment the message is
sent) and how many prompt tokens were prefilled after Enter. On and off alternate.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pexpect

MESSAGE = "Which of the functions in that code would you split first, and into which parts?"
STATUS = r"ttft ([\d.]+)s.*?cached ([\d,]+) tok · prefilled ([\d,]+) tok"


def make_conversation(model: str, tokens: int, ctx: int, env: dict[str, str]) -> None:
    import textwrap

    code = inspect.getsource(textwrap)[: int(tokens * 3.3)]
    subprocess.run(
        [sys.executable, "-m", "edgeinf", "run", "-m", model, "--ctx", str(ctx),
         "--max-tokens", "16", "--session", "typed", f"Read this code:\n```python\n{code}\n```"],
        env=env, check=True, capture_output=True, timeout=1800,
    )  # fmt: skip


def one(model: str, ctx: int, env: dict[str, str], key_s: float) -> dict[str, Any]:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "edgeinf", "chat", "-m", model, "--ctx", str(ctx), "--resume", "typed",
         "--max-tokens", "8", "--temperature", "0"],
        env={**env, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"},
        encoding="utf-8", timeout=600, dimensions=(40, 120),
    )  # fmt: skip
    try:
        child.expect_exact(">>>")
        time.sleep(1.0)  # reading the screen before typing
        for ch in MESSAGE:
            child.send(ch)
            time.sleep(key_s)
        time.sleep(0.5)
        child.send("\r")
        child.expect(STATUS)
        ttft, cached, prefilled = child.match.groups()
        child.send("/exit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    return {
        "ttft_s": float(ttft),
        "cached": int(cached.replace(",", "")),
        "prefilled": int(prefilled.replace(",", "")),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--key-s", type=float, default=0.12, help="seconds between keys")
    args = p.parse_args()
    ctx = max(4096, args.tokens * 2)
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="edgeinf-chattyping-") as tmp:
        env = {**os.environ, "EDGEINF_STATE_DIR": str(Path(tmp) / "state")}
        make_conversation(args.model, args.tokens, ctx, env)
        for i in range(min(args.repeat, 10)):
            for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
                flag = "true" if mode == "on" else "false"
                runs[mode].append(
                    one(args.model, ctx, {**env, "EDGEINF_CHAT_PREFILL": flag}, args.key_s)
                )
    on = statistics.median(r["ttft_s"] for r in runs["on"])
    off = statistics.median(r["ttft_s"] for r in runs["off"])
    report = {"model": args.model, "runs": runs, "ttft_on_s": on, "ttft_off_s": off}
    print(json.dumps({**report, "speedup": off / on}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
