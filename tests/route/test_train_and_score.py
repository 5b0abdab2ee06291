"""`edgeinf route train` against a real remote process serving the 1.5B model, and
`edgeinf route score` with the routers edgeinf ships."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from edgeinf.route.deferral import Deferral
from tests.cli.test_cli import assert_one_line_error, edgeinf
from tests.conftest import DRAFT, TARGET
from tests.server.conftest import Server


def chat_requests(server: Server) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    found = re.search(
        r'edgeinf_requests_total\{route="/v1/chat/completions",status="200"\} (\S+)', metrics
    )
    return float(found.group(1)) if found else 0.0


@pytest.mark.slow
def test_train_answers_with_both_models_and_writes_a_router(
    tmp_path: Path, remote_15b: Server, draft_path: Path, encoder: tuple[Path, Path]
) -> None:
    out = tmp_path / "router"
    args = (
        "route", "train", "-m", DRAFT, "--remote-url", f"{remote_15b.url}/v1",
        "--remote-model", TARGET, "--limit", "4", "--max-tokens", "48", "--concurrency", "2",
        "--out", str(out),
    )  # fmt: skip
    env = {"EDGEINF_STATE_DIR": str(tmp_path / "state")}
    proc = edgeinf(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["metrics"]["all"]["n"] == 4
    assert result["remote_tokens"] > 0
    assert "remote: 4/4 answered" in proc.stderr
    card = json.loads((out / "router.json").read_text())
    assert (card["kind"], card["remote_model"], card["local_model"]) == ("pair", TARGET, DRAFT)
    assert (out / "head.onnx").stat().st_size > 1000
    assert "edgeinf route train" in (out / "CARD.md").read_text()
    # the deferral rule, fitted on the same local answers' log-probabilities, beside it
    deferral = Deferral.read(out)
    assert deferral is not None and deferral.threshold == 0.5
    assert result["deferral"]["n"] == 4 and "cascade" in result["deferral"]
    written = (out / "CARD.md").read_text()
    assert "## Deferral rule" in written
    assert f"{result['deferral']['local_failure_auroc']:.3f}" in written
    # a second run reads every answer back: the remote is not asked again
    before = chat_requests(remote_15b)
    assert before > 0  # the first run asked the remote, and the server counted it
    again = edgeinf(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert chat_requests(remote_15b) == before
    # `route eval` reads the same cached answers back: nested figures and a learning curve
    evaluated = edgeinf(
        "route", "eval", "-m", DRAFT, "--remote-model", TARGET, "--limit", "4",
        "--max-tokens", "48", "--folds", "2", "--json", env=env,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["n"] == 4 and report["pair_router"]["all"]["n"] == 4
    assert [row["share"] for row in report["learning_curve"]] == [0.25, 0.5, 0.75, 1.0]
    assert report["curve"][0]["rate"] == 0.0 and report["curve"][-1]["rate"] == 1.0
    # against the oracle remote: the local model's failure, signal by signal, with the
    # log-probabilities the local answers were collected with
    oracle = edgeinf(
        "route", "eval", "-m", DRAFT, "--oracle", "--limit", "4", "--max-tokens", "48",
        "--folds", "2", "--json", env=env,
    )  # fmt: skip
    assert oracle.returncode == 0, oracle.stderr
    against = json.loads(oracle.stdout)
    assert against["remote"].startswith("oracle") and against["n"] == 4
    assert {"pre_generation", "max_doubt", "execution_check"} <= set(against["signals"])
    assert 0 <= against["signals"]["mean_doubt"]["auroc"] <= 1
    assert against["seconds_per_query"]["local_answer"]["mean"] > 0
    # the trained router and its rule read on answers, their figures written into its card
    for _ in range(2):  # a second reading replaces the first
        applied = edgeinf(
            "route", "eval", "-m", DRAFT, "--oracle", "--router", str(out), "--card",
            "--limit", "4", "--max-tokens", "48", "--json", env=env,
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
    read = json.loads(applied.stdout)
    assert read["n"] == 4 and set(read["deferral_rule_curve"]) >= {"apgr", "remote_share_for_90"}
    written = (out / "CARD.md").read_text()
    assert written.count("## Held out") == 1 and "| task | n | local accuracy |" in written
    assert f"AUROC of local failure: deferral rule {read['deferral_rule']['auroc']:.3f}" in (
        " ".join(written.split())
    )
    # the same against the real remote's cached answers (a card holds only the oracle's)
    real = edgeinf(
        "route", "eval", "-m", DRAFT, "--remote-model", TARGET, "--router", str(out),
        "--limit", "4", "--max-tokens", "48", "--json", env=env,
    )  # fmt: skip
    assert real.returncode == 0, real.stderr
    against_real = json.loads(real.stdout)
    assert against_real["remote"] == TARGET and against_real["n"] == 4
    assert against_real["deferral_rule"]["auroc"] == read["deferral_rule"]["auroc"]
    refused = edgeinf(
        "route", "eval", "-m", DRAFT, "--remote-model", TARGET, "--router", str(out), "--card",
        "--limit", "4", "--max-tokens", "48", env=env,
    )  # fmt: skip
    assert refused.returncode != 0 and "--oracle" in refused.stderr
    # and the router is used by `route score`
    scored = edgeinf(
        "route", "score", "-m", DRAFT, "--json", "What is 2 + 2?",
        env={**env, "EDGEINF_ROUTER_DIR": str(out), "EDGEINF_REMOTE_MODEL": TARGET},
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    decision = json.loads(scored.stdout)
    assert decision["router"] == "pair" and 0 <= decision["score"] <= 1


@pytest.mark.slow
def test_score_uses_the_shipped_pair_router_and_reads_json_lines(
    tmp_path: Path, draft_path: Path, encoder: tuple[Path, Path]
) -> None:
    lines = [
        {"prompt": "Write a Python function that reverses a linked list."},
        {"prompt": "A farmer has 12 cows and buys 3 times as many. How many now?"},
        {"prompt": "hello"},
    ]
    proc = edgeinf(
        "route", "score", "-m", DRAFT, "--remote-model", TARGET, "--file", "-",
        env={"EDGEINF_STATE_DIR": str(tmp_path)},
        stdin="".join(json.dumps(x) + "\n" for x in lines),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(out) == 3
    for d in out:
        assert d["router"] == "pair"
        assert d["target"] == ("remote" if d["score"] >= d["threshold"] else "local")
        assert d["reason"] == "router"


@pytest.mark.slow
def test_the_15b_as_local_model_falls_back_to_its_local_failure_router(
    tmp_path: Path, target_path: Path, encoder: tuple[Path, Path]
) -> None:
    proc = edgeinf(
        "route", "score", "-m", TARGET, "--remote-model", "some-cloud-model", "--json", "Hi",
        env={"EDGEINF_STATE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["router"] == "local-failure"


def test_score_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    proc = edgeinf("route", "score", "--file", str(bad), env={"EDGEINF_STATE_DIR": str(tmp_path)})
    assert_one_line_error(proc, "line 2", "fix that line")
    proc = edgeinf("route", "score", env={"EDGEINF_STATE_DIR": str(tmp_path)})
    assert_one_line_error(proc, "--file")
