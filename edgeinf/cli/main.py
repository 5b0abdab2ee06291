"""Argument parsing and dispatch; errors become one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeinf import __version__
from edgeinf.cli.route_args import add_route_parser

if TYPE_CHECKING:
    from edgeinf.config import Settings

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as shells report a writer whose reader left


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", help="catalog name, registered name or path to a .gguf file")
    p.add_argument("--threads", type=int, help="decode threads (default: physical cores)")
    p.add_argument("--ctx", dest="n_ctx", type=int, help="context size in tokens")
    p.add_argument("--kv-type", choices=["f16", "q8_0", "q4_0"], help="KV cache precision")


def _remote_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remote-url", help="OpenAI-compatible endpoint to escalate to (https)")
    p.add_argument("--remote-model", help="model name at the remote endpoint")
    p.add_argument(
        "--route",
        choices=["auto", "local", "remote"],
        help="where answers come from (default auto: the router decides)",
    )


def settings_from(args: argparse.Namespace, **more: Any) -> Settings:
    """Settings with the flags a command was given (absent ones leave file and env alone)."""
    from edgeinf.config import load_settings

    flags = {name: getattr(args, attr, None) for name, attr in _SETTING_FLAGS.items()}
    return load_settings(**flags, **more)


# setting name -> argparse destination, for the flags commands share
_SETTING_FLAGS = {
    "threads": "threads",
    "n_ctx": "n_ctx",
    "kv_type": "kv_type",
    "speculative": "speculative",
    "draft_model": "draft",
    "remote_url": "remote_url",
    "remote_model": "remote_model",
    "route": "route",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeinf",
        description="Run GGUF language models on CPUs and Apple Silicon, fast.",
    )
    parser.add_argument("--version", action="version", version=f"edgeinf {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="log llama.cpp and more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("pull", help="download a catalog or hub model and verify it")
    p.add_argument(
        "names", nargs="+", metavar="NAME", help="catalog names, or hub models: owner/repo[:QUANT]"
    )

    p = sub.add_parser("models", help="list catalog and local models")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    add = msub.add_parser("add", help="register a GGUF file of your own under a name")
    add.add_argument("path", help="path to a .gguf file")
    add.add_argument("--name", help="name to use (default: the file name without .gguf)")

    p = sub.add_parser("show", help="one model: architecture, quant, context, capabilities")
    p.add_argument("name", help="a model name or a path to a .gguf file")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = sub.add_parser("rm", help="remove pulled models (registered ones are only forgotten)")
    p.add_argument("names", nargs="+", metavar="NAME", help="model name(s)")

    p = sub.add_parser("ps", help="what a running server has loaded")
    p.add_argument("--url", help="the server (default: host and port of the settings)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = sub.add_parser("run", help="answer one prompt and stream the answer to stdout")
    _model_flags(p)
    p.add_argument("prompt", help="the user's message (with --suffix: the text before the gap)")
    p.add_argument(
        "--suffix", metavar="TEXT", help="fill in between the prompt and this text (FIM models)"
    )
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-tokens", type=int, default=512, help="most tokens to generate")
    p.add_argument("--temperature", "-t", type=float, default=0.8, help="0 for greedy")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repeat-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, help="sampling seed, for repeatable output")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument(
        "--json-schema", type=Path, metavar="FILE", help="answer with JSON this schema allows"
    )
    shape.add_argument("--grammar", type=Path, metavar="FILE", help="answer as this GBNF allows")
    p.add_argument("--session", "-s", metavar="ID", help="continue (or start) this conversation")
    p.add_argument(
        "--speculative",
        choices=["auto", "ngram", "draft", "off"],
        help="speculative decoding (default auto: only when it pays here)",
    )
    p.add_argument("--draft", metavar="MODEL", help="draft model for speculative decoding")
    _remote_flags(p)
    p.add_argument(
        "--private", action="store_true", help="never send this conversation off the device"
    )
    p.add_argument(
        "--think",
        action=argparse.BooleanOptionalAction,
        help="reason first, or not (models that think; default: as the model's template "
        "chooses); the reasoning goes to stderr",
    )

    p = sub.add_parser("chat", help="talk to a model in the terminal")
    _model_flags(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="ID",
        help="continue a conversation (default: the last one)",
    )
    p.add_argument("--url", help="use a running `edgeinf serve` instead of loading a model")
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--temperature", "-t", type=float, default=0.7)
    p.add_argument("--speculative", choices=["auto", "ngram", "draft", "off"])
    p.add_argument("--draft", metavar="MODEL", help="draft model for speculative decoding")
    _remote_flags(p)

    p = sub.add_parser("serve", help="serve the OpenAI-compatible API (loopback by default)")
    _model_flags(p)
    p.add_argument("--speculative", choices=["auto", "ngram", "draft", "off"])
    p.add_argument("--draft", metavar="MODEL", help="draft model for speculative decoding")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8088)")
    p.add_argument("--parallel", type=int, help="sequences decoded together (default 2)")
    p.add_argument("--api-key-file", type=Path, help="file holding the API key clients send")
    _remote_flags(p)

    p = sub.add_parser("quantize", help="rewrite a model at another precision (llama.cpp)")
    p.add_argument("src", help="model to read: catalog name, registered name or .gguf path")
    p.add_argument("dst", help="the .gguf file to write (must not exist)")
    p.add_argument("--type", required=True, help="Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, F16, ...")
    p.add_argument("--name", help="name to register it under (default: the file name)")
    p.add_argument("--threads", type=int, help="threads (default: physical cores)")

    p = sub.add_parser("tune", help="measure quant levels, KV types and threads; keep the best")
    p.add_argument("--model", "-m", help="model to tune for (its other precisions are found)")
    p.add_argument("--quick", action="store_true", help="fewer tokens: about a minute a row")
    p.add_argument("--plot", type=Path, help="PNG to write (default: edgeinf-tune-MODEL.png)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("sessions", help="list, show, delete or prune saved conversations")
    ssub = p.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)
    ls = ssub.add_parser("list", help="saved conversations, most recent first")
    ls.add_argument("--json", action="store_true")
    show = ssub.add_parser("show", help="one conversation's messages")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    delete = ssub.add_parser("delete", help="forget a conversation and its saved state")
    delete.add_argument("ids", nargs="+", metavar="ID")
    prune = ssub.add_parser("prune", help="evict saved state down to a size")
    prune.add_argument("--max-mb", type=int, help="target size (default: the disk budget)")

    p = sub.add_parser("bench", help="measure against baselines run in the same process")
    bsub = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    b = bsub.add_parser("decode", help="decode tok/s: edgeinf vs llama-cpp-python, alternating")
    _model_flags(b)
    b.add_argument("--tokens", type=int, default=128, help="tokens generated per run")
    b.add_argument("--repeat", type=int, default=5, help="runs of each, alternating")
    b.add_argument("--json", action="store_true", help="print the report as JSON")
    b.add_argument("--llama-bench", type=Path, help="also run this llama-bench binary, alternating")
    st = bsub.add_parser("structured", help="decode tok/s through a JSON schema vs without")
    _model_flags(st)
    st.add_argument("--tokens", type=int, default=128, help="most tokens generated per run")
    st.add_argument("--repeat", type=int, default=3, help="runs of each, alternating")
    st.add_argument("--json", action="store_true", help="print the report as JSON")
    sp = bsub.add_parser("speculative", help="speculative modes vs plain decoding and peers")
    _model_flags(sp)
    sp.add_argument("--draft", metavar="MODEL", help="draft model (same tokenizer)")
    sp.add_argument("--workload", choices=["code", "edit", "chat"], default="edit")
    sp.add_argument("--prompts", type=int, default=8, help="how many prompts of the workload")
    sp.add_argument(
        "--tokens",
        type=int,
        default=256,
        help="most tokens generated per prompt (256: an edited function is returned whole)",
    )
    sp.add_argument(
        "--llama-tools",
        type=Path,
        help="directory of llama.cpp's binaries (tools/build_llama_cpp.sh)",
    )
    sp.add_argument(
        "--exact",
        action="store_true",
        help="bit-exact logits (see speculative_exact): greedy output identical to plain",
    )
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    r = bsub.add_parser("resume", help="next-turn TTFT: re-prefill vs restore from disk")
    r.add_argument("--model", "-m", help="catalog name, registered name or .gguf path")
    r.add_argument("--context", default="512,2048,4096", help="conversation lengths in tokens")
    r.add_argument("--repeat", type=int, default=3, help="fresh-process runs of each")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    rb = bsub.add_parser(
        "route", help="router decision latency for a 200-token prompt, and the watch's cost"
    )
    rb.add_argument("--model", "-m", help="the local model")
    rb.add_argument("--remote-model", help="model name at the remote endpoint")
    rb.add_argument("--repeat", type=int, default=200, help="decisions timed")
    rb.add_argument(
        "--watch-rounds",
        type=int,
        default=3,
        help="answers decoded with and without the deferral rule's watch, alternating (0: skip)",
    )
    rb.add_argument("--watch-tokens", type=int, default=128, help="tokens of each such answer")
    rb.add_argument("--json", action="store_true", help="print the report as JSON")
    add_route_parser(sub)
    return parser


_COMMANDS = {
    "pull": "edgeinf.cli.pull",
    "models": "edgeinf.cli.models",
    "show": "edgeinf.cli.models:show",
    "rm": "edgeinf.cli.models:remove",
    "ps": "edgeinf.cli.ps",
    "run": "edgeinf.cli.run",
    "sessions": "edgeinf.cli.sessions",
    "serve": "edgeinf.cli.serve",
    "chat": "edgeinf.cli.chat",
    "bench": "edgeinf.cli.bench",
    "route": "edgeinf.cli.route",
    "quantize": "edgeinf.cli.quantize",
    "tune": "edgeinf.cli.tune",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edgeinf.logs import setup

    setup(args.verbose)
    from edgeinf.errors import EdgeinfError

    try:
        path, _, function = _COMMANDS[args.command].partition(":")
        module = importlib.import_module(path)
        return int(getattr(module, function or "run")(args))
    except EdgeinfError as exc:
        print(f"edgeinf: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("edgeinf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`edgeinf run ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_BROKEN_PIPE
