"""The API through real clients: the official `openai` package, httpx, curl-like requests."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from edgeinf.catalog import open_store
from edgeinf.config import Settings
from tests.conftest import DRAFT, TINY
from tests.server.conftest import Server


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_openai_chat_completion(chat_server: Server) -> None:
    r = client(chat_server).chat.completions.create(
        model=DRAFT,
        messages=[{"role": "user", "content": "What is 12 + 30? Just the number."}],
        temperature=0,
        max_tokens=16,
    )
    assert "42" in (r.choices[0].message.content or "")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens > 0


def test_openai_streaming_chat(chat_server: Server) -> None:
    stream = client(chat_server).chat.completions.create(
        model=DRAFT,
        messages=[{"role": "user", "content": "Count from 1 to 5."}],
        temperature=0,
        max_tokens=40,
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    text = "".join(pieces)
    assert len(pieces) > 3 and "3" in text


def test_openai_text_completion_and_models(tiny_server: Server, settings: Settings) -> None:
    c = client(tiny_server)
    r = c.completions.create(
        model=TINY, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert r.choices[0].text.strip()
    listed = {m.id: m.model_extra or {} for m in c.models.list().data}
    assert next(iter(listed)) == TINY  # the default first, then every other local model
    assert listed[TINY]["loaded"] is True and listed[TINY]["architecture"] == "gemma3"
    local = {m.name for m in open_store(settings).servable()}
    assert set(listed) == local and not any(listed[n]["loaded"] for n in local - {TINY})


def test_openapi_schema_is_served(tiny_server: Server) -> None:
    schema = httpx.get(f"{tiny_server.url}/openapi.json").json()
    assert "/v1/chat/completions" in schema["paths"]


def test_health_ready_and_metrics(tiny_server: Server) -> None:
    assert httpx.get(f"{tiny_server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{tiny_server.url}/ready").status_code == 200
    text = httpx.get(f"{tiny_server.url}/metrics").text
    for name in (
        "edgeinf_requests_total",
        "edgeinf_ttft_seconds",
        "edgeinf_stall_seconds",
        "edgeinf_queue_depth",
        "edgeinf_resident_memory_bytes",
        "edgeinf_cached_tokens_total",
        "edgeinf_cache_bytes",
        "edgeinf_speculative_drafted_total",
        "edgeinf_route_decisions_total",
    ):
        assert name in text
    # Counted by status as the response left: the /health and /ready calls above.
    assert 'edgeinf_requests_total{route="/health",status="200"}' in text
    assert 'edgeinf_requests_total{route="/ready",status="200"}' in text


@pytest.mark.reliability(10)
@pytest.mark.parametrize(
    "field, value",
    [
        ("max_tokens", -1),
        ("max_tokens", 10**12),
        ("max_tokens", "ten"),
        ("temperature", -0.5),
        ("temperature", 99),
        ("top_p", 0),
        ("n", 9),
        ("seed", -4),
        ("stop", ["a", "b", "c", "d", "e"]),
        ("messages", []),
    ],
)
def test_bad_numbers_and_types_are_400_before_compute(
    tiny_server: Server, field: str, value: object
) -> None:
    payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, field: value}
    r = httpx.post(f"{tiny_server.url}/v1/chat/completions", json=payload)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.reliability(10)
def test_nan_is_refused(tiny_server: Server) -> None:
    raw = '{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}'
    r = httpx.post(
        f"{tiny_server.url}/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400


@pytest.mark.reliability(11)
def test_prompt_longer_than_context(tiny_server: Server) -> None:
    r = httpx.post(
        f"{tiny_server.url}/v1/completions", json={"prompt": "word " * 3000, "max_tokens": 4}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.reliability(11)
def test_body_over_the_cap_is_413(tiny_server: Server) -> None:
    r = httpx.post(
        f"{tiny_server.url}/v1/completions", json={"prompt": "x" * (2 << 20), "max_tokens": 1}
    )
    assert r.status_code == 413


@pytest.mark.reliability(2)
def test_client_supplied_chat_template_is_refused(tiny_server: Server) -> None:
    r = httpx.post(
        f"{tiny_server.url}/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "hi"}],
            "chat_template": "{{ cycler.__init__.__globals__ }}",
        },
    )
    assert r.status_code == 400 and "template" in r.json()["error"]["message"]


@pytest.mark.reliability(6)
@pytest.mark.parametrize("host", ["evil.example", "", "127.0.0.1.evil.example:80"])
def test_foreign_host_header_is_403(tiny_server: Server, host: str) -> None:
    r = httpx.get(f"{tiny_server.url}/v1/models", headers={"Host": host})
    assert r.status_code == 403


@pytest.mark.reliability(7)
def test_no_cors_header_for_unlisted_origins(tiny_server: Server) -> None:
    r = httpx.options(
        f"{tiny_server.url}/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_sessions_over_http(chat_server: Server) -> None:
    url = f"{chat_server.url}/v1/chat/completions"
    headers = {"X-Session-Id": "http-1"}
    first = [{"role": "user", "content": "My name is Ada."}]
    r1 = httpx.post(
        url,
        headers=headers,
        json={"messages": first, "max_tokens": 16, "temperature": 0},
        timeout=60,
    ).json()
    second = [*first, r1["choices"][0]["message"], {"role": "user", "content": "What is my name?"}]
    r2 = httpx.post(
        url,
        headers=headers,
        json={"messages": second, "max_tokens": 16, "temperature": 0},
        timeout=60,
    ).json()
    assert "Ada" in r2["choices"][0]["message"]["content"]
    listed = httpx.get(f"{chat_server.url}/v1/sessions").json()["data"]
    assert "http-1" in [s["id"] for s in listed]
    one = httpx.get(f"{chat_server.url}/v1/sessions/http-1").json()
    assert len(one["messages"]) == 4
    assert httpx.delete(f"{chat_server.url}/v1/sessions/http-1").json()["deleted"]
    assert httpx.get(f"{chat_server.url}/v1/sessions/http-1").status_code == 404


def test_a_session_is_listed_by_its_first_question_until_renamed(tiny_server: Server) -> None:
    url = tiny_server.url
    question = "Which rivers flow into the Black Sea? " * 3
    r = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"X-Session-Id": "titled"},
        json={"messages": [{"role": "user", "content": question}], "max_tokens": 4},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    [row] = [s for s in httpx.get(f"{url}/v1/sessions").json()["data"] if s["id"] == "titled"]
    assert row["title"] == " ".join(question.split())[:59] + "…"
    renamed = httpx.patch(f"{url}/v1/sessions/titled", json={"title": "  Black   Sea  "})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Black Sea"
    r = httpx.post(  # a later turn keeps the title
        f"{url}/v1/chat/completions",
        headers={"X-Session-Id": "titled"},
        json={"messages": [{"role": "user", "content": "And the Caspian?"}], "max_tokens": 4},
        timeout=60,
    )
    assert httpx.get(f"{url}/v1/sessions/titled").json()["title"] == "Black Sea"
    for body, status in (({"title": "   "}, 400), ({"title": ""}, 400), ({"name": "x"}, 400)):
        bad = httpx.patch(f"{url}/v1/sessions/titled", json=body)
        assert bad.status_code == status and bad.json()["error"]["param"] in ("title", "name")
    assert httpx.patch(f"{url}/v1/sessions/none-such", json={"title": "x"}).status_code == 404
    assert httpx.get(f"{url}/v1/sessions/titled").json()["title"] == "Black Sea"


@pytest.mark.reliability(9)
@pytest.mark.parametrize("sid", ["../x", "a/b", "x" * 200, "a%00b"])
def test_bad_session_ids_are_400(tiny_server: Server, sid: str) -> None:
    r = httpx.post(
        f"{tiny_server.url}/v1/chat/completions",
        headers={"X-Session-Id": sid},
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert r.status_code == 400, r.text


def test_errors_are_in_the_openai_shape(tiny_server: Server) -> None:
    r = httpx.get(f"{tiny_server.url}/v1/sessions/none-such")
    assert r.status_code == 404
    assert set(json.loads(r.text)["error"]) == {"message", "type", "param", "code"}


@pytest.mark.reliability(48)
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "hi \\ud800"}]}',
         "messages.0.content"),
        ("/v1/chat/completions",
         '{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
         "messages.0.content"),
        ("/v1/chat/completions",
         '{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud83d"]}', "stop"),
        ("/v1/completions", '{"prompt": "x \\udc00 y"}', "prompt"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_a_400_naming_its_field(
    tiny_server: Server, path: str, body: str, field: str
) -> None:
    r = httpx.post(
        f"{tiny_server.url}{path}",
        content=body.encode(),  # valid JSON: the escape is not valid Unicode text
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"].startswith(field) and "surrogate" in error["message"]
    assert httpx.get(f"{tiny_server.url}/ready", timeout=10).status_code == 200


def test_tokenize_and_detokenize_as_llama_server_answers_them(tiny_server: Server) -> None:
    def post(path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{tiny_server.url}{path}", json=body, timeout=60)

    text = "Hello, wörld! 🦀"
    tokens = post("/tokenize", {"content": text}).json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert post("/detokenize", {"tokens": tokens}).json() == {"content": text}
    pieces = post("/tokenize", {"content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == tokens
    joined = b"".join(
        p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"]) for p in pieces
    )
    assert joined.decode() == text  # a character split across tokens comes as its bytes
    with_bos = post("/tokenize", {"content": text, "add_special": True}).json()["tokens"]
    assert with_bos[1:] == tokens and len(with_bos) == len(tokens) + 1
    marker = "<start_of_turn>"  # one control token, or its letters as text
    assert len(post("/tokenize", {"content": marker}).json()["tokens"]) == 1
    assert len(post("/tokenize", {"content": marker, "parse_special": False}).json()["tokens"]) > 1
    for bad in ({"tokens": [10**9]}, {"tokens": [-1]}, {"tokens": "abc"}, {"text": "x"}):
        r = post("/detokenize", bad)
        assert r.status_code == 400, (bad, r.text)
    r = post("/detokenize", {"tokens": [10**9]})
    assert "not a token of" in r.json()["error"]["message"]
