"""Fill-in-the-middle prompts from the model's own marker tokens.

A FIM model was trained on files cut in three: it reads the text before the cursor and the
text after it, each behind its marker, and writes what goes between. Where the vocabulary
also has repository markers (Qwen2.5-Coder's `<|repo_name|>` and `<|file_sep|>`), other files
come first, each behind its name, as in the repository-level layout of its training:

    [REP]project [SEP]other.py <text> ... [SEP]this.py [PRE]before[SUF]after[MID]

Without them, other files come first as plain text between separator lines. Text is never
parsed for control tokens: code that spells a marker stays text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import llama_cpp as ll

from edgeinf.engine.vocab import Vocab
from edgeinf.errors import InvalidRequestError

SNIPPET = "\n\n--- snippet ---\n\n"  # between files, for a vocabulary without file markers
PROJECT = "project"


@dataclass(frozen=True)
class Extra:
    """Another file's text (or part of it) that the completion may draw on."""

    text: str
    filename: str = ""


@dataclass(frozen=True)
class Markers:
    pre: int
    suf: int
    mid: int
    rep: int  # -1: the vocabulary has no repository markers
    sep: int

    @classmethod
    def of(cls, vocab: Vocab, model: str) -> Markers:
        """The model's FIM markers; an error naming the model when it has none."""
        raw = vocab.raw
        pre, suf, mid = (
            int(f(raw))
            for f in (ll.llama_vocab_fim_pre, ll.llama_vocab_fim_suf, ll.llama_vocab_fim_mid)
        )
        if min(pre, suf, mid) < 0:
            raise InvalidRequestError(
                f"{model} was not trained to fill in the middle (its vocabulary has no "
                "prefix, suffix and middle markers); use a coder model that is, such as "
                "qwen2.5-coder-1.5b-instruct-q4_k_m",
                param="suffix",
            )
        rep, sep = int(ll.llama_vocab_fim_rep(raw)), int(ll.llama_vocab_fim_sep(raw))
        return cls(pre, suf, mid, rep if sep >= 0 else -1, sep)


def fim_tokens(
    vocab: Vocab,
    markers: Markers,
    prefix: str,
    suffix: str,
    room: int,
    extra: Sequence[Extra] = (),
    cursor_line: str = "",
    filename: str = "",
) -> tuple[list[int], int]:
    """The prompt, and how many tokens of the text were cut to fit: as much of the text next
    to the cursor as `room` tokens hold (the end of `prefix` and `cursor_line`, the start of
    `suffix`, about 3:1), the last of `extra` in what is left. `cursor_line` is the cursor's
    line up to it, tokenized on its own so that typing on that line leaves the tokens of the
    lines above as they were."""
    before = vocab.tokenize(prefix) + vocab.tokenize(cursor_line)
    after = vocab.tokenize(suffix)
    room -= 4  # the markers
    take_after = min(len(after), room // 4)
    take_before = min(len(before), room - take_after)
    take_after = min(len(after), room - take_before)  # what the text before left over
    cut = len(before) - take_before + len(after) - take_after
    before = before[len(before) - take_before :]
    after = after[:take_after]
    head, cut_files = _files(vocab, markers, extra, filename, room - take_before - take_after)
    bos = [int(ll.llama_vocab_bos(vocab.raw))] if vocab.add_bos else []
    return [*bos, *head, markers.pre, *before, markers.suf, *after, markers.mid], cut + cut_files


def _files(
    vocab: Vocab, markers: Markers, extra: Sequence[Extra], filename: str, room: int
) -> tuple[list[int], int]:
    """The other files and this one's name, cut from the start to fit `room`; and how many
    tokens were cut."""
    if markers.rep < 0:
        tokens = [t for e in extra for t in vocab.tokenize(SNIPPET + e.text)]
        if tokens:
            tokens += vocab.tokenize(SNIPPET)
    elif extra or filename:
        tokens = [markers.rep, *vocab.tokenize(PROJECT + "\n")]
        for e in extra:
            tokens += [markers.sep, *vocab.tokenize(f"{e.filename or 'context'}\n{e.text}")]
        tokens += [markers.sep, *vocab.tokenize(f"{filename or 'file'}\n")]
    else:
        tokens = []
    cut = max(0, len(tokens) - max(room, 0))
    return tokens[cut:], cut
