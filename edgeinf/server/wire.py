"""OpenAI wire types (pydantic), kept apart from the engine's own types."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from edgeinf.sessions.ids import SESSION_ID_PATTERN

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
Stop = Annotated[Text, StringConstraints(min_length=1, max_length=256)]


class TextPart(BaseModel):
    type: Literal["text"]
    text: Text


class WireMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: Text | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class Sampling(BaseModel):
    """Fields shared by chat and text completions, each bounded before any compute."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=1 << 20)
    max_completion_tokens: int | None = Field(None, ge=1, le=1 << 20)
    temperature: float = Field(1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int = Field(40, ge=0, le=1000)
    min_p: float = Field(0.05, ge=0.0, le=1.0, allow_inf_nan=False)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, allow_inf_nan=False)
    repeat_penalty: float = Field(1.0, gt=0.0, le=2.0, allow_inf_nan=False)
    n: int = Field(1, ge=1, le=1)
    seed: int | None = Field(None, ge=0, lt=1 << 32)
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None = None
    stream: bool = False
    user: Text | None = Field(None, max_length=256)
    session_id: Text | None = Field(
        None, json_schema_extra={"pattern": SESSION_ID_PATTERN}
    )  # checked by the session store, whose error says what a valid id looks like
    # Accepted only to be refused with a clear error (a request may not supply templates).
    chat_template: Any = None
    chat_template_kwargs: Any = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> list[str]:
        return [v] if isinstance(v, str) else list(v or [])


class ChatCompletionRequest(Sampling):
    messages: list[WireMessage] = Field(min_length=1, max_length=2048)
    # edgeinf: where to answer (default: the server's `route` setting), and privacy
    route: Literal["auto", "local", "remote"] | None = None
    private: bool = False


class CompletionRequest(Sampling):
    prompt: Text = Field(max_length=1 << 22)


def now() -> int:
    return int(time.time())
