"""Measure quant levels, KV cache types, thread counts, speculative modes and parallelism on
this device; keep the best defaults in the device profile, where the runtime reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from edgeinf.catalog.store import LocalModel, ModelStore
from edgeinf.config import Settings
from edgeinf.errors import EdgeinfError
from edgeinf.gguf.info import inspect
from edgeinf.guard import available_memory, physical_cores
from edgeinf.profile import DeviceProfile, profile_path

KV_TYPES = ("f16", "q8_0", "q4_0")
KV_PPL_TOLERANCE = 0.005  # a smaller KV cache is the default only if perplexity rises less
PARALLEL = (1, 2, 4)  # sequences decoded together, measured
SPEC_SLACK = 0.03
TASKS, QUICK_TASKS = 20, 3  # GSM8K problems graded per quant level and KV type
KV_MEMORY_SHARE = 0.25  # of available memory, for the KV cache of every sequence at full context


def measure(
    model: LocalModel, kv_type: str, threads: int, quick: bool, ppl: bool, **probe: Any
) -> dict[str, Any]:
    """One measurement in a fresh process: the engine's (child.py), or through the service
    when `probe` names one (service_probe.py)."""
    job = {
        "path": str(model.path),
        "kv_type": kv_type,
        "threads": threads,
        "decode_tokens": 32 if quick else 128,
        "ppl_tokens": (1024 if quick else 8192) if ppl else 0,
        "accuracy_tasks": (QUICK_TASKS if quick else TASKS) if ppl else 0,
        **probe,
    }
    module = "edgeinf.tune.service_probe" if probe else "edgeinf.tune.child"
    done = subprocess.run(
        [sys.executable, "-m", module, json.dumps(job)], capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeinfError(f"measuring {model.name} ({kv_type}, {probe or threads}) failed: {tail}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ladder(store: ModelStore, model: LocalModel) -> list[LocalModel]:
    """The local files of the same model at other precisions: same architecture, tokenizer
    and parameter count; largest first."""
    me = inspect(model.path)
    out = []
    for m in store.local_files():
        if m.path.suffix != ".gguf":
            continue
        try:
            info = inspect(m.path)
        except EdgeinfError:
            continue
        same = (info.architecture, info.tokenizer) == (me.architecture, me.tokenizer)
        if same and abs(info.parameters - me.parameters) <= 0.01 * me.parameters:
            out.append((info.file_size, m))
    return [m for _, m in sorted(out, key=lambda x: -x[0])]


def tune(
    settings: Settings,
    store: ModelStore,
    model: LocalModel,
    quick: bool,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    cores = physical_cores()
    rows: list[dict[str, Any]] = []

    def row(
        kind: str, m: LocalModel, kv: str, threads: int, ppl: bool, **probe: Any
    ) -> dict[str, Any]:
        progress(f"{kind}: {m.name}, KV {kv}, {threads} threads {_said(probe)}")
        r = {
            "kind": kind,
            "model": m.name,
            "quantization": inspect(m.path).quantization,
            "file_mb": round(m.path.stat().st_size / 1e6, 1),
            "kv_type": kv,
            "threads": threads,
            **{k: v for k, v in probe.items() if k != "state_dir"},
            **measure(m, kv, threads, quick, ppl, **probe),
        }
        rows.append(r)
        return r

    quants = [row("quant", m, "f16", cores, True) for m in ladder(store, model)]
    kvs = [row("kv", model, kv, cores, True) for kv in KV_TYPES]
    threads = [row("threads", model, "f16", t, False) for t in range(1, cores + 1)]
    best_threads = max(threads, key=lambda r: r["decode_tok_s"])["threads"]
    kv_type = choose_kv(_relative(kvs, "decode_tok_s"), settings.n_ctx * settings.parallel)
    _relative(quants, "decode_tok_s")
    modes = ["off", "ngram", "auto", *(["draft"] if settings.draft_model else [])]
    state = str(settings.state_dir)
    specs = [
        row("speculative", model, kv_type, best_threads, False, probe="speculative", mode=mode,
            draft=settings.draft_model, state_dir=state)
        for mode in modes
    ]  # fmt: skip
    sizes = (1, 2) if quick else PARALLEL
    par = [
        row("parallel", model, kv_type, best_threads, False, probe="parallel", parallel=n,
            state_dir=state)
        for n in sizes
    ]  # fmt: skip
    _relative(specs, "decode_tok_s")
    _relative(par, "aggregate_tok_s")
    defaults = {
        "threads": best_threads,
        "kv_type": kv_type,
        "speculative": choose_speculative(specs),
        "parallel": choose_parallel(par),
        "tuned_model": model.name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    profile = DeviceProfile(profile_path(settings.state_dir))
    profile.put("defaults", "runtime", defaults)
    profile.put("tune", model.name, rows)
    return {"defaults": defaults, "rows": rows, "profile": str(profile.path)}


def choose_kv(kvs: list[dict[str, Any]], tokens: int) -> str:
    """Among the KV cache types whose perplexity cost stays under the tolerance: the fastest
    while the cache for `tokens` fits easily in free memory, else the smallest."""
    ok = [r for r in kvs if r["ppl_change"] <= KV_PPL_TOLERANCE] or kvs[:1]
    roomy = available_memory() * KV_MEMORY_SHARE
    fits = [r for r in ok if r["kv_bytes_per_token"] * tokens <= roomy]
    if fits:
        return str(max(fits, key=lambda r: r["decode_tok_s"])["kv_type"])
    return str(min(ok, key=lambda r: r["kv_bytes_per_token"])["kv_type"])


def choose_speculative(rows: list[dict[str, Any]]) -> str:
    """The fastest mode over both workloads; `auto` (which decides per request) when it is
    within SPEC_SLACK of the fastest."""
    best = max(rows, key=lambda r: r["decode_tok_s"])
    auto = next((r for r in rows if r["mode"] == "auto"), None)
    if auto is not None and auto["decode_tok_s"] >= best["decode_tok_s"] * (1 - SPEC_SLACK):
        return "auto"
    return str(best["mode"])


def choose_parallel(rows: list[dict[str, Any]]) -> int:
    """The most throughput while each answer still streams at half the speed of one alone."""
    alone = rows[0]["decode_tok_s"]
    fine = [r for r in rows if r["decode_tok_s"] >= alone * 0.5] or rows[:1]
    return int(max(fine, key=lambda r: r["aggregate_tok_s"])["parallel"])


def _said(probe: dict[str, Any]) -> str:
    shown = ("mode", "draft", "parallel")
    return ", ".join(f"{k} {v}" for k, v in probe.items() if k in shown and v is not None)


def _relative(rows: list[dict[str, Any]], speed: str) -> list[dict[str, Any]]:
    """Speed (and perplexity, where measured) against the first row: the most precise model,
    f16 KV, speculation off, one sequence."""
    if rows:
        base = rows[0]
        for r in rows:
            r["speed_rel"] = round(r[speed] / base[speed], 3)
            if "perplexity" in r:
                r["ppl_change"] = round(r["perplexity"] / base["perplexity"] - 1, 4)
    return rows
