"""Resumed conversations with a real model: exact continuation, damage and mismatch survived."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from edgeinf.config import Settings, load_settings
from edgeinf.service.local import ChatService, conversation
from edgeinf.service.local_answer import ChatRequest, LocalResult
from edgeinf.types import Message, SamplingParams
from tests.cli.test_cli import edgeinf
from tests.conftest import DRAFT, TINY

GREEDY = SamplingParams(max_tokens=40, temperature=0)
Q1 = "Write a Python function that reverses a string."
Q2 = "Now make it also remove spaces."


def cfg(tmp_path: Path, **kw: object) -> Settings:
    return load_settings(
        default_model=DRAFT, n_ctx=2048, threads=2, state_dir=tmp_path / "state", **kw
    )


def answer(service: ChatService, request: ChatRequest) -> LocalResult:
    local = service.local(request)
    "".join(local)
    assert local.result is not None
    return local.result


def turn(service: ChatService, session: str, text: str) -> tuple[LocalResult, tuple[int, ...]]:
    messages = conversation(text, history=service.history(session))
    t = answer(service, ChatRequest(messages, GREEDY, session_id=session))
    service.flush()
    return t, t.completion.token_ids


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, draft_path: Path) -> tuple[int, ...]:
    """Turn two of a conversation whose process never stopped."""
    service = ChatService(cfg(tmp_path_factory.mktemp("u")))
    try:
        turn(service, "u", Q1)
        return turn(service, "u", Q2)[1]
    finally:
        service.close()


def test_resumed_turn_is_token_for_token_the_uninterrupted_one(
    tmp_path: Path, uninterrupted: tuple[int, ...]
) -> None:
    first = ChatService(cfg(tmp_path))
    turn(first, "r", Q1)
    first.close()
    second = ChatService(cfg(tmp_path))  # a new engine: nothing in memory
    t, tokens = turn(second, "r", Q2)
    second.close()
    assert tokens == uninterrupted
    assert t.restored_tokens > 50 and t.prefilled_tokens < 40


@pytest.mark.slow
def test_a_sliding_window_model_resumes_past_its_window(tmp_path: Path, tiny_path: Path) -> None:
    """Gemma 3 attends over a 512-token window in most layers; a conversation longer than
    that resumes from its saved state exactly as if the process had never stopped."""
    story = " ".join(
        f"On day {i} the gardener planted {i % 7 + 2} rows of beans." for i in range(60)
    )

    def gemma(state: Path) -> Settings:
        return load_settings(default_model=TINY, n_ctx=2048, threads=2, state_dir=state)

    straight = ChatService(gemma(tmp_path / "u"))
    turn(straight, "u", story)
    expected = turn(straight, "u", "How many rows on day 3?")[1]
    straight.close()
    first = ChatService(gemma(tmp_path / "r"))
    turn(first, "r", story)
    first.close()
    second = ChatService(gemma(tmp_path / "r"))
    t, tokens = turn(second, "r", "How many rows on day 3?")
    second.close()
    assert t.restored_tokens > 600
    assert tokens == expected


def saved_path(service: ChatService, session: str) -> Path:
    """The file of the state a session's last turn left."""
    row = service.keeper.store.get("local", session)
    assert row is not None and row.kv_key
    return service.keeper.store.snapshot_path(row.kv_key)


def _damage(how: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = bytearray(path.read_bytes())
        if how == "truncate":
            data = data[: len(data) // 2]
        elif how == "bitflip":
            data[len(data) // 2] ^= 0x10
        else:
            data[1000:200_000] = bytes(199_000)
        path.write_bytes(bytes(data))

    return apply


@pytest.mark.reliability(21, 43)
@pytest.mark.parametrize("how", ["truncate", "bitflip", "zerofill"])
def test_damaged_state_is_quarantined_and_the_answer_is_still_right(
    tmp_path: Path, uninterrupted: tuple[int, ...], how: str
) -> None:
    first = ChatService(cfg(tmp_path))
    turn(first, "d", Q1)
    path = saved_path(first, "d")
    first.close()
    _damage(how)(path)
    second = ChatService(cfg(tmp_path))
    t, tokens = turn(second, "d", Q2)
    quarantined = list(second.keeper.store.quarantine_dir.iterdir())
    second.close()
    assert tokens == uninterrupted
    assert t.restore.source == "none"
    assert len(quarantined) == 1


@pytest.mark.reliability(22, 43)
@pytest.mark.slow
def test_state_from_another_kv_type_is_not_restored(tmp_path: Path) -> None:
    first = ChatService(cfg(tmp_path))
    turn(first, "m", Q1)
    first.close()
    second = ChatService(cfg(tmp_path, kv_type="q8_0"))
    t, _ = turn(second, "m", Q2)
    second.close()
    assert t.restore.source == "none"


@pytest.mark.slow
def test_a_shared_system_prompt_is_prefilled_once(tmp_path: Path) -> None:
    system = "You are a terse assistant for Python questions. " * 4
    service = ChatService(cfg(tmp_path))
    messages = (Message("system", system), Message("user", "What is a list?"))
    first = answer(service, ChatRequest(messages, GREEDY))
    service.flush()
    service.close()
    other = ChatService(cfg(tmp_path))
    messages = (Message("system", system), Message("user", "What is a dict?"))
    second = answer(other, ChatRequest(messages, GREEDY))
    other.close()
    assert first.restore.source == "none" and second.restore.source == "disk"
    assert second.restored_tokens > 40


def test_a_client_without_a_session_id_resumes_after_a_restart(
    tmp_path: Path, uninterrupted: tuple[int, ...]
) -> None:
    """The conversation is sent whole each turn, as OpenAI clients do: its state is found
    by content, and the turn is token for token the one of a process that never stopped."""
    first = ChatService(cfg(tmp_path))
    one = answer(first, ChatRequest(conversation(Q1), GREEDY))
    first.flush()
    first.close()
    history = (*conversation(Q1), Message("assistant", one.completion.text))
    second = ChatService(cfg(tmp_path))
    two = answer(second, ChatRequest(conversation(Q2, history=history), GREEDY))
    second.close()
    assert two.completion.token_ids == uninterrupted
    assert two.cached_from == "disk" and two.restored_tokens > 50


@pytest.mark.reliability(43)
def test_a_conversation_that_lost_its_slot_comes_back_from_ram(
    tmp_path: Path, uninterrupted: tuple[int, ...]
) -> None:
    """One slot, two conversations taking turns: each one's second turn finds its state in
    the RAM tier (the disk copy gone), and answers as if it had kept the slot."""
    service = ChatService(cfg(tmp_path))
    one = answer(service, ChatRequest(conversation(Q1), GREEDY))
    answer(service, ChatRequest(conversation("Name three colours."), GREEDY))
    service.flush()
    for path in service.keeper.store.prefix_dir.glob("*.kv"):
        path.unlink()
    history = (*conversation(Q1), Message("assistant", one.completion.text))
    two = answer(service, ChatRequest(conversation(Q2, history=history), GREEDY))
    service.close()
    assert two.completion.token_ids == uninterrupted
    assert two.cached_from == "ram" and two.restored_tokens > 50


@pytest.mark.reliability(42)
@pytest.mark.slow
def test_another_principal_with_the_same_prompt_restores_nothing(tmp_path: Path) -> None:
    messages = (Message("system", "You review Python code. " * 8), Message("user", Q1))
    first = ChatService(cfg(tmp_path))
    answer(first, ChatRequest(messages, GREEDY, owner="key:alice"))
    first.flush()
    first.close()
    second = ChatService(cfg(tmp_path))  # no slot holds it: only the cache could
    mallory = answer(second, ChatRequest(messages, GREEDY, owner="key:mallory"))
    alice = answer(second, ChatRequest(messages, GREEDY, owner="key:alice"))
    second.close()
    assert mallory.restored_tokens == 0 and mallory.cached_from is None
    assert alice.restored_tokens > 50


def test_run_session_resumes_in_a_new_process(tmp_path: Path, draft_path: Path) -> None:
    env = {"EDGEINF_STATE_DIR": str(tmp_path / "state")}
    args = (
        "run",
        "-m",
        DRAFT,
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--session",
        "cli",
    )
    one = json.loads(edgeinf(*args, "My name is Ada.", env=env).stdout)
    two = json.loads(edgeinf(*args, "What is my name?", env=env).stdout)
    assert one["session"]["restored_tokens"] == 0 and one["session"]["saved_bytes"] > 0
    assert two["session"]["restored_tokens"] > 20
    assert "Ada" in two["text"]
    listed = json.loads(edgeinf("sessions", "list", "--json", env=env).stdout)
    assert [s["id"] for s in listed["sessions"]] == ["cli"]
    assert listed["sessions"][0]["messages"] == 4
    # the second turn's state covers the first's: one saved sequence is left
    assert [c["kv_tokens"] for c in listed["cached"]] == [listed["sessions"][0]["kv_tokens"]]


@pytest.mark.reliability(9)
def test_bad_session_id_is_refused_before_loading(tmp_path: Path) -> None:
    proc = edgeinf("run", "--session", "../../etc", "hi")
    assert proc.returncode == 1 and "session id" in proc.stderr
