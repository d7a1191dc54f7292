"""Request/response shapes of the HTTP API: the OpenAI chat subset we serve, and /v1/solve.

Requests are validated by pydantic; every error leaves as OpenAI's error object
`{"error": {"message", "type", "param", "code"}}` with a 4xx for the client's mistakes.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """The OpenAI chat-completions fields we honour; unknown OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    seed: int | None = None
    stop: str | list[str] | None = None
    top_k: int | None = Field(None, ge=0, description="vLLM-style extension; 0 = off.")
    repetition_penalty: float | None = Field(None, gt=0, description="vLLM-style extension; 1.0 = off.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if value is None:
            return None
        values = [value] if isinstance(value, str) else value
        if len(values) > 4:
            raise ValueError("at most 4 stop sequences")
        return values


class SolveRequest(BaseModel):
    """A problem to solve online. No gold answer: online solving is always the gold-free `self` mode."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Caller's id, echoed back.")
    question: str = Field(..., min_length=1)
    images: list[str] = Field(default_factory=list, description="Images as data URLs or base64 strings.")
    choices: list[str] = Field(default_factory=list)
    answer_type: str | None = None
    unit: str | None = None
    tolerance: float | None = None
    max_attempts: int | None = Field(None, ge=1, le=16, description="Override the policy's attempt budget.")
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = Field(False, description="Server-sent events: one per attempt, then the solution.")

    @model_validator(mode="before")
    @classmethod
    def _no_gold(cls, data):
        if isinstance(data, dict) and ({"answer", "gold"} & set(data)):
            raise ValueError("gold answers are not accepted: online solving never looks at gold (mode 'self')")
        return data


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def chat_completion_body(model: str, completions: list[Any], request_id: str) -> dict:
    prompt_tokens = completions[0].prompt_tokens if completions else 0
    completion_tokens = sum(c.completion_tokens for c in completions)
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
                "logprobs": None,
            }
            for i, c in enumerate(completions)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chat_chunk(model: str, request_id: str, created: int, delta: dict, finish_reason: str | None = None, usage: dict | None = None) -> dict:
    chunk = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk
