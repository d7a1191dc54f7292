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


class InvalidRequestError(ValueError):
    """The request itself is bad (too many images, prompt too long...): a 4xx, never retried."""


@runtime_checkable
class Engine(Protocol):
    """Async text generation over chat messages with images. Implementations own batching."""

    model_name: str

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        """Return `sampling.n` completions for one prompt."""
        ...

    async def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncIterator[str]:
        """Yield text deltas of one sample (n must be 1)."""
        ...

    async def check_health(self) -> None:
        """Raise if the engine cannot serve (used by Serve health checks)."""
        ...

    async def close(self) -> None: ...
