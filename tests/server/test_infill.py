"""Fill-in-the-middle over HTTP, as editors and clients nobody here wrote send it: llama.vscode's
/infill bodies (from its source, src/llama-server.ts), the official openai client's
completions.create(suffix=...), and the ollama client's generate(suffix=...)."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.conftest import DRAFT, TINY
from tests.server.conftest import Server
from tests.server.test_disconnects import settles

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\n\nprint(add(2, 3))\n"
EXTRA = [{"text": "def sub(a, b):\n    return a - b\n", "time": 1733000000, "filename": "ops.py"}]


def vscode_body(prefix: str, suffix: str, line: str, prepare: bool = False) -> dict[str, Any]:
    """The body llama.vscode's createRequestPayload sends (its defaults: n_predict 128,
    t_max_prompt_ms 500, t_max_predict_ms 1000; the preparation request predicts nothing)."""
    if prepare:
        return {
            "input_prefix": prefix,
            "input_suffix": suffix,
            "input_extra": EXTRA,
            "prompt": line,
            "n_predict": 0,
            "samplers": [],
            "cache_prompt": True,
            "t_max_prompt_ms": 500,
            "t_max_predict_ms": 1,
        }
    return {
        "input_prefix": prefix,
        "input_suffix": suffix,
        "input_extra": EXTRA,
        "prompt": line,
        "n_predict": 128,
        "top_k": 40,
        "top_p": 0.99,
        "stream": False,
        "samplers": ["top_k", "top_p", "infill"],
        "cache_prompt": True,
        "n_indent": 4,
        "t_max_prompt_ms": 500,
        "t_max_predict_ms": 1000,
    }


def runs(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})  # the model's insertion, in a program of ours
    return out.getvalue()


def test_an_openai_completion_with_a_suffix_fills_in_a_body_that_runs(chat_server: Server) -> None:
    client = openai.OpenAI(base_url=chat_server.url + "/v1", api_key="none")
    done = client.completions.create(
        model=DRAFT, prompt=PREFIX, suffix=SUFFIX, max_tokens=64, temperature=0
    )
    text = done.choices[0].text
    assert done.choices[0].finish_reason == "stop"
    assert "print" not in text  # no example code after the body
    assert runs(PREFIX + text + SUFFIX) == "5\n"


def test_the_ollama_client_fills_in_with_a_suffix(chat_server: Server) -> None:
    client = ollama.Client(host=chat_server.url)
    done = client.generate(
        model=DRAFT, prompt=PREFIX, suffix=SUFFIX, options={"temperature": 0, "num_predict": 64}
    )
    assert runs(PREFIX + (done.response or "") + SUFFIX) == "5\n"
    shown = client.show(DRAFT)
    assert "insert" in (shown.capabilities or [])
    assert "insert" not in (client.show(TINY).capabilities or [])


def test_llama_vscode_requests_are_answered_with_the_fields_it_reads(chat_server: Server) -> None:
    prefix = "import math\n\n\ndef area(r):\n"
    line = "    return "
    with httpx.Client(base_url=chat_server.url, timeout=120) as http:
        ready = http.post("/infill", json=vscode_body(prefix, "\n", line, prepare=True))
        assert ready.status_code == 200, ready.text
        assert ready.json()["content"] == "" and ready.json()["tokens_predicted"] == 0
        got = http.post("/infill", json=vscode_body(prefix, "\n", line))
    assert got.status_code == 200, got.text
    body = got.json()
    assert "math.pi" in body["content"] and body["content"].count("\n") <= 1
    assert body["stop"] is True and body["truncated"] is False
    timings = body["timings"]
    # The preparation request prefilled it: only the last token is evaluated again.
    assert timings["cache_n"] == body["tokens_evaluated"] - 1 and timings["prompt_n"] == 1
    for field in ("prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms"):
        assert field in timings
    assert body["tokens_cached"] == body["tokens_evaluated"] + body["tokens_predicted"]


def test_infill_streams_its_text_then_the_last_object(chat_server: Server) -> None:
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "stream": True, "temperature": 0}
    events = []
    with httpx.stream("POST", chat_server.url + "/infill", json=body, timeout=120) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(e[6:]) for e in events]
    assert chunks[-1]["stop"] is True and chunks[-1]["tokens_predicted"] > 0
    text = "".join(c["content"] for c in chunks[:-1])
    assert runs(PREFIX + text + SUFFIX) == "5\n"


@pytest.mark.reliability(45)
def test_an_infill_stream_cut_by_the_editor_frees_its_sequence(chat_server: Server) -> None:
    body = {"input_prefix": 'STORY = "', "input_suffix": '"\n', "stream": True}
    body |= {"n_predict": 400, "grammar": "root ::= [a-z ]{300}"}  # seconds of text, one line
    with httpx.stream("POST", chat_server.url + "/infill", json=body, timeout=60) as r:
        lines = (line for line in r.iter_lines() if line.startswith("data: "))
        assert json.loads(next(lines)[6:])["stop"] is False
    assert settles(chat_server, "edgeinf_running_requests", 0, within=2)


def test_a_newer_fill_from_the_same_client_cancels_the_one_before(chat_server: Server) -> None:
    big = "".join(f"def f{i}(x):\n    return x * {i}\n\n" for i in range(150))  # seconds of prefill
    first: dict[str, Any] = {}

    def ask(into: dict[str, Any], client: str, prefix: str) -> None:
        body = {"input_prefix": prefix, "input_suffix": SUFFIX, "temperature": 0}
        started = time.monotonic()
        r = httpx.post(
            chat_server.url + "/infill", json=body, headers={"X-Client-Id": client}, timeout=120
        )
        into.update(status=r.status_code, body=r.json(), s=time.monotonic() - started)

    other: dict[str, Any] = {}
    threads = [
        threading.Thread(target=ask, args=(first, "editor-1", big + PREFIX)),
        threading.Thread(target=ask, args=(other, "editor-2", big + "def mul(a, b):\n    ")),
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    second: dict[str, Any] = {}
    ask(second, "editor-1", PREFIX)  # the same editor, a keystroke later
    for t in threads:
        t.join()
    assert second["status"] == 200
    assert first["status"] == 409 and "newer" in first["body"]["error"]["message"]
    assert other["status"] == 200  # another client's fill is its own


def test_what_infill_cannot_do_is_refused_by_name(chat_server: Server) -> None:
    base = {"input_prefix": PREFIX, "input_suffix": SUFFIX}
    for extra, name in (
        ({"samplers": ["top_k", "dry"]}, "dry"),
        ({"id_slot": 1}, "id_slot"),
        ({"lora": [{"id": 0, "scale": 0.5}]}, "lora"),
        ({"mirostat": 2}, "mirostat"),
    ):
        r = httpx.post(chat_server.url + "/infill", json={**base, **extra}, timeout=60)
        assert r.status_code == 400 and name in r.text, r.text
    r = httpx.post(chat_server.url + "/infill", json={**base, "model": TINY}, timeout=120)
    assert r.status_code == 400 and "fill in the middle" in r.text
    assert "qwen2.5-coder" in r.json()["error"]["message"]  # what to use instead
