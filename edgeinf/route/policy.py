"""Where a query goes: a pure function of what is known when it arrives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Target = Literal["local", "remote"]
Override = Literal["auto", "local", "remote"]
HYSTERESIS = 0.05  # score margin a session must cross to change sides


@dataclass(frozen=True)
class Facts:
    override: Override = "auto"
    private: bool = False  # marked private, or matched a private pattern
    remote_configured: bool = False
    remote_up: bool = True  # False while the circuit breaker is open
    within_budget: bool = True
    score: float | None = None  # None: no router for this model
    threshold: float = 1.0
    last_target: Target | None = None  # the session's previous decision


@dataclass(frozen=True)
class Decision:
    target: Target
    reason: str
    score: float | None
    threshold: float | None
    fallback: bool = False  # wanted the remote, answered locally
    attempts: int = 0  # requests made to the remote

    def as_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "reason": self.reason,
            "score": None if self.score is None else round(self.score, 4),
            "threshold": None if self.threshold is None else round(self.threshold, 4),
            "fallback": self.fallback,
            "attempts": self.attempts,
        }


def decide(f: Facts) -> Decision:
    """Privacy first, then the explicit override, then the router; then budget and reachability."""
    threshold = None if f.score is None else _threshold(f)

    def local(reason: str, fallback: bool = False) -> Decision:
        return Decision("local", reason, f.score, threshold, fallback)

    if f.private:
        return local("private")
    if not f.remote_configured:
        return local("no_remote")
    if f.override == "local":
        return local("override")
    if f.override == "auto":
        if f.score is None or threshold is None:
            return local("no_router")
        if f.score < threshold:
            return local("router")
    reason = "override" if f.override == "remote" else "router"
    if not f.within_budget:
        return local("budget", fallback=True)
    if not f.remote_up:
        return local("offline", fallback=True)
    return Decision("remote", reason, f.score, threshold)


def _threshold(f: Facts) -> float:
    """A session stays on its side unless the score clearly crosses over."""
    if f.last_target == "remote":
        return max(0.0, f.threshold - HYSTERESIS)
    if f.last_target == "local":
        return min(1.0, f.threshold + HYSTERESIS)
    return f.threshold
