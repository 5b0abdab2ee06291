"""What a q8_0 KV cache does to answers, before recommending it for saved sessions.

Greedy answers to GSM8K questions with an f16 and a q8_0 KV cache on the same model: how
many answers are identical, where they diverge, and how many final numbers are right.

    python tools/kv_quality.py --model qwen2.5-coder-1.5b-instruct-q4_k_m --questions 20
"""

from __future__ import annotations

import argparse
import json
import re
from importlib.resources import files

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.config import load_settings
from edgeinf.engine.engine import Engine
from edgeinf.engine.once import answer_once
from edgeinf.service.local import engine_options
from edgeinf.types import Message, SamplingParams


def _questions(n: int) -> list[dict[str, str]]:
    text = files("edgeinf.bench").joinpath("data/gsm8k_sample.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()][:n]


def _number(text: str) -> str | None:
    found = re.findall(r"-?\d[\d,]*\.?\d*", text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    p.add_argument("--questions", type=int, default=20)
    p.add_argument("--tokens", type=int, default=256)
    args = p.parse_args()
    settings = load_settings()
    model = resolve_verified(open_store(settings), args.model)
    params = SamplingParams(max_tokens=args.tokens, temperature=0)
    rows = _questions(args.questions)
    answers: dict[str, list[tuple[int, ...]]] = {}
    correct: dict[str, int] = {}
    for kv in ("f16", "q8_0"):
        opts = engine_options(settings.model_copy(update={"kv_type": kv}))
        with Engine(model.path, opts) as engine:
            outs = []
            correct[kv] = 0
            for row in rows:
                prompt = engine.chat_tokens([Message("user", row["question"])])
                completion = answer_once(engine, prompt, params).completion
                outs.append(completion.token_ids)
                truth = row["answer"].split("####")[-1].strip().replace(",", "")
                correct[kv] += _number(completion.text) == truth
            answers[kv] = outs
    same = sum(a == b for a, b in zip(answers["f16"], answers["q8_0"], strict=True))
    diverge = [
        next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
        for a, b in zip(answers["f16"], answers["q8_0"], strict=True)
    ]
    print(
        json.dumps(
            {
                "model": model.name,
                "questions": len(rows),
                "max_tokens": args.tokens,
                "identical_answers": same,
                "first_divergence_token": [d for d in diverge if d is not None],
                "correct_f16": correct["f16"],
                "correct_q8_0": correct["q8_0"],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
