"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis) against the real 270M model:
no 5xx, and every response matches what the schema documents."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis.checks import positive_data_acceptance

from tests.server.conftest import Server, start

EXAMPLES = int(os.environ.get("EDGEINF_SCHEMA_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory, tiny_path: Path) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("schema")
    # A model store of its own: fuzzed /api/delete and /api/pull never touch the user's.
    # Answers are cut at 5 s, well inside the client's 10 s wait for a response (a prompt with
    # no max_tokens may write the whole context, longer than that on a slow core).
    server = start(
        tmp,
        model=str(tiny_path),
        ctx=256,
        parallel=2,
        env={"EDGEINF_REQUEST_TIMEOUT_S": "5", "EDGEINF_MODELS_DIR": str(tmp / "models")},
    )
    yield server
    assert server.stop() == 0


@pytest.mark.slow
@pytest.mark.reliability(34, 45)
def test_no_5xx_and_responses_match_the_schema(
    fuzzed_server: Server, record_property: Callable[[str, object], None]
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    ran: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises: a broken schema

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None)
        def check(case: schemathesis.Case[Any]) -> None:
            ran[case.operation.label] = ran.get(case.operation.label, 0) + 1
            # Not checked: that every schema-valid request is accepted. A prompt longer than
            # the context, or a chat_template field, is valid JSON for the schema and still
            # refused with a 400 that says why, as OpenAI's API does.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
    record_property("fuzz_cases", sum(ran.values()))
    assert len(ran) >= 20, f"operations fuzzed: {sorted(ran)}"
