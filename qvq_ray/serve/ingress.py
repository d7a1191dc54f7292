"""The HTTP ingress: OpenAI chat completions, /v1/solve, /v1/models, readiness, and its own docs.

It holds a handle to the engine deployment and the same Solver the batch job uses (over a
`QvqEngineClient`), plus the verifier's process pool. Client mistakes get a 4xx in OpenAI's error
shape; nothing a client sends can take the replica down or hold its event loop: bodies are bounded
before they are read and parsed strictly (serve/http_body.py), prompt length is bounded before
anything is decoded, and images are decoded and resized on worker threads.
"""


import asyncio
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from qvq_ray.config import QvqConfig, SamplingConfig
from qvq_ray.serve.openai_api import (
    ChatCompletionRequest,
    ClientError,
    SolveRequest,
    chat_chunk,
    chat_completion_body,
    error_body,
    install_request_schemas,
    new_id,
    request_body,
)

logger = logging.getLogger(__name__)

# Docs routes are the ingress's own (below), so API keys can cover them (serve.docs_public).
app = FastAPI(
    title="qvq-ray",
    description="QVQ on Ray Serve: OpenAI chat API and verified solving.",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)
install_request_schemas(app, [ChatCompletionRequest, SolveRequest])


@app.exception_handler(ClientError)
async def _client_error(_: Request, exc: ClientError):
    return JSONResponse(
        error_body(exc.message, param=exc.param, code=exc.code), status_code=exc.status, headers=exc.headers
    )


def _validation_message(errors: list[dict]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = str(first.get("msg", "malformed body")).removeprefix("Value error, ")
    return f"invalid request: {where + ': ' if where else ''}{message}", where or None


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError):
    message, param = _validation_message(exc.errors())
    return JSONResponse(error_body(message, param=param), status_code=400)


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException):
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    # keep Starlette's headers: a 405 carries `Allow`
    return JSONResponse(error_body(str(exc.detail), type=kind), status_code=exc.status_code, headers=exc.headers)


@app.exception_handler(Exception)
async def _server_error(_: Request, exc: Exception):
    from qvq_ray.engines.base import EngineOverloadedError

    if isinstance(_unwrap(exc), EngineOverloadedError):  # busy, not broken: the client may retry
        return JSONResponse(error_body(str(_unwrap(exc)), type="server_error", code="engine_overloaded"), status_code=503)
    logger.exception("unhandled error")
    return JSONResponse(error_body(f"internal error: {type(exc).__name__}", type="server_error"), status_code=500)


def _api_keys(config: QvqConfig) -> list[str]:
    import os

    extra = [k.strip() for k in os.environ.get(config.serve.api_keys_env, "").split(",") if k.strip()]
    return [*config.serve.api_keys, *extra]


def _sse(payload: dict) -> str:
    import json

    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _unwrap(exc: BaseException) -> BaseException:
    """Serve wraps a replica's exception in RayTaskError; the original is its `cause`."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _as_client_error(exc: BaseException) -> ClientError | None:
    """The 4xx a failed engine or solver call maps to, if the request was at fault."""
    from pydantic import ValidationError

    from qvq_ray.engines.base import InvalidRequestError

    cause = _unwrap(exc)
    if isinstance(cause, InvalidRequestError):
        return ClientError(400, str(cause))
    if isinstance(cause, ValidationError):
        return ClientError(400, *_validation_message(cause.errors()))
    return None


# Helpers above stay above: serve.ingress serialises the class when it is decorated.
@serve.deployment(name="QvqIngress")
@serve.ingress(app)
class QvqIngress:
    def __init__(self, engine_handle: Any, config_json: str):
        from qvq_ray.serve.engine_deployment import QvqEngineClient
        from qvq_ray.solver import Solver
        from qvq_ray.verify import Verifier

        self.config = QvqConfig.model_validate_json(config_json)
        self.model_name = self.config.model.served_model_name or self.config.model.path.rstrip("/").split("/")[-1]
        self.engine = QvqEngineClient(engine_handle, self.model_name)
        self.verifier = Verifier(self.config.verifier)
        self.solver = Solver.from_config(self.engine, self.verifier, self.config)
        self.api_keys = _api_keys(self.config)
        # Image decoding and resizing (PIL releases the GIL) never runs on the event loop.
        self.image_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingress-images")

    # ------------------------------------------------------------------ helpers

    def _authorize(self, request: Request) -> None:
        if not self.api_keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="qvq-ray"'}
        if scheme.lower() != "bearer" or not token:
            raise ClientError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key", headers=challenge)
        if not any(hmac.compare_digest(token.strip(), key) for key in self.api_keys):
            raise ClientError(401, "invalid API key", code="invalid_api_key", headers=challenge)

    async def _body(self, request: Request, model_cls):
        from pydantic import ValidationError

        from qvq_ray.serve.http_body import parse_json_object, read_body

        self._authorize(request)
        data = parse_json_object(await read_body(request, self.config.serve.max_request_bytes))
        try:
            return model_cls.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from exc

    def _check_model(self, model: str | None) -> None:
        if model not in (None, "", self.model_name, self.config.model.path):
            raise ClientError(404, f"model {model!r} is not served here; use {self.model_name!r}", param="model", code="model_not_found")

    def _check_prompt(self, messages: list[dict], image_count: int) -> None:
        """Cheap bounds first: nothing is decoded or tokenized for a request they refuse."""
        from qvq_ray.engines.base import InvalidRequestError, check_prompt_chars

        limit = self.config.model.max_images_per_prompt
        if image_count > limit:
            raise ClientError(400, f"too many images: {image_count} in one request; the limit is {limit}", param="messages")
        try:
            check_prompt_chars(messages, self.config.model.max_prompt_chars)
        except InvalidRequestError as exc:
            raise ClientError(400, str(exc), param="messages") from exc

    def _max_tokens(self, requested: int | None) -> int:
        limit = self.config.serve.max_tokens_limit
        value = requested or min(self.config.sampling.max_tokens, limit)
        if value > limit:
            raise ClientError(400, f"max_tokens {value} exceeds this server's limit of {limit}", param="max_tokens")
        return value

    def _load_image(self, url: str) -> bytes:
        from qvq_ray.images import ImageError, load_and_prepare

        try:
            return load_and_prepare(url, self.config.model, self.config.images)
        except ImageError as exc:
            raise ClientError(400, f"bad image: {exc}", param="messages") from exc

    async def _off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.image_pool, fn, *args)

    def _sampling(self, body: ChatCompletionRequest) -> SamplingConfig:
        from pydantic import ValidationError

        base = self.config.sampling
        try:
            return SamplingConfig(
                temperature=base.temperature if body.temperature is None else body.temperature,
                top_p=base.top_p if body.top_p is None else body.top_p,
                max_tokens=self._max_tokens(body.max_completion_tokens or body.max_tokens),
                seed=body.seed,
                stop=body.stop or [],
                n=body.n,
                top_k=base.top_k if body.top_k is None else body.top_k,
                repetition_penalty=base.repetition_penalty if body.repetition_penalty is None else body.repetition_penalty,
            )
        except ValidationError as exc:
            raise ClientError(400, *_validation_message(exc.errors())) from exc

    # ------------------------------------------------------------------ routes

    @app.get("/v1/models")
    async def models(self, request: Request):
        self._authorize(request)
        return {
            "object": "list",
            "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "qvq-ray"}],
        }

    @app.get("/health")
    async def health(self):
        """Readiness (vLLM's name): 200 when an engine replica answers in time and is alive, else
        503 with the reason, within serve.readiness_timeout_s. Unauthenticated, as load balancers
        probe it; it reveals no more than the engine's state."""
        timeout = self.config.serve.readiness_timeout_s
        try:
            state = await asyncio.wait_for(self.engine.health(), timeout=timeout)
        except asyncio.TimeoutError:
            return JSONResponse(
                {"status": "unavailable", "reason": f"no engine replica answered within {timeout:g} s"}, status_code=503
            )
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": f"engine replica failed: {_unwrap(exc)}"}, status_code=503)
        body = {"status": "ok" if state.alive else "unavailable", "model": self.model_name, "engine": state.model_dump()}
        if not state.alive:
            body["reason"] = state.reason
        return JSONResponse(body, status_code=200 if state.alive else 503)

    @app.get("/healthz")
    async def healthz(self):
        """The same readiness check as /health (kept for Kubernetes-style probes)."""
        return await self.health()

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(self, request: Request):
        self._authorize_docs(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger_docs(self, request: Request):
        from fastapi.openapi.docs import get_swagger_ui_html

        self._authorize_docs(request)
        return get_swagger_ui_html(openapi_url=request.scope.get("root_path", "") + "/openapi.json", title="qvq-ray")

    @app.get("/redoc", include_in_schema=False)
    async def redoc_docs(self, request: Request) -> HTMLResponse:
        from fastapi.openapi.docs import get_redoc_html

        self._authorize_docs(request)
        return get_redoc_html(openapi_url=request.scope.get("root_path", "") + "/openapi.json", title="qvq-ray")

    def _authorize_docs(self, request: Request) -> None:
        if not self.config.serve.docs_public:
            self._authorize(request)

    @app.post("/v1/chat/completions", openapi_extra=request_body(ChatCompletionRequest))
    async def chat_completions(self, request: Request):
        from qvq_ray.prompt import messages_from_openai

        body: ChatCompletionRequest = await self._body(request, ChatCompletionRequest)
        self._check_model(body.model)
        raw_messages = [m.model_dump(exclude_none=True) for m in body.messages]
        self._check_prompt(raw_messages, body.image_count())
        sampling = self._sampling(body)
        if body.stream and body.n != 1:
            raise ClientError(400, "stream with n > 1 is not supported; use n=1", param="n")
        try:
            messages = await self._off_loop(
                lambda: messages_from_openai(
                    raw_messages,
                    self._load_image,
                    max_images=self.config.model.max_images_per_prompt,
                    system_prompt=self.config.model.system_prompt,
                )
            )
        except ValueError as exc:
            raise ClientError(400, str(exc), param="messages") from exc
        request_id = new_id("chatcmpl")
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            stream = self.engine.stream(messages, sampling)
            try:  # the engine refuses a bad prompt before its first delta: a 400, not an in-band error
                first = await anext(stream)
            except Exception as exc:
                await stream.aclose()
                if (client_error := _as_client_error(exc)) is not None:
                    raise client_error from exc
                raise
            return StreamingResponse(
                self._stream_chat(stream, first, request_id, include_usage), media_type="text/event-stream"
            )
        try:
            completions = await self.engine.generate(messages, sampling)
        except Exception as exc:
            if (client_error := _as_client_error(exc)) is not None:
                raise client_error from exc
            raise
        return chat_completion_body(self.model_name, completions, request_id)

    async def _stream_chat(self, stream, first, request_id: str, include_usage: bool):
        created = int(time.time())
        yield _sse(chat_chunk(self.model_name, request_id, created, {"role": "assistant", "content": ""}))
        try:
            item = first
            while True:
                if isinstance(item, str):
                    yield _sse(chat_chunk(self.model_name, request_id, created, {"content": item}))
                else:
                    yield _sse(chat_chunk(self.model_name, request_id, created, {}, item.finish_reason))
                    if include_usage:  # OpenAI's shape: one more chunk, no choices, the usage
                        usage = {
                            "prompt_tokens": item.prompt_tokens,
                            "completion_tokens": item.completion_tokens,
                            "total_tokens": item.prompt_tokens + item.completion_tokens,
                        }
                        yield _sse({**chat_chunk(self.model_name, request_id, created, {}), "choices": [], "usage": usage})
                    break
                item = await anext(stream)
        except Exception as exc:  # headers are sent: report in-band, as OpenAI-compatible servers do
            kind = "invalid_request_error" if _as_client_error(exc) is not None else "server_error"
            yield _sse(error_body(f"generation failed: {_unwrap(exc)}", type=kind))
        finally:
            await stream.aclose()  # a client that went away aborts the generation
        yield "data: [DONE]\n\n"

    async def _stream_solve(self, solver, problem, image_bytes):
        """One `attempt` event per judged attempt, then the `solution` (or an `error`), then [DONE]."""
        events: asyncio.Queue = asyncio.Queue()

        async def on_attempt(index, attempt):
            await events.put({"event": "attempt", "index": index, "attempt": attempt.model_dump(mode="json")})

        async def run():
            try:
                solution = await solver.solve(problem, image_bytes=image_bytes, on_attempt=on_attempt)
                await events.put({"event": "solution", "solution": solution.model_dump(mode="json")})
            except Exception as exc:
                await events.put({"event": "error", **error_body(f"solve failed: {_unwrap(exc)}", type="server_error")})
            await events.put(None)

        task = asyncio.ensure_future(run())
        try:
            while (event := await events.get()) is not None:
                yield _sse(event)
            yield "data: [DONE]\n\n"
        finally:
            task.cancel()  # the client went away: stop solving

    @app.post("/v1/solve", openapi_extra=request_body(SolveRequest))
    async def solve(self, request: Request):
        from pydantic import ValidationError

        from qvq_ray.problem import ImageRef, Problem

        body: SolveRequest = await self._body(request, SolveRequest)
        self._check_prompt([{"content": body.question}, *({"content": c} for c in body.choices)], len(body.images))
        max_tokens = self._max_tokens(body.max_tokens) if body.max_tokens else None
        image_bytes = await self._off_loop(lambda: [self._load_image(url) for url in body.images])
        try:
            problem = Problem(
                id=body.id or new_id("solve"),
                question=body.question,
                images=[ImageRef(path="<request>") for _ in image_bytes],
                choices=body.choices,
                answer_type=body.answer_type,
                unit=body.unit,
                tolerance=body.tolerance,
                source="api",
            )
        except ValidationError as exc:
            raise ClientError(400, *_validation_message(exc.errors())) from exc
        solver = self.solver
        if body.max_attempts or max_tokens:
            solver = self.solver.with_limits(max_attempts=body.max_attempts, max_tokens=max_tokens)
        if body.stream:
            return StreamingResponse(self._stream_solve(solver, problem, image_bytes), media_type="text/event-stream")
        try:
            solution = await solver.solve(problem, image_bytes=image_bytes)
        except Exception as exc:
            if (client_error := _as_client_error(exc)) is not None:
                raise client_error from exc
            raise
        return solution.model_dump(mode="json")
