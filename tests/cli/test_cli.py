"""`edgeinf` as a user runs it: a real process, real models, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DRAFT, TARGET, TINY
from tests.model_server import model_server
from tests.server.conftest import start


def edgeinf(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeinf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=stdin,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeinf: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys; from edgeinf.cli.main import build_parser; build_parser().format_help();"
        "heavy = {'llama_cpp', 'numpy', 'httpx', 'pydantic', 'rich', 'gguf'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_run_json_on_the_default_model_is_sensible_and_repeatable(target_path: Path) -> None:
    question = "Write a Python function named square that returns x * x. Only the code."
    runs = [
        edgeinf("run", "--json", "--temperature", "0", "--max-tokens", "80", question)
        for _ in range(2)
    ]
    outs = [json.loads(r.stdout) for r in runs]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    first = outs[0]
    assert first["model"] == TARGET
    assert "def square" in first["text"]
    assert first["text"] == outs[1]["text"]
    assert first["tokens"]["prompt"] > 10 and first["tokens"]["completion"] > 5
    assert set(first["timings"]) == {"load_s", "ttft_s", "decode_tok_s"}
    assert first["timings"]["decode_tok_s"] > 0


def test_run_streams_plain_text(tiny_path: Path) -> None:
    proc = edgeinf("run", "-m", TINY, "--temperature", "0", "--max-tokens", "12", "Hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and proc.stderr == ""


def test_run_with_a_suffix_fills_in_the_middle(draft_path: Path) -> None:
    proc = edgeinf(
        "run",
        "-m",
        DRAFT,
        "-t",
        "0",
        "--suffix",
        "\n\n\nprint(add(2, 3))\n",
        "def add(a, b):\n    ",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "return a + b"  # the body, and no example call after it
    refused = edgeinf("run", "-m", TINY, "--suffix", "\n", "x = ")
    assert_one_line_error(refused, "fill in the middle", "qwen2.5-coder")


@pytest.mark.reliability(3)
def test_truncated_gguf_is_refused(tiny_path: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with tiny_path.open("rb") as fh:
        cut.write_bytes(fh.read(50 << 20))
    assert_one_line_error(edgeinf("run", "-m", str(cut), "hi"), "truncated", "download it again")


@pytest.mark.reliability(1)
@pytest.mark.slow
def test_gguf_with_a_jinja_payload_is_refused_without_side_effect(
    tiny_path: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}"
    evil = tmp_path / "evil.gguf"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gguf.scripts.gguf_new_metadata",
            str(tiny_path),
            str(evil),
            "--chat-template",
            payload,
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    proc = edgeinf("run", "-m", str(evil), "hi")
    assert_one_line_error(proc, "unsafe operation", "do not use it")
    assert not marker.exists()


@pytest.mark.reliability(4)
def test_download_with_wrong_sha256_leaves_nothing(tmp_path: Path) -> None:
    blob = os.urandom(1 << 20)
    catalog = {
        "models": [
            {
                "name": "fake",
                "role": "tiny",
                "file": "fake.gguf",
                "size": len(blob),
                "sha256": hashlib.sha256(b"something else").hexdigest(),
                "sources": [{"kind": "hub", "repo": "o/r", "file": "fake.gguf"}],
            }
        ]
    }
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    store = tmp_path / "store"
    with model_server() as (url, served):
        served.files["/o/r/resolve/main/fake.gguf"] = blob
        proc = edgeinf(
            "pull",
            "fake",
            env={
                "EDGEINF_CATALOG_FILE": str(tmp_path / "catalog.json"),
                "EDGEINF_MODELS_DIR": str(store),
                "EDGEINF_HUB_URL": url,
            },
        )
    assert_one_line_error(proc, "did not match its sha256", "nothing was kept")
    assert sorted(p.name for p in store.iterdir() if not p.name.endswith(".lock")) == []


@pytest.mark.reliability(11)
def test_prompt_longer_than_the_context_is_refused(tiny_path: Path) -> None:
    proc = edgeinf("run", "-m", TINY, "--ctx", "256", "word " * 600)
    assert_one_line_error(proc, "context holds 256", "raise --ctx")


@pytest.mark.reliability(48)
def test_a_prompt_that_is_not_unicode_is_refused(tiny_path: Path) -> None:
    # Undecodable bytes on a command line reach Python as lone surrogates.
    proc = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"edgeinf", b"run", b"-m", TINY.encode(), b"caf\xe9"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(proc, "not valid Unicode", "send valid UTF-8")


def test_unknown_model_name_suggests_the_next_step() -> None:
    assert_one_line_error(
        edgeinf("run", "-m", "gemma-3-270m", "hi"), "unknown model 'gemma-3-270m'", "edgeinf models"
    )


@pytest.mark.reliability(10)
def test_bad_number_is_refused_before_loading() -> None:
    assert_one_line_error(edgeinf("run", "--temperature", "nan", "hi"), "temperature")


def test_models_json_lists_metadata_and_tokenizer_fingerprints(
    tiny_path: Path, draft_path: Path, target_path: Path
) -> None:
    proc = edgeinf("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    tiny, draft, target = rows[TINY], rows[DRAFT], rows[TARGET]
    assert all(r["present"] and r["verified"] for r in (tiny, draft, target))
    assert target["info"]["architecture"] == "qwen2"
    assert target["info"]["quantization"] == "Q4_K_M"
    assert target["info"]["chat_template"] and not tiny["info"]["chat_template"]
    assert draft["info"]["tokenizer"] == target["info"]["tokenizer"] != tiny["info"]["tokenizer"]
    assert 1.4e9 < target["info"]["parameters"] < 2e9


def test_registered_file_runs_by_name(tiny_path: Path, tmp_path: Path) -> None:
    env = {"EDGEINF_MODELS_DIR": str(tmp_path)}
    added = edgeinf("models", "add", str(tiny_path), "--name", "my-tiny", env=env)
    assert added.returncode == 0, added.stderr
    listed = {r["name"]: r for r in json.loads(edgeinf("models", "--json", env=env).stdout)}
    assert listed["my-tiny"]["kind"] == "registered" and listed["my-tiny"]["verified"]
    proc = edgeinf(
        "run",
        "-m",
        "my-tiny",
        "--json",
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "Hello",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "my-tiny"


@pytest.mark.slow
def test_a_reader_that_leaves_early_gets_no_traceback(draft_path: Path) -> None:
    """`edgeinf run ... | head -1`: the answer stops quietly when nobody reads it any more."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeinf", "run", "-m", DRAFT, "-t", "0", "--max-tokens", "200",
         "Write a Python function that tells whether a number is prime."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `head -1` exiting
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_show_rm_and_ps(tiny_path: Path, tmp_path: Path) -> None:
    env = {"EDGEINF_MODELS_DIR": str(tmp_path / "models")}
    assert edgeinf("models", "add", str(tiny_path), "--name", "my-tiny", env=env).returncode == 0
    shown = edgeinf("show", "my-tiny", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    facts = json.loads(shown.stdout)
    assert facts["architecture"] == "gemma3" and facts["quantization"] == "Q4_K_M"
    assert facts["capabilities"] == ["completion"] and facts["template"] is None
    assert "capabilities     completion" in edgeinf("show", "my-tiny", env=env).stdout
    server = start(tmp_path, model="my-tiny", ctx=512, env=env)
    try:
        ps = edgeinf("ps", "--url", server.url, "--json")
        assert ps.returncode == 0, ps.stderr
        assert [m["name"] for m in json.loads(ps.stdout)] == ["my-tiny"]
        assert "my-tiny" in edgeinf("ps", "--url", server.url).stdout
    finally:
        assert server.stop() == 0
    assert_one_line_error(edgeinf("ps", "--url", server.url), "edgeinf serve", "--url")
    removed = edgeinf("rm", "my-tiny", env=env)
    assert removed.returncode == 0 and "left in place" in removed.stdout and tiny_path.is_file()
    assert_one_line_error(edgeinf("show", "my-tiny", env=env), "unknown model 'my-tiny'")
