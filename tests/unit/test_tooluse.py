"""The tool-use evaluation's cases and grading: every expected call is one its tool allows."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from edgeinf.bench.tooluse import Case, grade, load


def _plain(value: Any) -> Any:
    """Expected arguments with the key-word marks of free text taken off."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value[1:] if isinstance(value, str) and value.startswith("~") else value


def test_the_cases_cover_a_dozen_tools_calls_and_no_calls() -> None:
    tools, cases = load()
    assert len(tools) == 12 and len(cases) >= 100
    wanted = [c for c in cases if c.expect is not None]
    assert len(wanted) == 75 and len({c.expect["name"] for c in wanted if c.expect}) == 12
    for case in cases:
        assert len(case.tools) >= 3 and set(case.tools) <= set(tools)
        if case.expect is not None:
            assert case.expect["name"] in case.tools
            schema = tools[case.expect["name"]]["parameters"]
            jsonschema.validate(_plain(case.expect["arguments"]), schema)


def test_grading_takes_optional_arguments_and_key_words_but_not_wrong_values() -> None:
    tools, _ = load()
    case = Case("weather in Oslo?", ("get_weather", "add"), {"name": "get_weather",
                "arguments": {"city": "Oslo"}})  # fmt: skip

    def call(name: str, **args: Any) -> dict[str, Any]:
        return {"name": name, "arguments": json.dumps(args)}

    assert grade(case, [call("get_weather", city="oslo", unit="celsius")], tools) == "right"
    assert grade(case, [call("get_weather", city="Bergen")], tools) == "wrong_args"
    assert grade(case, [call("get_weather", city="Oslo", day=1)], tools) == "wrong_args"
    assert grade(case, [call("add", a=1, b=2)], tools) == "wrong_tool"
    assert grade(case, [], tools) == "missed"
    assert grade(case, [{"name": "get_weather", "arguments": "{"}], tools) == "bad_json"
    search = Case(
        "s", ("search_web",), {"name": "search_web", "arguments": {"query": "~mars rover"}}
    )
    assert grade(search, [call("search_web", query="Mars rover news")], tools) == "right"
    chat = Case("hello", ("add",), None)
    assert (
        grade(chat, [], tools) == "right"
        and grade(chat, [call("add", a=1, b=1)], tools) == "unwanted"
    )
