"""Ollama's generation routes: /api/chat, /api/generate, /api/embed, /api/embeddings.

Turns go through the same pipeline as the OpenAI routes (tools, structured output, the
prefix cache, routing); only the wire differs: NDJSON streams, durations in nanoseconds,
tool arguments as objects, and Ollama's sampling defaults where a request sets none.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from edgeinf.engine.grammar import JSON_OBJECT, from_schema
from edgeinf.engine.toolcalls import Held
from edgeinf.errors import InvalidRequestError
from edgeinf.server.answer import begin, runtime, unanswered, with_system
from edgeinf.server.embeddings import shorten
from edgeinf.server.errors import error_response
from edgeinf.server.ollama_models import iso, ndjson
from edgeinf.server.ollama_schema import (
    OLLAMA_ERRORS,
    Chatted,
    Embedded,
    Generated,
    LegacyEmbedded,
    streamed,
)
from edgeinf.server.ollama_wire import (
    Generating,
    OllamaChat,
    OllamaEmbed,
    OllamaGenerate,
    OllamaLegacyEmbedding,
    Options,
)
from edgeinf.server.runtime import Runtime
from edgeinf.service.fill import Fill
from edgeinf.service.handle import Answer, TurnHandle
from edgeinf.service.local_answer import ChatRequest
from edgeinf.service.turn import TurnPipeline, TurnRequest
from edgeinf.types import Choice, Message, SamplingParams, Scored, Thought, Tool

router = APIRouter(responses=OLLAMA_ERRORS)
# Ollama's own defaults (its docs' Modelfile parameters), for requests that set none.
OLLAMA_DEFAULTS: dict[str, float] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "repeat_penalty": 1.1,
}


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


def sampling(req: Generating, context: int, preset: Mapping[str, float]) -> SamplingParams:
    """The engine's parameters from Ollama's `options` and `format`: a request's options,
    else the model's preset, else Ollama's defaults."""
    o = req.options or Options.model_validate({})
    if o.num_ctx is not None and o.num_ctx > context:
        raise InvalidRequestError(
            f"options.num_ctx: this model is served with a {context}-token context; ask for "
            "at most that, or raise n_ctx in its preset in the server's config.toml",
            param="options.num_ctx",
        )
    given = {k: v for k, v in o.model_dump().items() if v is not None}
    values = {**OLLAMA_DEFAULTS, **preset, **given}
    predict = o.num_predict
    return SamplingParams(
        max_tokens=context if predict is None or predict < 0 else max(predict, 1),
        temperature=values["temperature"],
        top_k=int(values["top_k"]),
        top_p=values["top_p"],
        min_p=values["min_p"],
        repeat_penalty=values["repeat_penalty"],
        repeat_last_n=context if o.repeat_last_n == -1 else (o.repeat_last_n or 64),
        frequency_penalty=o.frequency_penalty or 0.0,
        presence_penalty=o.presence_penalty or 0.0,
        seed=None if o.seed is None or o.seed < 0 else o.seed,
        stop=tuple(o.stop or ()),
        grammar=_grammar(req.format),
    )


def _grammar(fmt: Any) -> str | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return JSON_OBJECT
    return from_schema(fmt, "format")


class _Turn:
    """One Ollama generation: started like an OpenAI one, rendered as NDJSON."""

    def __init__(self, request: Request, req: Generating, empty: dict[str, Any]) -> None:
        """`empty`: the answer field of a response with nothing generated."""
        self.request, self.req, self.empty = request, req, empty
        self.started = time.perf_counter()
        self.rt: Runtime = runtime(request)
        self.load_s = 0.0

    async def pipeline(self) -> TurnPipeline:
        pipeline = await self.rt.serving(self.req.model, self.req.keep_alive)
        self.load_s = time.perf_counter() - self.started
        pipeline.service.check_thinking(self.thinking, "think")
        return pipeline

    @property
    def thinking(self) -> bool | None:
        """`think` for the template: a level ("low", ...) switches reasoning on, as true."""
        think = self.req.think
        return None if think is None else think is not False

    def shown(self, reasoning: str) -> dict[str, Any]:
        """The reasoning of an answer, unless the request asked for none (`think: false` to
        a model that cannot help it: what it wrote is not shown)."""
        return {"thinking": reasoning} if reasoning and self.req.think is not False else {}

    def route(self, pipeline: TurnPipeline, local: bool) -> Literal["local"] | None:
        """Structured output is answered locally, as are models the router was
        not trained for; otherwise the server's routing decides."""
        return "local" if local or not self.rt.routes(pipeline.service) else None

    def stats(self, answer: Answer) -> dict[str, Any]:
        timings = answer.local.completion.timings if answer.local else None
        prompt_s = timings.ttft_s if timings else 0.0
        return {
            "done": True,
            "done_reason": answer.finish_reason,
            "total_duration": ns(time.perf_counter() - self.started),
            "load_duration": ns(self.load_s),
            "prompt_eval_count": answer.prompt_tokens,
            "prompt_eval_duration": ns(prompt_s),
            "eval_count": answer.completion_tokens,
            "eval_duration": ns(max(0.0, answer.seconds - prompt_s)),
        }

    async def respond(
        self,
        handle: TurnHandle,
        piece: Callable[[str], dict[str, Any]],
        thought: Callable[[str], dict[str, Any]],
        last: Callable[[Answer], dict[str, Any]],
        tools: bool,
    ) -> Response:
        """The answer as one object, or as NDJSON lines: `piece` shapes a text delta,
        `thought` one of the reasoning, `last` the final object (before its statistics)."""
        await handle.open()
        head = {"model": handle.model}

        async def alive() -> bool:
            return not await self.request.is_disconnected()

        if not self.req.stream:
            async for _ in handle.pieces(alive):
                pass
            answer = handle.result
            if answer is None:
                return unanswered(handle)
            self.rt.metrics.answered(answer)
            body = {**head, "created_at": iso(time.time()), **last(answer), **self.stats(answer)}
            return JSONResponse(body)

        async def lines() -> AsyncIterator[bytes]:
            held = Held(handle.syntax) if tools else None
            try:
                async for text in handle.written(alive):
                    if isinstance(text, Thought):
                        if not (shape := self.shown(text.text)):
                            continue
                        delta = thought(shape["thinking"])
                    elif isinstance(text, Scored) or (held and not (text := held.feed(text))):
                        continue
                    else:
                        delta = piece(text)
                    yield ndjson({**head, "created_at": iso(time.time()), **delta, "done": False})
            except Exception as exc:  # the status line is sent: the error goes in the stream
                yield ndjson({"error": error_response(exc)[1]["error"]["message"]})
                return
            answer = handle.result
            if answer is None:
                return
            self.rt.metrics.answered(answer)
            if held is not None and (rest := held.rest(answer.text, bool(answer.tool_calls))):
                yield ndjson({**head, "created_at": iso(time.time()), **piece(rest), "done": False})
            end = {**last(answer), **self.stats(answer)}
            yield ndjson({**head, "created_at": iso(time.time()), **end})

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def load_only(self) -> Response:
        """A request with nothing to answer loads the model (keep_alive 0: unloads it)."""
        if self.req.keep_alive == 0:
            name = self.rt.model(self.req.model).name
            await asyncio.to_thread(self.rt.fleet.unload, name)  # its answers end first
            reason = "unload"
        else:
            await self.rt.serving(self.req.model, self.req.keep_alive)
            reason = "load"
            name = self.rt.model(self.req.model).name
        head = {"model": name, "created_at": iso(time.time())}
        return JSONResponse({**head, **self.empty, "done": True, "done_reason": reason})


def _calls(answer: Answer) -> list[dict[str, Any]]:
    return [
        {"function": {"index": i, "name": c.name, "arguments": json.loads(c.arguments)}}
        for i, c in enumerate(answer.tool_calls)
    ]


@router.post("/api/chat", responses=streamed(Chatted))
async def chat(req: OllamaChat, request: Request) -> Response:
    turn = _Turn(request, req, {"message": {"role": "assistant", "content": ""}})
    if not req.messages:
        return await turn.load_only()
    pipeline = await turn.pipeline()
    service = pipeline.service
    preset = service.settings.preset(service.model.name)
    tools = tuple(
        Tool(
            t.function["name"],
            str(t.function.get("description") or ""),
            t.function.get("parameters"),
        )
        for t in req.tools or ()
    )
    chat = ChatRequest(
        with_system(req.conversation(), preset.system),
        sampling(req, service.context_length, preset.sampling()),
        None,
        request.state.principal,
        tools,
        Choice("auto"),
        thinking=turn.thinking,
    )
    local = chat.sampling.grammar is not None
    handle = pipeline.answer(
        TurnRequest(chat, turn.route(pipeline, local), deadline=turn.rt.deadline())
    )

    def piece(text: str) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": text}}

    def thought(text: str) -> dict[str, Any]:
        return {"message": {"role": "assistant", "content": "", "thinking": text}}

    def last(answer: Answer) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        if not req.stream:
            message.update(content=answer.text, **turn.shown(answer.reasoning))
        if answer.tool_calls:
            message["tool_calls"] = _calls(answer)
        return {"message": message}

    return await turn.respond(handle, piece, thought, last, bool(tools))


@router.post("/api/generate", responses=streamed(Generated))
async def generate(req: OllamaGenerate, request: Request) -> Response:
    turn = _Turn(request, req, {"response": ""})
    if not req.prompt:
        return await turn.load_only()
    pipeline = await turn.pipeline()
    service = pipeline.service
    preset = service.settings.preset(service.model.name)
    params = sampling(req, service.context_length, preset.sampling())
    if req.suffix or req.raw:  # the model is given the text as it is, or filled in
        if req.system is not None:
            what = "a prompt with a suffix is filled in" if req.suffix else "a raw prompt is given"
            raise InvalidRequestError(
                f"system: {what} as it is; put the system prompt in the prompt, or leave "
                "system out",
                param="system",
            )
        chat = ChatRequest((), params, None, request.state.principal)
        fill = Fill(req.prompt, req.suffix) if req.suffix else None
        raw = None if fill else req.prompt
        turn_request = TurnRequest(chat, raw_prompt=raw, fill=fill, deadline=turn.rt.deadline())
    else:
        system = (Message("system", req.system),) if req.system else ()
        messages = (*system, Message("user", req.prompt))
        chat = ChatRequest(
            with_system(messages, preset.system),
            params,
            None,
            request.state.principal,
            thinking=turn.thinking,
        )
        local = params.grammar is not None
        turn_request = TurnRequest(chat, turn.route(pipeline, local), deadline=turn.rt.deadline())
    handle = begin(request, pipeline, turn_request)

    def last(answer: Answer) -> dict[str, Any]:
        if req.stream:
            return {"response": ""}
        return {"response": answer.text, **turn.shown(answer.reasoning)}

    def thought(text: str) -> dict[str, Any]:
        return {"response": "", "thinking": text}

    return await turn.respond(handle, lambda text: {"response": text}, thought, last, tools=False)


@router.post("/api/embed", response_model=Embedded)
async def embed(req: OllamaEmbed, request: Request) -> dict[str, Any]:
    started = time.perf_counter()
    rt = runtime(request)
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    _check_embed_options(req.options)
    resident, done = await rt.embed(req.model, texts, req.truncate, req.keep_alive)
    vectors = shorten(done.vectors, req.dimensions)
    rt.metrics.embedded.inc(len(vectors))
    return {
        "model": resident.name,
        "embeddings": [[float(x) for x in row] for row in vectors],
        "total_duration": ns(time.perf_counter() - started),
        "prompt_eval_count": done.tokens,
    }


@router.post("/api/embeddings", response_model=LegacyEmbedded)
async def embeddings(req: OllamaLegacyEmbedding, request: Request) -> dict[str, Any]:
    """The older route: one prompt, one vector."""
    rt = runtime(request)
    _check_embed_options(req.options)
    _, done = await rt.embed(req.model, [req.prompt], True, req.keep_alive)
    rt.metrics.embedded.inc()
    return {"embedding": [float(x) for x in done.vectors[0]]}


def _check_embed_options(options: Options | None) -> None:
    """Sampling options change nothing about a vector; refused rather than dropped."""
    if options is None:
        return
    given = [k for k, v in options.model_dump().items() if v is not None and k != "num_ctx"]
    if given:
        raise InvalidRequestError(
            f"options.{given[0]}: embeddings are not sampled; leave it out",
            param=f"options.{given[0]}",
        )
