"""Integer bounds of a JSON schema become GBNF that allows exactly the integers in range:
checked against every integer from -3,000 to 3,000 (the GBNF read as the regular expression
it is: literals, classes, groups, alternations)."""

from __future__ import annotations

import re

import pytest

from edgeinf.engine.schema import bounds, integer_range, schema_to_gbnf


def matcher(gbnf: str) -> re.Pattern[str]:
    regex = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), gbnf).replace(" ", "")
    return re.compile(f"^({regex})$")


@pytest.mark.parametrize(
    ("lo", "hi"),
    [(0, 150), (5, 5), (0, 9), (10, 99), (7, 1234), (-20, 15), (-150, -3), (None, 10),
     (3, None), (-5, None), (None, -7), (0, None), (None, None), (99, 1000), (-1000, -999)],
)  # fmt: skip
def test_exactly_the_integers_in_range(lo: int | None, hi: int | None) -> None:
    allows = matcher(integer_range(lo, hi))
    for v in range(-3000, 3001):
        inside = (lo is None or v >= lo) and (hi is None or v <= hi)
        assert bool(allows.match(str(v))) == inside, (lo, hi, v)
    for spelled in ("01", "-0", "007", "--1", "+1", ""):  # one spelling per number
        assert not allows.match(spelled), spelled


def test_bounds_of_integers_and_of_a_numbers_integer_part() -> None:
    assert bounds({"minimum": 0, "maximum": 150}, True) == (0, 150)
    assert bounds({"exclusiveMinimum": 0, "exclusiveMaximum": 10}, True) == (1, 9)
    assert bounds({"minimum": 0.5, "exclusiveMaximum": 2.5}, True) == (1, 2)
    assert bounds({"minimum": -0.5, "maximum": 1}, False) == (-1, 1)
    assert bounds({"minimum": 2, "exclusiveMinimum": 4}, True) == (5, None)


def test_schemas_keep_their_bounds_and_refuse_impossible_ones() -> None:
    gbnf = schema_to_gbnf('{"type": "object", "properties": {"age": {"type": "integer", '
                          '"minimum": 0, "maximum": 150}}, "required": ["age"]}')  # fmt: skip
    rule = next(line for line in gbnf.splitlines() if line.startswith("age ::="))
    assert matcher(rule.split("::=")[1].removesuffix(" space").strip()).match("150")
    assert not matcher(rule.split("::=")[1].removesuffix(" space").strip()).match("1852")
    for bad in ('{"type": "integer", "minimum": 5, "maximum": 1}',
                '{"type": "integer", "minimum": "zero"}'):  # fmt: skip
        with pytest.raises(ValueError):
            schema_to_gbnf(bad)
