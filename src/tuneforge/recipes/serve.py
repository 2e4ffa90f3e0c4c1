"""`tuneforge serve RUN [--host 127.0.0.1 --port 8000] [--redact-output]`: a finished run behind an
OpenAI-compatible HTTP API (FastAPI + uvicorn), so the official `openai` client, LangChain, curl and every
other OpenAI-speaking tool can use it.

    GET  /health                 {"status": "ok", "model": ..., "task": ...}
    GET  /v1/models              the one model: the run's name
    POST /v1/chat/completions    instruction runs: messages → reply (stream: true for server-sent events);
                                 temperature, top_p, max_tokens / max_completion_tokens, stop, seed
    POST /v1/completions         instruction runs: raw text continued (no chat template)
    POST /v1/classify            classifiers: {"input": text or [texts]} → label + probabilities per text

The run is loaded once (recipes/inference.py's TunedModel, the same code as `tuneforge predict`, so the
prompt is formatted exactly as in training and an omitted temperature means greedy, as the run's
generation_config.json says). Requests are served one at a time on the model (a lock; the HTTP server
keeps accepting and queues them), so concurrent callers never receive each other's text. A bad request
gets OpenAI's error JSON with a 4xx status ({"error": {"message", "type", "param", "code"}}), never a
traceback. --redact-output runs the PII detector over every generated text before it leaves (a streamed
reply then arrives in one piece: redaction needs the whole text).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from ..errors import TuneforgeError
from .inference import Reply, TunedModel

log = logging.getLogger("tuneforge.serve")
MAX_STOP = 4  # OpenAI accepts up to 4 stop sequences


# ---------------------------------------------------------------- requests (OpenAI's field names)

class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # presence_penalty, user, ...: accepted, not used


class ContentPart(_Request):
    type: str = "text"
    text: str = ""


class Message(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[ContentPart], None] = None
    tool_calls: Union[list[dict[str, Any]], None] = None
    tool_call_id: Union[str, None] = None


class Sampled(_Request):
    model: str
    max_tokens: Union[int, None] = Field(None, ge=1, le=8192)
    temperature: Union[float, None] = Field(None, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: Union[str, list[str], None] = None
    stream: bool = False
    n: int = Field(1, ge=1, le=1)  # one choice per request
    seed: Union[int, None] = Field(None, ge=-2**63, le=2**63 - 1)  # what torch's generator takes
    stream_options: Union[dict[str, Any], None] = None


class ChatRequest(Sampled):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Union[int, None] = Field(None, ge=1, le=8192)


class CompletionRequest(Sampled):
    prompt: Union[str, list[str]]


class ClassifyRequest(_Request):
    model: str
    input: Union[str, list[str]]


class ApiError(Exception):
    """A request the server refuses: OpenAI's error body with a 4xx status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# ---------------------------------------------------------------- the app

def create_app(model: TunedModel, redact_output: bool = False) -> Any:
    """The FastAPI app serving `model` (already loaded)."""
    from fastapi import FastAPI

    app = FastAPI(title=f"tuneforge: {model.name}", docs_url=None, redoc_url=None)
    _errors(app)
    created = int(time.time())
    redact = _redactor() if redact_output else _identity

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": model.name, "task": model.cfg.task, "generates": model.generates}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model.name, "object": "model", "created": created,
                                            "owned_by": "tuneforge"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> Any:
        _check(model, req.model, generates=True)
        messages = [_message(m) for m in req.messages]
        if messages[-1]["role"] == "assistant":
            raise ApiError(400, "the last message must not be the assistant's: there is nothing to answer",
                           "messages")
        limit = req.max_completion_tokens or req.max_tokens
        return _answer(model, req, messages, limit, False, redact, "chat.completion")

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> Any:
        _check(model, req.model, generates=True)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if len(prompts) != 1 or not _encodable(prompts[0], "prompt"):
            raise ApiError(400, "one non-empty prompt per request (a list of one is fine)", "prompt")
        return _answer(model, req, prompts[0], req.max_tokens, True, redact, "text_completion")

    @app.post("/v1/classify")
    def classify(req: ClassifyRequest) -> dict[str, Any]:
        _check(model, req.model, generates=False)
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts or any(not _encodable(t, "input").strip() for t in texts):
            raise ApiError(400, "`input` must be a text or a non-empty list of non-empty texts", "input")
        rows = model.classify(texts)
        return {"object": "list", "model": model.name,
                "data": [{"object": "classification", "index": i, "label": r.label, "probs": r.probs}
                         for i, r in enumerate(rows)]}

    return app


def _errors(app: Any) -> None:
    """Every failure answers in OpenAI's error format; a request mistake is a 4xx, never a traceback."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    def api_error(request: Any, exc: ApiError) -> Any:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def invalid(request: Any, exc: RequestValidationError) -> Any:
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message, where = "the request body is not valid JSON", ""
        elif not where:  # no body, or a JSON value that is not an object
            message = "the request body must be a JSON object (Content-Type: application/json)"
        return JSONResponse(ApiError(400, f"{where + ': ' if where else ''}{message}", where or None).body(),
                            status_code=400)

    @app.exception_handler(HTTPException)
    def http(request: Any, exc: HTTPException) -> Any:
        return JSONResponse(ApiError(exc.status_code, str(exc.detail), code=str(exc.status_code)).body(),
                            status_code=exc.status_code)

    @app.exception_handler(TuneforgeError)
    def refused(request: Any, exc: TuneforgeError) -> Any:
        return JSONResponse(ApiError(400, str(exc)).body(), status_code=400)

    @app.exception_handler(Exception)
    def bug(request: Any, exc: Exception) -> Any:  # a bug of ours: logged here, never sent to the client
        log.exception("internal error while serving %s", request.url.path)
        return JSONResponse(ApiError(500, "internal server error", kind="server_error").body(), status_code=500)


def _check(model: TunedModel, name: str, generates: bool) -> None:
    if name != model.name:
        raise ApiError(404, f"the model `{name}` does not exist; this server serves `{model.name}`", "model",
                       "model_not_found")
    if generates and not model.generates:
        raise ApiError(400, f"`{model.name}` is a {model.cfg.task} run: it labels texts; use POST /v1/classify",
                       "model")
    if not generates and model.generates:
        raise ApiError(400, f"`{model.name}` answers prompts; use POST /v1/chat/completions", "model")


def _message(m: Message) -> dict[str, Any]:
    if isinstance(m.content, list) and any(p.type != "text" for p in m.content):
        raise ApiError(400, "this model reads text only: content parts must be of type `text`", "messages")
    content = m.content if isinstance(m.content, str) or m.content is None else "".join(p.text for p in m.content)
    _encodable(content or "", "messages")
    if content is None and not m.tool_calls:
        raise ApiError(400, f"a {m.role} message needs `content`", "messages")
    out: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role,
                           "content": content if content is not None else json.dumps(m.tool_calls)}
    return out


def _encodable(text: str, param: str) -> str:
    """JSON lets a request carry half a UTF-16 pair (\\ud800); no tokenizer can encode it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "the text holds an unpaired UTF-16 surrogate (not valid Unicode)", param) from None
    return text


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOP:
        raise ApiError(400, f"at most {MAX_STOP} stop sequences", "stop")
    return [s for s in stops if s]


def _answer(model: TunedModel, req: Sampled, prompt: Any, limit: int | None, raw: bool, redact: Any,
            kind: str) -> Any:
    kwargs = {"max_new_tokens": limit, "temperature": req.temperature or 0.0, "top_p": req.top_p,
              "stop": _stops(req.stop), "seed": req.seed, "raw": raw}
    ident = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    if req.stream:
        from fastapi.responses import StreamingResponse

        usage = bool((req.stream_options or {}).get("include_usage"))
        events = _events(model, prompt, kwargs, redact, kind, ident, usage)
        first = next(events)  # the model is asked now: a refused prompt is still a plain 4xx, not a broken stream
        return StreamingResponse(_chain(first, events), media_type="text/event-stream")
    reply = model.generate(prompt, **kwargs)
    text = redact(reply.text)
    choice: dict[str, Any] = {"index": 0, "finish_reason": reply.finish_reason, "logprobs": None}
    choice.update({"message": {"role": "assistant", "content": text}} if kind == "chat.completion" else {"text": text})
    return {"id": ident, "object": kind, "created": int(time.time()), "model": model.name, "choices": [choice],
            "usage": _usage(reply)}


def _events(model: TunedModel, prompt: Any, kwargs: dict[str, Any], redact: Any, kind: str, ident: str,
            usage: bool) -> Iterator[str]:
    """Server-sent events: one chunk per text piece, then the finish reason (and usage), then [DONE]."""
    chat = kind == "chat.completion"
    created = int(time.time())
    stream = model.stream(prompt, **kwargs)
    first = next(stream)  # raises here for a prompt the model refuses

    def chunk(piece: str | None, finish: str | None, role: bool = False) -> str:
        if chat:
            delta: dict[str, Any] = ({"role": "assistant"} if role else {}) | ({"content": piece} if piece else {})
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": piece or "", "finish_reason": finish, "logprobs": None}
        body = {"id": ident, "object": f"{kind}.chunk" if chat else kind, "created": created, "model": model.name,
                "choices": [choice]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk("" if chat else None, None, role=True)
    held: list[str] = []
    reply: Reply | None = None
    for item in _chain(first, stream):
        if isinstance(item, Reply):
            reply = item
        elif redact is _identity:
            yield chunk(item, None)
        else:
            held.append(item)
    if reply is None:
        return
    if held:  # redaction needs the whole text
        yield chunk(redact("".join(held)), None)
    yield chunk(None, reply.finish_reason)
    if usage:
        body = {"id": ident, "object": f"{kind}.chunk" if chat else kind, "created": created, "model": model.name,
                "choices": [], "usage": _usage(reply)}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


def _identity(text: str) -> str:
    return text


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _usage(reply: Reply) -> dict[str, int]:
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens}


def _redactor() -> Any:
    """The PII detector and redaction of training (vetting/), applied to generated text."""
    from ..vetting.detectors import detect
    from ..vetting.privacy import Placeholders, redact

    return lambda text: redact(text, detect(text), Placeholders())


# ---------------------------------------------------------------- the command

def serve_command(run: str, host: str = "127.0.0.1", port: int = 8000, redact_output: bool = False) -> int:
    import socket

    import uvicorn

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:  # a clear error, before loading
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as e:
            raise TuneforgeError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") \
                from None
    model = TunedModel(run)  # loaded once, before the port opens
    app = create_app(model, redact_output)
    what = "POST /v1/chat/completions, /v1/completions" if model.generates else "POST /v1/classify"
    print(f"serving {model.name} ({model.cfg.task}) on http://{host}:{port}/v1 — {what}; GET /v1/models, /health",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
