"""`edgeinf run` with a remote: every remote fault still yields an answer, marked as a fallback;
private conversations never reach the remote; the daily budget holds across processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import edgeinf
from tests.conftest import DRAFT, TARGET, FaultRemote

QUESTION = "What is two plus two?"


def run(
    remote: FaultRemote, state: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    proc = edgeinf(
        "run", "-m", DRAFT, "--json", "-t", "0", "--max-tokens", "8",
        "--remote-url", remote.url, "--remote-model", "big", *args,
        env={
            "EDGEINF_STATE_DIR": str(state),
            "EDGEINF_REMOTE_TIMEOUT_S": "3",
            "EDGEINF_REMOTE_READ_TIMEOUT_S": "1",
            "EDGEINF_REMOTE_RETRIES": "2",
            **(env or {}),
        },
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["stderr"] = proc.stderr
    return out


@pytest.mark.reliability(27)
@pytest.mark.slow
@pytest.mark.parametrize(
    ("default", "attempts"),
    [("hang", (2, 3)), ("drip", (1, 1)), ("429:120", (1, 1)), ("500", (3, 3)), ("401", (1, 1))],
)
def test_a_failing_remote_still_gets_the_user_a_local_answer(
    fault_remote: FaultRemote,
    tmp_path: Path,
    draft_path: Path,
    default: str,
    attempts: tuple[int, int],
) -> None:
    fault_remote.script(default=default)
    out = run(fault_remote, tmp_path, "--route", "remote", QUESTION)
    route = out["route"]
    assert (route["target"], route["fallback"]) == ("local", True)
    assert route["reason"] == ("remote_auth" if default == "401" else "offline")
    assert attempts[0] <= route["attempts"] <= attempts[1]
    assert route["attempts"] == fault_remote.stats()["chat_requests"]
    assert out["text"].strip() and out["model"] == DRAFT
    assert "answering locally" in out["stderr"]


@pytest.mark.reliability(27)
@pytest.mark.slow
def test_closed_port_and_cut_stream_fall_back(
    fault_remote: FaultRemote, tmp_path: Path, draft_path: Path
) -> None:
    fault_remote.script("cut")
    out = run(fault_remote, tmp_path, "--route", "remote", QUESTION)
    assert (out["route"]["fallback"], out["route"]["attempts"]) == (True, 1)
    fault_remote.stop()
    out = run(fault_remote, tmp_path, "--route", "remote", QUESTION)
    assert (out["route"]["fallback"], out["route"]["attempts"]) == (True, 3)
    assert out["text"].strip()


@pytest.mark.slow
def test_the_remote_answers_and_the_session_keeps_its_turn(
    fault_remote: FaultRemote, tmp_path: Path, draft_path: Path
) -> None:
    out = run(fault_remote, tmp_path, "--route", "remote", "--session", "s1", QUESTION)
    assert out["text"] == "The remote model says: forty-two."
    assert out["route"] == {**out["route"], "target": "remote", "fallback": False, "attempts": 1}
    shown = edgeinf("sessions", "show", "s1", "--json", env={"EDGEINF_STATE_DIR": str(tmp_path)})
    messages = json.loads(shown.stdout)["messages"]
    assert messages[-1] == {"role": "assistant", "content": "The remote model says: forty-two."}
    nxt = run(fault_remote, tmp_path, "--route", "local", "--session", "s1", "And three more?")
    assert nxt["route"]["target"] == "local"
    assert nxt["session"]["prefilled_tokens"] > 0


@pytest.mark.reliability(31)
@pytest.mark.slow
def test_private_conversations_never_reach_the_remote(
    fault_remote: FaultRemote, tmp_path: Path, draft_path: Path
) -> None:
    flagged = run(fault_remote, tmp_path, "--route", "remote", "--private", "-s", "p1", QUESTION)
    # the session stays private on later turns, even without the flag
    later = run(fault_remote, tmp_path, "--route", "remote", "-s", "p1", "Say it again.")
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
    pattern = run(fault_remote, tmp_path, "--route", "remote", f"Is this key valid? {key}")
    fault_remote.script(default="500")  # not even as a fallback
    offline = run(fault_remote, tmp_path, "--route", "remote", "--private", QUESTION)
    for out in (flagged, later, pattern, offline):
        assert (out["route"]["target"], out["route"]["reason"]) == ("local", "private")
        assert out["route"]["attempts"] == 0
    stats = fault_remote.stats()
    assert (stats["connections"], stats["bytes"], stats["chat_requests"]) == (0, 0, 0)


@pytest.mark.slow
def test_the_daily_budget_holds_across_processes(
    fault_remote: FaultRemote, tmp_path: Path, draft_path: Path
) -> None:
    env = {"EDGEINF_ROUTE_REQUESTS_PER_DAY": "1"}
    first = run(fault_remote, tmp_path, "--route", "remote", QUESTION, env=env)
    second = run(fault_remote, tmp_path, "--route", "remote", QUESTION, env=env)
    assert first["route"]["target"] == "remote"
    assert (second["route"]["target"], second["route"]["reason"]) == ("local", "budget")
    assert second["route"]["fallback"] is True
    assert fault_remote.stats()["chat_requests"] == 1


@pytest.mark.slow
def test_the_cascade_escalates_when_two_local_samples_disagree(
    fault_remote: FaultRemote, tmp_path: Path, draft_path: Path, encoder: tuple[Path, Path]
) -> None:
    env = {"EDGEINF_ROUTE_CASCADE": "1", "EDGEINF_ROUTE_ESCALATION_RATE": "0"}
    ask = "Write a random six-digit number and nothing else."
    out = run(fault_remote, tmp_path, "--remote-model", TARGET, ask, env=env)
    assert (out["route"]["target"], out["route"]["reason"]) == ("remote", "cascade")
    assert out["text"] == "The remote model says: forty-two."
    private = run(fault_remote, tmp_path, "--remote-model", TARGET, "--private", ask, env=env)
    assert private["route"]["reason"] == "private"
    assert fault_remote.stats()["chat_requests"] == 1
