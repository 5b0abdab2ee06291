"""Session ids: short, plain ASCII, and never a path."""

from __future__ import annotations

import re
import secrets

from edgeinf.errors import InvalidRequestError

# The owner of sessions made on the command line (and by a server without an API key);
# a server with a key owns its sessions under a principal derived from the key.
LOCAL_OWNER = "local"

_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SESSION_ID_PATTERN = f"^{_VALID.pattern}$"  # the same rule, for API documents


def check_session_id(session_id: str) -> str:
    """Return the id if it is safe to use as a file name; raise InvalidRequestError if not."""
    if not isinstance(session_id, str) or not _VALID.fullmatch(session_id):
        shown = repr(session_id[:40]) + ("…" if len(session_id) > 40 else "")
        raise InvalidRequestError(
            f"session id {shown} is invalid: use 1-64 ASCII letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return session_id


def new_session_id() -> str:
    return secrets.token_hex(8)
