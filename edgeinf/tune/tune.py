"""Measure quant levels, KV cache types and thread counts on this device; keep the best
defaults in the device profile, where the runtime reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from edgeinf.catalog.info import inspect
from edgeinf.catalog.store import LocalModel, ModelStore
from edgeinf.config import Settings
from edgeinf.errors import EdgeinfError
from edgeinf.guard import available_memory, physical_cores
from edgeinf.profile import DeviceProfile, profile_path

KV_TYPES = ("f16", "q8_0", "q4_0")
KV_PPL_TOLERANCE = 0.005  # a smaller KV cache is the default only if perplexity rises less
KV_MEMORY_SHARE = 0.25  # of available memory, for the KV cache of every sequence at full context


def measure(
    model: LocalModel, kv_type: str, threads: int, quick: bool, ppl: bool
) -> dict[str, Any]:
    job = {
        "path": str(model.path),
        "kv_type": kv_type,
        "threads": threads,
        "decode_tokens": 32 if quick else 128,
        "ppl_tokens": (1024 if quick else 8192) if ppl else 0,
    }
    done = subprocess.run(
        [sys.executable, "-m", "edgeinf.tune.child", json.dumps(job)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgeinfError(f"measuring {model.name} ({kv_type}, {threads} threads) failed: {tail}")
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

    def row(kind: str, m: LocalModel, kv: str, threads: int, ppl: bool) -> dict[str, Any]:
        progress(f"{kind}: {m.name}, KV {kv}, {threads} threads")
        r = {
            "kind": kind,
            "model": m.name,
            "quantization": inspect(m.path).quantization,
            "file_mb": round(m.path.stat().st_size / 1e6, 1),
            "kv_type": kv,
            "threads": threads,
            **measure(m, kv, threads, quick, ppl),
        }
        rows.append(r)
        return r

    quants = [row("quant", m, "f16", cores, True) for m in ladder(store, model)]
    kvs = [row("kv", model, kv, cores, True) for kv in KV_TYPES]
    threads = [row("threads", model, "f16", t, False) for t in range(1, cores + 1)]
    _relative(quants, "decode_tok_s", "perplexity")
    _relative(kvs, "decode_tok_s", "perplexity")
    best_threads = max(threads, key=lambda r: r["decode_tok_s"])["threads"]
    kv_type = choose_kv(kvs, settings.n_ctx * settings.parallel)
    defaults = {
        "threads": best_threads,
        "kv_type": kv_type,
        "tuned_model": model.name,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    profile = DeviceProfile(profile_path(settings.state_dir))
    profile.put("defaults", "runtime", defaults)
    profile.put("tune", model.name, rows)
    return {"defaults": defaults, "rows": rows, "profile": str(profile.path)}


def choose_kv(kvs: list[dict[str, Any]], tokens: int) -> str:
    """The fastest KV cache type while the cache for `tokens` fits easily in free memory;
    else the smallest one whose perplexity cost stays under the tolerance."""
    roomy = available_memory() * KV_MEMORY_SHARE
    fits = [r for r in kvs if r["kv_bytes_per_token"] * tokens <= roomy]
    if fits:
        return str(max(fits, key=lambda r: r["decode_tok_s"])["kv_type"])
    ok = [r for r in kvs if r["ppl_change"] <= KV_PPL_TOLERANCE] or kvs[:1]
    return str(min(ok, key=lambda r: r["kv_bytes_per_token"])["kv_type"])


def _relative(rows: list[dict[str, Any]], speed: str, quality: str) -> None:
    """Speed and perplexity against the first (most precise) row."""
    if not rows:
        return
    base = rows[0]
    for r in rows:
        r["speed_rel"] = round(r[speed] / base[speed], 3)
        r["ppl_change"] = round(r[quality] / base[quality] - 1, 4)
