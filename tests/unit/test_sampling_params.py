"""Sampling parameters are checked before any compute."""

import math

import pytest

from edgeinf.errors import InvalidRequestError
from edgeinf.types import SamplingParams


@pytest.mark.reliability(10)
@pytest.mark.parametrize(
    "field, value",
    [
        ("max_tokens", 0),
        ("max_tokens", -5),
        ("temperature", -0.1),
        ("temperature", math.nan),
        ("temperature", math.inf),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", -1.0),
        ("top_k", -1),
        ("repeat_penalty", 0.0),
        ("seed", -1),
        ("seed", 2**40),
        ("stop", ("",)),
    ],
)
def test_bad_value_is_a_typed_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidRequestError, match=field):
        SamplingParams(**{field: value})  # type: ignore[arg-type]


def test_temperature_zero_is_greedy() -> None:
    assert SamplingParams(temperature=0).greedy
    assert not SamplingParams(temperature=0.7).greedy
