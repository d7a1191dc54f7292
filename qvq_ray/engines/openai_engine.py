"""The OpenAI-compatible engine: any chat-completions endpoint as an `Engine`.

A `vllm serve` server, a hosted QVQ, or another qvq-ray app: `POST {base_url}/chat/completions`
over httpx (a core dependency; the `openai` package is not needed). What it does:

- images travel as `image_url` parts with data URLs (the bytes' own format; anything else is
  decoded and re-encoded as PNG, and undecodable bytes are refused before any request);
- sampling is explicit: temperature, top_p, max_tokens, n, seed and stop always; top_k and
  repetition_penalty too unless `send_extra_sampling` is off (a `vllm serve` would otherwise apply
  the checkpoint's generation_config). Greedy with n > 1 asks for one sample and repeats it
  (greedy is deterministic; vLLM refuses greedy n > 1);
- at most `max_concurrency` requests in flight per engine;
- 429, 5xx, timeouts and dropped connections are retried with exponential backoff and jitter
  (Retry-After honoured), at most `max_retries` times; other 4xx never are. An endpoint still
  answering 429 or 503 when retries run out raises EngineOverloadedError (retryable: our own
  ingress answers 503), any other failure an EngineError. 400/413/422 become
  InvalidRequestError (the request is bad); 401/403/404 an EngineError naming the likely
  misconfiguration (key, base_url, model);
- streaming reads the SSE stream (`stream_options.include_usage` for token counts); a failure
  before the first delta is retried like any request, after it is reported.

Token counts per sample: the chat API reports usage for the whole request. With n = 1 (every
solver attempt) they are exact; with n > 1 a sample that hit max_tokens counts max_tokens and the
rest of the total is shared by the other samples in proportion to their text length.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import time
from contextlib import aclosing
from typing import Any, AsyncIterator

from qvq_ray.config import ModelConfig, OpenAIEngineConfig, QvqConfig, SamplingConfig
from qvq_ray.engines.base import Completion, EngineError, EngineOverloadedError, FinishReason, InvalidRequestError, Message

logger = logging.getLogger(__name__)

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
_INVALID_REQUEST_STATUSES = {400, 413, 422}


# --------------------------------------------------------------------------- pure parts


def image_mime(data: bytes) -> str | None:
    """The MIME type of encoded image bytes from their magic number, or None."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_data_url(data: bytes) -> str:
    """A data URL for encoded image bytes; other formats are re-encoded as PNG."""
    data = bytes(data)
    mime = image_mime(data)
    if mime is None:
        import io

        from qvq_ray.images import decode_image

        try:
            image = decode_image(data)
        except Exception as exc:
            raise InvalidRequestError(f"cannot decode image: {exc}") from exc
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our chat messages in the OpenAI shape (image bytes -> data URLs)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list")
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"unsupported message role: {role!r}")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for part in content or []:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image":
                data = part.get("image")
                if not isinstance(data, (bytes, bytearray)):
                    raise InvalidRequestError("image parts must carry encoded image bytes")
                parts.append({"type": "image_url", "image_url": {"url": image_data_url(bytes(data))}})
            else:
                raise InvalidRequestError(f"unsupported content part type: {kind!r}")
        out.append({"role": role, "content": parts})
    return out


def chat_request_body(
    model: str, messages: list[dict[str, Any]], sampling: SamplingConfig, *, stream: bool, extra_sampling: bool
) -> tuple[dict[str, Any], int]:
    """The chat-completions body for one request, and how often to repeat its samples."""
    greedy = sampling.temperature == 0
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "temperature": sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "n": 1 if greedy else sampling.n,
        "stream": stream,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if extra_sampling:
        body["top_k"] = 0 if greedy else sampling.top_k
        body["repetition_penalty"] = sampling.repetition_penalty
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body, (sampling.n if greedy else 1)


def finish_reason_from_openai(reason: str | None) -> FinishReason:
    if reason == "length":
        return "length"
    if reason in (None, "abort", "cancelled"):
        return "abort"
    return "stop"  # stop, eos, content_filter, tool_calls: the sample ended by itself


def split_completion_tokens(total: int, texts: list[str], finish: list[str], max_tokens: int) -> list[int]:
    """Per-sample token counts from a request's total (exact for one sample; see module doc)."""
    if len(texts) == 1:
        return [total]
    counts = [max_tokens if f == "length" else 0 for f in finish]
    rest = [i for i, f in enumerate(finish) if f != "length"]
    remaining = max(total - sum(counts), 0)
    if rest:
        weights = [max(len(texts[i]), 1) for i in rest]
        shares = [remaining * w // sum(weights) for w in weights]
        shares[-1] += remaining - sum(shares)
        for i, share in zip(rest, shares):
            counts[i] = min(share, max_tokens)
    return counts


def completions_from_response(body: dict[str, Any], *, repeat: int, max_tokens: int, latency_s: float) -> list[Completion]:
    choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
    if not choices:
        raise EngineError(f"endpoint returned no choices: {json.dumps(body)[:300]}")
    texts = [((c.get("message") or {}).get("content") or "") for c in choices]
    finish = [finish_reason_from_openai(c.get("finish_reason")) for c in choices]
    usage = body.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    counts = split_completion_tokens(int(usage.get("completion_tokens") or 0), texts, finish, max_tokens)
    completions = [
        Completion(text=t, finish_reason=f, prompt_tokens=prompt_tokens, completion_tokens=k, latency_s=latency_s)
        for t, f, k in zip(texts, finish, counts)
    ]
    if repeat > 1:
        completions = [c.model_copy() for c in completions for _ in range(repeat)]
    return completions


def error_message(status: int, text: str) -> str:
    """The server's own error message, from OpenAI's shape, FastAPI's, or plain text."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text.strip()[:500] or f"HTTP {status}"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if "detail" in data:
            return str(data["detail"])[:500]
        if "message" in data:
            return str(data["message"])[:500]
    return text.strip()[:500]


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status


def _gave_up(message: str, exc: Exception) -> EngineError:
    """The error once retries run out: an endpoint still answering 429 or 503 is overloaded, which
    stays retryable for our own callers (the ingress answers 503); anything else is an EngineError."""
    if getattr(exc, "status", None) in (429, 503):
        return EngineOverloadedError(message)
    return EngineError(message)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def raise_for_status(status: int, text: str, headers: Any, url: str) -> None:
    """Map an HTTP status to a retry (429/5xx) or the right error (never retried)."""
    if status < 400:
        return
    message = error_message(status, text)
    if status == 429 or status >= 500:
        raise _Retryable(f"HTTP {status}: {message}", _retry_after(headers), status)
    if status in _INVALID_REQUEST_STATUSES:
        raise InvalidRequestError(f"the endpoint rejected the request (HTTP {status}): {message}")
    hint = {
        401: "check the API key (engine.api_key_env / engine.api_key)",
        403: "the API key may not use this model or endpoint",
        404: "check engine.base_url (it should end in /v1) and the model name",
    }.get(status, "")
    raise EngineError(f"{url} answered HTTP {status}: {message}" + (f" ({hint})" if hint else ""))


# --------------------------------------------------------------------------- the engine


class OpenAIEngine:
    """`Engine` over an OpenAI-compatible chat-completions endpoint."""

    def __init__(self, model: ModelConfig, engine: OpenAIEngineConfig):
        if not engine.base_url:
            raise ValueError("engine.kind 'openai' needs engine.base_url, e.g. 'http://host:8000/v1'")
        self.model_config = model
        self.engine_config = engine
        self.base_url = engine.base_url.rstrip("/")
        self.model_name = engine.remote_model or model.served_model_name or model.path
        self._per_loop: dict[int, tuple[asyncio.AbstractEventLoop, Any, asyncio.Semaphore]] = {}
        self._closed = False

    @classmethod
    def from_config(cls, config: QvqConfig) -> "OpenAIEngine":
        return cls(config.model, config.engine)

    # ------------------------------------------------------------------ plumbing

    def _headers(self) -> dict[str, str]:
        key = self.engine_config.api_key or os.environ.get(self.engine_config.api_key_env)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _client(self) -> tuple[Any, asyncio.Semaphore]:
        """One httpx client and one concurrency gate per event loop (clients are loop-bound)."""
        import httpx

        if self._closed:
            raise EngineError("engine is closed")
        loop = asyncio.get_running_loop()
        entry = self._per_loop.get(id(loop))
        if entry is None or entry[0] is not loop or entry[1].is_closed:
            cfg = self.engine_config
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s),
                limits=httpx.Limits(max_connections=cfg.max_concurrency, max_keepalive_connections=cfg.max_concurrency),
            )
            entry = (loop, client, asyncio.Semaphore(cfg.max_concurrency))
            self._per_loop = {k: v for k, v in self._per_loop.items() if not v[0].is_closed()}
            self._per_loop[id(loop)] = entry
        return entry[1], entry[2]

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        cfg = self.engine_config
        if retry_after is not None:
            return min(retry_after, cfg.retry_backoff_max_s)
        base = min(cfg.retry_backoff_s * (2**attempt), cfg.retry_backoff_max_s)
        return base * (0.5 + random.random() / 2)

    async def _with_retries(self, what: str, call):
        """Run `call()` (one attempt) until it succeeds, fails for good, or retries run out."""
        import httpx

        attempts = self.engine_config.max_retries + 1
        for attempt in range(attempts):
            try:
                return await call()
            except (_Retryable, httpx.TimeoutException, httpx.TransportError) as exc:
                reason = str(exc) or type(exc).__name__
                if isinstance(exc, httpx.TimeoutException):
                    reason = f"timed out ({type(exc).__name__})"
                elif isinstance(exc, httpx.TransportError):
                    reason = f"connection failed ({type(exc).__name__}: {exc})"
                if attempt + 1 >= attempts:
                    raise _gave_up(f"{what} at {self.base_url} failed after {attempts} attempt(s): {reason}", exc) from exc
                delay = self._delay(attempt, getattr(exc, "retry_after", None))
                logger.warning("%s: %s; retry %d/%d in %.2fs", what, reason, attempt + 1, attempts - 1, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ Engine API

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        started = time.perf_counter()
        body, repeat = chat_request_body(
            self.model_name, openai_messages(messages), sampling, stream=False,
            extra_sampling=self.engine_config.send_extra_sampling,
        )
        url = f"{self.base_url}/chat/completions"

        async def once() -> dict[str, Any]:
            client, gate = self._client()
            async with gate:
                response = await client.post(url, json=body, headers=self._headers())
            raise_for_status(response.status_code, response.text, response.headers, url)
            try:
                return response.json()
            except ValueError as exc:
                raise EngineError(f"{url} returned a body that is not JSON: {response.text[:200]!r}") from exc

        data = await self._with_retries("chat completion", once)
        return completions_from_response(
            data, repeat=repeat, max_tokens=sampling.max_tokens, latency_s=time.perf_counter() - started
        )

    async def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncIterator[str | Completion]:
        """Text deltas of the one sample as the endpoint streams them, then the final Completion.

        Closing it early closes the HTTP stream; the server sees its client go and aborts."""
        if sampling.n != 1:
            raise InvalidRequestError("streaming supports n=1 per request")
        started = time.perf_counter()
        body, _ = chat_request_body(
            self.model_name, openai_messages(messages), sampling, stream=True,
            extra_sampling=self.engine_config.send_extra_sampling,
        )
        url = f"{self.base_url}/chat/completions"
        attempts = self.engine_config.max_retries + 1
        for attempt in range(attempts):
            state = _StreamState()
            try:
                # aclosing: a consumer that stops early closes the HTTP stream at once (the server
                # sees the client go and aborts the generation).
                async with aclosing(self._stream_once(url, body, state)) as deltas:
                    async for delta in deltas:
                        yield delta
                break
            except Exception as exc:
                import httpx

                retryable = isinstance(exc, (_Retryable, httpx.TimeoutException, httpx.TransportError))
                if not retryable:
                    raise
                reason = str(exc) or type(exc).__name__
                if state.deltas:
                    raise EngineError(f"streamed chat completion at {self.base_url} failed mid-stream: {reason}") from exc
                if attempt + 1 >= attempts:
                    raise _gave_up(
                        f"streamed chat completion at {self.base_url} failed after {attempts} attempt(s): {reason}", exc
                    ) from exc
                delay = self._delay(attempt, getattr(exc, "retry_after", None))
                logger.warning("streamed chat completion: %s; retry %d/%d in %.2fs", reason, attempt + 1, attempts - 1, delay)
                await asyncio.sleep(delay)
        if state.finish is None:
            raise EngineError(f"the stream from {url} ended without a finish_reason")
        completion_tokens = state.usage.get("completion_tokens")
        yield Completion(
            text=state.text,
            finish_reason=finish_reason_from_openai(state.finish),
            prompt_tokens=int(state.usage.get("prompt_tokens") or 0),
            # Without usage (a server ignoring stream_options), one content chunk ~ one token.
            completion_tokens=int(completion_tokens if completion_tokens is not None else state.deltas),
            latency_s=time.perf_counter() - started,
        )

    async def _stream_once(self, url: str, body: dict[str, Any], state: "_StreamState") -> AsyncIterator[str]:
        client, gate = self._client()
        async with gate:
            async with client.stream("POST", url, json=body, headers=self._headers()) as response:
                if response.status_code >= 400:
                    text = (await response.aread()).decode("utf-8", "replace")
                    raise_for_status(response.status_code, text, response.headers, url)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        chunk = json.loads(payload)
                    except json.JSONDecodeError as exc:
                        raise EngineError(f"bad SSE chunk from {url}: {payload[:200]!r}") from exc
                    if "error" in chunk:  # reported in-band after the headers were sent
                        error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": chunk["error"]}
                        message = f"the endpoint reported: {error.get('message')}"
                        if error.get("type") == "invalid_request_error":
                            raise InvalidRequestError(message)
                        raise EngineError(message)
                    if chunk.get("usage"):
                        state.usage = chunk["usage"]
                    for choice in chunk.get("choices") or []:
                        if choice.get("index", 0) != 0:
                            continue
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            state.text += content
                            state.deltas += 1
                            yield content
                        if choice.get("finish_reason"):
                            state.finish = choice["finish_reason"]

    async def check_health(self) -> None:
        """GET {base_url}/models (once, no retries): the endpoint answers and lists our model."""
        import httpx

        client, _ = self._client()
        url = f"{self.base_url}/models"
        try:
            response = await client.get(url, headers=self._headers(), timeout=self.engine_config.connect_timeout_s + 20)
        except httpx.HTTPError as exc:
            raise EngineError(f"{url} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise EngineError(f"{url} answered HTTP {response.status_code}: {error_message(response.status_code, response.text)}")
        try:
            ids = [m.get("id") for m in response.json().get("data", [])]
        except Exception:
            return  # answered; a server without a model list is still serving
        if ids and self.model_name not in ids:
            raise EngineError(f"{self.base_url} does not serve model {self.model_name!r}; it lists {ids}")

    async def close(self) -> None:
        self._closed = True
        entries, self._per_loop = list(self._per_loop.values()), {}
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for owner, client, _ in entries:
            if owner is loop:
                await client.aclose()


class _StreamState:
    def __init__(self):
        self.text = ""
        self.deltas = 0
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}


__all__ = [
    "OpenAIEngine",
    "chat_request_body",
    "completions_from_response",
    "image_data_url",
    "openai_messages",
    "raise_for_status",
    "split_completion_tokens",
]
