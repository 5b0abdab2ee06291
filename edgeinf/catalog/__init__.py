"""Model catalog, model store, pulling and GGUF inspection."""

from __future__ import annotations

from edgeinf.catalog.entries import load_catalog
from edgeinf.catalog.store import LocalModel, ModelStore
from edgeinf.config import Settings
from edgeinf.errors import ModelFileError


def open_store(settings: Settings) -> ModelStore:
    return ModelStore(settings.models_dir, load_catalog(settings.catalog_file))


def resolve_verified(store: ModelStore, ref: str) -> LocalModel:
    """Resolve a model reference; a file with a known sha256 must match it before use."""
    model = store.resolve(ref)
    if model.sha256 and not store.verify(model.path, model.sha256):
        again = f"run `edgeinf pull {model.name}`" if model.entry else "register it again"
        raise ModelFileError(
            f"{model.path} does not match its sha256 (changed or damaged); {again}"
        )
    return model
