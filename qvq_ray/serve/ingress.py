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
from typing import TYPE_CHECKING, Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from qvq_ray.config import QvqConfig, SamplingConfig
from qvq_ray.engines.base import Completion, remote_cause
from qvq_ray.serve import api_responses as api
from qvq_ray.serve.openai_api import (
    ChatCompletionRequest,
    ClientError,
    CompletionRequest,
    DetokenizeRequest,
    SamplingRequest,
    SolveRequest,
    TokenizeChatRequest,
    TokenizeCompletionRequest,
    chat_chunk,
    chat_completion_body,
    echo_only,
    legacy_logprobs_body,
    text_completion_body,
    usage_body,
    error_body,
    install_request_schemas,
    logprobs_body,
    new_id,
    request_body,
)

if TYPE_CHECKING:
    from qvq_ray.problem import Attempt, Problem
    from qvq_ray.serve.health import AppHealth
    from qvq_ray.serve.metrics import RequestClock
    from qvq_ray.serve.openai_api import StreamOptions
    from qvq_ray.solver import Solver

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# Docs routes are the ingress's own (below), so API keys can cover them (serve.docs_public).
app = FastAPI(
    title="qvq-ray",
    description="QVQ on Ray Serve: OpenAI chat API and verified solving.",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)
# the request bodies, and the chunk model that SSE descriptions name (responses carry the rest)
install_request_schemas(
    app,
    [ChatCompletionRequest, CompletionRequest, SolveRequest, TokenizeCompletionRequest, TokenizeChatRequest,
     DetokenizeRequest, api.ChatCompletionChunk],
)


@app.middleware("http")
async def _count_requests(request: Request, call_next: Callable[[Request], Awaitable[StreamingResponse]]) -> Response:
    """Requests, statuses and latency (to the last byte of the body: a stream's whole duration)
    into the replica's metrics (serve/metrics.py); `request.state.arrived` for the routes' timing."""
    started = request.state.arrived = time.perf_counter()
    response = await call_next(request)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is None:
        return response
    route = getattr(request.scope.get("route"), "path", None) or "other"

    async def counted_at_the_end(body: AsyncIterable[Any]) -> AsyncIterator[Any]:
        try:
            async for chunk in body:
                yield chunk
        finally:
            metrics.request(route, response.status_code, time.perf_counter() - started)

    response.body_iterator = counted_at_the_end(response.body_iterator)
    return response


@app.exception_handler(ClientError)
async def _client_error(_: Request, exc: ClientError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.message, param=exc.param, code=exc.code), status_code=exc.status, headers=exc.headers
    )


def _validation_message(errors: Sequence[Any]) -> tuple[str, str | None]:
    """The first error, keyed as console.validation_line keys them, and its key as the OpenAI `param`."""
    from qvq_ray.console import error_key, error_text

    first: dict[str, Any] = dict(errors[0]) if errors else {"msg": "malformed body"}
    where = error_key(first, skip=("body",))
    return f"invalid request: {where + ': ' if where else ''}{error_text(first)}", where or None


@app.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = _validation_message(exc.errors())
    return JSONResponse(error_body(message, param=param), status_code=400)


@app.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    # keep Starlette's headers: a 405 carries `Allow`
    return JSONResponse(error_body(str(exc.detail), type=kind), status_code=exc.status_code, headers=exc.headers)


@app.exception_handler(Exception)
async def _server_error(_: Request, exc: Exception) -> JSONResponse:
    from qvq_ray.engines.base import EngineOverloadedError

    if isinstance(remote_cause(exc), EngineOverloadedError):  # busy, not broken: the client may retry
        return JSONResponse(error_body(str(remote_cause(exc)), type="server_error", code="engine_overloaded"), status_code=503)
    logger.exception("unhandled error")
    return JSONResponse(error_body(f"internal error: {type(exc).__name__}", type="server_error"), status_code=500)


def _api_keys(config: QvqConfig) -> list[str]:
    import os

    extra = [k.strip() for k in os.environ.get(config.serve.api_keys_env, "").split(",") if k.strip()]
    return [*config.serve.api_keys, *extra]


def _sse(payload: dict[str, Any]) -> str:
    from qvq_ray.json_lines import one_line_json

    return f"data: {one_line_json(payload)}\n\n"


def _one_sample_each(sampling: SamplingConfig) -> list[SamplingConfig]:
    """The single-sample streams a streamed request with n > 1 needs: one for greedy (every choice
    is the same text: generated once, sent n times, as the engines do without stream), else n, a
    seeded one with seed, seed+1... so its samples differ as vLLM's do."""
    from qvq_ray.config import SEED_MAX, SEED_MIN

    if sampling.greedy:
        return [sampling.model_copy(update={"n": 1})]

    def seed(i: int) -> int | None:
        if sampling.seed is None:
            return None
        value = sampling.seed + i
        return value if value <= SEED_MAX else SEED_MIN + (value - SEED_MAX - 1)

    return [sampling.model_copy(update={"n": 1, "seed": seed(i)}) for i in range(sampling.n)]


def _as_client_error(exc: BaseException) -> ClientError | None:
    """The 4xx a failed engine or solver call maps to, if the request was at fault."""
    from pydantic import ValidationError

    from qvq_ray.engines.base import InvalidRequestError

    cause = remote_cause(exc)
    if isinstance(cause, InvalidRequestError):
        return ClientError(400, str(cause))
    if isinstance(cause, ValidationError):
        message, param = _validation_message(cause.errors())
        return ClientError(400, message, param=param)
    return None


class _StreamedChoice:
    """What one engine stream has sent of its sample: log-probabilities go out with the chunk whose
    text completes their tokens' text (each entry's `token` is what it adds to the text), as vLLM
    sends each delta's own; the finishing chunk carries the rest (a stop string's cut included).
    And the usage so far, for stream_options.continuous_usage_stats."""

    def __init__(self, logprobs: bool):
        self.logprobs = logprobs
        self.pending: list[Any] = []
        self.sent_chars = 0  # text sent
        self.covered = 0  # text the released entries cover
        self.released = 0
        self.usage: dict[str, Any] | None = None

    def start(self, first: Any) -> None:
        """Before the head chunk: the prompt's tokens are known (from the first delta), none sent yet."""
        counts = getattr(first, "usage", None)
        self._count((counts[0], 0) if counts is not None else None)

    def delta(self, item: str) -> list[Any] | None:
        self._count(getattr(item, "usage", None))
        self.sent_chars += len(item)
        if not self.logprobs:
            return None
        self.pending.extend(getattr(item, "logprobs", None) or [])
        out = []
        while self.pending and self.covered + len(self.pending[0].token) <= self.sent_chars:
            entry = self.pending.pop(0)
            self.covered += len(entry.token)
            out.append(entry)
        self.released += len(out)
        return out

    def final(self, completion: Any) -> list[Any] | None:
        self._count((completion.prompt_tokens, completion.completion_tokens))
        if not self.logprobs or completion.logprobs is None:
            return None
        rest: list[Any] = completion.logprobs[self.released:]
        return rest

    def _count(self, counts: tuple[int, int] | None) -> None:
        if counts is not None:
            prompt, completion = counts
            self.usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _with_usage(chunk: dict[str, Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {**chunk, "usage": usage} if usage is not None else chunk


def _chat_logprobs(steps: list[Any] | None) -> dict[str, Any] | None:
    """A chat chunk's `logprobs` for the tokens it carries (None when not asked)."""
    return {"content": [step.model_dump() for step in steps]} if steps is not None else None


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
        # with verifier.judge: the judge asks the engine deployment (or its endpoint) what the rules cannot decide
        from qvq_ray.judge.checker import judging_checker

        self.checker = judging_checker(self.verifier, self.config, self.engine)
        self.solver = Solver.from_config(self.engine, self.checker, self.config)
        self.api_keys = _api_keys(self.config)
        # Image decoding and resizing (PIL releases the GIL) never runs on the event loop.
        self.image_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingress-images")
        from qvq_ray.serve.metrics import ServeMetrics

        self.metrics = app.state.metrics = ServeMetrics(self.model_name, self.config.model.max_model_len)
        self.app_name = serve.get_replica_context().replica_id.deployment_id.app_name
        from qvq_ray.serve.openai_api import state_server_limits

        state_server_limits(
            app, max_tokens=self.config.serve.max_tokens_limit, max_images=self.config.model.max_images_per_prompt
        )

    # ------------------------------------------------------------------ helpers

    def _authorize(self, request: Request) -> None:
        if not self.api_keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="qvq-ray"'}
        if scheme.lower() != "bearer" or not token:
            raise ClientError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key", headers=challenge)
        # Bytes, not str: compare_digest raises on non-ASCII str. Header values arrive as latin-1
        # text, so encoding them back gives the bytes the client sent; keys compare as UTF-8.
        sent = token.strip().encode("latin-1")
        if not any(hmac.compare_digest(sent, key.encode("utf-8")) for key in self.api_keys):
            raise ClientError(401, "invalid API key", code="invalid_api_key", headers=challenge)

    async def _body(self, request: Request, model_cls: type[M]) -> M:
        from pydantic import ValidationError

        from qvq_ray.serve.http_body import parse_json_object, read_body

        self._authorize(request)
        data = parse_json_object(await read_body(request, self.config.serve.max_request_bytes))
        return self._validated(data, model_cls)

    def _validated(self, data: Any, model_cls: type[M]) -> M:
        from pydantic import ValidationError

        try:
            return model_cls.model_validate(data)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from exc

    def _check_model(self, model: str | None) -> None:
        if model not in (None, "", self.model_name, self.config.model.path):
            raise ClientError(404, f"model {model!r} is not served here; use {self.model_name!r}", param="model", code="model_not_found")

    def _check_prompt(self, messages: list[dict[str, Any]], image_count: int) -> None:
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

    def _image_loader(self) -> Callable[[str], bytes]:
        """A loader for one request's images: each refused or prepared alone, all of them together
        within images.max_total_pixels_decoded."""
        from qvq_ray.images import ImageError, PixelBudget, load_and_prepare

        budget = PixelBudget(self.config.images)

        def load(url: str) -> bytes:
            try:
                return load_and_prepare(url, self.config.model, self.config.images, budget)
            except ImageError as exc:
                raise ClientError(400, f"bad image: {exc}", param="messages") from exc

        return load

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.image_pool, fn, *args)

    def _sampling(self, body: SamplingRequest) -> SamplingConfig:
        from pydantic import ValidationError

        base = self.config.sampling
        try:
            return SamplingConfig(
                temperature=base.temperature if body.temperature is None else body.temperature,
                top_p=base.top_p if body.top_p is None else body.top_p,
                max_tokens=self._max_tokens(body.completion_limit()),
                seed=body.seed,
                stop=[body.stop] if isinstance(body.stop, str) else body.stop or [],  # a list once validated
                n=body.n,
                top_k=base.top_k if body.top_k is None else body.top_k,
                repetition_penalty=base.repetition_penalty if body.repetition_penalty is None else body.repetition_penalty,
                presence_penalty=body.presence_penalty or 0.0,
                frequency_penalty=body.frequency_penalty or 0.0,
                min_p=body.min_p or 0.0,
                min_tokens=body.min_tokens or 0,
                logprobs=body.top_logprobs_asked(),
                prompt_logprobs=body.prompt_logprobs_asked(),
                ignore_eos=body.ignore_eos,
                chat_template_kwargs=body.template_kwargs(),
            )
        except ValidationError as exc:
            message, param = _validation_message(exc.errors())
            raise ClientError(400, message, param=param) from exc

    # ------------------------------------------------------------------ routes

    # response_model=None on routes that return a dict: FastAPI would otherwise read the return
    # annotation as a response model (the bodies are documented by `responses=` instead)
    @app.get("/v1/models", responses=api.MODELS_RESPONSES, response_model=None)
    async def models(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        return {
            "object": "list",
            "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "qvq-ray"}],
        }

    @app.get("/health", responses=api.HEALTH_RESPONSES)
    async def health(self) -> JSONResponse:
        """Readiness (vLLM's name): 200 while a request sent now will be served, busy or not; 503
        with the reason when no engine replica is running or the one probed is stalled or dead.
        Saturation is a field and the `X-Engine-Saturated` header, never a 503 (serve/health.py).
        Unauthenticated, as load balancers probe it; it reveals no more than the engine's state."""
        report = await self._assess_health()
        return self._health_response(report, ok=report.ready)

    @app.get("/healthz", responses=api.HEALTH_RESPONSES)
    async def healthz(self) -> JSONResponse:
        """The same readiness check as /health (Kubernetes-style name)."""
        return await self.health()

    @app.get("/readyz", responses=api.HEALTH_RESPONSES)
    async def readyz(self) -> JSONResponse:
        """The same readiness check as /health (Kubernetes-style name)."""
        return await self.health()

    @app.get("/livez", responses=api.HEALTH_RESPONSES)
    async def livez(self) -> JSONResponse:
        """Liveness: 503 only when the engine cannot make progress (a replica reports itself stalled
        or dead, or Serve marks the engine deployment UNHEALTHY); starting up and busy are live."""
        report = await self._assess_health()
        return self._health_response(report, ok=report.live)

    async def _assess_health(self) -> "AppHealth":
        from qvq_ray.serve.health import assess

        report = await assess(self.engine, self.app_name, self.config.serve.readiness_timeout_s)
        self.metrics.health(report)
        return report

    def _health_response(self, report: "AppHealth", ok: bool) -> JSONResponse:
        body = {"status": "ok" if ok else "unavailable", "model": self.model_name, **report.model_dump(mode="json")}
        if report.engine is None:  # the probe queued behind user work: no replica's own numbers
            body.pop("engine")
        headers = {"X-Engine-Saturated": "true" if report.saturated else "false"}
        return JSONResponse(body, status_code=200 if ok else 503, headers=headers)

    @app.api_route("/metrics", methods=["GET", "HEAD"], responses=api.METRICS_RESPONSES, response_class=PlainTextResponse)
    async def metrics_text(self) -> Response:
        """Prometheus text (unauthenticated, as vLLM's /metrics and scrapers expect). HEAD answers
        too, as vLLM's mounted Prometheus app does: aiperf probes the route with HEAD first."""
        from fastapi.responses import Response
        from prometheus_client import CONTENT_TYPE_LATEST

        await self._assess_health()
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(self, request: Request) -> JSONResponse:
        self._authorize_docs(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def swagger_docs(self, request: Request) -> HTMLResponse:
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

    @app.post("/v1/chat/completions", openapi_extra=request_body(ChatCompletionRequest), responses=api.CHAT_RESPONSES,
              response_model=None)
    async def chat_completions(self, request: Request) -> dict[str, Any] | StreamingResponse:
        from qvq_ray.prompt import messages_from_openai

        body: ChatCompletionRequest = await self._body(request, ChatCompletionRequest)
        self._check_model(body.model)
        raw_messages = [m.model_dump(exclude_none=True) for m in body.messages]
        self._check_prompt(raw_messages, body.image_count())
        sampling = self._sampling(body)
        try:
            messages = await self._off_loop(
                lambda: messages_from_openai(
                    raw_messages,
                    self._image_loader(),
                    max_images=self.config.model.max_images_per_prompt,
                    system_prompt=self.config.model.system_prompt,
                )
            )
        except ValueError as exc:
            raise ClientError(400, str(exc), param="messages") from exc
        request_id = new_id("chatcmpl")
        if body.stream:
            opened = await self._open_streams([messages], sampling)
            created = int(time.time())

            def chunk(index: int, delta: dict[str, Any], **kw: Any) -> dict[str, Any]:
                return chat_chunk(self.model_name, request_id, created, delta, index=index, **kw)

            return StreamingResponse(
                self._merged_stream(
                    opened, sampling.n, body.stream_options, self.metrics.clock(request, sampling.n),
                    head=lambda i: chunk(i, {"role": "assistant", "content": ""}),
                    delta=lambda i, text, steps: chunk(i, {"content": text}, logprobs=_chat_logprobs(steps)),
                    final=lambda i, c, steps: chunk(i, {}, finish_reason=c.finish_reason, logprobs=_chat_logprobs(steps)),
                    usage=lambda u: {**chat_chunk(self.model_name, request_id, created, {}), "choices": [], "usage": u},
                    logprobs=sampling.logprobs is not None,
                ),
                media_type="text/event-stream",
            )
        completions = await self._generate(messages, sampling)
        self.metrics.clock(request, sampling.n).finish(completions)
        return chat_completion_body(self.model_name, completions, request_id)

    @app.post("/v1/completions", openapi_extra=request_body(CompletionRequest), responses=api.COMPLETION_RESPONSES,
              response_model=None)
    async def completions(self, request: Request) -> dict[str, Any] | StreamingResponse:
        """OpenAI's legacy completions, as vLLM serves them: each prompt (text or token ids) is the
        model's input as is; `echo` puts the prompt (and, with logprobs, its tokens') first."""
        from qvq_ray.engines.base import raw_prompt

        body: CompletionRequest = await self._body(request, CompletionRequest)
        self._check_model(body.model)
        prompts = [raw_prompt(prompt) for prompt in body.prompts()]
        for given, prompt in zip(body.prompts(), prompts):
            self._check_prompt(prompt, 0)
            if isinstance(given, list) and len(given) > self.config.model.max_prompt_chars:
                raise ClientError(400, f"prompt of {len(given)} token ids exceeds this server's limit", param="prompt")
        sampling = self._sampling(body)
        echo = await self._echo_texts(body) if body.echo else None
        request_id = new_id("cmpl")
        if body.stream:
            opened = await self._open_streams(prompts, sampling)
            created = int(time.time())

            def chunk(index: int, text: str, finish: str | None = None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
                return {"id": request_id, "object": "text_completion", "created": created, "model": self.model_name,
                        "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]}

            def logprobs(steps: list[Any] | None, start: int) -> dict[str, Any] | None:
                return legacy_logprobs_body(None, steps, start) if steps is not None else None

            return StreamingResponse(
                self._merged_stream(
                    opened, sampling.n, body.stream_options, self.metrics.clock(request, sampling.n),
                    head=(lambda i: chunk(i, echo[i // sampling.n])) if echo is not None else None,
                    delta=lambda i, text, steps: chunk(i, text, logprobs=logprobs(steps, 0)),
                    final=lambda i, c, steps: chunk(i, "", c.finish_reason, logprobs(steps, 0)),
                    usage=lambda u: {"id": request_id, "object": "text_completion", "created": created,
                                     "model": self.model_name, "choices": [], "usage": u},
                    logprobs=sampling.logprobs is not None,
                ),
                media_type="text/event-stream",
            )
        per_prompt = await asyncio.gather(*(self._generate(prompt, sampling) for prompt in prompts))
        completions = [c for group in per_prompt for c in group]
        if body.max_tokens == 0:  # echo alone
            completions = [echo_only(c) for c in completions]
        self.metrics.clock(request, sampling.n).finish(completions)
        return text_completion_body(self.model_name, completions, request_id, sampling.n, echo=echo)

    async def _echo_texts(self, body: CompletionRequest) -> list[str]:
        """Each prompt's text for echo: as sent, or its token ids decoded by the engine's tokenizer."""
        texts = []
        for prompt in body.prompts():
            texts.append(prompt if isinstance(prompt, str) else await self._tokenizer_call(self.engine.detokenize, prompt))
        return texts

    async def _tokenizer_call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            if (client_error := _as_client_error(exc)) is not None:
                raise client_error from exc
            raise

    @app.post("/tokenize", openapi_extra=request_body(TokenizeCompletionRequest), responses=api.TOKENIZE_RESPONSES,
              response_model=None)
    async def tokenize(self, request: Request) -> dict[str, Any]:
        """vLLM's /tokenize: `prompt` (as /v1/completions tokenizes it) or `messages` (as
        /v1/chat/completions builds its prompt, images' tokens included) -> count, max_model_len, tokens."""
        from qvq_ray.engines.base import raw_prompt
        from qvq_ray.prompt import messages_from_openai
        from qvq_ray.serve.http_body import parse_json_object, read_body

        self._authorize(request)
        data = parse_json_object(await read_body(request, self.config.serve.max_request_bytes))
        chat = isinstance(data, dict) and "messages" in data
        body: TokenizeChatRequest | TokenizeCompletionRequest = (
            self._validated(data, TokenizeChatRequest) if chat else self._validated(data, TokenizeCompletionRequest)
        )
        self._check_model(body.model)
        if isinstance(body, TokenizeChatRequest):  # `chat`
            raw_messages = [m.model_dump(exclude_none=True) for m in body.messages]
            self._check_prompt(raw_messages, body.image_count())
            try:
                messages = await self._off_loop(
                    lambda: messages_from_openai(
                        raw_messages, self._image_loader(), max_images=self.config.model.max_images_per_prompt,
                        system_prompt=self.config.model.system_prompt,
                    )
                )
            except ValueError as exc:
                raise ClientError(400, str(exc), param="messages") from exc
            options = {"add_generation_prompt": body.add_generation_prompt, "chat_template_kwargs": body.chat_template_kwargs}
        else:
            messages = raw_prompt(body.prompt)
            self._check_prompt(messages, 0)
            options = {}
        result = await self._tokenizer_call(
            self.engine.tokenize, messages, add_special_tokens=body.add_special_tokens, **options
        )
        tokens = result["tokens"]
        return {"count": len(tokens), "max_model_len": result["max_model_len"], "tokens": tokens}

    @app.post("/detokenize", openapi_extra=request_body(DetokenizeRequest), responses=api.DETOKENIZE_RESPONSES,
              response_model=None)
    async def detokenize(self, request: Request) -> dict[str, Any]:
        """vLLM's /detokenize: {tokens} -> {prompt}."""
        body: DetokenizeRequest = await self._body(request, DetokenizeRequest)
        self._check_model(body.model)
        return {"prompt": await self._tokenizer_call(self.engine.detokenize, body.tokens)}

    @app.get("/tokenizer_info", responses=api.TOKENIZER_INFO_RESPONSES, response_model=None)
    async def tokenizer_info(self, request: Request) -> dict[str, Any]:
        """vLLM's /tokenizer_info: the tokenizer's class and configuration (lm-eval's remote tokenizer reads it)."""
        self._authorize(request)
        return await self._tokenizer_call(self.engine.tokenizer_info)

    @app.get("/version", responses=api.VERSION_RESPONSES, response_model=None)
    async def version(self) -> dict[str, str]:
        """The server's version (vLLM's route; unauthenticated, as vLLM's)."""
        from qvq_ray import __version__

        return {"version": __version__}

    async def _generate(self, messages: list[dict[str, Any]], sampling: SamplingConfig) -> list[Completion]:
        try:
            return await self.engine.generate(messages, sampling)
        except Exception as exc:
            if (client_error := _as_client_error(exc)) is not None:
                raise client_error from exc
            raise

    async def _open_streams(self, prompts: list[Any], sampling: SamplingConfig) -> tuple[list[Any], list[Any], list[list[int]]]:
        """Single-sample engine streams for every prompt, primed (the engine refuses a bad prompt
        before its first delta, so that is a 4xx here, not an in-band error after a 200), and the
        choice indexes (prompt x n + sample) each stream speaks for."""
        samples = _one_sample_each(sampling)
        copies = sampling.n // len(samples)  # n for greedy: one stream serves every choice
        streams, targets = [], []
        for p, prompt in enumerate(prompts):
            for k, one in enumerate(samples):
                streams.append(self.engine.stream(prompt, one))
                first = p * sampling.n + k * copies
                targets.append(list(range(first, first + copies)))
        # every first item awaited to the end (a stream cannot be closed while its anext runs)
        firsts = await asyncio.gather(*(anext(stream) for stream in streams), return_exceptions=True)
        failed = next((item for item in firsts if isinstance(item, BaseException)), None)
        if failed is not None:
            for stream in streams:
                await stream.aclose()
            if (client_error := _as_client_error(failed)) is not None:
                raise client_error from failed
            raise failed
        return streams, firsts, targets

    async def _merged_stream(
        self,
        opened: tuple[list[Any], list[Any], list[list[int]]],
        n: int,
        stream_options: "StreamOptions | None",
        clock: "RequestClock",
        *,
        head: Callable[[int], dict[str, Any]] | None,
        delta: Callable[[int, str, list[Any] | None], dict[str, Any]],
        final: Callable[[int, Any, list[Any] | None], dict[str, Any]],
        usage: Callable[[dict[str, Any]], dict[str, Any]],
        logprobs: bool = False,
    ) -> AsyncIterator[str]:
        """SSE of several samples streamed side by side, each chunk naming its choice `index` (as
        vLLM streams n > 1 and prompt lists; a stream may speak for several identical choices); each
        chunk carries the log-probabilities of its text's tokens (`_StreamedChoice`), the finishing
        one the rest; with stream_options.include_usage one last chunk carries the usage, and with
        continuous_usage_stats every chunk carries its choice's usage so far."""
        streams, firsts, targets = opened
        sent = [_StreamedChoice(logprobs) for _ in streams]
        continuous = stream_options is not None and stream_options.continuous_usage_stats

        def counted(chunk: dict[str, Any], choice: _StreamedChoice) -> dict[str, Any]:
            return _with_usage(chunk, choice.usage) if continuous else chunk

        choices = sum(len(t) for t in targets)
        events: asyncio.Queue[tuple[list[int], Any, _StreamedChoice]] = asyncio.Queue()

        async def pump(indexes: list[int], stream: AsyncIterator[Any], first: Any, choice: _StreamedChoice) -> None:
            try:
                await events.put((indexes, first, choice))
                if isinstance(first, str):
                    async for item in stream:
                        await events.put((indexes, item, choice))
            except Exception as exc:
                await events.put((indexes, exc, choice))

        if head is not None:
            for choice, first, indexes in zip(sent, firsts, targets):
                choice.start(first)
                for index in indexes:
                    yield _sse(counted(head(index), choice))
        pumps = [asyncio.ensure_future(pump(t, s, f, c)) for t, s, f, c in zip(targets, streams, firsts, sent)]
        finals: dict[int, Any] = {}
        try:
            while len(finals) < choices:
                indexes, item, choice = await events.get()
                if isinstance(item, Exception):  # headers are sent: report in-band, as OpenAI-compatible servers do
                    kind = "invalid_request_error" if _as_client_error(item) is not None else "server_error"
                    yield _sse(error_body(f"generation failed: {remote_cause(item)}", type=kind))
                    break
                if isinstance(item, str):
                    clock.token(indexes)
                steps = choice.delta(item) if isinstance(item, str) else choice.final(item)
                for index in indexes:
                    if isinstance(item, str):
                        yield _sse(counted(delta(index, item, steps), choice))
                    else:
                        finals[index] = item
                        yield _sse(counted(final(index, item, steps), choice))
            if len(finals) == choices:
                ordered = [finals[i] for i in range(choices)]
                clock.completions = ordered
                if stream_options is not None and stream_options.include_usage:
                    yield _sse(usage(usage_body(ordered, n)))
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)  # no stream is mid-step when closed
            for stream in streams:
                await stream.aclose()  # a client that went away aborts its generations
        yield "data: [DONE]\n\n"
        clock.finish()  # the last byte went out: end-to-end latency includes the whole stream

    async def _stream_solve(self, solver: "Solver", problem: "Problem", image_bytes: list[bytes]) -> AsyncIterator[str]:
        """One `attempt` event per judged (or failed: `error` set) attempt, then the `solution` (or an `error`), then [DONE]."""
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def on_attempt(index: int, attempt: "Attempt") -> None:
            await events.put({"event": "attempt", "index": index, "attempt": attempt.model_dump(mode="json")})

        async def run() -> None:
            try:
                solution = await solver.solve(problem, image_bytes=image_bytes, on_attempt=on_attempt)
                self.metrics.solution(solution)
                await events.put({"event": "solution", "solution": solution.model_dump(mode="json")})
            except Exception as exc:
                await events.put({"event": "error", **error_body(f"solve failed: {remote_cause(exc)}", type="server_error")})
            await events.put(None)

        task = asyncio.ensure_future(run())
        try:
            while (event := await events.get()) is not None:
                yield _sse(event)
            yield "data: [DONE]\n\n"
        finally:
            task.cancel()  # the client went away: stop solving

    @app.post("/v1/solve", openapi_extra=request_body(SolveRequest), responses=api.SOLVE_RESPONSES, response_model=None)
    async def solve(self, request: Request) -> dict[str, Any] | StreamingResponse:
        from pydantic import ValidationError

        from qvq_ray.problem import ImageRef, Problem

        body: SolveRequest = await self._body(request, SolveRequest)
        self._check_prompt([{"content": body.question}, *({"content": c} for c in body.choices)], len(body.images))
        max_tokens = self._max_tokens(body.max_tokens) if body.max_tokens else None
        load = self._image_loader()
        image_bytes = await self._off_loop(lambda: [load(url) for url in body.images])
        try:
            problem = Problem.model_validate(dict(
                id=body.id or new_id("solve"),
                question=body.question,
                images=[ImageRef(path="<request>") for _ in image_bytes],
                choices=body.choices,
                answer_type=body.answer_type,
                unit=body.unit,
                tolerance=body.tolerance,
                source="api",
            ))
        except ValidationError as exc:
            message, param = _validation_message(exc.errors())
            raise ClientError(400, message, param=param) from exc
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
        self.metrics.solution(solution)
        return solution.model_dump(mode="json")
