"""The trade-off table (rich) and plot (PNG: speed against quality, memory as marker size)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeinf.errors import MissingExtraError


def table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title="measured on this device", box=None, pad_edge=False)
    for col in ("what", "file MB", "KV B/tok", "threads", "prefill tok/s", "decode tok/s",
                "speed", "perplexity", "ppl change", "GSM8K", "peak MB"):  # fmt: skip
        t.add_column(col, justify="left" if col == "what" else "right")
    for r in result["rows"]:
        what = {
            "quant": f"{r['quantization']} ({r['model']})",
            "kv": f"KV {r['kv_type']}",
            "threads": f"{r['threads']} threads",
            "speculative": f"speculative {r.get('mode')} (edit {r.get('edit_tok_s')}, "
            f"chat {r.get('chat_tok_s')} tok/s)",
            "parallel": f"{r.get('parallel')} together ({r.get('aggregate_tok_s')} tok/s in all)",
        }[r["kind"]]
        t.add_row(
            what,
            f"{r['file_mb']:.0f}",
            _num(r, "kv_bytes_per_token", "{:,}"),
            str(r["threads"]),
            _num(r, "prefill_tok_s", "{:.0f}"),
            f"{r['decode_tok_s']:.1f}",
            _num(r, "speed_rel", "{:.2f}x"),
            _num(r, "perplexity", "{:.3f}"),
            _num(r, "ppl_change", "{:+.2%}"),
            _num(r, "accuracy", "{:.0%}"),
            _num(r, "peak_rss_mb", "{:.0f}"),
        )
    return t


def _num(row: dict[str, Any], key: str, form: str) -> str:
    return form.format(row[key]) if key in row else ""


def plot(result: dict[str, Any], path: Path) -> Path:
    try:  # imported here: matplotlib is the plot extra, and only drawing needs it
        import matplotlib
    except ImportError as exc:
        raise MissingExtraError("the tune plot", "plot") from exc

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, marker in (("quant", "o"), ("kv", "s")):
        rows = [r for r in result["rows"] if r["kind"] == kind and "perplexity" in r]
        if not rows:
            continue
        ax.scatter(
            [r["decode_tok_s"] for r in rows],
            [r["perplexity"] for r in rows],
            s=[max(r["peak_rss_mb"] / 4, 10) for r in rows],
            marker=marker,
            alpha=0.6,
            label={"quant": "model precision", "kv": "KV cache type"}[kind],
        )
        for r in rows:
            label = r["quantization"] if kind == "quant" else f"KV {r['kv_type']}"
            ax.annotate(label, (r["decode_tok_s"], r["perplexity"]), fontsize=8)
    ax.set_xlabel("decode tokens/s (higher is better)")
    ax.set_ylabel("perplexity on stdlib source (lower is better)")
    ax.set_title("edgeinf tune: marker size = peak memory")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
