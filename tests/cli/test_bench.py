"""`edgeinf bench ...` end to end on the smallest model: the reports hold what they promise."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgeinf.engine.calibrate import BATCH_SIZES
from tests.cli.test_cli import edgeinf
from tests.conftest import DRAFT, TINY


def report(*args: str) -> dict[str, Any]:
    proc = edgeinf("bench", *args, "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout))


@pytest.mark.slow  # a benchmark run: the full suite's
@pytest.mark.usefixtures("tiny_path")
def test_bench_speculative_compares_every_mode_with_plain_and_the_peer() -> None:
    out = report(
        "speculative", "--model", TINY, "--workload", "edit", "--prompts", "2", "--tokens", "96"
    )
    # No draft model given; `history` is auto with the run's earlier answers.
    assert set(out["modes"]) == {"plain", "auto", "ngram", "history"}
    for mode in out["modes"].values():
        assert mode["decode_tok_s"] > 0 and mode["ratio_vs_plain"] > 0
    assert out["modes"]["plain"]["ratio_vs_plain"] == 1.0
    assert out["modes"]["ngram"]["drafted"] > 0  # an edit returns its input: drafts come
    assert out["peers"]["llama_cpp_python_prompt_lookup"]["decode_tok_s"] > 0
    assert sorted(map(int, out["verify_cost"])) == list(BATCH_SIZES)
    assert out["history_tokens"] > 0


@pytest.mark.usefixtures("tiny_path", "draft_path")
def test_bench_speculative_exact_outputs_equal_plain() -> None:
    out = report(
        "speculative",
        "--model",
        DRAFT,
        "--workload",
        "code",
        "--prompts",
        "2",
        "--tokens",
        "96",
        "--exact",
    )
    assert out["exact"] is True
    for mode in out["modes"].values():
        assert mode["outputs_differing_from_plain"] == 0


@pytest.mark.slow  # a benchmark run: the full suite's
@pytest.mark.usefixtures("tiny_path")
def test_bench_resume_restores_instead_of_prefilling() -> None:
    out = report("resume", "--model", TINY, "--context", "300", "--repeat", "1")
    (row,) = out["lengths"]
    assert row["restored_tokens"] > 250 and row["prefilled_tokens"] < 40
    assert row["ttft_cold_s"]["median"] > 0 and row["ttft_resumed_s"]["median"] > 0
    assert row["save"]["q8_0"]["bytes_per_token"] < row["save"]["f16"]["bytes_per_token"]


@pytest.mark.slow  # a benchmark run: the full suite's
@pytest.mark.usefixtures("tiny_path")
def test_bench_structured_times_the_schema_against_plain_answers() -> None:
    out = report("structured", "--model", TINY, "--tokens", "48", "--repeat", "1")
    for label in ("greedy", "sampled"):
        row = out[label]
        assert row["plain_tok_s"]["median"] > 0 and row["json_schema_tok_s"]["median"] > 0
        assert row["ratio"] == pytest.approx(
            row["json_schema_tok_s"]["median"] / row["plain_tok_s"]["median"], abs=0.002
        )


@pytest.mark.slow  # a benchmark run: the full suite's
@pytest.mark.usefixtures("draft_path")
def test_bench_route_times_the_decision_and_the_watch_on_the_same_answers() -> None:
    out = report(
        "route", "--model", DRAFT, "--remote-model", "qwen2.5-coder-1.5b-instruct-q4_k_m",
        "--repeat", "5", "--watch-rounds", "1", "--watch-tokens", "24",
    )  # fmt: skip
    assert out["prompt_tokens"] == 200 and out["p95_ms"] >= out["p50_ms"] > 0
    assert out["deferral_rule"] is False  # the shipped pair router was trained before it
    watch = out["watch"]["decode_tok_s"]
    assert watch["without"]["median"] > 0 and watch["watched"]["median"] > 0
    assert out["watch"]["added_to_decode_time"] > -0.5
