"""Chat templates from GGUF files, rendered in a sandboxed, immutable Jinja environment.

A GGUF file is untrusted input, and its template is code: llama-cpp-python rendered it in a
plain Jinja environment and a crafted model could run shell commands (CVE-2024-34359). Here
the environment is sandboxed and immutable, and rendering marks which spans of the prompt
came from message text, so role markers typed by a user are tokenized as plain text.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edgeinf.engine.callsyntax import HERMES, Syntax, syntax_of
from edgeinf.engine.reasoning import OPEN_THINK
from edgeinf.errors import ConfigError, TemplateError
from edgeinf.types import Message, Tool, arguments_object

# For base models without a template: a plain transcript the model can continue.
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}User: {{ m.content }}\n"
    "{% else %}Assistant: {{ m.content }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
PLAIN_STOPS = ("\nUser:", "\nAssistant:")
_PROBE = (Message("system", "probe"), Message("user", "probe"), Message("assistant", "probe"))


@dataclass(frozen=True)
class Segment:
    """A span of the rendered prompt; `special` spans may contain control tokens.

    `message` is the index of the message whose text this span is, None for template text.
    """

    text: str
    special: bool
    message: int | None = None


def _raise(message: str) -> NoReturn:
    raise TemplateError(f"the chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """A compiled chat template; `render` returns the prompt as special/plain segments."""

    def __init__(self, source: str | None, bos: str = "", eos: str = "") -> None:
        self.builtin = source is not None
        # Whether the model reasons in a <think> block first, and the template can switch it
        # off (`enable_thinking`, as Qwen3's does).
        self.thinks = source is not None and OPEN_THINK in source
        self.switchable = self.thinks and "enable_thinking" in (source or "")
        self.stops: tuple[str, ...] = () if source is not None else PLAIN_STOPS
        self.bos, self.eos = bos, eos
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals.update(raise_exception=_raise, strftime_now=_strftime_now)
        try:
            self._template = env.from_string(source if source is not None else PLAIN_TEMPLATE)
        except JinjaTemplateError as exc:
            raise TemplateError(
                f"the model's chat template does not compile ({exc}); use another model file"
            ) from exc
        # How the model writes calls: the markup it is told of, or its own when the
        # template lays out tools (else they are described to it in a system message).
        self.syntax = HERMES
        self.render(_PROBE)  # a template that cannot render a plain chat fails at load
        probe = Tool("probe_" + secrets.token_hex(4))
        try:
            listed = [probe.as_dict()]
            self.knows_tools = probe.name in self._render(_dicts(_PROBE, HERMES), listed)
        except TemplateError:
            self.knows_tools = False
        if self.knows_tools and source is not None:
            self.syntax = syntax_of(source)

    def _render(
        self,
        messages: Sequence[dict[str, Any]],
        tools: list[Any] | None = None,
        thinking: bool | None = None,
    ) -> str:
        switch = {} if thinking is None else {"enable_thinking": thinking}
        try:
            return self._template.render(
                messages=messages,
                tools=tools,
                add_generation_prompt=True,
                bos_token=self.bos,
                eos_token=self.eos,
                **switch,
            )
        except SecurityError as exc:
            raise TemplateError(
                f"the model's chat template tried an unsafe operation ({exc}) and was stopped; "
                "this model file may be malicious: do not use it"
            ) from exc
        except TemplateError:
            raise
        except Exception as exc:  # a template is code: any failure is the template's
            raise TemplateError(
                f"the model's chat template failed ({type(exc).__name__}: {exc}); "
                "use another model file or a plain completion"
            ) from exc

    def render(
        self, messages: Sequence[Message], tools: Sequence[Tool] = (), thinking: bool | None = None
    ) -> list[Segment]:
        """`thinking`: whether a template that can switch its reasoning off keeps it (None:
        the template's default)."""
        # Render with a random marker in place of each message's text, then put the text
        # back as plain segments: what a user typed can never become a control token.
        # (Tool calls' arguments reach templates as objects, which they write with tojson,
        # whose escapes leave no "<" a role marker could start with.)
        listed = [t.as_dict() for t in tools] or None
        marks = [
            "" if m.tool_calls and not m.content else f"\x00{secrets.token_hex(8)}\x00"
            for m in messages
        ]
        rendered = self._render(_dicts(messages, self.syntax, marks), listed, thinking)
        segments: list[Segment] = []
        rest = rendered
        for i, (message, mark) in enumerate(zip(messages, marks, strict=True)):
            if not mark:
                continue
            before, found, after = rest.partition(mark)
            if not found or mark in after:
                return self._render_unmarked(messages, listed, thinking)
            segments += [Segment(before, True), Segment(message.content, False, i)]
            rest = after
        segments.append(Segment(rest, True))
        return [s for s in segments if s.text]

    def _render_unmarked(
        self, messages: Sequence[Message], tools: list[Any] | None, thinking: bool | None
    ) -> list[Segment]:
        # The template rewrote message text (trimmed, split, ...) so the markers did not
        # survive; control tokens are then parsed across the whole prompt, as peers do.
        rendered = self._render(_dicts(messages, self.syntax), tools, thinking)
        return [Segment(rendered, True)]


def _dicts(
    messages: Sequence[Message], syntax: Syntax, texts: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Messages as templates read them: tool calls with their arguments as objects, and
    with ids the template accepts."""
    out = []
    for i, m in enumerate(messages):
        d: dict[str, Any] = {"role": m.role, "content": m.content if texts is None else texts[i]}
        if m.tool_calls:
            d["tool_calls"] = [
                {
                    "id": syntax.call_id(c.id),
                    "type": "function",
                    "function": {"name": c.name, "arguments": arguments_object(c.arguments)},
                }
                for c in m.tool_calls
            ]
        if m.tool_call_id is not None:
            d["tool_call_id"] = syntax.call_id(m.tool_call_id)
        out.append(d)
    return out


def read_template(path: Path) -> str:
    """An operator's chat template file (checked like a GGUF's own when the model loads)."""
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the chat template {path} ({exc}); fix chat_template_file in the "
            "model's preset"
        ) from exc
