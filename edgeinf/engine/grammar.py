"""What a model may write: any JSON object, a JSON schema, or a GBNF grammar, checked where
the request comes in (bounded in size and nesting) and applied token by token by llama.cpp's
grammar sampler. Schemas become grammars through the converter llama-cpp-python ships."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from typing import Any

import llama_cpp as ll
import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF

from edgeinf.engine.schema import schema_to_gbnf
from edgeinf.engine.vocab import Vocab
from edgeinf.errors import InvalidRequestError
from edgeinf.types import SamplingParams

MAX_SOURCE_BYTES = 256 << 10  # a schema's JSON, or a grammar's text
MAX_GRAMMAR_BYTES = 1 << 20  # what a schema may expand to
MAX_NESTING = 64  # llama.cpp parses grammars (and the converter schemas) recursively

JSON_OBJECT: str = JSON_GBNF

CANDIDATE = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


def from_schema(schema: Any, param: str) -> str:
    """The grammar of the JSON documents `schema` allows."""
    text = json.dumps(schema)
    if len(text) > MAX_SOURCE_BYTES:
        raise InvalidRequestError(
            f"{param}: the schema is {len(text)} bytes, over the {MAX_SOURCE_BYTES} allowed; "
            "send a smaller schema",
            param=param,
        )
    if not _encodable(schema):
        raise InvalidRequestError(
            f"{param}: the schema holds a lone surrogate or other text that is not valid "
            "Unicode; send valid text",
            param=param,
        )
    if _depth(schema) > MAX_NESTING:
        raise InvalidRequestError(
            f"{param}: the schema nests deeper than {MAX_NESTING} levels; flatten it",
            param=param,
        )
    try:
        grammar = schema_to_gbnf(text)
    except RecursionError:
        raise InvalidRequestError(
            f"{param}: the schema's references recurse too deeply to compile; simplify them",
            param=param,
        ) from None
    except Exception as exc:  # the converter raises whatever a malformed schema trips
        raise InvalidRequestError(
            f"{param}: the schema cannot be compiled to a grammar ({type(exc).__name__}: "
            f"{str(exc)[:200]}); send a valid JSON schema",
            param=param,
        ) from None
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise InvalidRequestError(
            f"{param}: the schema expands to a grammar of {len(grammar)} bytes, over the "
            f"{MAX_GRAMMAR_BYTES} allowed (long enums or repetition counts); simplify it",
            param=param,
        )
    return str(grammar)


def check_source(text: str, param: str, limit: int = MAX_SOURCE_BYTES) -> None:
    """Bounds on a GBNF grammar's text before llama.cpp parses it (`limit`: a request's own
    grammar may be smaller than what a schema expands to)."""
    if len(text.encode()) > limit:
        raise InvalidRequestError(
            f"{param}: the grammar is over {limit} bytes; send a smaller one", param=param
        )
    if _gbnf_depth(text) > MAX_NESTING:
        raise InvalidRequestError(
            f"{param}: the grammar nests groups deeper than {MAX_NESTING}; use named rules",
            param=param,
        )


def _encodable(value: Any) -> bool:
    """Whether every string in a JSON value (keys included) can be written as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def _depth(value: Any) -> int:
    """How deeply JSON containers nest in `value` (without recursing)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _gbnf_depth(text: str) -> int:
    """The deepest nesting of ( ) groups, outside "literals" and [character classes]."""
    deepest = depth = 0
    i, closing = 0, ""
    while i < len(text):
        c = text[i]
        if closing:
            if c == "\\":
                i += 1
            elif c == closing:
                closing = ""
        elif c in '"[':
            closing = '"' if c == '"' else "]"
        elif c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth -= 1
        i += 1
    return deepest


class Grammar:
    """llama.cpp's grammar sampler over one vocabulary: which tokens may come next, and the
    state that advances with every token written."""

    def __init__(
        self,
        vocab: Vocab,
        text: str,
        triggers: Sequence[str] = (),
        trigger_tokens: Sequence[int] = (),
        param: str = "grammar",
        root: str = "root",
    ) -> None:
        """With `triggers` (regular expressions over all the text written so far) or
        `trigger_tokens`, the grammar waits until one matches (from its first group on) or
        is written. `root` names the rule the text starts with."""
        check_source(text, param, MAX_GRAMMAR_BYTES)
        if triggers or trigger_tokens:
            patterns = (ctypes.c_char_p * max(1, len(triggers)))(*(t.encode() for t in triggers))
            tokens = (ll.llama_token * max(1, len(trigger_tokens)))(*trigger_tokens)
            self._sampler = ll.llama_sampler_init_grammar_lazy_patterns(
                vocab.raw,
                text.encode(),
                root.encode(),
                patterns,
                len(triggers),
                tokens,
                len(trigger_tokens),
            )
        else:
            self._sampler = ll.llama_sampler_init_grammar(vocab.raw, text.encode(), root.encode())
        if not self._sampler:
            raise InvalidRequestError(
                f"{param}: the grammar does not parse or has no '{root}' rule; fix it "
                "(GBNF, as llama.cpp reads it)",
                param=param,
            )
        self._one = np.zeros(1, dtype=CANDIDATE)
        self._one_array = _array(self._one)

    def allows(self, token: int) -> bool:
        """Whether `token` may come next (one candidate checked: the cheap test)."""
        self._one["id"], self._one["logit"], self._one["p"] = token, 0.0, 0.0
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        ll.llama_sampler_apply(self._sampler, ctypes.byref(self._one_array))
        return bool(np.isfinite(self._one["logit"][0]))

    def check_start(self, vocab: Vocab) -> None:
        """Refuse a grammar that allows no text at all (only the end of the answer)."""
        cells, array = candidates(vocab.n_tokens)
        cells["id"] = np.arange(vocab.n_tokens, dtype=np.int32)
        self.restrict(array)
        allowed = cells["id"][np.isfinite(cells["logit"][: array.size])]
        if not any(not vocab.is_eog(int(t)) for t in allowed[:64]):
            raise InvalidRequestError(
                "grammar: it matches no text (not even a first character); fix its rules",
                param="grammar",
            )

    def restrict(self, array: Any) -> None:
        """Set every token the grammar forbids next to -inf in a candidate array."""
        ll.llama_sampler_apply(self._sampler, ctypes.byref(array))

    def accept(self, token: int) -> None:
        ll.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler:
            ll.llama_sampler_free(self._sampler)
            self._sampler = None


def of_sampling(vocab: Vocab, params: SamplingParams) -> Grammar | None:
    """The grammar an answer is sampled through, if it has one."""
    if params.grammar is None:
        return None
    triggers, tokens = params.grammar_triggers, params.grammar_trigger_tokens
    return Grammar(vocab, params.grammar, triggers, tokens, root=params.grammar_root)


def check_grammar(vocab: Vocab, params: SamplingParams) -> None:
    """Refuse, before an answer starts, a grammar that does not compile or matches no text."""
    grammar = of_sampling(vocab, params)
    if grammar is None:
        return
    try:
        if not (params.grammar_triggers or params.grammar_trigger_tokens):
            # (a lazy grammar allows anything until it starts)
            grammar.check_start(vocab)
    finally:
        grammar.close()


def _array(cells: np.ndarray) -> Any:
    return ll.llama_token_data_array(
        data=cells.ctypes.data_as(ll.llama_token_data_p),
        size=len(cells),
        selected=-1,
        sorted=False,
    )


def candidates(n_vocab: int) -> tuple[np.ndarray, Any]:
    """A candidate array over the whole vocabulary and llama.cpp's view of it."""
    cells = np.zeros(n_vocab, dtype=CANDIDATE)
    return cells, _array(cells)
