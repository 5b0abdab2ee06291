"""`edgeinf route train|score|eval`: fit a router for a local/remote pair, ask it, measure it."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.catalog.store import sha256_file
from edgeinf.cli.main import settings_from
from edgeinf.config import Settings
from edgeinf.errors import InvalidRequestError
from edgeinf.route import evaluate
from edgeinf.route.cascade import SECOND_SAMPLE_TEMPERATURE, agree
from edgeinf.route.collect import Answer, answer_all, cache_path, load_cached, timed
from edgeinf.route.dispatch import encoder_files, remote_config
from edgeinf.route.encoder import SentenceEncoder
from edgeinf.route.policy import Facts, decide
from edgeinf.route.remote import RemoteClient
from edgeinf.route.router import Router, find, shipped_routers, trained_routers
from edgeinf.route.train import features, fit_router, graded, labels, metrics, write_router
from edgeinf.service import ChatRequest, ChatService, Turn
from edgeinf.tasks import Task, load
from edgeinf.types import Message, SamplingParams


def run(args: argparse.Namespace) -> int:
    commands = {"train": train, "score": score, "eval": evaluate_cmd}
    return commands[args.route_command](args)


def _local(settings: Settings, ref: str | None) -> tuple[str, str]:
    model = resolve_verified(open_store(settings), ref or settings.default_model)
    return model.name, model.sha256 or sha256_file(model.path)


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


def _progress(label: str) -> Any:
    tokens = {"n": 0}

    def show(done: int, total: int, answer: Answer) -> None:
        tokens["n"] += answer.prompt_tokens + answer.completion_tokens
        if done == total or done % 10 == 0:
            print(f"{label}: {done}/{total} answered, {tokens['n']} tokens", file=sys.stderr)

    return show


def local_answers(
    settings: Settings,
    ref: str | None,
    tasks: list[Task],
    path: Path,
    concurrency: int,
    temperature: float = 0.0,
) -> dict[str, Answer]:
    if len(load_cached(path).keys() & {t.id for t in tasks}) == len(tasks):
        return answer_all(tasks, _unused, path, 1)
    service = ChatService(settings, ref, parallel=concurrency)
    service.start_batching(max_queue=concurrency)

    def ask(task: Task) -> tuple[str, int, int]:
        done = threading.Event()
        box: dict[str, Any] = {}

        def on_done(turn: Turn | None, error: BaseException | None) -> None:
            box["turn"], box["error"] = turn, error
            done.set()

        sampling = SamplingParams(max_tokens=task.max_tokens, temperature=temperature, seed=7)
        service.submit(ChatRequest(task.messages, sampling), lambda s: None, on_done)
        done.wait()
        if box["error"] is not None:
            raise box["error"]
        completion = box["turn"].completion
        usage = completion.usage
        return completion.text, usage.prompt_tokens, usage.completion_tokens

    try:
        label = "local" if temperature == 0 else "local second sample"
        return answer_all(tasks, lambda t: timed(t, ask), path, concurrency, _progress(label))
    finally:
        service.close()


def _unused(task: Task) -> Answer:
    raise AssertionError("every answer was cached")


def remote_answers(
    settings: Settings, tasks: list[Task], path: Path, concurrency: int
) -> dict[str, Answer]:
    config = remote_config(settings)
    if config is None:
        raise InvalidRequestError(
            "a pair router needs the remote: pass --remote-url and --remote-model"
        )
    client = RemoteClient(config)

    def ask(task: Task) -> tuple[str, int, int]:
        sampling = SamplingParams(max_tokens=task.max_tokens, temperature=0.0, seed=7)
        a = client.chat(task.messages, sampling)
        return a.text, a.prompt_tokens, a.completion_tokens

    try:
        return answer_all(tasks, lambda t: timed(t, ask), path, concurrency, _progress("remote"))
    finally:
        client.close()


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
            local_path.with_name(f"{local_path.stem}@t0.7.jsonl"),
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
    fitted = fit_router(x, labels(args.kind, data), data)
    figures = metrics(data, fitted.oof)
    remote_tokens = sum(a.prompt_tokens + a.completion_tokens for a in (remote or {}).values())
    card = {
        "kind": args.kind,
        "local_model": name,
        "local_sha256": sha,
        "remote_model": settings.remote_model if args.kind == "pair" else None,
        "trained_on": {
            "tasks": sorted({t.kind for t in tasks}),
            "n": len(tasks),
            "remote_tokens": remote_tokens,
        },
        "metrics": figures,
    }
    suffix = settings.remote_model if args.kind == "pair" else "local-failure"
    out = args.out or settings.state_dir / "routers" / f"{name}__{suffix}"
    write_router(out, fitted, card, args.escalation_rate, model_card(card, args))
    print(json.dumps({"router": str(out), "metrics": figures, "remote_tokens": remote_tokens}))
    return 0


def model_card(card: dict[str, Any], args: argparse.Namespace) -> str:
    m = card["metrics"]
    rows = "\n".join(
        f"| {k} | {v['n']} | {v['local_accuracy']:.3f} | {v['remote_accuracy']:.3f} | "
        f"{v['apgr']:.3f} | {v['pgr_at_50']:.3f} | {v['random_apgr']:.3f} | "
        f"{v['local_failure_oracle_apgr']:.3f} |"
        for k, v in m.items()
    )
    remote = card["remote_model"] or "a remote that is always right (local-failure router)"
    what = (
        "the probability that the remote answers correctly where the local model does not"
        if card["kind"] == "pair"
        else "the probability that the local model answers wrongly"
    )
    return f"""# Router: {card["local_model"]} -> {remote}

Scores {what}, from the last user message: all-MiniLM-L6-v2 sentence embedding (int8 ONNX)
plus length and structure signals, a logistic regression (ONNX head). Higher means escalate.

Trained on {card["trained_on"]["n"]} tasks ({", ".join(card["trained_on"]["tasks"])}): GSM8K
training-split problems (numeric answer) and HumanEval problems (executed tests), both models
greedy. Remote cost of the run: {card["trained_on"]["remote_tokens"]} tokens.

Cross-validated (5 folds, stratified by task; every score below comes from a model that did not
see the question):

| tasks | n | local | remote | APGR | PGR@50% | random APGR | local-failure oracle APGR |
|---|---|---|---|---|---|---|---|
{rows}

Retrain for your own pair (answers are cached, so a second run costs nothing):

    edgeinf route train --model {card["local_model"]} --remote-url URL --remote-model NAME \\
        --kind {card["kind"]} --tasks {args.tasks}{f" --limit {args.limit}" if args.limit else ""}
"""


def score(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    prompts = _prompts(args)
    name, sha = _local(settings, args.model)
    candidates = (
        [settings.router_dir]
        if settings.router_dir
        else [*trained_routers(settings.state_dir), *shipped_routers()]
    )
    found = find(candidates, sha, settings.remote_model)
    router = Router(*found, SentenceEncoder(*encoder_files(settings))) if found else None
    rate = settings.route_escalation_rate
    for prompt in prompts:
        facts = Facts(remote_configured=True)
        if router is not None:
            threshold = router.card.threshold if rate is None else router.card.threshold_for(rate)
            facts = Facts(
                remote_configured=True,
                score=router.score((Message("user", prompt),)),
                threshold=threshold,
            )
        d = decide(facts)
        out = {"target": d.target, "score": d.score, "threshold": d.threshold, "reason": d.reason}
        if router is not None:
            out["router"] = router.card.kind
        if args.json or args.file is not None:
            print(json.dumps(out), flush=True)
        else:
            print(f"{d.target} (score {d.score}, threshold {d.threshold}, {d.reason})")
    del name
    return 0


def _prompts(args: argparse.Namespace) -> list[str]:
    if args.file is None:
        if not args.prompt:
            raise InvalidRequestError("give a PROMPT, or --file F.jsonl (- for stdin)")
        return [args.prompt]
    fh = sys.stdin if args.file == "-" else open(args.file)  # noqa: SIM115
    prompts = []
    for n, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            prompts.append(str(json.loads(line)["prompt"]))
        except (ValueError, KeyError, TypeError):
            raise InvalidRequestError(
                f'line {n} of {args.file} is not {{"prompt": "..."}}; fix that line'
            ) from None
    return prompts


def evaluate_cmd(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    tasks = _tasks(args)
    name, sha = _local(settings, args.model)
    local_path = cache_path(settings.state_dir, f"local_{sha[:16]}")
    local = load_cached(local_path)
    remote = load_cached(cache_path(settings.state_dir, _remote_key_any(settings)))
    tasks = [t for t in tasks if t.id in local and t.id in remote]
    if not tasks:
        raise InvalidRequestError("no cached answers for this pair; run `edgeinf route train`")
    data = graded(tasks, local, remote)
    x = features(SentenceEncoder(*encoder_files(settings)), tasks)
    report: dict[str, Any] = {"local": name, "remote": settings.remote_model, "n": len(tasks)}
    fitted = fit_router(x, labels("pair", data), data, args.folds)
    report["pair_router"] = metrics(data, fitted.oof)
    fitted_lf = fit_router(x, labels("local-failure", data), data, args.folds)
    report["local_failure_router"] = metrics(data, fitted_lf.oof)
    second = load_cached(local_path.with_name(f"{local_path.stem}@t0.7.jsonl"))
    if all(t.id in second for t in tasks):
        disagree = np.asarray([not agree(local[t.id].text, second[t.id].text) for t in tasks])
        # disagreement first; the pre-generation score orders within each side
        combined = disagree.astype(float) + fitted.oof / 2
        report["cascade"] = metrics(data, combined)
        report["cascade_signal_only"] = metrics(data, disagree.astype(float))
        report["cascade_latency_s"] = {
            "local_mean": round(float(np.mean([local[t.id].seconds for t in tasks])), 3),
            "second_sample_mean": round(float(np.mean([second[t.id].seconds for t in tasks])), 3),
            "remote_mean": round(float(np.mean([remote[t.id].seconds for t in tasks])), 3),
        }
    curve = evaluate.curve(fitted.oof, data.local_ok, data.remote_ok)
    report["curve"] = [
        {"rate": r, "quality": round(curve.quality_at(r), 4), "pgr": round(curve.pgr_at(r), 4)}
        for r in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    ]
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _remote_key_any(settings: Settings) -> str:
    """The remote's cache name; any host serving that model name when no URL is given."""
    if settings.remote_url:
        return _remote_key(settings)
    found = sorted(
        (settings.state_dir / "route" / "answers").glob(f"remote_*_{settings.remote_model}.jsonl")
    )
    if not found:
        raise InvalidRequestError("no cached remote answers; pass --remote-url or train first")
    return found[0].stem
