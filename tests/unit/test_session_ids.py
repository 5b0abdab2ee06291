"""Session ids are checked, and never become paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeinf.errors import InvalidRequestError
from edgeinf.sessions.ids import check_session_id, new_session_id
from edgeinf.sessions.store import SessionStore

BAD = [
    "",
    "../etc/passwd",
    "..",
    "a/b",
    "a\\b",
    "/abs",
    "a\x00b",
    "a\nb",
    " spaced",
    "\uff53\uff45\uff53\uff53\uff49\uff4f\uff4e",  # "session" in full-width look-alikes
    "s\u0435ssion",  # with a Cyrillic e
    "x" * 10_000,
    "-leading-dash",
    ".hidden",
]


@pytest.mark.reliability(9)
@pytest.mark.parametrize("session_id", BAD)
def test_bad_ids_are_refused(session_id: str) -> None:
    with pytest.raises(InvalidRequestError, match="session id"):
        check_session_id(session_id)


@pytest.mark.parametrize("session_id", ["chat-1", "A_b-9", new_session_id()])
def test_good_ids_are_accepted(session_id: str) -> None:
    assert check_session_id(session_id) == session_id


@pytest.mark.reliability(9)
def test_error_message_is_bounded_for_huge_ids() -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_session_id("y" * 10_000)
    assert len(str(info.value)) < 300


@pytest.mark.reliability(9)
@pytest.mark.parametrize("key", ["../" * 8 + "etc/passwd", "/etc/passwd", "AB" * 32, "ab" * 33])
def test_state_files_are_named_by_digests_only(key: str, tmp_path: Path) -> None:
    """A session id never names a file (its state is found by content); a state file's
    name is a sha256 hex digest, and nothing else is accepted as one."""
    store = SessionStore(tmp_path / "state", 1 << 20)
    assert store.snapshot_path("ab" * 32).parent == store.prefix_dir
    with pytest.raises(ValueError, match="digests"):
        store.snapshot_path(key)
    store.close()


@pytest.mark.reliability(23)
def test_state_directories_are_private(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state", 1 << 20)
    for d in (store.root, store.prefix_dir, store.quarantine_dir):
        assert d.stat().st_mode & 0o777 == 0o700
    store.close()
