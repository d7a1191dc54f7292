"""What each route answers, as models /openapi.json documents (clients and generators read them).

The handlers build their bodies with the helpers in serve/openai_api.py (dicts, streamed as SSE
where asked); these models only describe them. tests/test_serve_fuzz.py checks live answers against
them, so a body and its description cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from qvq_ray.engines.base import TokenLogprob


class ErrorDetail(BaseModel):
    message: str
    type: Literal["invalid_request_error", "server_error"] = Field(..., description="Client mistake (4xx) or ours (5xx).")
    param: str | None = Field(None, description="The request field at fault, when one is.")
    code: str | None = Field(None, description="e.g. invalid_api_key, model_not_found, engine_overloaded.")


class ErrorResponse(BaseModel):
    """OpenAI's error object: every 4xx and 5xx, and an in-band `data:` event of a failed stream."""

    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob] = Field(..., description="Per generated token; their `token`s joined are the text.")


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "abort"] | None
    logprobs: ChatLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: Literal["stop", "length", "abort"] | None = None
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed chat (`text/event-stream`; the stream ends with `data: [DONE]`).
    The last chunk has empty `choices` and the `usage` when stream_options.include_usage is set."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class LegacyLogprobs(BaseModel):
    """With echo the prompt's tokens come first; its first token has no log-probability (null)."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = Field(..., description="prompt index x n + sample index.")
    text: str
    logprobs: LegacyLogprobs | None = None
    finish_reason: Literal["stop", "length", "abort"] | None = None


class TextCompletion(BaseModel):
    """/v1/completions' body, and (with `finish_reason` null until a choice ends) each streamed event."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TokenizeResponse(BaseModel):
    """vLLM's /tokenize answer."""

    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    """vLLM's /detokenize answer."""

    prompt: str


class TokenizerInfo(BaseModel):
    """vLLM's /tokenizer_info: the tokenizer's class and configuration (tokenizer_config.json's keys)."""

    model_config = {"extra": "allow"}

    tokenizer_class: str


class VersionBody(BaseModel):
    version: str = Field(..., description="qvq-ray's version.")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class HealthBody(BaseModel):
    """/health, /healthz, /readyz and /livez (serve/health.py): 200 or 503, the same fields."""

    status: Literal["ok", "unavailable"]
    model: str
    live: bool
    ready: bool
    saturated: bool = Field(..., description="Also the X-Engine-Saturated header.")
    reason: str | None = None
    engine: dict[str, Any] | None = Field(None, description="The probed engine replica's own state (EngineHealth).")
    replicas: dict[str, Any] | None = Field(None, description="Serve's controller's count, when the probe queued.")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    words = {
        400: "The request is malformed or over a limit (body size, prompt characters, images, max_tokens).",
        401: "Missing or wrong API key (only when the server has keys).",
        404: "No such model (the `model` field names another).",
        413: "The body is larger than serve.max_request_bytes.",
        500: "A server error (a bug: please report it).",
        503: "The engine is overloaded (retry with backoff).",
    }
    return {code: {"model": ErrorResponse, "description": words[code]} for code in codes}


def _json_or_sse(body: type[BaseModel], events: str) -> dict[str, Any]:
    """A 200 that is `body` as JSON, or with `stream: true` Server-Sent Events."""
    stream = {"type": "string", "description": f"{events}, then `data: [DONE]`."}
    return {"model": body, "description": "JSON; with `stream: true`, server-sent events.",
            "content": {"text/event-stream": {"schema": stream}}}


def _solution() -> type[BaseModel]:
    from qvq_ray.problem import Solution

    return Solution


#: FastAPI's `responses=` of a route: status -> its OpenAPI description (and model).
Responses = dict[int | str, dict[str, Any]]

CHAT_RESPONSES: Responses = {
    200: _json_or_sse(ChatCompletion, "`data: <ChatCompletionChunk>` events"), **_errors(400, 401, 404, 413, 500, 503)
}
COMPLETION_RESPONSES: Responses = {
    200: _json_or_sse(TextCompletion, "`data: <TextCompletion>` events"), **_errors(400, 401, 404, 413, 500, 503)
}
SOLVE_RESPONSES: Responses = {
    200: _json_or_sse(
        _solution(), "`data: {event: attempt, index, attempt}` per attempt, then `{event: solution, solution}` or `{event: error, error}`"
    ),
    **_errors(400, 401, 413, 500, 503),
}
TOKENIZE_RESPONSES: Responses = {200: {"model": TokenizeResponse, "description": "The prompt's token ids."}, **_errors(400, 401, 404, 413)}
DETOKENIZE_RESPONSES: Responses = {200: {"model": DetokenizeResponse, "description": "The tokens' text."}, **_errors(400, 401, 404, 413)}
TOKENIZER_INFO_RESPONSES: Responses = {200: {"model": TokenizerInfo, "description": "The tokenizer's configuration."}, **_errors(401)}
VERSION_RESPONSES: Responses = {200: {"model": VersionBody, "description": "The server's version."}}
MODELS_RESPONSES: Responses = {200: {"model": ModelList, "description": "The served model."}, **_errors(401)}
HEALTH_RESPONSES: Responses = {200: {"model": HealthBody, "description": "Ready (or, for /livez, live)."}, 503: {"model": HealthBody, "description": "Not ready (or, for /livez, not live): the reason is in the body."}}
METRICS_RESPONSES: Responses = {200: {"description": "Prometheus text format (text/plain; version=0.0.4)."}}
