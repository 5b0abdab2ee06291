"""A check that executes: the examples a prompt gives for its code (`assert` lines, doctest
`>>>` lines with their expected output, `f(x) => y` lines), run against the answer's code in
the sandbox.

A failed example says the local answer is wrong before any remote is asked, at the cost of
one child process; a prompt without examples gets no verdict. The examples are the prompt's
own, never hidden tests, so the verdict is one the runtime can reach on a user's question.
"""

from __future__ import annotations

import re

from edgeinf.route.sandbox import blocks, code_of, passes

_ASSERT = re.compile(r"^[ \t]*(assert\b.+)$", re.MULTILINE)
# `>>> call` and the line after it: its expected output, unless it is another prompt, blank,
# or the docstring's end (then a call that compares must hold by itself).
_DOCTEST = re.compile(r"^[ \t]*>>> (.+)\n[ \t]*(.*)$", re.MULTILINE)
# `f(x) => y`, `f(x) ==> y`, `f(x) -> y`, `f(x) ➞ y`, `f(x) == y`: a line of its own
_ARROW = re.compile(
    r"^[ \t]*([A-Za-z_]\w*\(.*\))[ \t]*(?:==>|=>|->|➞|==)[ \t]*(\S.*?)[ \t]*$", re.MULTILINE
)
_DOCSTRING_END = ('"""', "'''")
# Doctest compares the printed value; an expected output that is a literal may also equal it.
# A name the example's own text leaves undefined (`f(n) -> f(n-1) + 1`, `is_happy(a)`) makes
# it prose, not an example: skipped. Outputs are compared as doctest prints them, as literals,
# ignoring case (`true`), and after a worked sum (`19 - 5 - 6 = 8`).
_EXPECT = """
import re as _re

_checked = 0


def _expect(call, want):
    global _checked
    try:
        got = eval(call, globals())
    except NameError as exc:
        if exc.name and _re.search(rf"\\b{exc.name}\\b", call):
            return
        raise
    _checked += 1
    want = want.rsplit(" = ", 1)[-1]
    if want in (repr(got), str(got)) or want.lower() == str(got).lower():
        return
    try:
        if got == eval(want, {}):
            return
    except Exception:
        pass
    raise AssertionError(f"{call} gave {got!r}, the prompt says {want}")
"""


def examples(prompt: str) -> list[str]:
    """The prompt's examples as Python statements that raise when one fails. Examples that
    cannot be read whole (an output over several lines, an `assert` that is not Python) are
    left out."""
    found = [_python(a) or _python(a.replace("=>", "==")) for a in _ASSERT.findall(prompt)]
    for call, want in _DOCTEST.findall(prompt):
        call, want = call.strip(), want.strip()
        if want and not want.startswith((">>>", *_DOCSTRING_END)):
            found.append(_expect(call, want))
        elif "==" in call:
            found.append(_python(f"assert {call}"))
    for call, want in _ARROW.findall(prompt):
        if not call.startswith("assert"):
            found.append(_expect(call, want.rstrip(".,;").strip()))
    return list(dict.fromkeys(f for f in found if f))


def _expect(call: str, want: str) -> str:
    """A check that the call gives what the prompt says, or "" when either cannot be read:
    the call is not an expression, or the output is the first line of several."""
    whole = all(want.count(a) == want.count(b) for a, b in ("()", "[]", "{}"))
    return _python(f"_expect({call!r}, {want!r})") if whole and _python(call) else ""


def _python(code: str) -> str:
    """The code when it compiles, else ""."""
    try:
        compile(code, "<example>", "exec")
    except (SyntaxError, ValueError):
        return ""
    return code


def _prompt_code(prompt: str) -> str:
    """The code the prompt gives (a function's head and docstring, imports), without its
    asserts, which run after the answer's code."""
    return _ASSERT.sub("", "\n".join(blocks(prompt)))


def check(prompt: str, answer: str) -> bool | None:
    """Whether the answer's code passes the prompt's examples; None when there are none.
    Examples that all turn out to be prose when run count as failed: nothing was shown."""
    tests = examples(prompt)
    if not tests:
        return None
    given, code = _prompt_code(prompt), code_of(answer)
    if not re.search(r"^(?:def|class|async def) ", code, re.MULTILINE):
        program = f"{given.rstrip()}\n{code}"  # a body that continues the prompt's head
    else:
        program = f"{given}\n\n{code}"
    # Each assert counts as checked; with every example skipped as prose nothing was shown.
    run = [f"{t}\n_checked += 1" if t.startswith("assert") else t for t in tests]
    ending = "assert _checked, 'no example of the prompt could be run'"
    return passes(f"{program}\n\n{_EXPECT}\n" + "\n".join([*run, ending]) + "\n")
