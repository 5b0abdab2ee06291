"""Where a fill-in-the-middle answer ends: the editor's rules, on text as a model writes it."""

from __future__ import annotations

import time

import pytest

from edgeinf.engine.insertion import InsertionStream
from edgeinf.service.fill import Fill, insertion
from edgeinf.types import Insertion


def written(rules: Insertion, text: str, step: int = 3) -> tuple[str, bool]:
    """What is shown of `text` arriving `step` characters at a time, and whether it stopped."""
    stream = InsertionStream(rules)
    out = ""
    for i in range(0, len(text), step):
        out += stream.push(text[i : i + step])
        if stream.stopped:
            return out, True
    return out + stream.flush(), False


@pytest.mark.parametrize("step", [1, 3, 100])
def test_the_block_ends_where_the_indentation_drops(step: int) -> None:
    text = "    y = x * 2\n    return y\n\n\nprint(f(3))\n"
    assert written(Insertion(), text, step) == ("    y = x * 2\n    return y\n", True)


def test_a_line_the_suffix_already_has_is_not_written() -> None:
    rules = Insertion(cursor_line="    ", next_line="return total")
    text = "total = sum(xs)\n    return total\n"
    assert written(rules, text) == ("total = sum(xs)\n", True)


def test_a_closing_bracket_ends_the_block_and_is_kept() -> None:
    assert written(Insertion(cursor_line="    "), "x++;\n}\nint main() {\n") == ("x++;\n}\n", True)


def test_the_closing_bracket_the_suffix_has_is_not_written_again() -> None:
    rules = Insertion(cursor_line="    ", next_line="}")
    assert written(rules, "x++;\n}\n") == ("x++;\n", True)


def test_a_given_indent_applies_from_the_second_line() -> None:
    assert written(Insertion(indent=4), "a = 1\n    b = 2\n  c\n") == ("a = 1\n    b = 2\n", True)


def test_inside_a_block_the_first_line_must_reach_it_too() -> None:
    assert written(Insertion(indent=1, inside=True), "print(1)\n") == ("", True)


def test_trailing_blank_lines_go_leading_ones_stay() -> None:
    assert written(Insertion(), "\n\n    a = 1\n\n\n") == ("\n\n    a = 1\n", False)


def test_text_is_held_only_while_it_could_still_be_the_suffix_line() -> None:
    stream = InsertionStream(Insertion(cursor_line="    ", next_line="return total"))
    assert stream.push("ret") == ""  # may become the suffix's line
    assert stream.push("urn 0") == "return 0"  # it did not
    assert stream.push("\n") == "\n"


def test_after_the_time_budget_the_answer_ends_at_a_line_break() -> None:
    stream = InsertionStream(Insertion(budget_s=0.05))
    assert stream.push("a = 1\n") == "a = 1\n"
    assert not stream.stopped
    time.sleep(0.1)
    assert stream.push("b = 2") == "b = 2"
    assert not stream.stopped  # not mid-line
    assert stream.push("\nc") == "\n"
    assert stream.stopped


def test_the_rules_come_from_the_text_around_the_cursor() -> None:
    fill = Fill("def f(x):\n", "\n\nprint(f(2))\n")
    assert insertion(fill) == Insertion("", "print(f(2))", 1, inside=True)
    mid = insertion(Fill("def f(x):\n    return g(", "x)\n    # done\n"))
    assert mid == Insertion("    return g(", "# done", None)  # the rest of its line is not one
    top = insertion(Fill("import os\n\n", "\nos.getcwd()\n"))
    assert top == Insertion("", "os.getcwd()", None)  # at the top level nothing binds it
    given = insertion(Fill("def f(x):\n", "", indent=0, budget_s=0.5))
    assert given == Insertion("", "", 0, budget_s=0.5)
