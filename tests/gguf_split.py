"""Split a real GGUF file into llama.cpp's shards (NAME-0000K-of-0000N.gguf) with the
`gguf` package's writer, for tests of split models."""

from __future__ import annotations

from pathlib import Path

import gguf


def split(source: Path, target: Path, max_tensors: int) -> list[Path]:
    """Write `source` as shards named after `target` (a .gguf path); returns them in order."""
    reader = gguf.GGUFReader(source)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(target, arch, split_max_tensors=max_tensors)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return sorted(target.parent.glob(f"{target.stem}-*-of-*.gguf"))
