"""Request/response shapes of the HTTP API: the OpenAI chat subset we serve, and /v1/solve.

Requests are validated by pydantic; every error leaves as OpenAI's error object
`{"error": {"message", "type", "param", "code"}}` with a 4xx for the client's mistakes.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, field_validator, model_validator
from typing_extensions import Self

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


def image_count(messages: list[ChatMessage]) -> int:
    return sum(1 for m in messages if isinstance(m.content, list) for part in m.content if isinstance(part, ImagePart))


class StreamOptions(BaseModel):
    model_config = ConfigDict(**_STRICT, extra="forbid")

    include_usage: StrictBool = Field(False, description="Send one last chunk with empty choices and the usage.")
    continuous_usage_stats: StrictBool = Field(
        False, description="vLLM's: every chunk carries the usage so far (its choice's completion tokens)."
    )


# Fields that would change the output and that no engine here applies: a 400 naming the field when
# set to anything but its no-op value (vLLM honours them or refuses; never a silent 200). The field
# names are OpenAI's and vLLM 0.33's request models' (tests/test_serve_openai_fields.py walks them).
UNSUPPORTED_FIELDS: dict[str, tuple[Any, ...]] = {
    "logit_bias": (None, {}),
    "response_format": (None, {"type": "text"}),
    "guided_json": (None,),
    "guided_regex": (None,),
    "guided_choice": (None,),
    "guided_grammar": (None,),
    "structured_outputs": (None,),
    "best_of": (None, 1),
    "use_beam_search": (None, False),
    "length_penalty": (None, 1.0),  # beam search only
    "stop_token_ids": (None, []),
    "bad_words": (None, []),
    "allowed_token_ids": (None,),
    "prompt_logprobs": (None,),
    "include_stop_str_in_output": (None, False),
    "skip_special_tokens": (None, True),
    "spaces_between_special_tokens": (None, True),
    "truncate_prompt_tokens": (None,),
    "priority": (None, 0),
    "return_tokens_as_token_ids": (None, False),
    "return_token_ids": (None, False),
    "kv_transfer_params": (None,),
    "vllm_xargs": (None,),
}
CHAT_UNSUPPORTED_FIELDS: dict[str, tuple[Any, ...]] = {
    **UNSUPPORTED_FIELDS,
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "echo": (None, False),  # chat's echo (prepend the last message) is not the completions' one
    "add_generation_prompt": (None, True),
    "continue_final_message": (None, False),
    "add_special_tokens": (None, False),
    "documents": (None,),
    "chat_template": (None,),
    "media_io_kwargs": (None,),
    "mm_processor_kwargs": (None,),
    "thinking_token_budget": (None,),
    "include_reasoning": (None, True),  # no reasoning parser: the reasoning is in the content
    "watermarking": (None, False),
    "truncation_side": (None,),
    "logprob_token_ids": (None,),
    "routed_experts_prompt_start": (None, 0),
    "return_token_offsets": (None, False),
    "return_prompt_text": (None, False),
    "return_mm_kwargs": (None, True),
    "ec_transfer_params": (None,),
    "repetition_detection": (None,),
    "stream_interval": (None, 1),
}
COMPLETION_UNSUPPORTED_FIELDS: dict[str, tuple[Any, ...]] = {
    **UNSUPPORTED_FIELDS,
    "suffix": (None,),
    "add_special_tokens": (None, True),
    "prompt_embeds": (None,),
    "logits_processors": (None,),
    "max_repetition_pattern_size": (None, 0),
    "min_repetition_pattern_size": (None, 0),
    "repetition_min_count": (None, 0),
}
# Fields that only label a request (accepted, nothing to apply): OpenAI's user, metadata, store...,
# vLLM's request_id, session_id and cache_salt (there is no prefix cache to salt here).
LABEL_FIELDS = frozenset({"user", "metadata", "store", "service_tier", "request_id", "session_id", "cache_salt"})


class SamplingRequest(WholeNumbersBody):
    """Sampling fields shared by /v1/chat/completions and /v1/completions. Fields that only label a
    request (LABEL_FIELDS) are accepted; fields that would change the output and are not applied
    are refused by name (each endpoint's `refused_fields`)."""

    model_config = ConfigDict(**_STRICT, extra="allow")
    refused_fields: ClassVar[dict[str, tuple[Any, ...]]] = UNSUPPORTED_FIELDS

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
    ignore_eos: StrictBool = Field(False, description="vLLM-style extension: generate past the end of sequence (load tests).")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        values = [value] if isinstance(value, str) else value
        if len(values) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(len(v) > MAX_STOP_CHARS for v in values):
            raise ValueError(f"a stop sequence is longer than {MAX_STOP_CHARS} characters")
        return values

    @model_validator(mode="after")
    def _no_unsupported_fields(self) -> Self:
        for name, value in (self.model_extra or {}).items():
            if name in self.refused_fields and value not in self.refused_fields[name]:
                raise ValueError(f"'{name}' is not supported by this server")
        return self

    def top_logprobs_asked(self) -> int | None:
        """SamplingConfig.logprobs: how many alternatives per token, None when not asked (each
        endpoint spells the request its own way: chat's logprobs + top_logprobs, legacy's count)."""
        return None

    def prompt_logprobs_asked(self) -> int | None:
        """SamplingConfig.prompt_logprobs (completions' echo with logprobs)."""
        return None

    def template_kwargs(self) -> dict[str, Any] | None:
        """SamplingConfig.chat_template_kwargs (chat only)."""
        return None

    def completion_limit(self) -> int | None:
        """The max new tokens the client asked for (chat also spells it max_completion_tokens)."""
        return self.max_tokens


class ChatCompletionRequest(SamplingRequest):
    """OpenAI's chat completions (the fields in SamplingRequest, and these)."""

    refused_fields: ClassVar[dict[str, tuple[Any, ...]]] = CHAT_UNSUPPORTED_FIELDS

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: StrictBool | None = Field(None, description="Return each output token's log-probability.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="With logprobs: this many most likely tokens per position.")

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> Self:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="vLLM's: variables for the chat template (Qwen2-VL's: add_vision_id); one it does not read is a 400."
    )
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = Field(
        None, description="Given to the chat template as vLLM does; a 400 when the model's template does not read it."
    )
    parallel_tool_calls: StrictBool | None = Field(
        None, description="Accepted; tools are refused here, so there are never calls to make in parallel."
    )

    def top_logprobs_asked(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def template_kwargs(self) -> dict[str, Any] | None:
        """chat_template_kwargs with reasoning_effort in it, as vLLM's build_chat_params merges them."""
        kwargs = dict(self.chat_template_kwargs or {})
        if self.reasoning_effort is not None:
            kwargs["reasoning_effort"] = self.reasoning_effort
        return kwargs or None

    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def image_count(self) -> int:
        return image_count(self.messages)


TokenIds = list[Annotated[int, Field(ge=0, le=2**31 - 1)]]


class CompletionRequest(SamplingRequest):
    """OpenAI's (legacy) completions: the prompt is model input as is, no chat template; vLLM
    serves them for chat models alike. Text only."""

    refused_fields: ClassVar[dict[str, tuple[Any, ...]]] = COMPLETION_UNSUPPORTED_FIELDS

    prompt: str | list[str] | TokenIds | list[TokenIds] = Field(
        ..., description="A string, a list of token ids, or a list of up to 16 of either (choices are indexed prompt x n + sample)."
    )
    logprobs: int | None = Field(None, ge=0, le=20, description="Legacy form: log-probabilities with this many alternatives.")
    echo: StrictBool = Field(False, description="Return the prompt before the completion (with logprobs: the prompt tokens' too).")
    max_tokens: int | None = Field(None, ge=0, description="0 only with echo: the prompt alone (its log-probabilities), nothing generated.")

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value: Any) -> Any:
        prompts = [value] if isinstance(value, str) or (value and isinstance(value[0], int)) else value
        if not prompts:
            raise ValueError("prompt cannot be empty (an empty list)")
        if len(prompts) > 16:
            raise ValueError("prompt must be a string, a list of token ids, or a list of 1 to 16 of either")
        if empty := [i for i, prompt in enumerate(prompts) if not prompt]:
            raise ValueError(f"prompt cannot be empty (prompt {empty[0]} is)")  # as vLLM refuses it
        return value

    @model_validator(mode="after")
    def _echo_rules(self) -> Self:
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 needs echo: true (the prompt alone); otherwise at least 1")
        if self.echo and self.stream and (self.logprobs is not None or self.max_tokens == 0):
            raise ValueError("echo with logprobs or with max_tokens 0 is not streamed here; send stream: false")
        return self

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: its text, or its token ids."""
        value = self.prompt
        return [value] if isinstance(value, str) or isinstance(value[0], int) else list(value)

    def top_logprobs_asked(self) -> int | None:
        return self.logprobs

    def prompt_logprobs_asked(self) -> int | None:
        return self.logprobs if self.echo else None

    def completion_limit(self) -> int | None:
        """max_tokens 0 (echo alone) generates one token, as vLLM does, which the answer leaves out."""
        return 1 if self.max_tokens == 0 else self.max_tokens


class TokenizeCompletionRequest(BaseModel):
    """vLLM's /tokenize with a prompt: tokenized as /v1/completions tokenizes it."""

    model_config = ConfigDict(**_STRICT, extra="forbid")

    model: str | None = None
    prompt: str = Field(..., min_length=1)
    add_special_tokens: StrictBool = True


class TokenizeChatRequest(BaseModel):
    """vLLM's /tokenize with messages: tokenized as /v1/chat/completions builds its prompt."""

    model_config = ConfigDict(**_STRICT, extra="forbid")

    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)
    add_generation_prompt: StrictBool = True
    add_special_tokens: StrictBool = Field(False, description="Qwen2-VL's tokenizer adds none: no effect.")
    chat_template_kwargs: dict[str, Any] | None = None

    def image_count(self) -> int:
        return image_count(self.messages)


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(**_STRICT, extra="forbid")

    model: str | None = None
    tokens: TokenIds


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
    def _no_gold(cls, data: Any) -> Any:
        if isinstance(data, dict) and ({"answer", "gold"} & set(data)):
            raise ValueError("gold answers are not accepted: online solving never looks at gold (mode 'self')")
        return data


class ClientError(Exception):
    """A client mistake: answered with `status` (4xx) and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def request_body(model: type[BaseModel]) -> dict[str, Any]:
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

    def openapi() -> dict[str, Any]:
        cached: dict[str, Any] | None = app.openapi_schema
        if cached is not None:
            return cached
        schema: dict[str, Any] = base_openapi()
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


def _state_server_limits(components: dict[str, Any], limits: dict[str, Any]) -> None:
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


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_body(completions: list[Any], samples_per_prompt: int) -> dict[str, Any]:
    """OpenAI's usage: each prompt's tokens once (not once per sample), every sample's tokens."""
    prompt_tokens = sum(c.prompt_tokens for c in completions[:: max(1, samples_per_prompt)])
    completion_tokens = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def chat_completion_body(model: str, completions: list[Any], request_id: str) -> dict[str, Any]:
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


def logprobs_body(completion: Any) -> dict[str, Any] | None:
    """OpenAI's `choices[].logprobs`: `{"content": [{token, logprob, bytes, top_logprobs}]}`."""
    if getattr(completion, "logprobs", None) is None:
        return None
    return {"content": [step.model_dump() for step in completion.logprobs]}


def legacy_logprobs_body(completion: Any, steps: list[Any] | None = None, start: int = 0) -> dict[str, Any] | None:
    """/v1/completions' `logprobs`: tokens, token_logprobs, top_logprobs (token -> logprob), text_offset
    (from `start`); `steps` instead of the completion's own (a stream's chunk; echo: prompt first)."""
    if steps is None:
        steps = getattr(completion, "logprobs", None)
        if steps is None:
            return None
    offsets, at = [], start
    for step in steps:
        offsets.append(at)
        at += len(step.token)
    return {
        "tokens": [step.token for step in steps],
        "token_logprobs": [step.logprob for step in steps],
        "top_logprobs": [
            {t.token: t.logprob for t in step.top_logprobs} if step.logprob is not None else None for step in steps
        ],
        "text_offset": offsets,
    }


def echo_only(completion: Any) -> Any:
    """The Completion of `max_tokens: 0` with echo: the prompt alone. Like vLLM, the engine
    generated one token for it, which is left out (its text, log-probability and count)."""
    logprobs: list[Any] | None = [] if completion.logprobs is not None else None
    return completion.model_copy(update={"text": "", "completion_tokens": 0, "logprobs": logprobs, "finish_reason": "length"})


def text_completion_body(
    model: str, completions: list[Any], request_id: str, samples_per_prompt: int, echo: list[str] | None = None
) -> dict[str, Any]:
    """/v1/completions' body: choices indexed prompt x n + sample; with `echo` (each prompt's text)
    a choice's text and log-probabilities start with its prompt's."""

    def choice(i: int, c: Any) -> dict[str, Any]:
        if echo is None:
            return {"index": i, "text": c.text, "logprobs": legacy_logprobs_body(c), "finish_reason": c.finish_reason}
        prompt = echo[i // max(1, samples_per_prompt)]
        logprobs = None
        if c.prompt_logprobs is not None:
            logprobs = legacy_logprobs_body(c, [*c.prompt_logprobs, *(c.logprobs or [])])
        return {"index": i, "text": prompt + c.text, "logprobs": logprobs, "finish_reason": c.finish_reason}

    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice(i, c) for i, c in enumerate(completions)],
        "usage": usage_body(completions, samples_per_prompt),
    }


def chat_chunk(
    model: str, request_id: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
    usage: dict[str, Any] | None = None, *, index: int = 0, logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
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
