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
    return verified(store, store.resolve(ref))


def verified(store: ModelStore, model: LocalModel) -> LocalModel:
    """The model, once its files match their known sha256 (a split model's every shard)."""
    files = [(model.path, model.sha256), *model.shards] if model.sha256 else []
    for path, sha256 in files:
        if not path.is_file() or not store.verify(path, sha256):
            again = (
                f"run `edgeinf pull {model.name}`" if model.entry else "pull or register it again"
            )
            raise ModelFileError(
                f"{path} does not match its sha256 (changed, damaged or gone); {again}"
            )
    return model
