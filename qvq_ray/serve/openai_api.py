"""Request/response shapes of the HTTP API: the OpenAI chat subset we serve, and /v1/solve.

Requests are validated by pydantic; every error leaves as OpenAI's error object
`{"error": {"message", "type", "param", "code"}}` with a 4xx for the client's mistakes.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, field_validator, model_validator

from qvq_ray.config import MAX_STOP_CHARS, SEED_MAX, SEED_MIN

# Request models are the handlers' real validation (strict: `"stream": "yes"` is not a bool, NaN and
# Infinity are not numbers) and, through `request_body`, the bodies /openapi.json documents.
_STRICT = ConfigDict(strict=True, allow_inf_nan=False)


INTEGER_FIELDS = frozenset({"max_tokens", "max_completion_tokens", "n", "seed", "top_k", "min_tokens", "top_logprobs", "logprobs", "max_attempts"})


class WholeNumbersBody(BaseModel):
    """A request body whose integer fields take integer-valued numbers: 5.0 is 5, as vLLM (lax
    pydantic) reads it and as JSON Schema's "integer" allows; 5.5, "5" and true stay errors (the
    models are strict otherwise). A model-level step, so the fields' schemas keep their bounds."""

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {k: int(v) if k in INTEGER_FIELDS and isinstance(v, float) and v.is_integer() else v for k, v in data.items()}


class TextPart(BaseModel):
    model_config = ConfigDict(**_STRICT, extra="allow")

    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    model_config = ConfigDict(**_STRICT, extra="allow")

    url: str = Field(..., min_length=1, description="A data URL (data:image/png;base64,...) or base64; http(s) only if the server allows URLs.")
    detail: str | None = None


class ImagePart(BaseModel):
    model_config = ConfigDict(**_STRICT, extra="allow")

    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Discriminator("type")]


class ChatMessage(BaseModel):
    model_config = ConfigDict(**_STRICT, extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] = Field(..., description="Text, or text and image parts (images in user messages only).")


class StreamOptions(BaseModel):
    model_config = ConfigDict(**_STRICT, extra="forbid")

    include_usage: StrictBool = Field(False, description="Send one last chunk with empty choices and the usage.")


# OpenAI fields that would change the output and that no engine here applies: a 400 naming the
# field when set to anything but its no-op value (vLLM honours them or refuses; never a silent 200).
UNSUPPORTED_FIELDS: dict[str, tuple] = {
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
    "logit_bias": (None, {}),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "guided_json": (None,),
    "guided_regex": (None,),
    "guided_choice": (None,),
    "guided_grammar": (None,),
    "structured_outputs": (None,),
    "ignore_eos": (None, False),
    "best_of": (None, 1),
    "use_beam_search": (None, False),
    "stop_token_ids": (None, []),
    "bad_words": (None, []),
    "allowed_token_ids": (None,),
    "prompt_logprobs": (None,),
    "echo": (None, False),
    "include_stop_str_in_output": (None, False),
}


class SamplingRequest(WholeNumbersBody):
    """Sampling fields shared by /v1/chat/completions and /v1/completions. Other OpenAI fields that
    only label a request (user, metadata, store...) are accepted and ignored; fields that would
    change the output and are not applied are refused by name (UNSUPPORTED_FIELDS)."""

    model_config = ConfigDict(**_STRICT, extra="allow")

    model: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=16)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="A 64-bit integer.")
    stop: str | list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]] | None = Field(
        None, description=f"Up to 4 stop strings of at most {MAX_STOP_CHARS} characters."
    )
    top_k: int | None = Field(None, ge=0, le=2**31 - 1, description="vLLM-style extension; 0 = off.")
    repetition_penalty: float | None = Field(None, ge=0.01, le=100.0, description="vLLM-style extension; 1.0 = off.")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="vLLM-style extension; 0 = off.")
    min_tokens: int | None = Field(None, ge=0, description="vLLM-style extension: no end of sequence before this many tokens.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        if value is None:
            return None
        values = [value] if isinstance(value, str) else value
        if len(values) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(len(v) > MAX_STOP_CHARS for v in values):
            raise ValueError(f"a stop sequence is longer than {MAX_STOP_CHARS} characters")
        return values

    @model_validator(mode="after")
    def _no_unsupported_fields(self):
        for name, value in (self.model_extra or {}).items():
            if name in UNSUPPORTED_FIELDS and value not in UNSUPPORTED_FIELDS[name]:
                raise ValueError(f"'{name}' is not supported by this server")
        return self

    def top_logprobs_asked(self) -> int | None:
        """SamplingConfig.logprobs: how many alternatives per token, None when not asked (each
        endpoint spells the request its own way: chat's logprobs + top_logprobs, legacy's count)."""
        return None

    def completion_limit(self) -> int | None:
        """The max new tokens the client asked for (chat also spells it max_completion_tokens)."""
        return self.max_tokens


class ChatCompletionRequest(SamplingRequest):
    """OpenAI's chat completions (the fields in SamplingRequest, and these)."""

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: StrictBool | None = Field(None, description="Return each output token's log-probability.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="With logprobs: this many most likely tokens per position.")

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self):
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    def top_logprobs_asked(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def image_count(self) -> int:
        return sum(
            1 for m in self.messages if isinstance(m.content, list) for part in m.content if isinstance(part, ImagePart)
        )


class CompletionRequest(SamplingRequest):
    """OpenAI's (legacy) completions: the prompt is model input as is, no chat template; vLLM
    serves them for chat models alike. Text only."""

    prompt: str | list[str] = Field(..., description="One prompt, or up to 16 (choices are indexed prompt x n + sample).")
    logprobs: int | None = Field(None, ge=0, le=20, description="Legacy form: log-probabilities with this many alternatives.")

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value):
        prompts = [value] if isinstance(value, str) else value
        if not prompts:
            raise ValueError("prompt cannot be empty (an empty list)")
        if len(prompts) > 16:
            raise ValueError("prompt must be a string or a list of 1 to 16 strings")
        if empty := [i for i, prompt in enumerate(prompts) if not prompt]:
            raise ValueError(f"prompt cannot be empty (prompt {empty[0]} is)")  # as vLLM refuses it
        return value

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def top_logprobs_asked(self) -> int | None:
        return self.logprobs


class SolveRequest(WholeNumbersBody):
    """A problem to solve online. No gold answer: online solving is always the gold-free `self` mode."""

    model_config = ConfigDict(**_STRICT, extra="forbid")

    id: str | None = Field(None, max_length=256, description="Caller's id, echoed back.")
    question: str = Field(..., min_length=1)
    images: list[str] = Field(default_factory=list, description="Images as data URLs or base64 strings.")
    choices: list[str] = Field(default_factory=list, max_length=26, description="Options, lettered A..Z (at most 26).")
    answer_type: str | None = Field(None, max_length=200, description="e.g. integer, float, expression, choice, text.")
    unit: str | None = Field(None, max_length=200)
    tolerance: float | None = Field(None, ge=0.0, description="Absolute tolerance of a numeric answer.")
    max_attempts: int | None = Field(None, ge=1, le=16, description="Override the policy's attempt budget.")
    max_tokens: int | None = Field(None, ge=1)
    stream: StrictBool = Field(False, description="Server-sent events: one per attempt, then the solution.")

    @model_validator(mode="before")
    @classmethod
    def _no_gold(cls, data):
        if isinstance(data, dict) and ({"answer", "gold"} & set(data)):
            raise ValueError("gold answers are not accepted: online solving never looks at gold (mode 'self')")
        return data


class ClientError(Exception):
    """A client mistake: answered with `status` (4xx) and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def request_body(model: type[BaseModel]) -> dict:
    """`openapi_extra` documenting a handler's JSON body by the model that validates it (handlers
    read the raw body themselves: size limit before reading, strict JSON)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def install_request_schemas(app: Any, models: list[type[BaseModel]]) -> None:
    """Add the request models' JSON schemas (and their nested models) to the app's OpenAPI components."""
    base_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = base_openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            components[model.__name__] = body
        _state_server_limits(components, getattr(app.state, "schema_limits", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def state_server_limits(app: Any, *, max_tokens: int, max_images: int) -> None:
    """This server's configured limits, stated in the request schemas /openapi.json serves (the
    models are shared by every config): max_tokens (and max_completion_tokens) at most
    serve.max_tokens_limit, /v1/solve's images at most model.max_images_per_prompt."""
    app.state.schema_limits = {"max_tokens": max_tokens, "max_images": max_images}
    app.openapi_schema = None  # built again, with them


def _state_server_limits(components: dict, limits: dict) -> None:
    if not limits:
        return
    for name in ("ChatCompletionRequest", "CompletionRequest", "SolveRequest"):
        properties = components.get(name, {}).get("properties", {})
        for field in ("max_tokens", "max_completion_tokens"):
            for option in properties.get(field, {}).get("anyOf", []):
                if option.get("type") == "integer":
                    option["maximum"] = limits["max_tokens"]
        if "images" in properties:
            properties["images"]["maxItems"] = limits["max_images"]


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_body(completions: list[Any], samples_per_prompt: int) -> dict:
    """OpenAI's usage: each prompt's tokens once (not once per sample), every sample's tokens."""
    prompt_tokens = sum(c.prompt_tokens for c in completions[:: max(1, samples_per_prompt)])
    completion_tokens = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def chat_completion_body(model: str, completions: list[Any], request_id: str) -> dict:
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
                "logprobs": logprobs_body(c),
            }
            for i, c in enumerate(completions)
        ],
        "usage": usage_body(completions, len(completions)),
    }


def logprobs_body(completion: Any) -> dict | None:
    """OpenAI's `choices[].logprobs`: `{"content": [{token, logprob, bytes, top_logprobs}]}`."""
    if getattr(completion, "logprobs", None) is None:
        return None
    return {"content": [step.model_dump() for step in completion.logprobs]}


def legacy_logprobs_body(completion: Any) -> dict | None:
    """/v1/completions' `logprobs`: tokens, token_logprobs, top_logprobs (token -> logprob), text_offset."""
    if getattr(completion, "logprobs", None) is None:
        return None
    offsets, at = [], 0
    for step in completion.logprobs:
        offsets.append(at)
        at += len(step.token)
    return {
        "tokens": [step.token for step in completion.logprobs],
        "token_logprobs": [step.logprob for step in completion.logprobs],
        "top_logprobs": [{t.token: t.logprob for t in step.top_logprobs} for step in completion.logprobs],
        "text_offset": offsets,
    }


def text_completion_body(model: str, completions: list[Any], request_id: str, samples_per_prompt: int) -> dict:
    """/v1/completions' body: choices indexed prompt x n + sample."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": i, "text": c.text, "logprobs": legacy_logprobs_body(c), "finish_reason": c.finish_reason}
            for i, c in enumerate(completions)
        ],
        "usage": usage_body(completions, samples_per_prompt),
    }


def chat_chunk(
    model: str, request_id: str, created: int, delta: dict, finish_reason: str | None = None,
    usage: dict | None = None, *, index: int = 0, logprobs: dict | None = None,
) -> dict:
    chunk = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk
