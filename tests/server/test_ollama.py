"""The Ollama API, driven by the official `ollama` client (whose own types check every
response) against a real `edgeinf serve` with a store of its own: list, show, ps, chat and
generate (streamed and not), embed, pull from a local hub with progress, delete."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import pytest

from edgeinf.config import Settings
from edgeinf.route.dispatch import encoder_files
from edgeinf.route.encoder import ENCODER_MODEL
from tests.conftest import TINY
from tests.model_server import Served, model_server
from tests.server.conftest import Server, start
from tests.server.test_disconnects import gauge, settles

PULLED = "hub-tiny"  # a catalog entry whose bytes come from the local hub
ALIAS = "tiny-alias"  # a registered name for a file of the user's
HUB_REPO = "org/tiny-GGUF"  # a repository on the local hub, pulled by name


@dataclass
class Ollama:
    server: Server
    client: ollama.Client
    models: Path  # the server's own model store
    hub: Served


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem
        shutil.copyfile(source, target)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiny_path: Path, settings: Settings
) -> Iterator[Ollama]:
    tmp = tmp_path_factory.mktemp("ollama")
    models = tmp / "models"
    models.mkdir()
    for path in encoder_files(settings):  # the store's own copy: nothing is fetched
        _link(path, models / path.name)
    blob = tiny_path.read_bytes()
    catalog = tmp / "catalog.json"
    entry = {
        "name": PULLED, "role": "tiny", "description": "", "file": f"{PULLED}.gguf",
        "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
        "sources": [{"kind": "hub", "repo": "org/tiny-GGUF", "file": "tiny.gguf"}],
    }  # fmt: skip
    catalog.write_text(json.dumps({"format": 1, "models": [entry]}))
    env = {
        "EDGEINF_MODELS_DIR": str(models),
        "EDGEINF_CATALOG_FILE": str(catalog),
        # A streamed answer equals the one before it whatever the slot cached: repacked
        # weights give other logits in other batch sizes (see speculative_exact).
        "EDGEINF_SPECULATIVE_EXACT": "true",
    }
    own = tmp / "mine" / "tiny-of-mine.gguf"  # a user's file elsewhere, registered by name
    own.parent.mkdir()
    _link(tiny_path, own)
    subprocess.run(
        [sys.executable, "-m", "edgeinf", "models", "add", str(own), "--name", ALIAS],
        env={**os.environ, **env}, check=True, capture_output=True,
    )  # fmt: skip
    with model_server() as (url, hub):
        hub.files["/org/tiny-GGUF/resolve/main/tiny.gguf"] = blob
        hub.publish(HUB_REPO, {"tiny-Q4_K_M.gguf": blob})
        server = start(
            tmp, model=str(tiny_path), ctx=512, parallel=2, env={**env, "EDGEINF_HUB_URL": url}
        )
        yield Ollama(server, ollama.Client(host=server.url, timeout=120), models, hub)
        assert server.stop() == 0


ASK = [{"role": "user", "content": "Name three colours."}]
GREEDY = {"temperature": 0, "num_predict": 12, "seed": 7}


def test_list_show_ps_and_version(served: Ollama) -> None:
    c = served.client
    names = [m.model for m in c.list().models]
    assert names[0] == TINY and ALIAS in names and PULLED not in names
    tiny = c.list().models[0]
    assert tiny.details is not None and tiny.details.family == "gemma3"
    assert tiny.details.quantization_level == "Q4_K_M" and tiny.size and tiny.digest
    shown = c.show(TINY)
    assert shown.capabilities == ["completion"]  # a base model: no tools in its template
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "gemma3"
    loaded = c.ps().models
    assert [m.model for m in loaded] == [TINY] and loaded[0].context_length == 512
    assert loaded[0].expires_at is None  # kept loaded (keep_alive_s 0)
    assert httpx.get(f"{served.server.url}/api/version").json()["version"]


def test_chat_streamed_equals_chat_whole(served: Ollama) -> None:
    c = served.client
    whole = c.chat(model=TINY, messages=ASK, options=GREEDY)
    pieces = list(c.chat(model=TINY, messages=ASK, options=GREEDY, stream=True))
    assert whole.message.role == "assistant" and whole.message.content
    assert "".join(p.message.content or "" for p in pieces) == whole.message.content
    assert [p.done for p in pieces].count(True) == 1 and pieces[-1].done
    last = pieces[-1]
    assert last.eval_count == whole.eval_count and whole.eval_count is not None
    assert (whole.done_reason == "length") == (whole.eval_count == 12)
    # Durations are nanoseconds: a few milliseconds to seconds on this model.
    assert whole.total_duration is not None and whole.eval_duration is not None
    assert 1e6 < whole.eval_duration <= whole.total_duration < 60e9
    assert whole.prompt_eval_count and whole.prompt_eval_count > 3


def test_generate_plain_raw_and_json(served: Ollama) -> None:
    c = served.client
    plain = c.generate(model=TINY, prompt="The capital of France is", options=GREEDY)
    assert plain.response and plain.done and plain.eval_count
    prompt = "The capital of France is"
    pieces = c.generate(model=TINY, prompt=prompt, options=GREEDY, stream=True)
    streamed = "".join(p.response or "" for p in pieces)
    assert streamed == plain.response
    raw = c.generate(model=TINY, prompt="1, 2, 3, 4,", raw=True, options=GREEDY)
    assert (raw.response or "").strip()
    shaped = c.generate(
        model=TINY, prompt="A person as JSON:", format="json", options={**GREEDY, "num_predict": 40}
    )
    assert isinstance(json.loads(shaped.response or ""), dict)


def test_embed_normalised_batched_and_cut_to_dimensions(served: Ollama) -> None:
    c = served.client
    texts = ["A man plays the guitar.", "Someone is playing a guitar.", "Stocks fell today."]
    out = c.embed(model=ENCODER_MODEL, input=texts)
    rows = out.embeddings
    assert len(rows) == 3 and all(len(r) == 384 for r in rows)
    assert all(math.isclose(sum(x * x for x in r), 1.0, rel_tol=1e-4) for r in rows)
    cos = [sum(a * b for a, b in zip(rows[0], r, strict=True)) for r in rows]
    assert cos[1] > cos[2] + 0.3  # the paraphrase, not the unrelated sentence
    short = c.embed(model=ENCODER_MODEL, input="hello", dimensions=64).embeddings[0]
    assert len(short) == 64 and math.isclose(sum(x * x for x in short), 1.0, rel_tol=1e-4)
    legacy = c.embeddings(model=ENCODER_MODEL, prompt=texts[0]).embedding
    assert max(abs(a - b) for a, b in zip(legacy, rows[0], strict=True)) < 1e-5
    assert gauge(served.server, "edgeinf_embedded_texts_total") >= 5


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"model": "nope", "messages": ASK}, 404, "nope"),
        ({"model": "../models/x.gguf", "messages": ASK}, 404, "x.gguf"),
        ({"model": TINY, "messages": ASK, "think": True}, 400, "think"),
        ({"model": TINY, "messages": ASK, "options": {"num_thread": 4}}, 400, "num_thread"),
        ({"model": TINY, "messages": ASK, "options": {"mirostat": 2}}, 400, "mirostat"),
        ({"model": TINY, "messages": ASK, "options": {"num_ctx": 100000}}, 400, "num_ctx"),
        ({"model": TINY, "messages": [{**ASK[0], "images": ["aGk="]}]}, 400, "images"),
        ({"model": TINY, "messages": ASK, "keep_alive": "soon"}, 400, "duration"),
        ({"model": ENCODER_MODEL, "messages": ASK}, 400, "embedding model"),
    ],
)  # fmt: skip
def test_refusals_say_why_in_ollamas_shape(
    served: Ollama, body: dict[str, object], status: int, says: str
) -> None:
    r = httpx.post(f"{served.server.url}/api/chat", json={**body, "stream": False}, timeout=60)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and says in r.json()["error"]
    with pytest.raises(ollama.ResponseError) as caught:
        served.client.chat(**body)  # type: ignore[call-overload]
    assert caught.value.status_code == status


def test_load_then_unload_with_keep_alive_zero(served: Ollama) -> None:
    c = served.client
    loaded = c.generate(model=ALIAS)  # no prompt: load only
    assert loaded.done_reason == "load" and ALIAS in [m.model for m in c.ps().models]
    gone = c.generate(model=ALIAS, keep_alive=0)
    assert gone.done_reason == "unload" and ALIAS not in [m.model for m in c.ps().models]
    c.chat(model=ALIAS, messages=ASK, options=GREEDY, keep_alive=1)  # unloaded after 1 s idle
    deadline = time.monotonic() + 10
    while ALIAS in [m.model for m in c.ps().models] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ALIAS not in [m.model for m in c.ps().models] and TINY in [
        m.model for m in c.ps().models
    ]


@pytest.mark.reliability(40)
def test_pull_with_progress_then_chat_then_delete_while_loaded(served: Ollama) -> None:
    c = served.client
    steps = list(c.pull(PULLED, stream=True))
    assert steps[0].status == "pulling manifest" and steps[-1].status == "success"
    sizes = [s.completed for s in steps if s.completed is not None]
    pulled = served.models / f"{PULLED}.gguf"
    assert sizes == sorted(sizes) and sizes[-1] == steps[1].total == pulled.stat().st_size
    assert PULLED in [m.model for m in c.list().models]
    assert c.pull(PULLED).status == "success"  # already there: verified, not fetched again
    stream = c.chat(model=PULLED, messages=ASK, options={"num_predict": 200}, stream=True)
    first = next(stream)  # answering now, when the delete arrives
    assert not first.done
    assert c.delete(PULLED).status == "success"
    rest = list(stream)  # the answer in flight finishes (or is cut after a drain); no hang
    assert rest and rest[-1].done
    assert PULLED not in [m.model for m in c.list().models]
    assert PULLED not in [m.model for m in c.ps().models]
    assert not (served.models / f"{PULLED}.gguf").exists()
    with pytest.raises(ollama.ResponseError) as caught:
        c.chat(model=PULLED, messages=ASK)
    assert caught.value.status_code == 404 and "pull" in caught.value.error


def test_delete_forgets_a_registered_name_and_keeps_the_default(served: Ollama) -> None:
    c = served.client
    own = served.models.parent / "mine" / "tiny-of-mine.gguf"
    assert c.delete(ALIAS).status == "success"
    assert ALIAS not in [m.model for m in c.list().models] and own.is_file()
    refused = httpx.request("DELETE", f"{served.server.url}/api/delete", json={"model": TINY})
    assert refused.status_code == 400 and "default" in refused.json()["error"]
    with pytest.raises(ollama.ResponseError) as caught:
        c.delete("never-was")
    assert caught.value.status_code == 404


@pytest.mark.reliability(45)
def test_a_stream_cut_by_the_client_frees_its_sequence(served: Ollama) -> None:
    body = {"model": TINY, "messages": ASK, "options": {"num_predict": 400}}
    with httpx.stream("POST", f"{served.server.url}/api/chat", json=body, timeout=60) as r:
        lines = r.iter_lines()
        assert not json.loads(next(lines))["done"]
    assert settles(served.server, "edgeinf_running_requests", 0, within=2)


def test_langchain_ollama_chats_and_embeds(served: Ollama) -> None:
    from langchain_ollama import ChatOllama, OllamaEmbeddings

    url = served.server.url
    llm = ChatOllama(model=TINY, base_url=url, temperature=0, num_predict=8, seed=7)
    said = llm.invoke("Name three colours.")
    assert isinstance(said.content, str) and said.content
    assert "".join(str(c.content) for c in llm.stream("Name three colours.")) == said.content
    vectors = OllamaEmbeddings(model=ENCODER_MODEL, base_url=url)
    rows = vectors.embed_documents(["A man plays the guitar.", "Stocks fell today."])
    query = vectors.embed_query("A man plays the guitar.")
    assert len(rows) == 2 and len(query) == 384
    assert max(abs(a - b) for a, b in zip(rows[0], query, strict=True)) < 1e-5


@pytest.mark.reliability(41)
def test_pull_a_hub_model_by_name_then_chat_with_it(served: Ollama) -> None:
    c = served.client
    with pytest.raises(ollama.ResponseError) as caught:
        c.pull("org/../etc")
    assert caught.value.status_code == 400 and "not a model name" in caught.value.error
    steps = list(c.pull(f"hf.co/{HUB_REPO}:Q4_K_M", stream=True))
    assert steps[-1].status == "success" and steps[1].total == steps[-3].completed
    name = f"{HUB_REPO}:Q4_K_M"
    assert name in [m.model for m in c.list().models]
    said = c.chat(model=name, messages=ASK, options=GREEDY)
    assert said.model == name and said.message.content
    assert c.chat(model=HUB_REPO, messages=ASK, options=GREEDY).model == name  # by its repo too
    assert c.delete(name).status == "success"
    assert not list((served.models / "hub").rglob("*.gguf"))
