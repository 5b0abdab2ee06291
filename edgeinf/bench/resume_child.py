"""One measurement of `edgeinf bench resume`, in a fresh process: nothing is warm but the OS.

Usage: python -m edgeinf.bench.resume_child MODE MODEL STATE_DIR N_CTX SESSION PROMPT_JSON
MODE is cold (prefill everything), resume (restore the session, prefill the rest),
peer-save or peer-resume (llama-cpp-python's LlamaDiskCache). Prints one JSON object.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

from edgeinf.bench.peers import PeerDiskCache
from edgeinf.config import load_settings
from edgeinf.service.local import ChatService, engine_options
from edgeinf.service.local_answer import ChatRequest
from edgeinf.types import Message, SamplingParams

ONE_TOKEN = SamplingParams(max_tokens=1, temperature=0.0)


def main(argv: list[str]) -> dict[str, float | int]:
    mode, model, state_dir, n_ctx, session = argv[:5]
    messages = tuple(Message.from_dict(m) for m in json.loads(argv[5]))
    # Speculation is off: with one token to generate it has nothing to do, and its one-time
    # calibration must not land in a time-to-first-token.
    settings = load_settings(n_ctx=int(n_ctx), state_dir=Path(state_dir), speculative="off")
    if mode.startswith("peer"):
        return _peer(mode, model, settings.state_dir, messages, settings)
    service = ChatService(settings, model)
    try:
        started = time.perf_counter()
        local = service.local(
            ChatRequest(messages, ONE_TOKEN, session_id=session if mode == "resume" else None)
        )
        "".join(local)  # the one token
        ttft = time.perf_counter() - started
        assert local.result is not None
        return {
            "ttft_s": ttft,
            "restored": local.result.restored_tokens,
            "prefilled": local.result.prefilled_tokens,
            "restore_s": local.result.restore.seconds,
        }
    finally:
        service.close()


def _peer(
    mode: str, model: str, state_dir: Path, messages: tuple[Message, ...], settings: object
) -> dict[str, float | int]:
    from edgeinf.catalog import open_store, resolve_verified
    from edgeinf.config import Settings
    from edgeinf.engine.engine import Engine

    assert isinstance(settings, Settings)
    path = resolve_verified(open_store(settings), model).path
    opts = engine_options(settings)
    with Engine(path, opts) as engine:  # the same prompt tokens as edgeinf
        prompt = engine.chat_tokens(messages)
    with contextlib.redirect_stderr(io.StringIO()):  # LlamaDiskCache prints to stderr
        peer = PeerDiskCache(path, opts, state_dir / "peer-cache")
        try:
            if mode == "peer-save":
                peer.complete(prompt)
                ttft = 0.0
            else:
                ttft = peer.ttft(prompt)
        finally:
            peer.close()
    return {"ttft_s": ttft, "prompt": len(prompt)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
