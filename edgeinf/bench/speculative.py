"""Speculative decoding against plain decoding of the same model, and against peers.

Per prompt, the modes run back to back in a rotating order (plain, auto, ngram, history,
draft), greedy; every speculative output is compared token for token with the plain one.
`history` is auto whose n-gram drafts also copy from the answers it wrote to the earlier
prompts of the run (engine.history): on a workload of one kind of request, what drafts
across requests add. Peers:
llama-cpp-python's `LlamaPromptLookupDecoding` and llama.cpp's `llama-speculative-simple`.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeinf.bench.peers import PeerLlama
from edgeinf.bench.report import header
from edgeinf.bench.workloads import prompts
from edgeinf.catalog.store import LocalModel
from edgeinf.engine.calibrate import calibrate
from edgeinf.engine.drafters import ModelDrafter
from edgeinf.engine.engine import Engine
from edgeinf.engine.history import History
from edgeinf.engine.native import library_version, system_info
from edgeinf.engine.once import Outcome, answer_once
from edgeinf.engine.options import EngineOptions
from edgeinf.speculate import lanes_for
from edgeinf.types import Message, SamplingParams


def _tok_s(tokens: int, seconds: float) -> float:
    return round(tokens / seconds, 2) if seconds > 0 else 0.0


class _Tally:
    def __init__(self) -> None:
        self.tokens = 0
        self.seconds = 0.0
        self.drafted = 0
        self.accepted = 0
        self.mismatches = 0

    def add(self, answer: Outcome, reference: tuple[int, ...] | None) -> None:
        c = answer.completion
        self.tokens += max(c.usage.completion_tokens - 1, 0)
        self.seconds += c.timings.total_s - c.timings.ttft_s
        self.drafted += answer.drafted
        self.accepted += answer.accepted
        if reference is not None and c.token_ids != reference:
            self.mismatches += 1

    def report(self) -> dict[str, Any]:
        return {
            "decode_tok_s": _tok_s(self.tokens, self.seconds),
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance": round(self.accepted / self.drafted, 3) if self.drafted else None,
            "outputs_differing_from_plain": self.mismatches,
        }


def bench_speculative(
    target: LocalModel,
    draft: LocalModel | None,
    opts: EngineOptions,
    workload: str,
    n_prompts: int,
    max_tokens: int,
    llama_tools: Path | None,
    exact: bool = False,
    history_budget: int = 0,
) -> dict[str, Any]:
    if exact:
        opts = replace(opts, exact=True)  # batched logits equal one-at-a-time logits
    texts = prompts(workload, n_prompts)
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    spec_modes = ["auto", "ngram"] + (["history"] if history_budget else [])
    spec_modes += ["draft"] if draft else []
    history = History(history_budget)
    tallies = {m: _Tally() for m in ["plain", *spec_modes]}
    rendered: list[str] = []
    prompt_tokens: list[list[int]] = []
    with Engine(target.path, opts) as engine:
        draft_engine = Engine(draft.path, opts) if draft else None
        try:
            drafter = ModelDrafter(draft_engine, engine) if draft_engine else None
            cost = calibrate(engine, draft_engine)
            for i, text in enumerate(texts):
                messages = [Message("user", text)]
                rendered.append("".join(s.text for s in engine.template.render(messages)))
                tokens = engine.chat_tokens(messages)
                prompt_tokens.append(tokens)
                batch = cost.exact_batch if exact else None
                plain = answer_once(engine, tokens, params, exact_batch=batch)
                tallies["plain"].add(plain, None)
                for mode in spec_modes[i % len(spec_modes) :] + spec_modes[: i % len(spec_modes)]:
                    if mode == "history":
                        lanes = lanes_for("auto", cost, drafter, history)
                    else:
                        lanes = lanes_for(mode, cost, drafter)
                    answer = answer_once(engine, tokens, params, lanes, exact_batch=batch)
                    tallies[mode].add(answer, plain.completion.token_ids)
        finally:
            if draft_engine is not None:
                draft_engine.close()
    base = tallies["plain"].report()["decode_tok_s"]
    modes = {
        m: {**t.report(), "ratio_vs_plain": round(t.report()["decode_tok_s"] / base, 3)}
        for m, t in tallies.items()
    }
    peers: dict[str, Any] = {
        "llama_cpp_python_prompt_lookup": _peer_lookup(target, opts, prompt_tokens, max_tokens)
    }
    if llama_tools is not None and draft is not None:
        peers["llama_speculative_simple"] = _llama_speculative(
            llama_tools, target, draft, opts, rendered, max_tokens
        )
    for peer in peers.values():
        peer["auto_vs_peer"] = round(modes["auto"]["decode_tok_s"] / peer["decode_tok_s"], 3)
    return {
        **header(target, library_version(), system_info()),
        "draft": draft.name if draft else None,
        "workload": workload,
        "prompts": len(texts),
        "max_tokens": max_tokens,
        "threads": opts.threads,
        "exact": exact,
        "verify_cost": cost.verify,
        "history_tokens": history.tokens,
        "draft_step_cost": cost.draft_step,
        "modes": modes,
        "peers": peers,
    }


def _peer_lookup(
    target: LocalModel, opts: EngineOptions, prompt_tokens: list[list[int]], max_tokens: int
) -> dict[str, Any]:
    """llama-cpp-python's prompt lookup decoding (num_pred_tokens=10, its default)."""
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    peer = PeerLlama(target.path, opts, draft_model=LlamaPromptLookupDecoding())
    tokens = seconds = 0.0
    try:
        for prompt in prompt_tokens:
            rate, n = peer.decode_tok_s(prompt, max_tokens)
            if n > 1 and rate > 0:
                tokens += n - 1
                seconds += (n - 1) / rate
    finally:
        peer.close()
    return {"decode_tok_s": _tok_s(int(tokens), seconds)}


_SPEED = re.compile(r"decoded\s+(\d+) tokens in\s+([\d.]+) seconds")
_ACCEPT = re.compile(r"accept\s*=\s*([\d.]+)%")


def _llama_speculative(
    tools: Path,
    target: LocalModel,
    draft: LocalModel,
    opts: EngineOptions,
    rendered: list[str],
    max_tokens: int,
) -> dict[str, Any]:
    """llama.cpp's own speculative example with the same pair, greedy."""
    tokens = 0
    seconds = 0.0
    accepts: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(rendered):
            prompt = Path(tmp) / f"p{i}.txt"
            prompt.write_text(text)
            out = subprocess.run(
                [
                    str(tools / "llama-speculative-simple"),
                    "-m",
                    str(target.path),
                    "-md",
                    str(draft.path),
                    "-f",
                    str(prompt),
                    "-n",
                    str(max_tokens),
                    "--temp",
                    "0",
                    "-t",
                    str(opts.threads),
                    "-c",
                    str(opts.n_ctx),
                    "--spec-type",
                    "draft-simple",
                    "--spec-draft-n-max",
                    "4",
                    "--spec-draft-n-min",
                    "0",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            log = out.stdout + out.stderr
            if m := _SPEED.search(log):
                tokens += int(m.group(1))
                seconds += float(m.group(2))
            if m := _ACCEPT.search(log):
                accepts.append(float(m.group(1)) / 100)
    return {
        "decode_tok_s": _tok_s(tokens, seconds),
        "acceptance": round(sum(accepts) / len(accepts), 3) if accepts else None,
    }
