"""Decode speed through a JSON schema's grammar against the same answers without one,
alternating runs on one engine: greedy (argmax picks) and sampled (the chain's picks)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from edgeinf.bench.report import header, summary
from edgeinf.catalog.store import LocalModel
from edgeinf.engine.engine import Engine
from edgeinf.engine.grammar import from_schema
from edgeinf.engine.native import library_version, system_info
from edgeinf.engine.once import answer_once
from edgeinf.engine.options import EngineOptions
from edgeinf.types import Message, SamplingParams

PROMPT = (
    "Invent three people for a novel. For each give a name, an age, a home city and a "
    "biography of several sentences. Answer as a JSON array."
)
SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "city": {"type": "string"},
            "biography": {"type": "string"},
        },
        "required": ["name", "age", "city", "biography"],
    },
}


def bench_structured(
    model: LocalModel, opts: EngineOptions, tokens: int, repeat: int
) -> dict[str, Any]:
    grammar = from_schema(SCHEMA, "schema")
    runs: dict[str, list[float]] = {}
    with Engine(model.path, opts) as engine:
        prompt = engine.chat_tokens((Message("user", PROMPT),))
        for label, temperature in (("greedy", 0.0), ("sampled", 0.8)):
            plain = SamplingParams(max_tokens=tokens, temperature=temperature, seed=7)
            shaped = replace(plain, grammar=grammar)
            for i in range(repeat + 1):  # the first round warms caches and is not counted
                for kind, params in (("plain", plain), ("json_schema", shaped)):
                    done = answer_once(engine, prompt, params).completion
                    if i:
                        runs.setdefault(f"{label}_{kind}", []).append(done.timings.decode_tok_s)
    out: dict[str, Any] = {
        **header(model, library_version(), system_info()),
        "threads": opts.threads,
        "tokens": tokens,
        "repeat": repeat,
    }
    for label in ("greedy", "sampled"):
        plain_s, shaped_s = summary(runs[f"{label}_plain"]), summary(runs[f"{label}_json_schema"])
        out[label] = {
            "plain_tok_s": plain_s,
            "json_schema_tok_s": shaped_s,
            "ratio": round(shaped_s["median"] / plain_s["median"], 3),
        }
    return out
