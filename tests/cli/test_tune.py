"""`edgeinf tune` measures on the real 270M model and its profile changes the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeinf.config import load_settings
from edgeinf.profile import DeviceProfile, profile_path
from edgeinf.tune.tune import choose_kv
from tests.cli.test_cli import edgeinf


def test_a_written_profile_changes_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEINF_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("EDGEINF_THREADS", raising=False)
    monkeypatch.delenv("EDGEINF_KV_TYPE", raising=False)
    before = load_settings()
    DeviceProfile(profile_path(tmp_path)).put(
        "defaults",
        "runtime",
        {"threads": 7, "kv_type": "q8_0", "speculative": "off", "parallel": 3},
    )
    after = load_settings()
    assert (before.threads, before.kv_type, before.speculative, before.parallel) == (
        None, "f16", "auto", 2,
    )  # fmt: skip
    assert (after.threads, after.kv_type, after.speculative, after.parallel) == (
        7,
        "q8_0",
        "off",
        3,
    )
    # what a user sets still wins: flags, and the environment
    assert load_settings(threads=2).threads == 2
    monkeypatch.setenv("EDGEINF_KV_TYPE", "f16")
    assert load_settings().kv_type == "f16"


@pytest.mark.slow
def test_quick_tune_measures_writes_the_profile_and_a_plot(tmp_path: Path, tiny_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / tiny_path.name).symlink_to(tiny_path)
    png = tmp_path / "tune.png"
    env = {"EDGEINF_MODELS_DIR": str(store), "EDGEINF_STATE_DIR": str(tmp_path / "state")}
    proc = edgeinf(
        "tune", "-m", "gemma-3-270m-q4_k_m", "--quick", "--json", "--plot", str(png),
        env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    kinds = [r["kind"] for r in result["rows"]]
    assert kinds.count("kv") == 3 and kinds.count("quant") == 1 and "threads" in kinds
    assert kinds.count("speculative") == 3 and kinds.count("parallel") == 2
    for r in result["rows"]:
        assert r["decode_tok_s"] > 0
        if r["kind"] in ("quant", "kv"):
            assert r["peak_rss_mb"] > 100 and 0 <= r["accuracy"] <= 1
    parallel = {r["parallel"]: r for r in result["rows"] if r["kind"] == "parallel"}
    assert all(r["aggregate_tok_s"] > 0 for r in parallel.values())
    assert result["defaults"]["speculative"] in ("off", "ngram", "auto")
    assert result["defaults"]["parallel"] in (1, 2)
    kv = {r["kv_type"]: r for r in result["rows"] if r["kind"] == "kv"}
    assert kv["q8_0"]["kv_bytes_per_token"] < kv["f16"]["kv_bytes_per_token"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "state" / "profile.json").read_text())
    assert saved["defaults"]["runtime"]["threads"] == result["defaults"]["threads"]


def test_a_kv_type_that_costs_quality_is_never_the_default() -> None:
    """Measured on the 0.5B: q4_0 was the fastest KV type, and tripled perplexity."""
    kvs = [
        {"kv_type": "f16", "decode_tok_s": 60.6, "ppl_change": 0.0, "kv_bytes_per_token": 12288},
        {"kv_type": "q8_0", "decode_tok_s": 58.0, "ppl_change": 0.002, "kv_bytes_per_token": 6528},
        {"kv_type": "q4_0", "decode_tok_s": 63.2, "ppl_change": 2.0, "kv_bytes_per_token": 3456},
    ]
    assert choose_kv(kvs, 4096) == "f16"  # room to spare: the fastest of the good ones
    assert choose_kv(kvs, 1 << 40) == "q8_0"  # no room: the smallest of the good ones
