"""Write an F16 GGUF from a quantized one, so that llama.cpp can quantize it down a ladder.

    python tools/dequantize_gguf.py SRC.gguf DST-f16.gguf

The gguf package dequantizes K-quants in numpy; every quantized tensor is written as F16,
F32 tensors (norms) stay F32. The result's quality is bounded by the file it came from: an
F16 made from a Q4_K_M is a Q4_K_M in a larger file, not the original weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q


def dequantize(src: Path, dst: Path) -> None:
    reader = gguf.GGUFReader(src)
    arch = str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.MOSTLY_F16)
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    arrays = []
    for t in reader.tensors:
        if t.tensor_type in (Q.F32, Q.F16):
            data = np.asarray(t.data)
        else:
            data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float16)
        arrays.append((t.name, data))
        writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, data in arrays:
        writer.write_tensor_data(data)
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dequantize(Path(sys.argv[1]), Path(sys.argv[2]))
