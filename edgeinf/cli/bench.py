"""`edgeinf bench ...`: benchmarks that print ratios against a same-run baseline."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.cli.main import settings_from
from edgeinf.errors import InvalidRequestError
from edgeinf.service.local import engine_options


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    model = resolve_verified(open_store(settings), args.model or settings.default_model)
    if args.bench_command == "route":
        from edgeinf.bench.route import bench_route

        out = bench_route(
            settings,
            model,
            settings.remote_model,
            args.repeat,
            args.watch_rounds,
            args.watch_tokens,
        )
        print(json.dumps(out, indent=2 if not args.json else None))
        return 0
    if args.bench_command == "resume":
        from edgeinf.bench.resume import bench_resume

        try:
            lengths = [int(x) for x in args.context.split(",")]
        except ValueError as exc:
            raise InvalidRequestError(
                f"--context takes token counts separated by commas, got {args.context!r}"
            ) from exc
        result = bench_resume(settings, model, lengths, args.repeat)
        print(json.dumps(result, indent=2) if args.json else _resume_table(result))
        return 0
    if args.bench_command == "speculative":
        from edgeinf.bench.speculative import bench_speculative

        draft = resolve_verified(open_store(settings), args.draft) if args.draft else None
        result = bench_speculative(
            model,
            draft,
            engine_options(settings),
            args.workload,
            args.prompts,
            args.tokens,
            args.llama_tools,
            args.exact,
            settings.draft_history,
        )
        print(json.dumps(result, indent=2) if args.json else _speculative_table(result))
        return 0
    if args.bench_command == "structured":
        from edgeinf.bench.structured import bench_structured

        result = bench_structured(model, engine_options(settings), args.tokens, args.repeat)
        print(json.dumps(result, indent=2) if args.json else _structured_table(result))
        return 0
    from edgeinf.bench.decode import bench_decode

    result = bench_decode(
        model, engine_options(settings), args.tokens, args.repeat, args.llama_bench
    )
    print(json.dumps(result, indent=2) if args.json else _decode_table(result, args))
    return 0


def _decode_table(result: dict[str, Any], args: argparse.Namespace) -> str:
    ours = result["edgeinf"]["decode_tok_s"]["median"]
    peer = result["llama_cpp_python"]["decode_tok_s"]["median"]
    lines = [
        f"{result['model']['name']}, {result['threads']} threads, {args.tokens} tokens, "
        f"median of {args.repeat}:",
        f"  edgeinf           {ours:8.2f} tok/s",
        f"  llama-cpp-python  {peer:8.2f} tok/s",
        f"  ratio             {result['ratio']:8.3f}x",
    ]
    if "llama_bench" in result:
        lines.append(
            f"  llama-bench tg    {result['llama_bench']['tg_tok_s']['median']:8.2f} tok/s "
            f"(edgeinf at {result['ratio_vs_llama_bench']:.3f}x)"
        )
        lines.append(
            f"  ... after {result['prompt_tokens']:>4} tok "
            f"{result['llama_bench']['tg_after_prompt_tok_s']['median']:8.2f} tok/s "
            f"(edgeinf at {result['ratio_vs_llama_bench_after_prompt']:.3f}x)"
        )
    return "\n".join(lines)


def _structured_table(result: dict[str, Any]) -> str:
    lines = [f"{result['model']['name']}, {result['threads']} threads, {result['tokens']} tokens"]
    for label in ("greedy", "sampled"):
        r = result[label]
        lines.append(
            f"  {label:<8} plain {r['plain_tok_s']['median']:7.2f} tok/s   json_schema "
            f"{r['json_schema_tok_s']['median']:7.2f} tok/s   {r['ratio']:.3f}x"
        )
    return "\n".join(lines)


def _resume_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['model']['name']}: time to first token of the next turn, "
        f"median of {result['repeat']} fresh processes"
    ]
    lines.append(
        f"{'tokens':>7} {'cold':>9} {'resumed':>9} {'speedup':>8} "
        f"{'llama-cpp-python':>17} {'save f16':>9} {'B/tok f16':>10} {'B/tok q8_0':>10}"
    )
    for r in result["lengths"]:
        lines.append(
            f"{r['context_tokens']:>7} {r['ttft_cold_s']['median']:>8.3f}s "
            f"{r['ttft_resumed_s']['median']:>8.3f}s {r['speedup']:>7.1f}x "
            f"{r['ttft_llama_cpp_python_disk_cache_s']['median']:>16.3f}s "
            f"{r['save']['f16']['save_s']:>8.3f}s {r['save']['f16']['bytes_per_token']:>10} "
            f"{r['save']['q8_0']['bytes_per_token']:>10}"
        )
    return "\n".join(lines)


def _speculative_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['model']['name']} + draft {result['draft']}, workload "
        f"{result['workload']} ({result['prompts']} prompts, {result['max_tokens']} tokens)"
    ]
    for mode, r in result["modes"].items():
        acc = f"{r['acceptance']:.0%}" if r["acceptance"] is not None else "-"
        lines.append(
            f"  {mode:<8} {r['decode_tok_s']:7.2f} tok/s  {r['ratio_vs_plain']:5.2f}x "
            f"plain  acceptance {acc:>4}  differing {r['outputs_differing_from_plain']}"
        )
    for name, r in result["peers"].items():
        lines.append(f"  {name}: {r['decode_tok_s']:.2f} tok/s (auto {r['auto_vs_peer']:.2f}x)")
    lines.append(f"  verify cost (n: x one token): {result['verify_cost']}")
    return "\n".join(lines)
