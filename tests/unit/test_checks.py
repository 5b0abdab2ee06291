"""The check that executes: a prompt's own examples run against an answer's code."""

from __future__ import annotations

from edgeinf.route.checks import check, examples

HEAD = '''Complete this Python function:
```python
def add(a: int, b: int) -> int:
    """Add two numbers.
    >>> add(2, 3)
    5
    >>> add(-1, 1) == 0
    """
```'''
RIGHT = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"


def test_doctest_examples_hold_for_right_code_and_fail_for_wrong_code() -> None:
    assert examples(HEAD) == ["_expect('add(2, 3)', '5')", "assert add(-1, 1) == 0"]
    assert check(HEAD, RIGHT) is True
    assert check(HEAD, RIGHT.replace("a + b", "a - b")) is False
    assert check(HEAD, "    return a + b\n") is True  # a body continuing the prompt's head
    assert check(HEAD, "I would add them.") is False


def test_arrow_examples_and_asserts_in_the_prompt_are_run() -> None:
    arrows = 'def f(x):\n    """Examples:\n        f(2) => 4\n        f(3) ➞ 6.\n    """'
    prompt = f"```python\n{arrows}\n```"
    assert check(prompt, "```python\ndef f(x):\n    return 2 * x\n```") is True
    assert check(prompt, "```python\ndef f(x):\n    return x * x\n```") is False
    mbpp = (
        "Write double.\nYour code should pass these tests:\n```python\nassert double(2) == 4\n```"
    )
    assert check(mbpp, "```python\ndef double(x):\n    return x + x\n```") is True
    assert check(mbpp, "```python\ndef double(x):\n    return x\n```") is False


def test_prose_is_not_an_example_and_no_examples_give_no_verdict() -> None:
    rule = "    fib(n) -> fib(n-1) + fib(n-2)\n"
    prose = f'```python\ndef fib(n):\n    """\n{rule}    fib(5) => 5\n    """\n```'
    good = "```python\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n```"
    assert check(prose, good) is True  # fib(n) names an n the example never defines
    assert check("Write a function that sorts a list.", good) is None
    only_prose = f'```python\ndef fib(n):\n    """\n{rule}    """\n```'
    assert examples(only_prose)
    assert check(only_prose, good) is False  # nothing was shown to work


def test_an_answer_that_leaves_before_the_examples_ran_fails() -> None:
    assert check(HEAD, "```python\nimport os\nos._exit(0)\n```") is False
    assert check(HEAD, "```python\ndef add(a, b):\n    raise SystemExit(0)\n```") is False
