"""The Engine contract every backend (transformers, vLLM, remote OpenAI) implements.

Messages use the chat-template shape that transformers' Qwen2-VL processor expects:
`{"role": "user", "content": [{"type": "image", "image": <bytes>}, {"type": "text", "text": "..."}]}`.
Images travel as encoded bytes, not PIL objects, so messages pickle cheaply across Ray (a Serve
handle call or an actor boundary) and every engine decodes them the same way.
"""

from __future__ import annotations

from typing import Any, AsyncGenerator, Callable, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, Field

from qvq_ray.config import SamplingConfig
from qvq_ray.engines.timing import EngineTiming

Message = dict[str, Any]
FinishReason = Literal["stop", "length", "abort"]
T = TypeVar("T")


class TopLogprob(BaseModel):
    """One candidate token at a step (OpenAI's `top_logprobs` entry)."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    """One generated token, its log-probability and the most likely alternatives at its step
    (OpenAI's `logprobs.content` entry)."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class PromptLogprob(TopLogprob):
    """One prompt token (vLLM's prompt_logprobs, OpenAI's echo + logprobs): its log-probability
    given the tokens before it (None for the first token, which has no context) and the most likely
    tokens at its position."""

    logprob: float | None  # type: ignore[assignment]  # None for the first prompt token (no context)
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class TextDelta(str):
    """A streamed text delta. It is a `str` (every consumer of `Engine.stream` reads it as text)
    that may also carry the log-probabilities of the tokens generated since the previous delta
    (`logprobs`: each entry's `token` is what it adds to the text, so entries are matched to the text
    sent) and the token counts so far (`usage`: prompt tokens, completion tokens)."""

    logprobs: list[TokenLogprob]
    usage: tuple[int, int] | None

    def __new__(
        cls, text: str, logprobs: list[TokenLogprob] | None = None, usage: tuple[int, int] | None = None
    ) -> "TextDelta":
        delta = super().__new__(cls, text)
        delta.logprobs = list(logprobs or [])
        delta.usage = usage
        return delta

    def __reduce__(self) -> tuple[type["TextDelta"], tuple[str, list[TokenLogprob], tuple[int, int] | None]]:  # across Ray (a Serve handle's stream) with what it carries
        return (TextDelta, (str(self), self.logprobs, self.usage))


class Completion(BaseModel):
    """One generated sample."""

    text: str
    finish_reason: FinishReason = Field(..., description="'stop' (EOS or stop string), 'length' (max_tokens), 'abort'.")
    prompt_tokens: int = Field(0, description="Tokens of the prompt, visual tokens included.")
    completion_tokens: int = Field(0, description="Tokens generated for this sample.")
    latency_s: float = Field(0.0, description="Time from request to this sample's end.")
    logprobs: list[TokenLogprob] | None = Field(
        None, description="Per generated token, when sampling.logprobs is set (engines that support it)."
    )
    prompt_logprobs: list[PromptLogprob] | None = Field(
        None, description="Per prompt token (the first has no log-probability), when sampling.prompt_logprobs is set."
    )
    timing: EngineTiming | None = Field(
        None, description="Queue time, time to first token and inter-token gaps as the engine measured them (engines/timing.py)."
    )


class EngineError(RuntimeError):
    """An engine failed to serve a request (the request, not the caller, is at fault or unlucky)."""


class EngineOverloadedError(EngineError):
    """The engine is up but cannot take this request now (its queue is full, admission control
    refused it, or it failed in a way the engine marks retryable): the same request may succeed
    later or on another replica. The HTTP front end answers 503; callers may retry with backoff."""

    retryable = True


class ReplicaLostError(EngineError):
    """The engine copy serving a streamed call died after some of its output was consumed. Nothing
    else was changed by the call, so the whole call can be made again elsewhere; only its consumer
    knows whether what it already passed on allows that."""


class InvalidRequestError(ValueError):
    """The request itself is bad (too many images, prompt too long...): a 4xx, never retried."""


def contained_call(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on an executor thread so that what it raises can reach the awaiting
    coroutine: asyncio refuses to put a StopIteration into a future (a TypeError inside the event
    loop's callback, and the coroutine awaiting it waits forever), and a KeyboardInterrupt or
    SystemExit would end the event loop itself. Both become an EngineError naming them."""
    try:
        return fn(*args)
    except StopIteration as exc:
        raise EngineError(f"StopIteration raised in {getattr(fn, '__name__', fn)}") from exc
    except Exception:
        raise
    except BaseException as exc:
        raise EngineError(f"{type(exc).__name__} raised in {getattr(fn, '__name__', fn)}") from exc


def preparation_error(exc: Exception) -> InvalidRequestError:
    """A preparation failure as the request's error (its input is at fault), naming what failed."""
    if isinstance(exc, InvalidRequestError):
        return exc
    cause = exc.__cause__ if isinstance(exc, EngineError) and exc.__cause__ is not None else exc
    return InvalidRequestError(f"cannot prepare the prompt: {type(cause).__name__}: {cause}".rstrip(": "))


def remote_cause(exc: BaseException) -> BaseException:
    """The exception a remote call raised: Ray wraps a replica's or actor's exception in
    RayTaskError, whose `cause` is the original."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class EngineHealth(BaseModel):
    """What a liveness or readiness probe learns without queueing behind user work."""

    alive: bool = Field(..., description="False when the engine is closed, its loop died, or it is stalled.")
    stalled: bool = Field(False, description="Work is in flight and no step finished within the stall limit.")
    running: int = Field(0, description="Requests being generated now.")
    waiting: int = Field(0, description="Requests queued (or being prepared) for the next batch.")
    last_step_age_s: float | None = Field(None, description="Seconds since the last generation step ended (None: none yet).")
    reason: str | None = Field(None, description="Why the engine is not alive, in words.")


class StallWatch:
    """Liveness bookkeeping shared by the in-process engines: a step clock and in-flight counts.

    An engine calls `step()` whenever a generation step ends (a token for its running sequences, or
    a prefill) and `started()`/`finished()` around each request. It is stalled when requests are in
    flight and no step ended for `limit_s`: a long generation that keeps stepping is healthy however
    long it runs, and an idle engine is never stalled. Reading it costs nothing, so a health probe
    never waits behind the work it is judging (a one-token probe generation did, and got healthy
    replicas killed under load).
    """

    def __init__(self, limit_s: float):
        import time

        self.limit_s = limit_s
        self._clock = time.monotonic
        self.last_step = self._clock()
        self.in_flight = 0
        self.running = 0

    def started(self) -> None:
        if self.in_flight == 0:
            self.last_step = self._clock()  # idle time is not stall time
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def step(self) -> None:
        self.last_step = self._clock()

    def health(self, *, closed: bool = False, reason: str | None = None) -> EngineHealth:
        age = self._clock() - self.last_step
        stalled = self.in_flight > 0 and age > self.limit_s
        if stalled and reason is None:
            reason = f"no generation step for {age:.0f} s with {self.in_flight} requests in flight (limit {self.limit_s:g} s)"
        if closed:
            reason = "engine is closed"
        return EngineHealth(
            alive=not (closed or stalled or reason),
            stalled=stalled,
            running=self.running,
            waiting=max(0, self.in_flight - self.running),
            last_step_age_s=round(age, 3),
            reason=reason,
        )


# A prompt that is model input as is, with no chat template (OpenAI's /v1/completions): one
# message of this role holding one text part. Every engine honours it; its special tokens are parsed
# (chat message text is tokenized as text: engines/prompt_tokens.py).
RAW_PROMPT_ROLE = "raw_prompt"


def raw_prompt(prompt: str | list[int]) -> list[Message]:
    """A raw prompt: text (its special tokens parsed) or token ids (the model's input as they are)."""
    part = {"type": "text", "text": prompt} if isinstance(prompt, str) else {"type": "token_ids", "token_ids": list(prompt)}
    return [{"role": RAW_PROMPT_ROLE, "content": [part]}]


def raw_prompt_ids(messages: list[Message]) -> list[int] | None:
    """The token ids of a raw prompt given as ids; None for text and for chat messages."""
    if raw_prompt_text(messages) is None:
        return None
    parts = [p for p in messages[0].get("content") or [] if isinstance(p, dict) and p.get("type") == "token_ids"]
    return [int(i) for p in parts for i in p.get("token_ids") or []] if parts else None


def check_prompt_ids(ids: list[int], vocab_size: int, refused: dict[int, str]) -> None:
    """InvalidRequestError for a token id outside the vocabulary, or one of `refused` (id -> token:
    image and video placeholders, which a raw prompt carries nothing for)."""
    if not ids:
        raise InvalidRequestError("prompt cannot be empty (no token ids)")
    if bad := [i for i in ids if not 0 <= i < vocab_size]:
        raise InvalidRequestError(f"token id {bad[0]} is out of the vocabulary (0..{vocab_size - 1})")
    if placeholders := [i for i in ids if i in refused]:
        raise InvalidRequestError(
            f"a raw prompt carries no images or videos, so it cannot hold the placeholder token {refused[placeholders[0]]!r}"
        )


def raw_prompt_text(messages: list[Message]) -> str | None:
    """The text of a raw prompt (see RAW_PROMPT_ROLE); None for chat messages."""
    if (
        isinstance(messages, list) and len(messages) == 1 and isinstance(messages[0], dict)
        and messages[0].get("role") == RAW_PROMPT_ROLE
    ):
        parts = messages[0].get("content") or []
        return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    return None


def prompt_texts(messages: list[Message]) -> list[str]:
    """The text of chat messages (string contents and text parts), in order."""
    texts = []
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return texts


def prompt_chars(messages: list[Message]) -> int:
    """Characters of text in chat messages: a cheap upper bound on what tokenizing will cost,
    checked before any tokenizer runs."""
    return sum(len(text) for text in prompt_texts(messages))


def check_prompt_chars(messages: list[Message], limit: int) -> None:
    """InvalidRequestError when the messages' text exceeds `limit` characters (model.max_prompt_chars)."""
    if (chars := prompt_chars(messages)) > limit:
        raise InvalidRequestError(f"prompt of {chars} characters exceeds this server's limit of {limit} (model.max_prompt_chars)")


@runtime_checkable
class Engine(Protocol):
    """Async text generation over chat messages with images. Implementations own batching.

    These methods and `model_name` are all the solver, the batch actors and the Serve
    deployment call: an engine that has them is an engine, nothing is looked up by `getattr`.
    """

    model_name: str

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        """Return `sampling.n` completions for one prompt."""
        ...

    def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncGenerator[str | Completion, None]:
        """An async generator over one sample (n must be 1, else InvalidRequestError): its text
        deltas (`str`, never empty) as they are generated, then exactly one final `Completion`
        (whole text, token counts, finish reason); the deltas joined are exactly its `text`.

        Closing the generator early (`aclose()`: a client went away, the solver cut a loop) aborts
        the request on the engine, so its tokens are not spent.
        """
        ...

    async def health(self) -> EngineHealth:
        """The engine's state, read without generating or queueing (liveness and readiness probes)."""
        ...

    async def check_health(self) -> None:
        """Raise EngineError if the engine cannot serve: closed, dead, or stalled (Serve's liveness
        check; a failure gets the replica restarted). Never queues a generation."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class TokenizerAccess(Protocol):
    """The engine's own tokenizer, for the HTTP routes vLLM serves beside generation (/tokenize,
    /detokenize, /tokenizer_info) and for echoing a prompt given as token ids: no second tokenizer
    is loaded anywhere. Prompts are tokenized exactly as generation tokenizes them."""

    async def tokenize(
        self, messages: list[Message], *, add_special_tokens: bool = True, add_generation_prompt: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """{"tokens": ids, "max_model_len": n} for a raw prompt (raw_prompt) or chat messages."""
        ...

    async def detokenize(self, tokens: list[int]) -> str: ...

    async def tokenizer_info(self) -> dict[str, Any]:
        """vLLM's /tokenizer_info: `tokenizer_class` and the tokenizer's configuration
        (tokenizer_config.json's keys: special tokens, model_max_length, chat_template...)."""
        ...


def split_images(
    messages: list[Message], *, max_images: int, decode: Any = None
) -> tuple[list[Message], list[Any]]:
    """Chat messages -> (template messages with `{"type": "image"}` placeholders, decoded images).

    Shared by the in-process engines: the chat template renders one
    `<|vision_start|><|image_pad|><|vision_end|>` per placeholder, in order (the only image
    placeholders a prompt gets: message text is tokenized as text, see prompt_tokens.py), and the
    images go to the image processor (transformers) or `multi_modal_data` (vLLM). A bad request raises
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
