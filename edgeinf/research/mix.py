"""A mixed set of graded questions, as a desktop assistant sees them (LLMRouter's file,
research/data).

Each row names its task and its metric; the prompt is written here per metric and the answer
graded by it, to a quality in [0, 1]:

- `em_mc`: the option letter the answer settles on (1 right, 0 otherwise).
- `f1_score`: token F1 against the gold answer, after SQuAD's normalization.
- `MATH`: the last `\\boxed{}` (or, without one, the last number) equals the gold one, as
  text after normalization or as a number.
- `GSM8K`: the final number, as for GSM8K elsewhere.
- `code_eval`: the answer's code passes the asserts (MBPP) or the check (HumanEval) in the
  sandbox.
- `commongen_coverage`: the share of the given words the sentence uses.

A question is answered well when its quality reaches `PASS` of its metric; that is the label
a deferral rule learns ("will the local model get this wrong").
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import re
import string
from collections import Counter
from importlib.resources import files
from pathlib import Path
from typing import Any

from edgeinf.errors import InvalidRequestError
from edgeinf.research import humaneval
from edgeinf.route.sandbox import code_of, passes
from edgeinf.tasks import Task, gsm8k
from edgeinf.types import Message

METRICS = ("em_mc", "f1_score", "MATH", "GSM8K", "code_eval", "commongen_coverage")
PASS = {"f1_score": 0.5, "commongen_coverage": 0.8}  # the others are 0 or 1
MAX_TOKENS = {
    "em_mc": 256,
    "f1_score": 48,
    "MATH": 512,
    "GSM8K": 320,
    "code_eval": 384,
    "commongen_coverage": 96,
}
_LETTERS = string.ascii_uppercase


def load(path: Path | None = None) -> list[Task]:
    """Every row of a mix file (by default the one shipped, research/data) as a task; ids are
    the task's name and the row's place among that task's rows."""
    try:
        if path is None:
            packed = files("edgeinf.research").joinpath("data/llmrouter_train.jsonl.gz")
            text = gzip.decompress(packed.read_bytes()).decode("utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc.strerror}; check the path") from exc
    # Rows end at "\n" only: questions hold U+2028 and other breaks that splitlines() cuts at.
    lines = text.split("\n")
    seen: Counter[str] = Counter()
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, metric = str(row["task_name"]), str(row["metric"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequestError(
                f"{path}:{number} is not a mix row (task_name, query, ground_truth, metric, "
                f"choices): {exc}"
            ) from exc
        if metric not in METRICS:
            raise InvalidRequestError(
                f"{path}:{number} has metric {metric!r}; known: {', '.join(METRICS)}"
            )
        seen[name] += 1
        out.append(_task(f"{name}-{seen[name]}", name, metric, row))
    return out


def held_out(task: Task, share: float = 0.2) -> bool:
    """Whether a task belongs to the held-out part: by a hash of its question, so the split
    is the same on every machine and does not move when rows are added."""
    text = task.messages[-1].content
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def _task(id_: str, name: str, metric: str, row: dict[str, Any]) -> Task:
    query, gold = str(row["query"]), row["ground_truth"]
    budget = MAX_TOKENS[metric]
    if metric == "em_mc":
        labels, texts = _options(row["choices"])
        listed = "\n".join(f"{label}. {text}" for label, text in zip(labels, texts, strict=True))
        prompt = f"{query}\n\n{listed}\n\nAnswer with the letter of the right option."
        return Task(id_, name, (Message("user", prompt),), budget, str(gold).strip(),
                    metric=metric, options=tuple(labels))  # fmt: skip
    if metric == "f1_score":
        prompt = f"{query}\n\nAnswer in a few words."
        return Task(id_, name, (Message("user", prompt),), budget, str(gold), metric=metric)
    if metric == "MATH":
        if "\\boxed" not in query:
            query += "\n\nPut your final answer in \\boxed{...}."
        return Task(id_, name, (Message("user", query),), budget, _final(str(gold)), metric=metric)
    if metric == "GSM8K":
        prompt = f"{query}\n\n{gsm8k.INSTRUCTION}"
        number = str(gold).rsplit("####", 1)[-1].strip()
        return Task(id_, name, (Message("user", prompt),), budget, number, metric=metric,
                    steps=str(gold).count("<<"))  # fmt: skip
    if metric == "code_eval":
        return _code(id_, name, query, gold, row.get("choices"))
    words = ", ".join(_concepts(str(gold)))
    prompt = f"Write one or two sentences that use all of these words: {words}."
    return Task(id_, name, (Message("user", prompt),), budget, words, metric=metric)


def _options(choices: Any) -> tuple[list[str], list[str]]:
    """(letters, texts) of a row's choices: a dict of text and label(s), or a plain list."""
    value = ast.literal_eval(choices) if isinstance(choices, str) else choices
    if isinstance(value, dict):
        texts = [str(t) for t in value["text"]]
        labels = [str(x) for x in value.get("labels") or value.get("label") or []]
    else:
        texts = [str(t) for t in value]
        labels = []
    return (labels or list(_LETTERS[: len(texts)])), texts


def _code(id_: str, name: str, query: str, gold: Any, choices: Any) -> Task:
    budget = MAX_TOKENS["code_eval"]
    if "def check(candidate)" in str(gold):  # HumanEval: the prompt is the function's head
        heads = re.findall(r"^def (\w+)\(", query, re.MULTILINE)
        return Task(id_, name, (Message("user", humaneval.prompt_text(query)),), budget,
                    str(gold), entry_point=heads[-1] if heads else "", prefix=query,
                    metric="code_eval")  # fmt: skip
    given = gold if gold else choices
    asserts = ast.literal_eval(given) if isinstance(given, str) else given
    tests = "\n".join(str(a) for a in asserts)
    prompt = f"{query}\nYour code should pass these tests:\n```python\n{tests}\n```"
    return Task(id_, name, (Message("user", prompt),), budget, tests, metric="code_eval")


def grade(task: Task, answer: str) -> float:
    """The answer's quality in [0, 1] by the task's metric."""
    metric = task.metric
    if metric == "em_mc":
        return float(choice(answer, task.options) == task.reference)
    if metric == "f1_score":
        return f1(answer, task.reference)
    if metric == "MATH":
        return float(same_answer(_final(answer), task.reference))
    if metric == "GSM8K":
        return float(gsm8k.grade(task, answer))
    if metric == "code_eval":
        if task.entry_point:
            return float(humaneval.grade(task, answer))
        return float(passes(f"{code_of(answer)}\n\n{task.reference}\n"))
    return coverage(answer, task.reference)


def passed(task: Task, quality: float) -> bool:
    return quality >= PASS.get(task.metric, 1.0)


def choice(answer: str, options: tuple[str, ...]) -> str | None:
    """The option letter an answer settles on: one it names as the answer, else one it
    starts with; None when it names none."""
    letters = "".join(re.escape(x) for x in options)
    if not letters:
        return None
    said = re.findall(rf"answer(?: is|:)?\s*(?:option\s*)?[(*]*([{letters}])\b", answer, re.I)
    if said:
        return str(said[-1]).upper()
    # A letter alone at the start ("B", "(B)", "**B.**", "B: train station"), not the
    # article of "A bus depot".
    first = re.match(rf"[\s(*]*([{letters}])(?:[).:*\]]|\s*$|\s*\n)", answer)
    return first.group(1) if first else None


def _normal_words(text: str) -> list[str]:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in string.punctuation)
    return re.sub(r"\b(a|an|the)\b", " ", text).split()


def f1(answer: str, gold: str) -> float:
    got, want = _normal_words(answer), _normal_words(gold)
    common = sum((Counter(got) & Counter(want)).values())
    if not got or not want or not common:
        return float(got == want)
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def _boxed(text: str) -> str | None:
    """The contents of the last \\boxed{...} (or \\fbox{...}), braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def _final(text: str) -> str:
    """A worked answer's final answer: the last box, else the last number, else the text."""
    boxed = _boxed(text)
    if boxed is not None:
        return boxed
    numbers = gsm8k.NUMBER.findall(text)
    return numbers[-1] if numbers else text.strip()


def _normal_math(text: str) -> str:
    text = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", text)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("dfrac", "frac"),
                     ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""),
                     ("$", ""), (" ", "")):  # fmt: skip
        text = text.replace(old, new)
    return text.rstrip(".").strip()


def same_answer(got: str, want: str) -> bool:
    a, b = _normal_math(got), _normal_math(want)
    if a == b:
        return True
    try:
        return abs(float(a.replace(",", "")) - float(b.replace(",", ""))) < 1e-6
    except ValueError:
        return False


def _concepts(words: str) -> list[str]:
    return [w.strip().lower() for w in words.split(",") if w.strip()]


def _uses(word: str, concept: str) -> bool:
    """A word of the sentence is a form of the concept: the concept itself, or it plus an
    ending (jog: jogging, dish: dishes; ride: riding)."""
    return word.startswith(concept) or (len(concept) > 3 and word.startswith(concept[:-1]))


def coverage(answer: str, words: str) -> float:
    concepts = _concepts(words)
    used = re.findall(r"[a-z]+", answer.lower())
    if not concepts:
        return 0.0
    return sum(any(_uses(w, c) for w in used) for c in concepts) / len(concepts)
