"""Hypothesis settings for the fuzz tests: a short run by default, longer with
EDGEINF_FUZZ_EXAMPLES (the report counts the cases that ran)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("EDGEINF_FUZZ_EXAMPLES", "1000"))

settings.register_profile(
    "edgeinf",
    max_examples=EXAMPLES,
    deadline=2000,  # ms per case: a parser that hangs fails instead of stalling the run
    derandomize=os.environ.get("CI") == "true",  # CI repeats the same cases; runs here explore
    # `cases` is function-scoped on purpose: it counts across all the inputs of one test.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.load_profile("edgeinf")


class Cases:
    """Counts the cases a property test ran, for the reliability report."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


@pytest.fixture
def cases(record_property: Callable[[str, object], None]) -> Iterator[Cases]:
    counter = Cases()
    yield counter
    record_property("fuzz_cases", counter.n)
