"""Ollama's wire types (pydantic): what its clients send to /api/*, bounded and checked."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from edgeinf.server.wire import KeepAlive, Stop, Text, not_yet
from edgeinf.types import Message, ToolCall


def _server_side(value: Any) -> Any:
    if value is not None:
        raise ValueError(
            "is set by the server for each model (a [models] preset in its config.toml); "
            "leave it out"
        )
    return value


# An option that sizes or places the model: the operator's, not a request's (null passes).
ServerSide = Annotated[Any, AfterValidator(_server_side)]


class Options(BaseModel):
    """Ollama's `options`: sampling is honoured; what sizes or places the model is refused
    (it is the operator's: a model preset in config.toml)."""

    model_config = ConfigDict(extra="forbid")

    num_ctx: int | None = Field(None, ge=1, le=1 << 20)
    num_predict: int | None = Field(None, ge=-2, le=1 << 20)
    temperature: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_k: int | None = Field(None, ge=0, le=1000)
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    min_p: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    repeat_penalty: float | None = Field(None, gt=0.0, le=2.0, allow_inf_nan=False)
    repeat_last_n: int | None = Field(None, ge=-1, le=1 << 20)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0, allow_inf_nan=False)
    seed: int | None = Field(None, ge=-1, lt=1 << 32)
    stop: list[Stop] | None = Field(None, max_length=4)
    # Samplers edgeinf does not have: their neutral values pass, others are refused.
    mirostat: Annotated[Any, not_yet("options.mirostat", 0)] = None
    mirostat_tau: float | None = None  # used only with mirostat
    mirostat_eta: float | None = None
    tfs_z: Annotated[Any, not_yet("options.tfs_z", 1, 1.0)] = None
    typical_p: Annotated[Any, not_yet("options.typical_p", 1, 1.0)] = None
    penalize_newline: Annotated[Any, not_yet("options.penalize_newline", True)] = None
    num_keep: Annotated[Any, not_yet("options.num_keep", -1, 0)] = None
    # What sizes or places the model:
    numa: ServerSide = None
    num_batch: ServerSide = None
    num_gpu: ServerSide = None
    main_gpu: ServerSide = None
    num_thread: ServerSide = None
    low_vram: ServerSide = None
    f16_kv: ServerSide = None
    logits_all: ServerSide = None
    vocab_only: ServerSide = None
    use_mmap: ServerSide = None
    use_mlock: ServerSide = None
    embedding_only: ServerSide = None


class OllamaFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    arguments: dict[str, Any] = Field(default_factory=dict)
    index: int | None = None  # what newer clients echo back; order is the list's


class OllamaToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: OllamaFunction
    id: Text | None = Field(None, max_length=256)
    type: Literal["function"] | None = None


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: Text = Field("", max_length=1 << 22)
    images: Annotated[Any, not_yet("images (this server runs text models)")] = None
    tool_calls: list[OllamaToolCall] | None = Field(None, max_length=128)
    tool_name: Text | None = Field(None, max_length=256)
    thinking: Text | None = None  # an earlier answer's reasoning, echoed back: not shown


class OllamaTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["function"] = "function"
    function: dict[str, Any]

    @model_validator(mode="after")
    def _named(self) -> OllamaTool:
        name = self.function.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("function.name is required")
        return self


Format = Literal["", "json"] | dict[str, Any]


class Generating(BaseModel):
    """Fields shared by /api/chat and /api/generate."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=512)
    stream: bool = True  # Ollama streams unless told not to
    format: Format | None = None
    options: Options | None = None
    keep_alive: KeepAlive | None = None
    think: bool | Literal["low", "medium", "high"] | None = None
    logprobs: Annotated[Any, not_yet("logprobs")] = None
    top_logprobs: Annotated[Any, not_yet("top_logprobs")] = None


class OllamaChat(Generating):
    messages: list[OllamaMessage] = Field(default_factory=list, max_length=2048)
    tools: list[OllamaTool] | None = Field(None, max_length=128)

    def conversation(self) -> tuple[Message, ...]:
        """The engine's messages: an assistant's calls get ids, and the tool results that
        follow answer them in order (Ollama's messages carry no call ids)."""
        out: list[Message] = []
        pending: list[ToolCall] = []
        for i, m in enumerate(self.messages):
            if m.tool_calls:
                pending = [
                    ToolCall(
                        c.id or f"call_{i}_{j}", c.function.name, json.dumps(c.function.arguments)
                    )
                    for j, c in enumerate(m.tool_calls)
                ]
                out.append(Message("assistant", m.content, tuple(pending)))
            elif m.role == "tool":
                match = next((c for c in pending if c.name == m.tool_name), None)
                call = match or (pending[0] if pending else None)
                if call is not None:
                    pending.remove(call)
                out.append(Message("tool", m.content, tool_call_id=call.id if call else "call"))
            else:
                out.append(Message(m.role, m.content))
        return tuple(out)


class OllamaGenerate(Generating):
    prompt: Text = Field("", max_length=1 << 22)
    system: Text | None = Field(None, max_length=1 << 20)
    raw: bool = False
    suffix: Text | None = Field(None, max_length=1 << 22)  # "" or None: not a fill
    images: Annotated[Any, not_yet("images (this server runs text models)")] = None
    template: Annotated[Any, not_yet("template (the model's own is used)", "")] = None
    context: Annotated[Any, not_yet("context (send the conversation to /api/chat)")] = None


class OllamaEmbed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=512)
    input: Text | Annotated[list[Text], Field(max_length=2048)]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1, le=1 << 16)
    keep_alive: KeepAlive | None = None
    options: Options | None = None


class OllamaLegacyEmbedding(BaseModel):
    """/api/embeddings: one prompt, one vector (older clients)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=512)
    prompt: Text = Field(max_length=1 << 22)
    keep_alive: KeepAlive | None = None
    options: Options | None = None


class ModelName(BaseModel):
    """/api/show, /api/delete: a model by name (`name` is the older spelling)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, min_length=1, max_length=512)
    name: str | None = Field(None, min_length=1, max_length=512)
    verbose: bool = False  # /api/show: long arrays too; edgeinf never lists them

    @property
    def ref(self) -> str:
        ref = self.model or self.name
        if ref is None:
            raise ValueError("model is required")
        return ref

    @model_validator(mode="after")
    def _given(self) -> ModelName:
        _ = self.ref
        return self


class OllamaPull(ModelName):
    stream: bool = True
    insecure: bool = False  # edgeinf always verifies; accepted, changes nothing
