"""The HTTP ingress: OpenAI chat completions, /v1/solve, /v1/models and /healthz.

It holds a handle to the engine deployment and the same Solver the batch job uses (over a
`QvqEngineClient`), plus the verifier's process pool. Client mistakes get a 4xx in OpenAI's
error shape; nothing a client sends can take the replica down.
"""


import hmac
import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from qvq_ray.config import QvqConfig, SamplingConfig
from qvq_ray.serve.openai_api import (
    ChatCompletionRequest,
    SolveRequest,
    chat_chunk,
    chat_completion_body,
    error_body,
    new_id,
)

logger = logging.getLogger(__name__)

app = FastAPI(title="qvq-ray", description="QVQ on Ray Serve: OpenAI chat API and verified solving.")


class ClientError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@app.exception_handler(ClientError)
async def _client_error(_: Request, exc: ClientError):
    return JSONResponse(error_body(exc.message, param=exc.param, code=exc.code), status_code=exc.status)


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError):
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"invalid request: {where + ': ' if where else ''}{first.get('msg', 'malformed body')}"
    return JSONResponse(error_body(message, param=where or None), status_code=400)


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException):
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return JSONResponse(error_body(str(exc.detail), type=kind), status_code=exc.status_code)


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
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _unwrap(exc: BaseException) -> BaseException:
    """Serve wraps a replica's exception in RayTaskError; the original is its `cause`."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


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

    # ------------------------------------------------------------------ helpers

    def _authorize(self, request: Request) -> None:
        if not self.api_keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ClientError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        if not any(hmac.compare_digest(token.strip(), key) for key in self.api_keys):
            raise ClientError(401, "invalid API key", code="invalid_api_key")

    async def _body(self, request: Request, model_cls):
        self._authorize(request)
        raw = await request.body()
        if len(raw) > self.config.serve.max_request_bytes:
            raise ClientError(413, f"request body of {len(raw)} bytes exceeds {self.config.serve.max_request_bytes}")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ClientError(400, f"request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ClientError(400, "request body must be a JSON object")
        try:
            return model_cls.model_validate(data)
        except Exception as exc:
            from pydantic import ValidationError

            if isinstance(exc, ValidationError):
                raise RequestValidationError(exc.errors()) from exc
            raise

    def _check_model(self, model: str | None) -> None:
        if model not in (None, "", self.model_name, self.config.model.path):
            raise ClientError(404, f"model {model!r} is not served here; use {self.model_name!r}", param="model", code="model_not_found")

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

    # ------------------------------------------------------------------ routes

    @app.get("/v1/models")
    async def models(self, request: Request):
        self._authorize(request)
        return {
            "object": "list",
            "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "qvq-ray"}],
        }

    @app.get("/healthz")
    async def healthz(self):
        await self.engine.check_health()
        return {"status": "ok", "model": self.model_name}

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        from qvq_ray.engines.base import InvalidRequestError
        from qvq_ray.prompt import messages_from_openai

        body: ChatCompletionRequest = await self._body(request, ChatCompletionRequest)
        self._check_model(body.model)
        try:
            messages = messages_from_openai(
                [m.model_dump(exclude_none=True) for m in body.messages],
                self._load_image,
                max_images=self.config.model.max_images_per_prompt,
                system_prompt=self.config.model.system_prompt,
            )
        except ValueError as exc:
            raise ClientError(400, str(exc), param="messages") from exc
        base = self.config.sampling
        sampling = SamplingConfig(
            temperature=base.temperature if body.temperature is None else body.temperature,
            top_p=base.top_p if body.top_p is None else body.top_p,
            max_tokens=self._max_tokens(body.max_completion_tokens or body.max_tokens),
            seed=body.seed,
            stop=body.stop or [],
            n=body.n,
            top_k=base.top_k if body.top_k is None else body.top_k,
            repetition_penalty=base.repetition_penalty if body.repetition_penalty is None else body.repetition_penalty,
        )
        request_id = new_id("chatcmpl")
        if body.stream:
            if body.n != 1:
                raise ClientError(400, "stream with n > 1 is not supported; use n=1", param="n")
            return StreamingResponse(self._stream_chat(messages, sampling, request_id), media_type="text/event-stream")
        try:
            completions = await self.engine.generate(messages, sampling)
        except Exception as exc:
            cause = _unwrap(exc)
            if isinstance(cause, InvalidRequestError):
                raise ClientError(400, str(cause)) from exc
            raise
        return chat_completion_body(self.model_name, completions, request_id)

    async def _stream_chat(self, messages, sampling: SamplingConfig, request_id: str):
        created = int(time.time())
        yield _sse(chat_chunk(self.model_name, request_id, created, {"role": "assistant", "content": ""}))
        try:
            async for item in self.engine.stream(messages, sampling):
                if isinstance(item, str):
                    yield _sse(chat_chunk(self.model_name, request_id, created, {"content": item}))
                else:
                    usage = {
                        "prompt_tokens": item.prompt_tokens,
                        "completion_tokens": item.completion_tokens,
                        "total_tokens": item.prompt_tokens + item.completion_tokens,
                    }
                    yield _sse(chat_chunk(self.model_name, request_id, created, {}, item.finish_reason, usage))
        except Exception as exc:  # headers are sent: report in-band, as OpenAI-compatible servers do
            yield _sse(error_body(f"generation failed: {_unwrap(exc)}", type="server_error"))
        yield "data: [DONE]\n\n"

    async def _stream_solve(self, solver, problem, image_bytes):
        """One `attempt` event per judged attempt, then the `solution` (or an `error`), then [DONE]."""
        import asyncio

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

    @app.post("/v1/solve")
    async def solve(self, request: Request):
        from qvq_ray.problem import ImageRef, Problem

        body: SolveRequest = await self._body(request, SolveRequest)
        if len(body.images) > self.config.model.max_images_per_prompt:
            raise ClientError(400, f"{len(body.images)} images; at most {self.config.model.max_images_per_prompt}", param="images")
        image_bytes = [self._load_image(url) for url in body.images]
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
        solver = self.solver
        if body.max_attempts or body.max_tokens:
            solver = self.solver.with_limits(max_attempts=body.max_attempts, max_tokens=self._max_tokens(body.max_tokens))
        if body.stream:
            return StreamingResponse(self._stream_solve(solver, problem, image_bytes), media_type="text/event-stream")
        try:
            solution = await solver.solve(problem, image_bytes=image_bytes)
        except Exception as exc:
            from qvq_ray.engines.base import InvalidRequestError

            if isinstance(_unwrap(exc), InvalidRequestError):
                raise ClientError(400, str(_unwrap(exc))) from exc
            raise
        return solution.model_dump(mode="json")
