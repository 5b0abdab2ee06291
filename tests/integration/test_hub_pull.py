"""Pulling any GGUF model of a hub by name, against a local server that answers with the
hub's API shape (revision, file tree with LFS sha256 and sizes, resolve) and real GGUF
bytes: a split model fetched and loaded as a set, a resumed download, a sha256 mismatch,
names refused before any request, a gated repository, a token kept from other hosts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeinf.catalog import resolve_verified
from edgeinf.catalog.hub import Hub, parse_ref
from edgeinf.catalog.store import ModelStore
from edgeinf.engine.engine import Engine
from edgeinf.engine.options import EngineOptions
from edgeinf.errors import ChecksumMismatchError, InvalidRequestError, PullError
from tests.gguf_split import split
from tests.model_server import COMMIT, Served, model_server

REPO = "org/tiny-GGUF"


@dataclass
class Repo:
    url: str
    served: Served
    shards: list[bytes]  # the Q4_K_M model, split in two


@pytest.fixture(scope="module")
def shards(tiny_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    out = tmp_path_factory.mktemp("split")
    return [p.read_bytes() for p in split(tiny_path, out / "tiny-Q4_K_M.gguf", 120)]


@pytest.fixture
def repo(shards: list[bytes]) -> Iterator[Repo]:
    with model_server() as (url, served):
        files = {
            "tiny-Q4_K_M-00001-of-00002.gguf": shards[0],
            "tiny-Q4_K_M-00002-of-00002.gguf": shards[1],
            "tiny-Q8_0.gguf": b"GGUF never fetched",
        }
        served.publish(REPO, files)
        yield Repo(url, served, shards)


def pull(repo: Repo, store: ModelStore, name: str, token: str | None = None) -> Path:
    hub = Hub(repo.url, token)
    try:
        resolved = hub.resolve(parse_ref(name, repo.url))
        return hub.download(resolved, store, lambda n: None)
    finally:
        hub.close()


@pytest.mark.reliability(4, 41)
@pytest.mark.slow
def test_a_split_model_is_pulled_by_name_pinned_verified_and_loads(
    repo: Repo, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path, {})
    first = pull(repo, store, REPO)  # no quantization named: Q4_K_M is chosen
    model = resolve_verified(store, f"{REPO}:Q4_K_M")
    assert model.path == first and len(model.shards) == 1
    assert [first.read_bytes(), model.shards[0][0].read_bytes()] == repo.shards
    fetched = [p for p, _ in repo.served.requests if "/resolve/" in p]
    assert all(f"/resolve/{COMMIT}/" in p for p in fetched) and len(fetched) == 2  # pinned
    assert store.named(REPO).name == f"{REPO}:Q4_K_M"  # the one pulled, by its repo's name
    with Engine(first, EngineOptions(n_ctx=256, threads=2, threads_batch=2)) as engine:
        assert engine.info.parameters > 250e6  # both shards' tensors
        assert engine.vocab.tokenize("hello")
    asked = len(repo.served.requests)
    pull(repo, store, REPO)  # verified already: only the API is asked
    assert all("/resolve/" not in p for p, _ in repo.served.requests[asked:])


@pytest.mark.reliability(4)
def test_an_interrupted_download_resumes(repo: Repo, tmp_path: Path) -> None:
    store = ModelStore(tmp_path, {})
    repo.served.cut_after = 1 << 20
    with pytest.raises(PullError, match="resumes"):
        pull(repo, store, f"{REPO}:Q4_K_M")
    assert not list((tmp_path / "hub").rglob("*-of-00002.gguf"))  # nothing under a final name
    pull(repo, store, f"{REPO}:Q4_K_M")
    ranges = [r for _, r in repo.served.requests if r]
    assert ranges == [f"bytes={1 << 20}-"]
    assert resolve_verified(store, f"{REPO}:Q4_K_M").path.read_bytes() == repo.shards[0]


@pytest.mark.reliability(4, 41)
def test_a_listing_that_lies_about_sha256_leaves_nothing(
    shards: list[bytes], tmp_path: Path
) -> None:
    with model_server() as (url, served):
        served.publish(REPO, {"tiny-Q4_K_M.gguf": shards[1]}, lie=True)
        with pytest.raises(ChecksumMismatchError, match="did not match its sha256"):
            pull(Repo(url, served, shards), ModelStore(tmp_path, {}), REPO)
    assert not [p for p in (tmp_path / "hub").rglob("*") if p.is_file() and p.name != ".lock"]
    with pytest.raises(Exception, match="unknown model"):
        ModelStore(tmp_path, {}).named(f"{REPO}:Q4_K_M")


@pytest.mark.reliability(41)
@pytest.mark.parametrize(
    "name",
    ["../etc", "org/../x", "org/repo/extra", "/org/repo", "org/repo:Q4/../x", "org/.hidden",
     "https://elsewhere.example/org/repo/resolve/main/x.gguf",
     "https://HUB/org/repo/resolve/main/../../x.gguf", "org/" + "r" * 200],
)  # fmt: skip
def test_a_bad_name_is_refused_before_any_request(repo: Repo, name: str) -> None:
    with pytest.raises(InvalidRequestError, match="not a model name to pull"):
        parse_ref(name.replace("https://HUB", repo.url), repo.url)
    assert repo.served.requests == []


@pytest.mark.reliability(41)
def test_a_gated_repository_asks_for_a_token_which_only_the_hub_sees(
    repo: Repo, tmp_path: Path
) -> None:
    repo.served.gated[f"/api/models/{REPO}"] = "hf_secret"
    repo.served.gated[f"/{REPO}/"] = "hf_secret"
    with pytest.raises(PullError, match="HF_TOKEN"):
        pull(repo, ModelStore(tmp_path, {}), REPO)
    with model_server() as (cdn_url, cdn):  # the hub hands the bytes to another host
        for i, data in enumerate(repo.shards, 1):
            path = f"/{REPO}/resolve/{COMMIT}/tiny-Q4_K_M-0000{i}-of-00002.gguf"
            cdn.files[f"/blobs/{i}"] = data
            repo.served.redirects[path] = f"{cdn_url}/blobs/{i}"
        pull(repo, ModelStore(tmp_path, {}), REPO, token="hf_secret")
        assert len(cdn.requests) == 2 and cdn.tokens_seen == [None, None]
    assert "Bearer hf_secret" in repo.served.tokens_seen


def test_a_quantization_the_repository_lacks_names_those_it_has(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(PullError, match=r"has no Q5_K_M; it has Q4_K_M, Q8_0"):
        pull(repo, ModelStore(tmp_path, {}), f"{REPO}:Q5_K_M")


def test_edgeinf_pull_takes_a_hub_name(repo: Repo, tmp_path: Path) -> None:
    env = {**os.environ, "EDGEINF_MODELS_DIR": str(tmp_path), "EDGEINF_HUB_URL": repo.url}
    done = subprocess.run(
        [sys.executable, "-m", "edgeinf", "pull", f"hf.co/{REPO}:q4_k_m"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{REPO}:Q4_K_M: verified" in done.stdout and COMMIT[:12] in done.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "edgeinf", "models", "--json"], env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert f'"{REPO}:Q4_K_M"' in listed.stdout
