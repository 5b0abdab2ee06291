"""What a long conversation remembers under each context policy: facts told in its first
turn, then code to read turn by turn until the conversation is several times the context,
then a question about the facts. The conversation is sent whole each turn (no session id),
as OpenAI clients do.

    python tools/context_policies.py --url http://127.0.0.1:8080 --model M \\
        --conversations 6 --turns 14 --policy truncate --policy summarize

Prints, per policy, how many of the facts the last answer recalled, the time of the last
turn (its summary, if any, already written in the background) and of all turns."""

from __future__ import annotations

import argparse
import inspect
import statistics
import textwrap
import time
from typing import Any

import httpx

NAMES = ["Ada", "Boris", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiro"]
PROJECTS = ["Pixelwrap", "Ferrocart", "Lumenpath", "Quillbox", "Tidepool", "Oakmesh"]
SOURCE = inspect.getsource(textwrap)


def facts(i: int) -> tuple[str, str, str]:
    """(name, project, deadline day) of conversation i."""
    return NAMES[i % len(NAMES)], PROJECTS[i % len(PROJECTS)], str(11 + 3 * i)


def ask(url: str, model: str, messages: list[Any], policy: str) -> tuple[str, float, Any]:
    started = time.perf_counter()
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={
            "model": model,
            "messages": messages,
            "max_tokens": 48,
            "temperature": 0,
            "context_policy": policy,
        },
        timeout=600,
    )
    r.raise_for_status()
    body = r.json()
    return body["choices"][0]["message"]["content"] or "", time.perf_counter() - started, body


def conversation(url: str, model: str, i: int, turns: int, policy: str) -> dict[str, Any]:
    name, project, day = facts(i)
    messages: list[Any] = [
        {"role": "system", "content": "You are a helpful coding assistant."},
        {
            "role": "user",
            "content": f"I am {name}, my project is called {project} and it is due on "
            f"the {day}th. Please help me review some code.",
        },
    ]
    spent = 0.0
    for t in range(turns):
        answer, took, _ = ask(url, model, messages, policy)
        spent += took
        piece = SOURCE[((t + 5 * i) * 600) % (len(SOURCE) - 600) :][:600]
        messages += [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": f"Next part of the code:\n```python\n{piece}\n```"},
        ]
    messages[-1] = {
        "role": "user",
        "content": "Remind me: what is my name, what is my project called and when is it due?",
    }
    answer, last, body = ask(url, model, messages, policy)
    recalled = sum(f.lower() in answer.lower() for f in (name, project, day))
    return {
        "recalled": recalled,
        "last_s": last,
        "total_s": spent + last,
        "prompt_tokens": body["usage"]["prompt_tokens"],
        "context": body.get("context"),
        "answer": answer,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--conversations", type=int, default=6)
    ap.add_argument("--turns", type=int, default=14)
    ap.add_argument("--policy", action="append", choices=["truncate", "summarize"])
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    for policy in a.policy or ["truncate", "summarize"]:
        runs = [conversation(a.url, a.model, i, a.turns, policy) for i in range(a.conversations)]
        if a.verbose:
            for r in runs:
                print(f"  {r['recalled']}/3 {r['context']} {r['answer']!r}")
        recalled = sum(r["recalled"] for r in runs)
        print(
            f"{policy:9s} facts recalled {recalled}/{3 * len(runs)}  "
            f"last turn median {statistics.median(r['last_s'] for r in runs):.2f} s  "
            f"all turns median {statistics.median(r['total_s'] for r in runs):.1f} s  "
            f"last prompt {statistics.median(r['prompt_tokens'] for r in runs):.0f} tok"
        )


if __name__ == "__main__":
    main()
