"""A turn rendered for HTTP: one JSON object or server-sent events, ended cleanly when the
client goes away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from edgeinf.engine.callstream import CallStream, Streamed
from edgeinf.engine.grammar import JSON_OBJECT, check_source, from_schema
from edgeinf.errors import InvalidRequestError
from edgeinf.server.errors import ApiError, error_response
from edgeinf.server.runtime import Runtime
from edgeinf.server.shapes import extra, logprobs, new_id, sse_event, usage
from edgeinf.server.wire import Sampling, now
from edgeinf.service.handle import Answer, TurnHandle
from edgeinf.service.turn import TurnPipeline, TurnRequest
from edgeinf.types import Message, SamplingParams, Scored, Thought, TokenLogprob, Tool


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def begin(request: Request, pipeline: TurnPipeline, turn: TurnRequest) -> TurnHandle:
    """Start a turn; a fill cancels the one its client asked for before (service.fill)."""
    handle = pipeline.answer(turn)
    if turn.fill is not None:
        peer = request.client.host if request.client else ""
        client = (request.state.principal, peer, request.headers.get("x-client-id", ""))
        runtime(request).fills.begin(client, handle)
    return handle


def choices(turn: TurnRequest, n: int) -> list[TurnRequest]:
    """The turns of a request's `n` choices: one prompt (prefilled once: engine.sharing),
    each choice its own seed; only the first is kept in the request's session."""
    given = turn.chat.sampling

    def nth(i: int) -> TurnRequest:
        seed = None if given.seed is None else (given.seed + i) % (1 << 32)
        chat = replace(turn.chat, session_id=None, sampling=replace(given, seed=seed))
        return replace(turn, chat=chat)

    return [turn, *(nth(i) for i in range(1, n))]


def sampling(req: Sampling, context: int, defaults: Mapping[str, float]) -> SamplingParams:
    """The engine's parameters for a request; max_tokens defaults to the context size, and
    what it does not set to the model's preset (`defaults`), else to the wire's defaults."""
    if req.chat_template is not None:
        raise ApiError(
            400,
            "requests may not supply a chat template; the model's own is used",
            "invalid_request_error",
            "chat_template_not_allowed",
        )
    max_tokens = req.max_completion_tokens or req.max_tokens or context
    rivals = req.rivals()
    given = req.model_fields_set

    def pick(name: str) -> Any:
        value = getattr(req, name)
        return defaults[name] if name in defaults and name not in given else value

    return SamplingParams(
        grammar=grammar(req),
        max_tokens=max_tokens,
        temperature=pick("temperature"),
        top_k=pick("top_k"),
        top_p=pick("top_p"),
        min_p=pick("min_p"),
        repeat_penalty=pick("repeat_penalty"),
        frequency_penalty=req.frequency_penalty,
        presence_penalty=req.presence_penalty,
        seed=req.seed,
        stop=tuple(req.stop or ()),
        logit_bias=tuple((int(t), b) for t, b in (req.logit_bias or {}).items()),
        logprobs=rivals,
    )


def with_system(messages: tuple[Message, ...], system: str | None) -> tuple[Message, ...]:
    """A conversation with the model preset's system prompt when it brings none."""
    if system is None or any(m.role == "system" for m in messages):
        return messages
    return (Message("system", system), *messages)


def grammar(req: Sampling) -> str | None:
    """The grammar the answer is decoded through: a raw GBNF one, any JSON object, or the
    documents a JSON schema allows (none for plain text)."""
    fmt = req.response_format
    if fmt is not None and fmt.type != "text" and req.grammar is not None:
        raise InvalidRequestError(
            "grammar: send response_format or grammar, not both", param="grammar"
        )
    if req.grammar is not None:
        check_source(req.grammar, "grammar")
        return req.grammar
    if fmt is None or fmt.type == "text":
        return None
    if fmt.json_schema is None:
        return JSON_OBJECT
    return from_schema(fmt.json_schema.schema_, "response_format.json_schema.schema")


async def respond(
    request: Request,
    handles: Sequence[TurnHandle],
    req: Sampling,
    chat: bool,
    tools: Sequence[Tool] = (),
) -> Response:
    """Start the turns of a request's choices (what fails now is the request's error status),
    then answer them; with `tools`, text that may be a call is held back from a stream until
    it is known."""
    try:
        for handle in handles:
            await handle.open()
    except BaseException:
        for handle in handles:
            handle.cancel()
        raise
    rid = new_id(chat)
    if req.stream:
        return StreamingResponse(
            events(request, handles, rid, chat, req, tools),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    alive = client_alive(request)

    async def drain(handle: TurnHandle) -> None:
        async for _ in handle.pieces(alive):
            pass

    try:
        await asyncio.gather(*(drain(h) for h in handles))
    finally:
        for handle in handles:
            if handle.result is None:
                handle.cancel()
    answers = [h.result for h in handles]
    if None in answers:
        return unanswered(next(h for h in handles if h.result is None))
    done = [a for a in answers if a is not None]
    for answer in done:
        runtime(request).metrics.answered(answer)
    asked = req.rivals() is not None
    return JSONResponse(
        {
            "id": rid,
            "object": "chat.completion" if chat else "text_completion",
            "created": now(),
            "model": done[0].model,
            "choices": [_choice(i, a, chat, asked) for i, a in enumerate(done)],
            "usage": usage(done),
            **extra(done[0]),
        }
    )


def _choice(index: int, answer: Answer, chat: bool, asked: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "finish_reason": answer.finish_reason}
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text}
        if answer.reasoning:
            message["reasoning_content"] = answer.reasoning
        if answer.tool_calls:
            message["content"] = answer.text or None
            message["tool_calls"] = [c.as_dict() for c in answer.tool_calls]
        choice["message"] = message
    else:
        choice["text"] = answer.text
    if asked or not chat:
        written = answer.local.completion.logprobs if answer.local else ()
        choice["logprobs"] = logprobs(chat, written, 0) if asked else None
    return choice


def unanswered(handle: TurnHandle) -> Response:
    """The response of a turn that was cancelled: by a newer request of its client (409,
    saying why), or because its client left (499: nobody reads it)."""
    if handle.why:
        raise ApiError(409, handle.why, "conflict_error", "superseded")
    return Response(status_code=499)


def client_alive(request: Request) -> Callable[[], Awaitable[bool]]:
    async def alive() -> bool:
        return not await request.is_disconnected()

    return alive


_Chunk = tuple[Literal["chunk", "error"], bytes] | tuple[Literal["end"], Answer | None]


async def events(
    request: Request,
    handles: Sequence[TurnHandle],
    rid: str,
    chat: bool,
    req: Sampling,
    tools: Sequence[Tool],
) -> AsyncIterator[bytes]:
    """The chunks of every choice as they come (interleaved when there are several), then
    the usage chunk `include_usage` asks for. An error ends the stream with an error event;
    a choice cut short (the client left, the server stops) ends it with no last chunk."""
    chunks: asyncio.Queue[_Chunk] = asyncio.Queue()

    async def run(index: int, handle: TurnHandle) -> None:
        try:
            async for chunk in _choice_events(request, handle, index, rid, chat, req, tools):
                await chunks.put(chunk)
        except Exception as exc:  # the status line is sent: the error goes in the stream
            await chunks.put(("error", f"data: {json.dumps(error_response(exc)[1])}\n\n".encode()))

    tasks = [asyncio.create_task(run(i, h)) for i, h in enumerate(handles)]
    answers: list[Answer] = []
    try:
        while len(answers) < len(handles):
            kind, value = await chunks.get()
            if kind == "end":
                if value is None:
                    break
                assert isinstance(value, Answer)
                answers.append(value)
                continue
            assert isinstance(value, bytes)
            yield value
            if kind == "error":
                break
    finally:
        for task in tasks:
            task.cancel()  # a choice still being written stops within a step
    if len(answers) == len(handles):
        include_usage = req.stream_options is not None and req.stream_options.include_usage
        if include_usage:
            yield sse_event(rid, answers[0].model, chat, None, usage=usage(answers))
    yield b"data: [DONE]\n\n"


async def _choice_events(
    request: Request,
    handle: TurnHandle,
    index: int,
    rid: str,
    chat: bool,
    req: Sampling,
    tools: Sequence[Tool],
) -> AsyncIterator[_Chunk]:
    """One choice's chunks, then its answer (None when cut short). Each text chunk carries
    the log-probabilities of its tokens when the request asked for them; with `tools`, text
    that may be a call is held back until it is known, and calls go out as they are written
    (engine.callstream)."""
    model, asked = handle.model, req.rivals() is not None
    calls = CallStream(tools, handle.syntax) if tools else None

    def event(choice: dict[str, Any], **extra: Any) -> _Chunk:
        return "chunk", sse_event(rid, model, chat, {"index": index, **choice}, **extra)

    if chat:
        yield event({"delta": {"role": "assistant", "content": ""}, "finish_reason": None})
    scored: list[TokenLogprob] = []  # of the text not yet sent
    offset = 0  # characters of text sent (the legacy logprobs' text_offset)

    def text(piece: str) -> _Chunk:
        nonlocal offset
        choice: dict[str, Any] = {"delta": {"content": piece}} if chat else {"text": piece}
        if asked:
            choice["logprobs"] = logprobs(chat, scored, offset)
            scored.clear()
        offset += len(piece)
        return event({**choice, "finish_reason": None})

    def sent(pieces: list[Streamed]) -> Iterator[_Chunk]:
        for piece in pieces:
            if isinstance(piece, str):
                yield text(piece)
                continue
            call: dict[str, Any] = {
                "index": piece.index,
                "function": {"arguments": piece.arguments},
            }
            if piece.id is not None:  # the call's first piece
                call.update(id=piece.id, type="function")
                call["function"]["name"] = piece.name
            yield event({"delta": {"tool_calls": [call]}, "finish_reason": None})

    async for piece in handle.written(client_alive(request)):
        if isinstance(piece, Scored):
            scored.extend(piece.tokens)
        elif isinstance(piece, Thought):
            yield event({"delta": {"reasoning_content": piece.text}, "finish_reason": None})
        elif calls is None:
            yield text(piece)
        else:
            for chunk in sent(calls.feed(piece)):
                yield chunk
    answer = handle.result
    if answer is None:
        yield "end", None
        return
    runtime(request).metrics.answered(answer)
    if calls is not None:
        for chunk in sent(calls.end(answer.text, answer.tool_calls)):
            yield chunk
    end: dict[str, Any] = {"delta": {}} if chat else {"text": ""}
    if asked and scored:  # the tokens of calls, which were sent as calls, not as text
        end["logprobs"] = logprobs(chat, scored, offset)
    yield event(
        {**end, "finish_reason": answer.finish_reason}, usage=usage([answer]), **extra(answer)
    )
    yield "end", answer
