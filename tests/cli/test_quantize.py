"""`edgeinf quantize` through llama.cpp's API on the real 270M model; bad input loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import assert_one_line_error, edgeinf


def store_env(tmp_path: Path) -> dict[str, str]:
    return {"EDGEINF_MODELS_DIR": str(tmp_path / "store")}


@pytest.mark.slow
def test_requantize_warns_writes_loads_and_registers(tmp_path: Path, tiny_path: Path) -> None:
    dst = tmp_path / "gemma-q4_0.gguf"
    proc = edgeinf("quantize", str(tiny_path), str(dst), "--type", "q4_0", env=store_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "already quantized (Q4_K_M)" in proc.stderr
    assert dst.is_file() and not list(tmp_path.glob(".*partial*"))
    listed = edgeinf("models", "--json", env=store_env(tmp_path))
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "gemma-q4_0")
    assert row["info"]["quantization"] == "Q4_0" and row["verified"]
    ran = edgeinf(
        "run", "-m", "gemma-q4_0", "-t", "0", "--max-tokens", "4", "Hello", env=store_env(tmp_path)
    )
    assert ran.returncode == 0, ran.stderr


def test_a_source_that_is_not_gguf(tmp_path: Path) -> None:
    src = tmp_path / "notes.gguf"
    src.write_text("not a model, just some notes that are long enough to be read")
    dst = tmp_path / "out.gguf"
    proc = edgeinf("quantize", str(src), str(dst), "--type", "Q8_0", env=store_env(tmp_path))
    assert_one_line_error(proc, "not a GGUF file")
    assert not dst.exists()


def test_an_unknown_type(tmp_path: Path, tiny_path: Path) -> None:
    dst = tmp_path / "out.gguf"
    proc = edgeinf("quantize", str(tiny_path), str(dst), "--type", "Q9_X", env=store_env(tmp_path))
    assert_one_line_error(proc, "unknown type 'Q9_X'", "Q4_K_M")
    assert not dst.exists()


def test_a_destination_that_exists_is_left_alone(tmp_path: Path, tiny_path: Path) -> None:
    dst = tmp_path / "mine.gguf"
    dst.write_bytes(b"precious")
    proc = edgeinf("quantize", str(tiny_path), str(dst), "--type", "Q8_0", env=store_env(tmp_path))
    assert_one_line_error(proc, "exists", "another destination")
    assert dst.read_bytes() == b"precious"


def test_a_full_disk_writes_nothing(tmp_path: Path, tiny_path: Path, tiny_disk: Path) -> None:
    dst = tiny_disk / "out.gguf"
    proc = edgeinf("quantize", str(tiny_path), str(dst), "--type", "Q8_0", env=store_env(tmp_path))
    assert_one_line_error(proc, "MB free", "free some space")
    assert list(tiny_disk.iterdir()) == []
