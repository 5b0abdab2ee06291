"""OpenAI wire types (pydantic), kept apart from the engine's own types."""

from __future__ import annotations

import math
import re
import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from edgeinf.config import ContextPolicy
from edgeinf.errors import InvalidRequestError
from edgeinf.sessions.ids import SESSION_ID_PATTERN
from edgeinf.types import Message, ToolCall

MAX_STOPS = 4


def _encodable(text: str) -> str:
    """Checked here, once, so the error names the field: JSON may carry a lone UTF-16
    surrogate (\\ud800), which no model can be given."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"holds a lone surrogate at character {exc.start}, which is not valid Unicode; "
            "send valid text"
        ) from None
    return text


Text = Annotated[str, AfterValidator(_encodable)]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


FOREVER_S = 1e9  # about 30 years: a keep-alive this long or longer is forever


def _seconds(value: Any) -> float:
    """Ollama's keep_alive: seconds, or a Go duration ("5m", "1h30m"); negative (or past
    FOREVER_S): forever (math.inf); 0: unload once the answer ends."""
    if isinstance(value, bool) or not isinstance(value, int | float | str) or len(str(value)) > 64:
        raise ValueError("must be a number of seconds or a duration like 5m")
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        try:
            number = float(body)
        except ValueError:
            parts = _DURATION.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise ValueError(
                    f"'{value}' is not a duration; send seconds or a duration like 5m, 1h30m"
                ) from None
            number = sum(float(n) * _UNIT_S[u] for n, u in parts)
        value = sign * number
    if math.isnan(value):
        raise ValueError("must be a number of seconds or a duration like 5m")
    return math.inf if value < 0 or value >= FOREVER_S else float(value)


KeepAlive = Annotated[
    float,
    BeforeValidator(_seconds),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 64}]}),
]
Stop = Annotated[Text, StringConstraints(min_length=1, max_length=256)]


def not_yet(what: str, *neutral: Any) -> AfterValidator:
    """A field clients send that edgeinf does not implement yet: its empty values (and
    `neutral` ones, which ask for nothing) pass, any other is refused, so that nothing a
    client asks for is silently dropped."""

    def check(value: Any) -> Any:
        allowed = (None, False, [], {}, "none", *neutral)
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise ValueError(f"{what} is not supported yet; leave it out")
        return value

    return AfterValidator(check)


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field("answer", max_length=64)
    description: str | None = Field(None, max_length=4096)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    # The answer matches the schema whether or not strict is set: it is decoded through it.
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is required with type json_schema, and only there")
        return self


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


FunctionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    arguments: Text = Field(max_length=1 << 20)  # JSON text, as OpenAI sends it


class WireToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Text = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall
    index: int | None = None  # kept by clients that rebuilt the call from a stream; ignored


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text | list[TextPart] | None = None
    tool_calls: list[WireToolCall] | None = Field(None, max_length=128)
    tool_call_id: Text | None = Field(None, max_length=256)
    # Accepted and ignored: what clients echo back from an answer.
    name: Text | None = Field(None, max_length=256)
    refusal: Text | None = None
    annotations: list[Any] | None = None
    # An earlier answer's reasoning: not shown again, as thinking models' templates drop it.
    reasoning_content: Text | None = None
    audio: Annotated[Any, not_yet("audio")] = None
    function_call: Annotated[Any, not_yet("function_call (use tool_calls)")] = None

    @model_validator(mode="after")
    def _complete(self) -> WireMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content is required, except from an assistant with tool_calls")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if (self.role == "tool") != (self.tool_call_id is not None):
            raise ValueError("tool messages need tool_call_id, and only they have one")
        return self

    def message(self) -> Message:
        content = self.content
        text = content if isinstance(content, str) else "".join(p.text for p in content or ())
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ()
        )
        role = "system" if self.role == "developer" else self.role
        return Message(role, text, calls, self.tool_call_id)


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FunctionName
    description: Text | None = Field(None, max_length=8192)
    parameters: dict[str, Any] | None = None  # a JSON schema; checked when compiled
    strict: bool | None = None  # the arguments always match: they are decoded through them


class WireTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    function: FunctionDef


class TemplateSwitches(BaseModel):
    """The chat template's variables a request may set (it may not bring a template)."""

    model_config = ConfigDict(extra="forbid")

    enable_thinking: bool | None = None


class NamedFunction(BaseModel):
    name: FunctionName


class NamedChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,9}$")]  # OpenAI's keys: ids as text


class Sampling(BaseModel):
    """Fields shared by chat and text completions, each bounded before any compute."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=512)  # None or "": the server's model
    max_tokens: int | None = Field(None, ge=1, le=1 << 20)
    max_completion_tokens: int | None = Field(None, ge=1, le=1 << 20)
    temperature: float = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int = Field(40, ge=0, le=1000)
    min_p: float = Field(0.05, ge=0.0, le=1.0, allow_inf_nan=False)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    repeat_penalty: float = Field(1.0, gt=0.0, le=2.0, allow_inf_nan=False)
    n: int = Field(1, ge=1, le=8, description="choices to write for one prompt")
    seed: int | None = Field(None, ge=0, lt=1 << 32)
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    grammar: Text | None = Field(None, description="GBNF the answer must match (llama.cpp's)")

    @field_validator("logit_bias")
    @classmethod
    def _bounded(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for token, value in (bias or {}).items():
            if not -100 <= value <= 100:  # NaN fails too
                raise ValueError(f"the bias of token {token} is {value}; give -100 to 100")
        return bias

    # Accepted and ignored, as they change nothing about an answer:
    user: Text | None = Field(None, max_length=256)
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    logprobs: Annotated[Any, not_yet("logprobs")] = None  # each kind of request its own
    top_logprobs: Annotated[Any, not_yet("top_logprobs")] = None
    logit_bias: dict[TokenId, float] | None = Field(
        None, max_length=1024, description="token id: bias added to its logit, -100 to 100"
    )
    session_id: Text | None = Field(
        None, json_schema_extra={"pattern": SESSION_ID_PATTERN}
    )  # checked by the session store, whose error says what a valid id looks like
    # How long the model stays loaded after this request (Ollama's keep_alive).
    keep_alive: KeepAlive | None = None
    # Accepted only to be refused with a clear error (a request may not supply templates).
    chat_template: Any = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        return [v] if isinstance(v, str) else list(v or [])

    def rivals(self) -> int | None:
        """How many likeliest tokens to report beside each written one; None: no
        log-probabilities."""
        return None


class ChatCompletionRequest(Sampling):
    messages: list[WireMessage] = Field(min_length=1, max_length=2048)
    tools: list[WireTool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedChoice | None = None
    parallel_tool_calls: bool = True
    functions: Annotated[Any, not_yet("functions (use tools)")] = None
    function_call: Annotated[Any, not_yet("function_call (use tool_choice)")] = None
    # For a model that reasons first: "none" and "minimal" switch reasoning off where its
    # template can, any other level on (templates know no levels between).
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    chat_template_kwargs: TemplateSwitches | None = None
    modalities: Annotated[Any, not_yet("modalities")] = None
    audio: Annotated[Any, not_yet("audio")] = None
    prediction: Annotated[Any, not_yet("prediction")] = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # edgeinf: where to answer (default: the server's `route` setting), and privacy
    route: Literal["auto", "local", "remote"] | None = None
    private: bool = False
    # edgeinf: a conversation longer than the context (default: the server's setting)
    context_policy: ContextPolicy | None = None

    def thinking(self) -> bool | None:
        """Whether the model should reason first (None: as its template chooses)."""
        by_effort = (
            None
            if self.reasoning_effort is None
            else (self.reasoning_effort not in ("none", "minimal"))
        )
        switch = self.chat_template_kwargs.enable_thinking if self.chat_template_kwargs else None
        if None not in (by_effort, switch) and by_effort != switch:
            raise InvalidRequestError(
                "reasoning_effort: it and chat_template_kwargs.enable_thinking disagree; send "
                "one of them",
                param="reasoning_effort",
            )
        return switch if switch is not None else by_effort

    def rivals(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequestError(
                "top_logprobs: set logprobs to true as well", param="top_logprobs"
            )
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(Sampling):
    prompt: Text = Field(max_length=1 << 22)
    session_id: Annotated[Any, not_yet("session_id (sessions keep chat conversations)")] = None
    # Text after the insertion point: the answer fills in between (the model's FIM prompt);
    # "" or None: the prompt is continued.
    suffix: Text | None = Field(None, max_length=1 << 22)
    echo: Annotated[Any, not_yet("echo")] = None
    best_of: Annotated[Any, not_yet("best_of")] = None
    logprobs: int | None = Field(None, ge=0, le=5)  # the legacy API: likeliest tokens to list

    def rivals(self) -> int | None:
        return self.logprobs


def now() -> int:
    return int(time.time())


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, max_length=512)
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=2048)] | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=1 << 16)
    user: Text | None = Field(None, max_length=256)  # changes nothing about a vector
    # edgeinf: cut inputs longer than the model takes instead of refusing them
    truncate: bool = False
    keep_alive: KeepAlive | None = None

    @field_validator("input", mode="after")
    @classmethod
    def _texts(cls, v: str | list[Any]) -> str | list[Any]:
        if isinstance(v, list) and not all(isinstance(t, str) for t in v):
            raise ValueError("token arrays are not accepted; send the texts themselves")
        return v

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class SessionRename(BaseModel):
    """PATCH /v1/sessions/{id}: the session's new title."""

    model_config = ConfigDict(extra="forbid")
    title: Text = Field(min_length=1, max_length=200)
