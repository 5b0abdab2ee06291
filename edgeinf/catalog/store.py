"""The model store: where model files live, which are verified, and names for local files."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeinf.catalog.entries import CatalogEntry
from edgeinf.errors import ModelFileError, ModelNotFoundError
from edgeinf.files import per_version, write_atomic
from edgeinf.gguf.check import read_gguf

REGISTRY = "registry.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalModel:
    """A model reference resolved to a file on disk."""

    name: str
    path: Path
    sha256: str | None  # expected digest, when the catalog or registry knows one
    entry: CatalogEntry | None
    shards: tuple[tuple[Path, str], ...] = ()  # a split model's other files and their sha256

    def digest(self) -> str:
        """The file's sha256: the known one, else computed (a path given directly)."""
        return self.sha256 or sha256_file(self.path)


def _suggest(ref: str, known: list[str]) -> str:
    close = difflib.get_close_matches(ref, known, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


sha256_cached = per_version(sha256_file)


class ModelStore:
    def __init__(self, root: Path, catalog: dict[str, CatalogEntry]) -> None:
        self.root = root
        self.catalog = catalog

    def ensure(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def path_of(self, entry: CatalogEntry) -> Path:
        return self.root / entry.file

    # -- verification marks: a sidecar remembers that (size, mtime) hashed to sha256 --

    def _mark(self, path: Path) -> Path:
        return path.with_name(f".{path.name}.verified")

    def is_verified(self, path: Path, sha256: str) -> bool:
        try:
            mark = json.loads(self._mark(path).read_text())
            st = path.stat()
        except (OSError, ValueError):
            return False
        return bool(mark == {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})

    def mark_verified(self, path: Path, sha256: str) -> None:
        st = path.stat()
        mark = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        write_atomic(self._mark(path), json.dumps(mark).encode())

    def verify(self, path: Path, sha256: str) -> bool:
        """True when the file hashes to sha256 (cached in the sidecar mark)."""
        if self.is_verified(path, sha256):
            return True
        if sha256_file(path) != sha256:
            return False
        self.mark_verified(path, sha256)
        return True

    # -- the registry of a user's own files --

    def registered(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.root / REGISTRY).read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ModelFileError(
                f"model registry {self.root / REGISTRY} is unreadable ({exc}); remove it and "
                "register your models again with `edgeinf models add PATH`"
            ) from exc
        return dict(data)

    def register_verified(
        self, name: str, files: list[tuple[Path, str]], source: dict[str, str]
    ) -> None:
        """Register files already verified against their sha256 (a pulled hub model: its
        shards in order) under `name`, with where they came from."""
        models = self.registered()
        (first, sha), rest = files[0], files[1:]
        models[name] = {
            "path": str(first),
            "sha256": sha,
            "shards": [[str(p), d] for p, d in rest],
            **source,
        }
        write_atomic(self.root / REGISTRY, json.dumps(models, indent=2).encode())

    def register(self, path: Path, name: str | None = None) -> str:
        path = path.expanduser().resolve()
        read_gguf(path)  # refuse anything that would not load
        name = name or path.stem
        if name in self.catalog:
            raise ModelFileError(f"'{name}' is a catalog model name; choose another with --name")
        models = self.registered()
        digest = sha256_file(path)
        self.mark_verified(path, digest)
        models[name] = {"path": str(path), "sha256": digest}
        self.ensure()
        write_atomic(self.root / REGISTRY, json.dumps(models, indent=2).encode())
        return name

    # -- resolving what a user typed --

    def resolve(self, ref: str) -> LocalModel:
        """A catalog name, a registered name or a path to a .gguf file, as a file on disk."""
        named = ref.removesuffix(":latest")
        if (ref.endswith(".gguf") or os.sep in ref) and named not in self.registered():
            path = Path(ref).expanduser()
            if not path.is_file():
                raise ModelNotFoundError(f"no model file at {path}; check the path")
            known = [m for m in self.local_files() if m.path.resolve() == path.resolve()]
            return known[0] if known else LocalModel(path.stem, path.resolve(), None, None)
        try:
            return self.named(ref)
        except ModelNotFoundError as exc:
            if ref in self.catalog or ref in self.registered():
                raise
            raise ModelNotFoundError(f"{exc}, or pass a path to a .gguf file") from None

    def named(self, ref: str) -> LocalModel:
        """A catalog or registered name (never a path: what a client over HTTP may name),
        with Ollama's default tag `:latest` allowed after it."""
        ref = ref.removesuffix(":latest")
        if ref in self.catalog:
            entry = self.catalog[ref]
            path = self.path_of(entry)
            if not path.is_file():
                raise ModelNotFoundError(f"model '{ref}' is not pulled; run `edgeinf pull {ref}`")
            return LocalModel(ref, path, entry.sha256, entry)
        reg = self.registered()
        if ref in reg:
            path = Path(reg[ref]["path"])
            if not path.is_file():
                raise ModelNotFoundError(
                    f"registered model '{ref}' points to {path}, which is gone; "
                    "register it again with `edgeinf models add PATH`"
                )
            shards = tuple((Path(p), d) for p, d in reg[ref].get("shards", ()))
            return LocalModel(ref, path, reg[ref]["sha256"], None, shards)
        pulled = [n for n in reg if n.startswith(f"{ref}:")]  # owner/repo, pulled as one quant
        if len(pulled) == 1:
            return self.named(pulled[0])
        raise ModelNotFoundError(
            f"unknown model '{ref}'; {_suggest(ref, [*self.catalog, *reg])}"
            "run `edgeinf models` to list models"
        )

    def remove(self, name: str) -> str:
        """Remove a model by name: a pulled one's files are deleted, a registered file of
        the user's only forgotten. Says what was done."""
        model = self.named(name)
        reg = self.registered()
        if model.name in reg:
            pulled = "hub" in reg[model.name]
            del reg[model.name]
            write_atomic(self.root / REGISTRY, json.dumps(reg, indent=2).encode())
            if not pulled:
                return f"forgot {model.name} (its file {model.path} is left in place)"
        for path in (model.path, *(p for p, _ in model.shards)):
            path.unlink(missing_ok=True)
            self._mark(path).unlink(missing_ok=True)
        return f"removed {model.name} ({model.path})"

    def catalog_entry(self, name: str) -> CatalogEntry:
        if name not in self.catalog:
            raise ModelNotFoundError(
                f"'{name}' is not in the catalog; {_suggest(name, list(self.catalog))}"
                "run `edgeinf models` to list the catalog"
            )
        return self.catalog[name]

    def servable(self) -> list[LocalModel]:
        """Local models a server can answer with, by name: GGUF files, and ONNX encoders
        (not their tokenizers)."""
        kinds = (".gguf", ".onnx")
        return sorted(
            (m for m in self.local_files() if m.path.suffix in kinds), key=lambda m: m.name
        )

    def local_files(self) -> Iterator[LocalModel]:
        for name, entry in self.catalog.items():
            if self.path_of(entry).is_file():
                yield LocalModel(name, self.path_of(entry), entry.sha256, entry)
        for name, rec in self.registered().items():
            yield LocalModel(name, Path(rec["path"]), rec["sha256"], None)
