"""Time to first token of a conversation's next turn: re-prefilled cold vs restored from disk.

Every measurement runs in a fresh process (only the OS page cache is warm, as it would be
for a user reopening a conversation), alternating cold and resumed, and beside them
llama-cpp-python's own disk cache (`LlamaDiskCache`) resuming the same conversation.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeinf.bench.report import header, summary
from edgeinf.catalog.store import LocalModel
from edgeinf.config import Settings
from edgeinf.engine.native import library_version, system_info
from edgeinf.service.local import ChatService
from edgeinf.service.local_answer import ChatRequest
from edgeinf.types import Message, SamplingParams

NEXT_QUESTION = "Summarise what the code above does in two sentences."


def _corpus() -> list[str]:
    """Real source text nobody here wrote: modules of the Python standard library."""
    import argparse
    import json as json_mod
    import textwrap

    return [inspect.getsource(m) for m in (textwrap, json_mod.decoder, argparse)]


def build_history(service: ChatService, target_tokens: int) -> tuple[Message, ...]:
    """A multi-turn conversation of about `target_tokens` tokens."""
    text = "\n".join(_corpus())
    messages: list[Message] = []
    pos = 0
    while len(service.engine.chat_tokens(messages or [Message("user", "")])) < target_tokens:
        piece = text[pos : pos + 1200]
        pos += 1200
        messages += [Message("user", f"Read this code:\n{piece}"), Message("assistant", "Done.")]
    return tuple(messages)


def _child(
    mode: str, model: str, state_dir: Path, n_ctx: int, session: str, messages: tuple[Message, ...]
) -> dict[str, Any]:
    payload = json.dumps([m.as_dict() for m in messages])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeinf.bench.resume_child",
            mode,
            model,
            str(state_dir),
            str(n_ctx),
            session,
            payload,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def bench_resume(
    settings: Settings, model: LocalModel, lengths: list[int], repeat: int
) -> dict[str, Any]:
    n_ctx = max(lengths) + 512
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeinf-bench-") as tmp:
        for length in lengths:
            rows.append(_one_length(settings, model, Path(tmp), n_ctx, length, repeat))
    return {
        **header(model, library_version(), system_info()),
        "n_ctx": n_ctx,
        "repeat": repeat,
        "lengths": rows,
    }


def _one_length(
    settings: Settings, model: LocalModel, tmp: Path, n_ctx: int, length: int, repeat: int
) -> dict[str, Any]:
    state = tmp / f"state-{length}"
    session = f"bench-{length}"
    saves: dict[str, dict[str, float]] = {}
    for kv_type in ("q8_0", "f16"):  # f16 last: its state is the one resumed below
        saves[kv_type] = _save_turn(settings, model, state, n_ctx, kv_type, session, length)
    history = _saved_messages(state, session)
    messages = (*history, Message("user", NEXT_QUESTION))
    cold, warm, peer, restore_s = [], [], [], []
    restored = prefilled = 0
    for i in range(repeat):
        cold.append(
            _child("cold", str(model.path), tmp / f"cold-{length}-{i}", n_ctx, session, messages)[
                "ttft_s"
            ]
        )
        r = _child("resume", str(model.path), state, n_ctx, session, messages)
        warm.append(r["ttft_s"])
        restore_s.append(r["restore_s"])
        restored, prefilled = r["restored"], r["prefilled"]
        peer_dir = tmp / f"peer-{length}-{i}"
        _child("peer-save", str(model.path), peer_dir, n_ctx, session, history)
        peer.append(
            _child("peer-resume", str(model.path), peer_dir, n_ctx, session, messages)["ttft_s"]
        )
    c, w, p, rs = summary(cold), summary(warm), summary(peer), summary(restore_s)
    # Cold TTFT = prefill of everything + first token; resumed = restore + prefill of the new
    # suffix + first token. Their difference isolates the prefill that restoring replaced.
    replaced_prefill = c["median"] - (w["median"] - rs["median"])
    return {
        "context_tokens": restored + prefilled,
        "restored_tokens": restored,
        "prefilled_tokens": prefilled,
        "ttft_cold_s": c,
        "ttft_resumed_s": w,
        "ttft_llama_cpp_python_disk_cache_s": p,
        "speedup": round(c["median"] / w["median"], 1),
        "restore_s": rs,
        "restore_vs_prefill_of_same_tokens": round(replaced_prefill / rs["median"], 1),
        "speedup_llama_cpp_python": round(c["median"] / p["median"], 1),
        "save": saves,
    }


def _save_turn(
    settings: Settings,
    model: LocalModel,
    state: Path,
    n_ctx: int,
    kv_type: str,
    session: str,
    length: int,
) -> dict[str, float]:
    """Create the conversation as one turn and time how long keeping it costs."""
    cfg = settings.model_copy(update={"state_dir": state, "n_ctx": n_ctx, "kv_type": kv_type})
    service = ChatService(cfg, str(model.path))
    try:
        history = build_history(service, length)
        local = service.local(
            ChatRequest(
                history[:-1], SamplingParams(max_tokens=1, temperature=0), session_id=session
            )
        )
        pieces = iter(local)
        next(pieces, None)  # the one token
        started = time.perf_counter()
        for _ in pieces:  # the answer's end, where its state is kept
            pass
        service.flush()
        elapsed = time.perf_counter() - started
        assert local.result is not None
        result = local.result
        saved = int(result.saved["saved_bytes"])
        tokens = result.n_prompt + result.completion.usage.completion_tokens
        return {
            "save_s": round(elapsed, 4),
            "export_s": round(result.saved["export_s"], 4),  # the decode loop's share
            "write_s": round(result.saved["write_s"], 4),
            "bytes": saved,
            "tokens": tokens,
            "bytes_per_token": round(saved / tokens),
        }
    finally:
        service.close()


def _saved_messages(state: Path, session: str) -> tuple[Message, ...]:
    from edgeinf.sessions.ids import LOCAL_OWNER
    from edgeinf.sessions.store import SessionStore

    store = SessionStore(state, 1 << 40)
    try:
        row = store.get(LOCAL_OWNER, session)
        assert row is not None
        return row.messages
    finally:
        store.close()
