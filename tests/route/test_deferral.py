"""The deferral rule at run time: after the local answer, and while it is written, the remote
answers instead when the rule says so, in `edgeinf run` and in the server alike."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

from edgeinf.errors import ConfigError
from edgeinf.route.deferral import DEFERRAL, FEATURES, VERDICT, Deferral, Watch, features
from edgeinf.route.logistic import Logistic
from edgeinf.route.router import shipped_routers
from edgeinf.service.turn import DEFERRAL_NOTICE, MIDWAY_NOTICE
from edgeinf.types import TokenLogprob
from tests.conftest import DRAFT, TARGET, FaultRemote
from tests.route.test_run_routing import QUESTION, run
from tests.server.conftest import start

REMOTE_SAYS = "The remote model says: forty-two."


def rule(bias: float = 0.0, midway: float | None = None, check: float = 0.0) -> Deferral:
    """A rule that leans on the execution check by `check` and on nothing else but `bias`."""
    d = len(FEATURES)
    weights = np.zeros(d)
    weights[FEATURES.index("execution_check")] = check
    return Deferral(Logistic(np.zeros(d), np.ones(d), weights, bias), 0.5, midway)


def router_with(tmp_path: Path, deferral: Deferral) -> Path:
    """The shipped 0.5B -> 1.5B router, with this deferral rule beside it."""
    shipped = next(p for p in shipped_routers() if p.name == f"{DRAFT}__{TARGET}")
    out = tmp_path / "router"
    shutil.copytree(shipped, out)
    deferral.write(out)
    return out


def token(logprob: float) -> TokenLogprob:
    return TokenLogprob(1, b"x", logprob, ((1, b"x", logprob), (2, b"y", logprob - 0.5)))


def test_a_rule_reads_back_as_written_and_a_bad_one_says_retrain(tmp_path: Path) -> None:
    written = rule(bias=1.0, midway=2.5, check=3.0)
    written.write(tmp_path)
    back = Deferral.read(tmp_path)
    assert back is not None and back.midway == 2.5 and back.threshold == 0.5
    row = features(0.3, [-0.1, -2.0], [1.0, 0.1], False, False)
    assert back.chance(row) == pytest.approx(written.chance(row))
    assert Deferral.read(tmp_path / "none") is None
    (tmp_path / DEFERRAL).write_text('{"format": 1, "features": ["old"]}')
    with pytest.raises(ConfigError, match="route train"):
        Deferral.read(tmp_path)


def test_the_watch_trips_at_the_mark_and_runs_the_prompts_examples() -> None:
    watch = Watch(rule(midway=2.0, check=4.0), pre=0.2, threshold=0.5)
    assert not watch.saw([token(-0.1), token(-1.9)])
    assert watch.saw([token(-0.2), token(-2.1)])
    assert watch.worst == pytest.approx(2.1)
    assert watch.margins == pytest.approx([0.5] * 4)
    prompt = "Write add(a, b).\nassert add(2, 3) == 5"
    right = watch.chance(prompt, "```python\ndef add(a, b):\n    return a + b\n```", cut=False)
    wrong = watch.chance(prompt, "```python\ndef add(a, b):\n    return a - b\n```", cut=False)
    unsure = watch.chance("Say hi.", "Hi!", cut=False)
    assert wrong > unsure > right  # failed example, no verdict, passed example
    assert VERDICT[None] == 0.5


@pytest.mark.slow
def test_run_hands_a_likely_wrong_answer_to_the_remote_after_and_during_it(
    fault_remote: FaultRemote, tmp_path: Path, draft_path: Path, encoder: tuple[Path, Path]
) -> None:
    env = {"EDGEINF_ROUTE_ESCALATION_RATE": "0"}  # the router keeps the question local

    def ask(deferral: Deferral, name: str, *args: str) -> dict[str, Any]:
        router = router_with(tmp_path / name, deferral)
        return run(
            fault_remote, tmp_path / "state", "--remote-model", TARGET, *args, QUESTION,
            env={**env, "EDGEINF_ROUTER_DIR": str(router)},
        )  # fmt: skip

    after = ask(rule(bias=8.0), "after")
    assert after["route"]["reason"] == "deferral" and after["text"] == REMOTE_SAYS
    assert after["route"]["score"] >= after["route"]["threshold"] == 0.5
    kept = ask(rule(bias=-8.0), "kept")
    assert (kept["route"]["target"], kept["route"]["reason"]) == ("local", "router")
    assert kept["text"] and kept["model"] == DRAFT
    midway = ask(rule(bias=-8.0, midway=0.0), "midway")  # every token reaches a mark of 0
    assert (midway["route"]["target"], midway["route"]["reason"]) == ("remote", "deferral_midway")
    assert midway["text"] == REMOTE_SAYS and midway["route"]["threshold"] == 0.0
    off = ask(rule(bias=8.0), "off", "--route", "local")  # an explicit route is obeyed
    assert off["route"]["reason"] == "override"
    assert fault_remote.stats()["chat_requests"] == 2
    fault_remote.script(default="500")  # handed over, the remote fails: answered locally again
    fallen = ask(rule(bias=-8.0, midway=0.0), "fallen")
    assert (fallen["route"]["target"], fallen["route"]["fallback"]) == ("local", True)
    assert fallen["text"] and fallen["model"] == DRAFT


@pytest.mark.slow
def test_the_server_streams_the_hand_over_with_its_notice(
    fault_remote: FaultRemote, tmp_path: Path, draft_path: Path, encoder: tuple[Path, Path]
) -> None:
    router = router_with(tmp_path, rule(bias=8.0))
    server = start(
        tmp_path, "--remote-url", fault_remote.url, "--remote-model", TARGET,
        model=DRAFT,
        env={"EDGEINF_ROUTER_DIR": str(router), "EDGEINF_ROUTE_ESCALATION_RATE": "0"},
    )  # fmt: skip
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        chunks = client.chat.completions.create(
            model=DRAFT,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
        text, route = "", dict[str, Any]()
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                assert chunk.choices[0].logprobs is None  # read by the rule, not sent
            route = (chunk.model_extra or {}).get("route") or route
        local, _, remote = text.partition(DEFERRAL_NOTICE)
        assert local.strip() and remote == REMOTE_SAYS
        assert route["reason"] == "deferral" and MIDWAY_NOTICE not in text
    finally:
        server.stop()
