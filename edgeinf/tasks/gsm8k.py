"""GSM8K: grade-school word problems whose answer is one number."""

from __future__ import annotations

import json
import re
from importlib.resources import files

from edgeinf.tasks import Task
from edgeinf.types import Message

INSTRUCTION = "Solve the problem step by step. End with a last line of the form '#### <number>'."
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")  # a written number, commas allowed


def tasks() -> list[Task]:
    text = files("edgeinf.tasks").joinpath("data/gsm8k_train_sample.jsonl").read_text()
    out: list[Task] = []
    for line in text.splitlines():
        row = json.loads(line)
        gold = row["answer"].rsplit("####", 1)[1].strip()
        out.append(
            Task(
                id=row["id"],
                kind="gsm8k",
                messages=(Message("user", f"{row['question']}\n\n{INSTRUCTION}"),),
                max_tokens=320,
                reference=gold,
                steps=row["answer"].count("<<"),
            )
        )
    return out


def final_number(answer: str) -> float | None:
    """The number after the last '####', else the last number in the text."""
    tail = answer.rsplit("####", 1)[1] if "####" in answer else answer
    found = NUMBER.findall(tail) or NUMBER.findall(answer)
    if not found:
        return None
    try:
        return float(found[0 if "####" in answer else -1].replace(",", ""))
    except ValueError:
        return None


def grade(task: Task, answer: str) -> bool:
    got = final_number(answer)
    return got is not None and abs(got - float(task.reference.replace(",", ""))) < 1e-6
