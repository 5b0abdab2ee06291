"""Text to tokens and back, through the model's own tokenizer."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import llama_cpp as ll

from edgeinf.engine.template import Segment
from edgeinf.errors import EngineError, InvalidRequestError


class Vocab:
    def __init__(self, vocab: Any) -> None:
        self.raw = vocab  # llama.cpp's vocabulary
        self.n_tokens = int(ll.llama_vocab_n_tokens(vocab))
        self.add_bos = bool(ll.llama_vocab_get_add_bos(vocab))
        self._piece_buf = ctypes.create_string_buffer(256)
        self._shown: frozenset[int] = frozenset()  # control tokens written out as text

    def show(self, text: str) -> None:
        """Write out as text the control token that `text` is, if it is one (a call syntax's
        opener, which answers would otherwise lose)."""
        tokens = self.tokenize(text, special=True)
        if len(tokens) == 1:
            self._shown |= {tokens[0]}

    def text_of(self, token: int) -> str:
        """A token's text as stored in the vocabulary (for control tokens: their marker)."""
        raw = ll.llama_vocab_get_text(self.raw, token)
        return raw.decode("utf-8", "replace") if raw else ""

    @property
    def bos_text(self) -> str:
        bos = ll.llama_vocab_bos(self.raw)
        return self.text_of(bos) if bos >= 0 else ""

    @property
    def eos_text(self) -> str:
        eos = ll.llama_vocab_eos(self.raw)
        return self.text_of(eos) if eos >= 0 else ""

    def is_eog(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self.raw, token))

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        data = utf8(text)
        cap = len(data) + 2
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self.raw, data, len(data), buf, cap, add_bos, special)
        if n < 0:  # cannot happen with one token per byte plus BOS, but never read past buf
            raise EngineError("tokenizer produced more tokens than bytes; report this model")
        return list(buf[:n])

    def tokenize_segments(self, segments: Sequence[Segment]) -> list[list[int]]:
        """A rendered chat prompt, one token list per segment: control tokens are parsed
        only in the template's own spans."""
        add_bos = self.add_bos and not (segments and segments[0].text.startswith(self.bos_text))
        return [
            self.tokenize(seg.text, add_bos=add_bos and i == 0, special=seg.special)
            for i, seg in enumerate(segments)
        ]

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a generated token stands for; control tokens render as nothing, or as
        their text with `special`."""
        buf = self._piece_buf
        special = special or token in self._shown
        n = ll.llama_token_to_piece(self.raw, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self.raw, token, buf, len(buf), 0, special)
        return buf.raw[:n]


def utf8(text: str) -> bytes:
    """The text as UTF-8; text that has none (a lone UTF-16 surrogate, undecodable bytes of
    a command line) is the caller's mistake, told as such."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("unicode_escape").decode()
        raise InvalidRequestError(
            f"the text holds {bad} at character {exc.start}, which is not valid Unicode "
            "(a lone surrogate or undecodable bytes); send valid UTF-8 text"
        ) from None
