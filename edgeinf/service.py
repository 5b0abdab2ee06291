"""ChatService: a conversation turn, from messages to a streamed answer, over one engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from edgeinf.catalog import open_store, resolve_verified
from edgeinf.catalog.store import LocalModel
from edgeinf.config import Settings
from edgeinf.engine.engine import Engine, SeqState
from edgeinf.engine.generate import Generation
from edgeinf.engine.options import EngineOptions
from edgeinf.types import Message, SamplingParams


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    sampling: SamplingParams


class ChatService:
    """Owns the loaded engine; callers ask for answers, never touch llama.cpp."""

    def __init__(self, settings: Settings, model_ref: str | None = None) -> None:
        self.settings = settings
        self.model: LocalModel = resolve_verified(
            open_store(settings), model_ref or settings.default_model
        )
        self.engine = Engine(self.model.path, EngineOptions.from_settings(settings))
        self._seq = SeqState(seq_id=0)

    def close(self) -> None:
        self.engine.close()

    def respond(self, request: ChatRequest) -> Generation:
        prompt = self.engine.chat_tokens(request.messages)
        sampling = request.sampling
        if self.engine.template.stops:  # a base model's transcript must end with its turn
            sampling = replace(sampling, stop=(*sampling.stop, *self.engine.template.stops))
        return Generation(self.engine, self._seq, prompt, sampling)


def conversation(user: str, system: str | None = None) -> tuple[Message, ...]:
    head: Sequence[Message] = (Message("system", system),) if system else ()
    return (*head, Message("user", user))
