"""The Engine contract every backend (transformers, vLLM, remote OpenAI) implements.

Messages use the chat-template shape that transformers' Qwen2-VL processor expects:
`{"role": "user", "content": [{"type": "image", "image": <bytes>}, {"type": "text", "text": "..."}]}`.
Images travel as encoded bytes, not PIL objects, so messages pickle cheaply across Ray (a Serve
handle call or an actor boundary) and every engine decodes them the same way.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from qvq_ray.config import SamplingConfig

Message = dict[str, Any]
FinishReason = Literal["stop", "length", "abort"]


class Completion(BaseModel):
    """One generated sample."""

    text: str
    finish_reason: FinishReason = Field(..., description="'stop' (EOS or stop string), 'length' (max_tokens), 'abort'.")
    prompt_tokens: int = Field(0, description="Tokens of the prompt, visual tokens included.")
    completion_tokens: int = Field(0, description="Tokens generated for this sample.")
    latency_s: float = Field(0.0, description="Time from request to this sample's end.")


class EngineError(RuntimeError):
    """An engine failed to serve a request (the request, not the caller, is at fault or unlucky)."""


class EngineOverloadedError(EngineError):
    """The engine is up but cannot take this request now (its queue is full, admission control
    refused it, or it failed in a way the engine marks retryable): the same request may succeed
    later or on another replica. The HTTP front end answers 503; callers may retry with backoff."""

    retryable = True


class InvalidRequestError(ValueError):
    """The request itself is bad (too many images, prompt too long...): a 4xx, never retried."""


@runtime_checkable
class Engine(Protocol):
    """Async text generation over chat messages with images. Implementations own batching.

    These four methods and `model_name` are all the solver, the batch actors and the Serve
    deployment call: an engine that has them is an engine, nothing is looked up by `getattr`.
    """

    model_name: str

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        """Return `sampling.n` completions for one prompt."""
        ...

    def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncIterator[str | Completion]:
        """An async generator over one sample (n must be 1, else InvalidRequestError): its text
        deltas (`str`, never empty) as they are generated, then exactly one final `Completion`
        (whole text, token counts, finish reason); the deltas joined are exactly its `text`.

        Closing the generator early (`aclose()`: a client went away, the solver cut a loop) aborts
        the request on the engine, so its tokens are not spent.
        """
        ...

    async def check_health(self) -> None:
        """Raise if the engine cannot serve (used by Serve health checks)."""
        ...

    async def close(self) -> None: ...


def split_images(
    messages: list[Message], *, max_images: int, decode: Any = None
) -> tuple[list[Message], list[Any]]:
    """Chat messages -> (template messages with `{"type": "image"}` placeholders, decoded images).

    Shared by the in-process engines: the chat template renders one
    `<|vision_start|><|image_pad|><|vision_end|>` per placeholder, in order, and the images go to
    the processor (transformers) or `multi_modal_data` (vLLM). A bad request raises
    InvalidRequestError naming what is wrong; nothing else is raised for client input.
    """
    if decode is None:
        from qvq_ray.images import decode_image as decode
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list")
    template_messages: list[Message] = []
    images: list[Any] = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"unsupported message role: {role!r}")
        content = message.get("content")
        if isinstance(content, str):
            template_messages.append({"role": role, "content": [{"type": "text", "text": content}]})
            continue
        parts: list[dict[str, Any]] = []
        for part in content or []:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image":
                data = part.get("image")
                if not isinstance(data, (bytes, bytearray)):
                    raise InvalidRequestError("image parts must carry encoded image bytes")
                try:
                    images.append(decode(bytes(data)))
                except Exception as exc:
                    raise InvalidRequestError(f"cannot decode image: {exc}") from exc
                parts.append({"type": "image"})
            elif kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            else:
                raise InvalidRequestError(f"unsupported content part type: {kind!r}")
        template_messages.append({"role": role, "content": parts})
    if len(images) > max_images:
        raise InvalidRequestError(f"{len(images)} images in one prompt; the limit is {max_images}")
    return template_messages, images
