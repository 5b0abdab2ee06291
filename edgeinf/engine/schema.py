"""JSON schemas to GBNF: llama-cpp-python's converter, with the numeric bounds it leaves out.

The converter ignores `minimum`, `maximum`, `exclusiveMinimum` and `exclusiveMaximum`, so a
schema asking for an age from 0 to 150 let a model write 1852. Here an integer's bounds
become a grammar of the digits in range: each run of numbers of one length is spelled digit
by digit (`1[0-4][0-9] | 150` for 100 to 150), negative ranges mirrored behind a minus. A
number's bounds hold for its integer part (a grammar over decimals would be far larger):
`minimum: 0` rules out every negative number exactly, `maximum: 1` allows 1.5.
"""

from __future__ import annotations

import json
import math
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, SchemaConverter

MAX_DIGITS = 16  # the converter's own integers have at most this many
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _same_length(lo: str, hi: str) -> str:
    """The numbers from lo to hi, both of the same number of digits, as GBNF."""
    if lo == hi:
        return f'"{lo}"'
    n = len(lo)
    if lo == "0" * n and hi == "9" * n:
        return " ".join(["[0-9]"] * n)
    if lo[0] == hi[0]:
        return f'"{lo[0]}" ({_same_length(lo[1:], hi[1:])})'
    rest = n - 1
    if lo[1:] == "0" * rest and hi[1:] == "9" * rest:
        return " ".join([f"[{lo[0]}-{hi[0]}]", *["[0-9]"] * rest])
    parts = [f'"{lo[0]}" ({_same_length(lo[1:], "9" * rest)})']
    if int(lo[0]) + 1 <= int(hi[0]) - 1:
        parts.append(" ".join([f"[{int(lo[0]) + 1}-{int(hi[0]) - 1}]", *["[0-9]"] * rest]))
    parts.append(f'"{hi[0]}" ({_same_length("0" * rest, hi[1:])})')
    return " | ".join(parts)


def natural_range(lo: int, hi: int | None) -> str:
    """The whole numbers from lo (>= 0) to hi (None: no end), without leading zeros."""
    top = 10**MAX_DIGITS - 1 if hi is None else hi
    parts = []
    for digits in range(len(str(lo)), len(str(top)) + 1):
        a = max(lo, 10 ** (digits - 1) if digits > 1 else 0)
        b = min(top, 10**digits - 1)
        if a <= b:
            parts.append(_same_length(str(a), str(b)))
    return " | ".join(f"({p})" for p in parts)


def integer_range(lo: int | None, hi: int | None) -> str:
    """The integers from lo to hi (None: no end that side), as a GBNF alternation."""
    parts = []
    if hi is None or hi >= 0:
        parts.append(natural_range(max(lo or 0, 0), hi))
    if lo is None or lo < 0:
        nearest = 1 if hi is None or hi >= 0 else -hi
        parts.append(f'"-" ({natural_range(nearest, None if lo is None else -lo)})')
    return " | ".join(f"({p})" for p in parts)


def bounds(schema: dict[str, Any], integer: bool) -> tuple[int | None, int | None]:
    """The smallest and largest integer (of a number: integer part) the schema allows; None
    where it sets no bound."""
    lows, highs = [], []
    if "minimum" in schema:
        lows.append(math.ceil(schema["minimum"]) if integer else math.floor(schema["minimum"]))
    if "exclusiveMinimum" in schema:
        x = schema["exclusiveMinimum"]
        lows.append(math.floor(x) + 1 if integer else math.floor(x))
    if "maximum" in schema:
        highs.append(math.floor(schema["maximum"]))
    if "exclusiveMaximum" in schema:
        x = schema["exclusiveMaximum"]
        highs.append(math.ceil(x) - 1 if integer else math.floor(x))
    return (max(lows) if lows else None), (min(highs) if highs else None)


class Converter(SchemaConverter):  # type: ignore[misc]
    """llama-cpp-python's converter, keeping integer bounds and a number's integer part."""

    def visit(self, schema: Any, name: str) -> str:
        kind = schema.get("type") if isinstance(schema, dict) else None
        if kind not in ("integer", "number") or not any(k in schema for k in BOUNDS):
            return str(super().visit(schema, name))
        for key in BOUNDS:
            value = schema.get(key)
            if key in schema and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{key} must be a number, not {value!r}")
        lo, hi = bounds(schema, kind == "integer")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"no {kind} lies within its bounds ({schema})")
        body = f"({integer_range(lo, hi)})"
        if kind == "number":
            decimals = self._add_primitive("decimal-part", PRIMITIVE_RULES["decimal-part"])
            body += f' ("." {decimals})?'
        rule = name + "-" if name in RESERVED_NAMES else name or "root"
        return str(self._add_rule(rule, f"{body} space"))


def schema_to_gbnf(text: str) -> str:
    """The GBNF of a JSON schema's text (references resolved within it, never fetched)."""
    converter = Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(json.loads(text), "stdin")
    converter.visit(schema, "")
    return str(converter.format_grammar())
