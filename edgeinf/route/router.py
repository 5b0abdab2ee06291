"""Load a trained router (card + ONNX head) for a local/remote pair and score queries with it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeinf.errors import ConfigError
from edgeinf.route.encoder import SentenceEncoder
from edgeinf.route.features import SHAPE_FEATURES, featurize, query_text
from edgeinf.types import Message

CARD = "router.json"
HEAD = "head.onnx"
FORMAT = 1
Kind = Literal["pair", "local-failure"]


@dataclass(frozen=True)
class Card:
    """What a router was trained for, and how its scores map to escalation rates."""

    kind: Kind
    local_model: str
    local_sha256: str
    remote_model: str | None  # None for a local-failure router
    threshold: float
    escalation_rate: float  # the share of training queries scored at or above `threshold`
    quantiles: tuple[float, ...]  # score quantiles 0.00 .. 1.00 on the training queries
    metrics: dict[str, Any]

    @classmethod
    def read(cls, directory: Path) -> Card:
        try:
            raw = json.loads((directory / CARD).read_text())
            if raw.get("format") != FORMAT or raw.get("features") != list(SHAPE_FEATURES):
                raise ValueError("written by another version of edgeinf")
            return cls(
                kind=raw["kind"],
                local_model=raw["local_model"],
                local_sha256=raw["local_sha256"],
                remote_model=raw.get("remote_model"),
                threshold=float(raw["threshold"]),
                escalation_rate=float(raw["escalation_rate"]),
                quantiles=tuple(float(q) for q in raw["quantiles"]),
                metrics=dict(raw.get("metrics", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"router {directory} is unreadable ({exc}); retrain it with `edgeinf route train`"
            ) from exc

    def threshold_at(self, rate: float | None) -> float:
        """The trained threshold, or the one for the configured escalation rate."""
        return self.threshold if rate is None else self.threshold_for(rate)

    def threshold_for(self, rate: float) -> float:
        """The score above which about `rate` of the training queries would escalate."""
        q = np.asarray(self.quantiles)
        return float(np.interp(1.0 - rate, np.linspace(0, 1, len(q)), q))


def candidates(router_dir: Path | None, state_dir: Path) -> list[Path]:
    """Where routers are looked for: the configured one alone, else those trained here
    (first) and those shipped with edgeinf."""
    if router_dir is not None:
        return [router_dir]
    return [*trained_routers(state_dir), *shipped_routers()]


def shipped_routers() -> list[Path]:
    root = Path(str(files("edgeinf.route").joinpath("shipped")))
    return sorted(p for p in root.iterdir() if (p / CARD).is_file()) if root.is_dir() else []


def trained_routers(state_dir: Path) -> list[Path]:
    root = state_dir / "routers"
    return sorted(p for p in root.iterdir() if (p / CARD).is_file()) if root.is_dir() else []


def find(
    candidates: list[Path], local_sha256: str, remote_model: str | None
) -> tuple[Path, Card] | None:
    """A pair router for exactly this pair, else a local-failure router for the local model."""
    cards = [(p, Card.read(p)) for p in candidates]
    mine = [(p, c) for p, c in cards if c.local_sha256 == local_sha256]
    for p, c in mine:
        if c.kind == "pair" and c.remote_model == remote_model:
            return p, c
    return next(((p, c) for p, c in mine if c.kind == "local-failure"), None)


class Router:
    """Scores a query: higher means more to gain from asking the remote model."""

    def __init__(self, directory: Path, card: Card, encoder: SentenceEncoder) -> None:
        import onnxruntime as ort

        started = time.perf_counter()
        self.directory, self.card, self.encoder = directory, card, encoder
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        try:
            self.head = ort.InferenceSession(
                str(directory / HEAD), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own plain errors
            raise ConfigError(
                f"router head {directory / HEAD} does not load ({exc}); retrain it with "
                "`edgeinf route train`"
            ) from exc
        self.load_s = encoder.load_s + time.perf_counter() - started

    def score(self, messages: tuple[Message, ...]) -> float:
        return self.score_texts([query_text(messages)])[0]

    def score_texts(self, texts: list[str]) -> list[float]:
        features = featurize(self.encoder, texts)
        out = self.head.run(None, {"features": features})[0]
        return [float(s) for s in out]
