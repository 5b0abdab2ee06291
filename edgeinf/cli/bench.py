"""`edgeinf bench ...`: benchmarks that print ratios against a same-run baseline."""

from __future__ import annotations

import argparse
import json

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.config import load_settings
from edgeinf.engine.options import EngineOptions


def run(args: argparse.Namespace) -> int:
    settings = load_settings(threads=args.threads, n_ctx=args.n_ctx, kv_type=args.kv_type)
    model = resolve_verified(open_store(settings), args.model or settings.default_model)
    from edgeinf.bench.decode import bench_decode

    result = bench_decode(
        model, EngineOptions.from_settings(settings), args.tokens, args.repeat, args.llama_bench
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        ours = result["edgeinf"]["decode_tok_s"]["median"]
        peer = result["llama_cpp_python"]["decode_tok_s"]["median"]
        print(
            f"{model.name}, {result['threads']} threads, {args.tokens} tokens, "
            f"median of {args.repeat}:\n"
            f"  edgeinf           {ours:8.2f} tok/s\n"
            f"  llama-cpp-python  {peer:8.2f} tok/s\n"
            f"  ratio             {result['ratio']:8.3f}x"
        )
        if "llama_bench" in result:
            print(
                f"  llama-bench tg    {result['llama_bench']['tg_tok_s']['median']:8.2f} tok/s "
                f"(edgeinf at {result['ratio_vs_llama_bench']:.3f}x)"
            )
    return 0
