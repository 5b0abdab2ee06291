"""The mixed question set: every row becomes a prompt for its metric, and answers are graded
as its metric says (gold answers pass, wrong ones fail, code runs in the sandbox)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from edgeinf.errors import InvalidRequestError
from edgeinf.research import humaneval, mix
from edgeinf.research.tasks import grade
from edgeinf.research.tasks import load as tasks_of
from edgeinf.route.checks import check
from edgeinf.tasks import Task
from edgeinf.types import Message

ROWS = {  # the README of research/data
    "math": 504, "natural_qa": 500, "trivia_qa": 500, "mmlu": 500, "commonsense_qa": 500,
    "openbook_qa": 500, "arc_challenge": 500, "gpqa": 448, "mbpp": 500, "gsm8k": 500,
    "agentverse-mgsm": 200, "human_eval": 164, "agentverse-logicgrid": 150, "commongen": 150,
}  # fmt: skip


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    return mix.load()


def test_the_shipped_mix_loads_every_row_with_a_prompt_for_its_metric(tasks: list[Task]) -> None:
    assert Counter(t.kind for t in tasks) == ROWS
    assert len({t.id for t in tasks}) == len(tasks)
    for t in tasks:
        prompt = t.messages[-1].content
        if t.metric == "em_mc":
            assert t.reference in t.options and f"\n{t.options[-1]}. " in prompt
        elif t.metric == "MATH":
            assert "\\boxed" in prompt
        elif t.metric == "code_eval":
            assert ("def check(candidate)" in t.reference) == bool(t.entry_point)
            assert t.entry_point or "assert " in prompt  # MBPP shows its tests
    held = [t for t in tasks if mix.held_out(t)]
    assert 0.17 < len(held) / len(tasks) < 0.23
    for kind, n in Counter(t.kind for t in held).items():
        assert n >= 0.1 * ROWS[kind], kind
    # The split follows the question only: the same question is held out under another id.
    moved = replace(held[0], id="elsewhere")
    assert mix.held_out(moved)


def _gold(t: Task) -> str:
    """The right answer, as a model would write it."""
    return {
        "em_mc": f"Looking at the options, the answer is ({t.reference}).",
        "f1_score": f"{t.reference}.",
        "MATH": f"Adding it up gives $\\boxed{{{t.reference}}}$.",
        "GSM8K": f"Step by step...\n#### {t.reference}",
        "commongen_coverage": "We " + " and ".join(t.reference.split(", ")) + " today.",
    }[t.metric]


def _wrong(t: Task) -> str:
    if t.metric == "em_mc":
        return f"The answer is {next(x for x in t.options if x != t.reference)}."
    if t.metric == "commongen_coverage":
        words = t.reference.split(", ")
        return "We " + " and ".join(words[: len(words) // 2]) + " today."
    return "I do not know. \\boxed{-0.123456} #### -0.123456"


def test_gold_answers_pass_and_wrong_ones_fail(tasks: list[Task]) -> None:
    graded = [t for t in tasks if t.metric != "code_eval"]
    assert len(graded) == len(tasks) - ROWS["mbpp"] - ROWS["human_eval"]
    for t in graded:
        assert mix.passed(t, mix.grade(t, _gold(t))), (t.id, t.reference)
        assert not mix.passed(t, mix.grade(t, _wrong(t))), (t.id, t.reference)


@pytest.mark.parametrize(
    "answer, letter",
    [
        ("B", "B"),
        ("(B)", "B"),
        ("**B.** train station", "B"),
        ("B: train station", "B"),
        ("Answer: (C)", "C"),
        ("A bus depot is free, but the answer is B.", "B"),
        ("The correct answer is **D**", "D"),
        ("A bus depot.", None),
        ("I cannot tell.", None),
    ],
)
def test_option_letters_are_read_as_models_write_them(answer: str, letter: str | None) -> None:
    assert mix.choice(answer, ("A", "B", "C", "D", "E")) == letter


def test_f1_and_math_answers_are_compared_after_normalization() -> None:
    assert mix.f1("Bayreuth", "bayreuth germany") == pytest.approx(2 / 3)
    assert mix.f1("The Beatles!", "beatles") == 1.0
    assert mix.f1("Paris", "London") == 0.0
    assert mix.same_answer("\\dfrac{1}{2}", "\\frac{1}{2}")
    assert mix.same_answer("y = -2x + 1", "y=-2x+1")
    assert mix.same_answer("1,000", "1000.0")
    assert mix.same_answer("90^\\circ", "90")
    assert not mix.same_answer("\\frac{1}{3}", "\\frac{1}{2}")


def test_code_answers_run_against_their_tests_in_the_sandbox(tasks: list[Task]) -> None:
    canonical = {p["entry_point"]: p["canonical_solution"] for p in humaneval.problems()}
    for t in [t for t in tasks if t.kind == "human_eval"][:3]:
        right = f"```python\n{t.prefix}{canonical[t.entry_point]}```"
        assert mix.grade(t, right) == 1.0, t.id
        assert mix.grade(t, f"def {t.entry_point}(*args):\n    return None\n") == 0.0
        leaves = f"def {t.entry_point}(*args):\n    return None\n\nimport os\nos._exit(0)\n"
        assert mix.grade(t, leaves) == 0.0  # leaving with status 0 before the tests ran
    mbpp = Task("mbpp-x", "mbpp", (Message("user", "Write add."),), 64,
                "assert add(2, 3) == 5\nassert add(-1, 1) == 0", metric="code_eval")  # fmt: skip
    assert mix.grade(mbpp, "Here:\n```python\ndef add(a, b):\n    return a + b\n```") == 1.0
    assert mix.grade(mbpp, "```python\ndef add(a, b):\n    return a - b\n```") == 0.0
    assert mix.grade(mbpp, "```python\nimport sys\nsys.exit(0)\n```") == 0.0


def test_a_file_that_is_not_a_mix_is_refused_naming_its_line(tmp_path: Path) -> None:
    good = '{"task_name": "t", "query": "q", "ground_truth": "a", "metric": "f1_score"}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f"{good}\n{{not json\n")
    with pytest.raises(InvalidRequestError, match=r"bad.jsonl:2 is not a mix row"):
        mix.load(bad)
    bad.write_text(good.replace("f1_score", "bleu") + "\n")
    with pytest.raises(InvalidRequestError, match=r":1 has metric 'bleu'; known: em_mc"):
        mix.load(bad)
    with pytest.raises(InvalidRequestError, match="cannot read"):
        mix.load(tmp_path / "missing.jsonl")


def test_training_takes_the_mix_task_by_task_and_keeps_the_held_out_part_apart() -> None:
    first = tasks_of(("mix",), limit=28)
    assert Counter(t.kind for t in first) == {kind: 2 for kind in ROWS}
    assert not any(mix.held_out(t) for t in first)
    held = tasks_of(("mix-held-out",))
    assert held and all(mix.held_out(t) for t in held)
    mc = next(t for t in first if t.metric == "em_mc")
    assert grade(mc, f"The answer is {mc.reference}.") and not grade(mc, "No idea.")


@pytest.mark.slow
def test_humaneval_prompts_own_examples_pass_right_code_and_catch_wrong_code(
    tasks: list[Task],
) -> None:
    """The execution check on HumanEval's prompts (their docstring examples, not the tests
    that grade): examples are read for most prompts, the reference solutions pass them but for
    the few prompts whose examples are themselves wrong, and a wrong function never does."""
    canonical = {p["prompt"]: p["canonical_solution"] for p in humaneval.problems()}
    verdicts: Counter[bool | None] = Counter()
    for t in (t for t in tasks if t.kind == "human_eval"):
        prompt = t.messages[0].content
        right = check(prompt, f"```python\n{t.prefix}{canonical[t.prefix]}```")
        wrong = check(prompt, f"def {t.entry_point}(*args):\n    return None\n")
        assert (right is None) == (wrong is None)
        verdicts[right] += 1
        assert wrong is not True, t.id
    read = verdicts[True] + verdicts[False]
    assert read >= 0.75 * ROWS["human_eval"]
    assert verdicts[True] >= 0.93 * read, verdicts
