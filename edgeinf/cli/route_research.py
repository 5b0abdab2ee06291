"""`edgeinf route train|eval`: answer gradable tasks with both models, fit a router, measure it."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from urllib.parse import urlsplit

import numpy as np

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.cli.main import settings_from
from edgeinf.config import Settings
from edgeinf.errors import InvalidRequestError
from edgeinf.research.answering import local_answers, remote_answers
from edgeinf.research.card import MODEL_CARD, model_card, with_held_out
from edgeinf.research.collect import (
    ANSWERS_DIR,
    Answer,
    cache_path,
    load_cached,
    second_sample_path,
)
from edgeinf.research.deferral import trained
from edgeinf.research.report import pair_report
from edgeinf.research.signals import applied_report, signal_report
from edgeinf.research.tasks import load
from edgeinf.research.train import (
    Graded,
    features,
    fit_router,
    graded,
    metrics,
    nested_oof,
    targets,
    write_router,
)
from edgeinf.route.cascade import SECOND_SAMPLE_TEMPERATURE
from edgeinf.route.deferral import Deferral
from edgeinf.route.dispatch import encoder_files
from edgeinf.route.encoder import SentenceEncoder
from edgeinf.route.features import query_text
from edgeinf.route.router import Card, Router
from edgeinf.tasks import Task

ORACLE = "oracle: answers every question right (a stand-in for a frontier model, not a model)"


def _local(settings: Settings, ref: str | None) -> tuple[str, str]:
    model = resolve_verified(open_store(settings), ref or settings.default_model)
    return model.name, model.digest()


def _tasks(args: argparse.Namespace) -> list[Task]:
    tasks = load(tuple(k.strip() for k in args.tasks.split(",") if k.strip()), args.limit)
    cap = getattr(args, "max_tokens", None)
    if cap is not None:
        if cap < 1:
            raise InvalidRequestError("--max-tokens must be at least 1")
        tasks = [replace(t, max_tokens=min(t.max_tokens, cap)) for t in tasks]
    return tasks


def _cache_suffix(args: argparse.Namespace) -> str:
    """Answers capped shorter are another experiment: they get their own cache."""
    cap = getattr(args, "max_tokens", None)
    return f"@max{cap}" if cap is not None else ""


def _remote_key(settings: Settings) -> str:
    host = urlsplit(settings.remote_url or "").hostname or "remote"
    return f"remote_{host}_{settings.remote_model}"


def train(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not 0 < args.escalation_rate < 1:
        raise InvalidRequestError("--escalation-rate must be between 0 and 1, e.g. 0.35")
    tasks = _tasks(args)
    name, sha = _local(settings, args.model)
    local_path = cache_path(settings.state_dir, f"local_{sha[:16]}{_cache_suffix(args)}")
    local = local_answers(settings, args.model, tasks, local_path, args.concurrency)
    if args.cascade:
        local_answers(
            settings,
            args.model,
            tasks,
            second_sample_path(local_path),
            args.concurrency,
            SECOND_SAMPLE_TEMPERATURE,
        )
    remote = None
    if args.kind == "pair":
        remote_path = cache_path(settings.state_dir, _remote_key(settings) + _cache_suffix(args))
        remote = remote_answers(settings, tasks, remote_path, args.concurrency)
    data = graded(tasks, local, remote)
    encoder = SentenceEncoder(*encoder_files(settings))
    x = features(encoder, tasks)
    candidates = targets(args.kind, data)
    fitted = fit_router(x, candidates, data)
    pre = nested_oof(x, candidates, data)
    figures = metrics(data, pre)
    remote_tokens = sum(a.prompt_tokens + a.completion_tokens for a in (remote or {}).values())
    card = {
        "kind": args.kind,
        "local_model": name,
        "local_sha256": sha,
        "remote_model": settings.remote_model if args.kind == "pair" else None,
        "target": fitted.target,
        "trained_on": {
            "tasks": sorted({t.kind for t in tasks}),
            "n": len(tasks),
            "remote_tokens": remote_tokens,
        },
        "metrics": figures,
    }
    suffix = settings.remote_model if args.kind == "pair" else "local-failure"
    out = args.out or settings.state_dir / "routers" / f"{name}__{suffix}"
    deferral = trained(data, local, pre)
    figures_of_rule = None if deferral is None else deferral.metrics
    write_router(out, fitted, card, args.escalation_rate, model_card(card, args, figures_of_rule))
    if deferral is not None:
        deferral.write(out)
    print(
        json.dumps(
            {
                "router": str(out),
                "metrics": figures,
                "deferral": figures_of_rule,
                "remote_tokens": remote_tokens,
            }
        )
    )
    return 0


def evaluate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    tasks = _tasks(args)
    name, sha = _local(settings, args.model)
    local_path = cache_path(settings.state_dir, f"local_{sha[:16]}{_cache_suffix(args)}")
    local = load_cached(local_path)
    if args.card and (args.router is None or not args.oracle):
        raise InvalidRequestError(
            "--card writes a router's held-out figures against the oracle remote; add --router "
            "DIR --oracle"
        )
    if args.oracle:
        return _against_oracle(settings, args, name, [t for t in tasks if t.id in local], local)
    remote = load_cached(cache_path(settings.state_dir, _remote_key_any(settings, args)))
    tasks = [t for t in tasks if t.id in local and t.id in remote]
    if not tasks:
        raise InvalidRequestError("no cached answers for this pair; run `edgeinf route train`")
    data = graded(tasks, local, remote)
    if args.router is not None:
        return _applied(settings, args, name, data, local, str(settings.remote_model))
    x = features(SentenceEncoder(*encoder_files(settings)), tasks)
    second = load_cached(second_sample_path(local_path))
    report = {
        "local": name,
        "remote": settings.remote_model,
        "n": len(tasks),
        **pair_report(data, x, local, remote, second, args.folds),
    }
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _against_oracle(
    settings: Settings,
    args: argparse.Namespace,
    name: str,
    tasks: list[Task],
    local: dict[str, Answer],
) -> int:
    if not tasks:
        raise InvalidRequestError(
            "no cached local answers for these tasks; run `edgeinf route train --kind "
            "local-failure` with the same --tasks first"
        )
    data = graded(tasks, local, None)
    if args.router is not None:
        return _applied(settings, args, name, data, local, ORACLE)
    x = features(SentenceEncoder(*encoder_files(settings)), tasks)
    pre = nested_oof(x, targets("local-failure", data), data, args.folds)
    report = {
        "local": name,
        "remote": ORACLE,
        "n": len(tasks),
        "local_failure_router": metrics(data, pre),
        **signal_report(data, local, pre, args.folds),
    }
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _applied(
    settings: Settings,
    args: argparse.Namespace,
    name: str,
    data: Graded,
    local: dict[str, Answer],
    remote: str,
) -> int:
    """A router trained on other questions and its deferral rule, read on these answers."""
    router = Router(args.router, Card.read(args.router), SentenceEncoder(*encoder_files(settings)))
    deferral = Deferral.read(args.router)
    if deferral is None:
        raise InvalidRequestError(
            f"{args.router} has no deferral rule; retrain it with `edgeinf route train`"
        )
    pre = np.asarray(router.score_texts([query_text(t.messages) for t in data.tasks]))
    applied = applied_report(data, local, pre, deferral)
    if args.card:
        card = args.router / MODEL_CARD
        command = (
            f"edgeinf route eval --oracle --router DIR --tasks {args.tasks}"
            f"{f' --limit {args.limit}' if args.limit else ''} --model {name}"
        )
        earlier = card.read_text() if card.is_file() else ""
        card.write_text(with_held_out(earlier, applied, command))
    report = {"local": name, "remote": remote, "router": str(args.router), **applied}
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _remote_key_any(settings: Settings, args: argparse.Namespace) -> str:
    """The remote's cache name; any host serving that model name when no URL is given."""
    suffix = _cache_suffix(args)
    if settings.remote_url:
        return _remote_key(settings) + suffix
    answers = settings.state_dir / ANSWERS_DIR
    found = sorted(answers.glob(f"remote_*_{settings.remote_model}{suffix}.jsonl"))
    if not found:
        raise InvalidRequestError("no cached remote answers; pass --remote-url or train first")
    return found[0].stem
