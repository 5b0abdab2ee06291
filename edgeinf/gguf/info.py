"""What a GGUF file is: architecture, size, quantization, context, tokenizer, template."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gguf import LlamaFileType

from edgeinf.gguf.check import GGUFFile, read_gguf


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


def describe(gguf: GGUFFile) -> ModelInfo:
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
        parameters=sum(t.n_elements for t in gguf.tensors),
        quantization=quant,
        context_length=int(meta.get(f"{arch}.context_length", 0)),
        tokenizer=fingerprint,
        vocab_size=getattr(tokens, "length", 0),
        chat_template=isinstance(meta.get("tokenizer.chat_template"), str),
        file_size=gguf.file_size,
    )


def inspect(path: Path) -> ModelInfo:
    return describe(read_gguf(path))
