"""What a GGUF file is: architecture, size, quantization, context, tokenizer, template."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import LlamaFileType

from edgeinf.files import per_version
from edgeinf.gguf.check import GGUFFile, read_gguf, shard_paths


@dataclass(frozen=True)
class ModelInfo:
    architecture: str
    parameters: int
    quantization: str
    context_length: int
    tokenizer: str  # fingerprint: equal fingerprints mean identical vocabularies
    vocab_size: int
    chat_template: bool
    file_size: int


def describe(gguf: GGUFFile, shards: tuple[GGUFFile, ...] = ()) -> ModelInfo:
    """What a model is, from its (first) file; `shards` are the other files of a split one."""
    meta = gguf.metadata
    arch = str(meta.get("general.architecture", "unknown"))
    file_type = meta.get("general.file_type")
    try:
        quant = LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    except ValueError:
        quant = f"type {file_type}" if file_type is not None else "unknown"
    tokens = meta.get("tokenizer.ggml.tokens")
    fingerprint = hashlib.sha256(
        f"{meta.get('tokenizer.ggml.model', '')}\n{gguf.tokens_digest}".encode()
    ).hexdigest()[:16]
    return ModelInfo(
        architecture=arch,
        parameters=sum(t.n_elements for g in (gguf, *shards) for t in g.tensors),
        quantization=quant,
        context_length=int(meta.get(f"{arch}.context_length", 0)),
        tokenizer=fingerprint,
        vocab_size=getattr(tokens, "length", 0),
        chat_template=isinstance(meta.get("tokenizer.chat_template"), str),
        file_size=sum(g.file_size for g in (gguf, *shards)),
    )


def capabilities(metadata: dict[str, Any], fills_in_middle: bool = False) -> list[str]:
    """What a GGUF model can be asked, in Ollama's words: completion, tools (its template
    renders them), insert (fill-in-the-middle), embedding (it declares a pooling of its
    outputs), thinking."""
    arch = metadata.get("general.architecture", "")
    template = metadata.get("tokenizer.chat_template")
    template = template if isinstance(template, str) else ""
    out = ["completion"]
    if "tools" in template:
        out.append("tools")
    if fills_in_middle:
        out.append("insert")
    if metadata.get(f"{arch}.pooling_type") is not None:
        out.append("embedding")
    if "<think>" in template or "enable_thinking" in template:
        out.append("thinking")
    return out


def inspect(path: Path) -> ModelInfo:
    first = read_gguf(path)
    rest = tuple(read_gguf(p) for p in shard_paths(path, first)[1:])
    return describe(first, rest)


inspect_cached = per_version(inspect)
