"""Every numeric request field, fuzzed: the wire model refuses (a 400 before any compute) or
accepts values the engine takes without complaint; nothing in between becomes a 500."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from edgeinf.errors import InvalidRequestError
from edgeinf.server import ollama
from edgeinf.server.answer import sampling
from edgeinf.server.ollama_wire import OllamaChat
from edgeinf.server.wire import ChatCompletionRequest, CompletionRequest
from tests.fuzz.conftest import Cases

NUMERIC = [
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "frequency_penalty",
    "presence_penalty",
    "repeat_penalty",
    "n",
    "seed",
]
JSON_VALUES: st.SearchStrategy[object] = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.5, 2.0, 1e308, -0.0, True, False, None, "1", "nan", "", [], {}]),
    st.text(max_size=8),
)


@pytest.mark.reliability(10, 33)
@given(
    fields=st.dictionaries(st.sampled_from(NUMERIC), JSON_VALUES, min_size=1, max_size=4),
    chat=st.booleans(),
)
def test_numbers_are_refused_or_safe_for_the_engine(
    fields: dict[str, object], chat: bool, cases: Cases
) -> None:
    cases()
    body: dict[str, object] = dict(fields)
    if chat:
        body["messages"] = [{"role": "user", "content": "hi"}]
    else:
        body["prompt"] = "hi"
    model = ChatCompletionRequest if chat else CompletionRequest
    try:
        req = model.model_validate(body)
    except ValidationError:
        return
    params = sampling(req, 1024, {})  # raises if the wire took something the engine refuses
    for name in ("temperature", "top_p", "min_p", "repeat_penalty"):
        assert math.isfinite(getattr(params, name))
    assert 1 <= params.max_tokens <= 1 << 20 and 1 <= req.n <= 8


OLLAMA_NUMERIC = [
    "num_ctx", "num_predict", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
    "repeat_last_n", "presence_penalty", "frequency_penalty", "seed", "mirostat", "tfs_z",
    "typical_p", "num_keep", "keep_alive",
]  # fmt: skip


@pytest.mark.reliability(10, 33)
@given(fields=st.dictionaries(st.sampled_from(OLLAMA_NUMERIC), JSON_VALUES, min_size=1, max_size=4))
def test_ollama_options_are_refused_or_safe_for_the_engine(
    fields: dict[str, object], cases: Cases
) -> None:
    cases()
    keep = fields.pop("keep_alive", None)
    body: dict[str, object] = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "options": fields,
    }
    if keep is not None:
        body["keep_alive"] = keep
    try:
        req = OllamaChat.model_validate(body)
        params = ollama.sampling(req, 1024, {})  # raises if the wire took what the engine refuses
    except (ValidationError, InvalidRequestError):
        return
    for name in ("temperature", "top_p", "min_p", "repeat_penalty"):
        assert math.isfinite(getattr(params, name))
    assert 1 <= params.max_tokens <= 1 << 20 and params.repeat_last_n >= 0
    assert req.keep_alive is None or 0 <= req.keep_alive < 1e9 or req.keep_alive == math.inf
