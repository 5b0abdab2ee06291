"""Several models in one server: two GGUF chat models and the embedding model answer in
turn, each as it answers alone; with room for one, requests from many clients alternate
between two models through eviction; memory stays within what was admitted; presets
apply per model."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from edgeinf.route.encoder import ENCODER_MODEL
from tests.conftest import DRAFT, TINY
from tests.server.conftest import Server, start
from tests.server.test_disconnects import gauge

ASK = [{"role": "user", "content": "Write a haiku about rivers."}]
MODELS = (TINY, DRAFT)
# Answers equal from one request to the next whatever was cached or drafted: repacked
# weights give other logits in other batch sizes (see speculative_exact).
EXACT = {"EDGEINF_SPECULATIVE_EXACT": "true"}


def answer(server: Server, model: str, timeout: float = 120) -> str:
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", timeout=timeout, max_retries=0)
    r = c.chat.completions.create(model=model, messages=ASK, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    return r.choices[0].message.content or ""


def embed(server: Server, texts: list[str]) -> list[list[float]]:
    r = httpx.post(
        f"{server.url}/v1/embeddings", json={"model": ENCODER_MODEL, "input": texts}, timeout=60
    )
    assert r.status_code == 200, r.text
    return [d["embedding"] for d in r.json()["data"]]


def loaded(server: Server) -> list[str]:
    return [m["name"] for m in httpx.get(f"{server.url}/api/ps").json()["models"]]


def test_two_models_and_the_encoder_answer_in_turn_within_admitted_memory(
    tmp_path: Path, tiny_path: Path, draft_path: Path
) -> None:
    server = start(tmp_path, parallel=1, env=EXACT)
    try:
        alone = {m: answer(server, m) for m in MODELS}
        vectors = embed(server, ["rivers run to the sea"])
        for _ in range(3):  # alternating: each still answers exactly as it did
            for m in MODELS:
                assert answer(server, m) == alone[m]
            assert embed(server, ["rivers run to the sea"]) == vectors
        assert sorted(loaded(server)) == sorted([*MODELS, ENCODER_MODEL])
        listed = {m["id"]: m["loaded"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
        assert listed[TINY] and listed[DRAFT]
        admitted = gauge(server, "edgeinf_models_admitted_bytes")
        rss = psutil.Process(server.proc.pid).memory_info().rss
        assert gauge(server, "edgeinf_model_loaded") == 3
        # Weights are mapped, KV caches allocated: what the process holds is what was
        # admitted, plus the interpreter, onnxruntime and llama.cpp's compute buffers.
        assert rss < admitted + (700 << 20), (rss >> 20, int(admitted) >> 20)
    finally:
        assert server.stop() == 0


@pytest.mark.reliability(40)
def test_with_room_for_one_model_concurrent_clients_alternate_through_eviction(
    tmp_path: Path, tiny_path: Path, draft_path: Path
) -> None:
    # One sequence per model: a greedy answer then is the same whatever else runs, so each
    # can be held against the model's answer alone.
    server = start(tmp_path, parallel=1, env={"EDGEINF_MAX_LOADED": "1", **EXACT})
    try:
        alone = {m: answer(server, m) for m in MODELS}
        seen: set[int] = set()
        watching = threading.Event()

        def watch() -> None:  # never two models in memory at once
            while not watching.is_set():
                seen.add(len(loaded(server)))

        watcher = threading.Thread(target=watch)
        watcher.start()
        asks = [MODELS[i % 2] for i in range(12)]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda m: (m, answer(server, m, timeout=300)), asks))
        watching.set()
        watcher.join()
        assert all(text == alone[m] for m, text in got)
        assert seen <= {0, 1}, seen
    finally:
        assert server.stop() == 0


def test_a_model_too_large_for_the_budget_is_refused_with_the_numbers(
    tmp_path: Path, tiny_path: Path, draft_path: Path
) -> None:
    server = start(tmp_path, env={"EDGEINF_MODELS_MEMORY_MB": "400"})
    try:
        r = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": DRAFT, "messages": ASK, "max_tokens": 2},
            timeout=60,
        )
        assert r.status_code == 503, r.text
        message = r.json()["error"]["message"]
        assert "GiB" in message and "models_memory_mb" in message
        assert answer(server, TINY)  # the default is unharmed
    finally:
        assert server.stop() == 0


def test_a_preset_sets_context_system_prompt_and_sampling_per_model(
    tmp_path: Path, tiny_path: Path, draft_path: Path
) -> None:
    config = tmp_path / "config.toml"
    system = "You are a poet of the sea. Every answer mentions a lighthouse."
    config.write_text(f'[models."{DRAFT}"]\nn_ctx = 768\ntemperature = 0.0\nsystem = "{system}"\n')
    server = start(tmp_path, env={"EDGEINF_CONFIG": str(config)})
    try:
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)

        def ask(messages: list[dict[str, str]]) -> tuple[str, int]:
            r = c.chat.completions.create(model=DRAFT, messages=messages, max_tokens=12)  # type: ignore[arg-type]
            assert r.usage is not None
            return r.choices[0].message.content or "", r.usage.prompt_tokens

        preset = ask(ASK)  # no system message and no temperature: the preset's apply
        assert ask(ASK) == preset  # temperature 0: greedy
        assert ask([{"role": "system", "content": system}, *ASK]) == preset
        other = ask([{"role": "system", "content": "You are terse."}, *ASK])
        assert other[1] < preset[1]  # a system message of the request's own replaces it
        psd = httpx.get(f"{server.url}/api/ps").json()["models"]
        assert {m["name"]: m["context_length"] for m in psd} == {TINY: 1024, DRAFT: 768}
    finally:
        assert server.stop() == 0


def test_a_preset_template_replaces_the_files_own(tmp_path: Path, tiny_path: Path) -> None:
    template = tmp_path / "plain.jinja"
    template.write_text(
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]"
    )
    config = tmp_path / "config.toml"
    config.write_text(f'[models."{TINY}"]\nchat_template_file = "{template}"\n')
    server = start(tmp_path, ctx=512, env={"EDGEINF_CONFIG": str(config)})
    try:
        shown = httpx.post(f"{server.url}/api/show", json={"model": TINY}).json()
        assert shown["template"] == template.read_text()
        body = {"messages": ASK, "max_tokens": 1, "temperature": 0}
        chat = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60).json()
        raw = f"[user] {ASK[0]['content']}\n[assistant]"
        plain = httpx.post(
            f"{server.url}/v1/completions", json={"prompt": raw, "max_tokens": 1}, timeout=60
        ).json()
        # The template's text and the messages are tokenized apart: a token may split there.
        assert abs(chat["usage"]["prompt_tokens"] - plain["usage"]["prompt_tokens"]) <= 1
    finally:
        assert server.stop() == 0
    own = start(tmp_path, ctx=512)  # the file's own: a plain transcript
    try:
        again = httpx.post(f"{own.url}/v1/chat/completions", json=body, timeout=60).json()
        assert again["usage"]["prompt_tokens"] != chat["usage"]["prompt_tokens"]
    finally:
        assert own.stop() == 0
