"""The vLLM engine: QVQ / Qwen2-VL on vLLM's async engine (continuous batching, tensor parallel).

Install with `pip install 'qvq-ray[vllm]'` on a CUDA host; vLLM is imported only when this engine
is built, so the rest of qvq-ray never needs it. Written against vLLM 0.33's own source; each call
names the vLLM file and function it follows:

- engine: `vllm.engine.arg_utils.AsyncEngineArgs` (a dataclass: fields `model`, `served_model_name`,
  `dtype`, `trust_remote_code`, `tensor_parallel_size`, `distributed_executor_backend`,
  `max_model_len`, `limit_mm_per_prompt`, `mm_processor_kwargs`, `gpu_memory_utilization`,
  `max_num_seqs`, `enforce_eager`, `generation_config`), then
  `vllm.v1.engine.async_llm.AsyncLLM.from_engine_args(args)`; inside a Ray placement group,
  `args.create_engine_config(usage_context)` + `vllm_config.parallel_config.placement_group = pg` +
  `AsyncLLM.from_vllm_config(vllm_config, ...)`, as Ray Serve LLM does
  (ray: python/ray/llm/_internal/serve/engines/vllm/vllm_engine.py, `_start_async_llm_engine`).
  vLLM's Ray executor uses `parallel_config.placement_group`, else the current one
  (vllm/v1/executor/ray_utils.py, `initialize_ray_cluster`), one worker per GPU bundle.
- sampling: `vllm.sampling_params.SamplingParams` (`n`, `temperature`, `top_p`, `top_k`, `min_p`,
  `seed`, `stop`, `stop_token_ids`, `max_tokens`, `repetition_penalty`, `presence_penalty`,
  `frequency_penalty`, `skip_special_tokens`, `output_kind` = `RequestOutputKind.DELTA` |
  `FINAL_ONLY`). Greedy with n > 1 is refused by `SamplingParams._verify_greedy_sampling`, so a
  greedy n > 1 request runs once and its (deterministic) sample is repeated. Children of an n > 1
  request get seeds seed, seed+1, ... (vllm/v1/engine/parallel_sampling.py,
  `ParentRequest._get_child_sampling_params`).
- sampling is always explicit: `generation_config="vllm"` (vllm/config/model.py) makes
  `ModelConfig.get_diff_sampling_param` return vLLM's neutral defaults, so the checkpoint's
  sampling values (QVQ's temperature 0.01, top_k 1, repetition_penalty 1.05) never apply. It does
  not stop vLLM from reading the checkpoint: `ModelConfig.try_get_generation_config` loads
  generation_config.json for "auto" and "vllm" alike, and the input processor passes it to
  `SamplingParams.update_from_generation_config`, which adds its `eos_token_id`s to the request's
  `stop_token_ids` (unless `ignore_eos`), as the transformers engine also stops on them. We still
  list `<|im_end|>` / `<|endoftext|>` (and the tokenizer's eos) in `stop_token_ids` ourselves, so
  Qwen's chat stops hold whatever the checkpoint's generation_config.json says or lacks.
- prompt: chat messages go as token ids, `{"prompt_token_ids": ids, "multi_modal_data": {"image":
  [PIL images]}}` (vllm/inputs/data.py, `TokensPrompt`), where ids are the checkpoint's chat
  template with one `<|vision_start|><|image_pad|><|vision_end|>` per image
  (vllm/model_executor/models/qwen2_vl.py, `get_placeholder_str`) and the messages' text tokenized
  as text (prompt_tokens.py): a text prompt would be re-tokenized by vLLM with special tokens
  parsed, so a typed `<|image_pad|>` would become an image slot. vLLM processes a token prompt's
  images alone and expands each `<|image_pad|>` id to the image's visual tokens itself
  (vllm/multimodal/processing.py, `_apply_hf_processor_main`: `_apply_hf_processor_tokens_only`,
  then the prompt updates in token space), so `prompt_token_ids` counts them. A raw prompt
  (/v1/completions) goes as text, `{"prompt": text}` (`TextPrompt`): vLLM parses its special
  tokens, as vLLM's own completions endpoint does.
- generation: `AsyncLLM.generate(prompt, sampling_params, request_id)` (a prompt dict goes
  through `AsyncLLM.add_request` -> `input_processor.process_inputs_async`, tokenization and the
  multimodal processor off the event loop; a chat prompt's own tokenization runs in `_request`, on the
  engine's prepare thread (a chat surely over the context refused after a chunked count),
  bounded by `model.max_prompt_chars`) is an async generator of
  `vllm.outputs.RequestOutput` (`prompt_token_ids`, `finished`, `outputs`: list of
  `CompletionOutput` with `index`, `text`, `token_ids`, `finish_reason` "stop" | "length" |
  "abort"). `AsyncLLM.abort(request_id)` (vllm/v1/engine/async_llm.py) stops a request.
  `generate` aborts on its own only when *its* generator is closed or cancelled; a consumer that
  simply stops iterating leaves it to the garbage collector, so this engine closes it and calls
  `abort` itself the moment its consumer stops (client gone, solver cut).
- health and shutdown: `AsyncLLM.check_health()`, `AsyncLLM.shutdown()` (a plain method that blocks
  until the engine core has stopped: run off the event loop).
- errors: see `classify_error`.

Pure parts (argument mapping, sampling conversion, output conversion, prompt building) are module
functions, unit-tested without vLLM (tests/test_vllm_engine_pure.py); the engine itself runs in
tests/test_vllm_engine_gpu.py and the conformance suite on a CUDA host.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, AsyncGenerator, Callable, TypeVar

from qvq_ray.config import ModelConfig, QvqConfig, ResourcesConfig, SamplingConfig, VLLMEngineConfig
from qvq_ray.engines.base import (
    Completion,
    EngineError,
    EngineHealth,
    EngineOverloadedError,
    FinishReason,
    InvalidRequestError,
    Message,
    TokenLogprob,
    TopLogprob,
    check_prompt_chars,
    contained_call,
    preparation_error,
    PromptLogprob,
    TextDelta,
    check_prompt_ids,
    raw_prompt_ids,
    raw_prompt_text,
    split_images,
)
from qvq_ray.engines.timing import timing_from_token_times
from qvq_ray.engines.context_bound import hf_token_counter, refuse_surely_over_context
from qvq_ray.engines.prompt_tokens import (
    SpecialTokensInText,
    chat_prompt_ids,
    check_chat_template_kwargs,
    check_raw_prompt,
    media_tokens,
)

if TYPE_CHECKING:
    from ray.util.placement_group import PlacementGroup

T = TypeVar("T")

logger = logging.getLogger(__name__)

VLLM_INSTALL_HINT = "pip install 'qvq-ray[vllm]'"
# QVQ's config.json says max_position_embeddings 128000; a KV cache that long per sequence leaves
# room for almost no batch on 4 x 80 GB. 32768 holds the model card's 8192 new tokens plus images.
DEFAULT_MAX_MODEL_LEN = 32768
# Stop tokens of the Qwen2 chat format, besides the tokenizer's own eos.
QWEN_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
# EngineArgs fields that our config maps; vllm_engine_kwargs may not set them a second time.
MAPPED_ENGINE_ARGS = frozenset(
    {
        "model",
        "tokenizer",
        "served_model_name",
        "dtype",
        "trust_remote_code",
        "tensor_parallel_size",
        "distributed_executor_backend",
        "max_model_len",
        "limit_mm_per_prompt",
        "mm_processor_kwargs",
        "gpu_memory_utilization",
        "max_num_seqs",
        "enforce_eager",
        "generation_config",
    }
)


def import_vllm() -> ModuleType:
    """vLLM itself, or an ImportError that says how to get it."""
    try:
        import vllm  # noqa: F401  (the top-level package, not this module: absolute import)
    except ImportError as exc:
        raise ImportError(
            f"engine.kind 'vllm' needs vLLM, which is not installed here ({exc}). "
            f"Install it on a CUDA host with: {VLLM_INSTALL_HINT}"
        ) from exc
    module: ModuleType = vllm
    return module


# --------------------------------------------------------------------------- pure: engine arguments


def choose_executor_backend(configured: str, tensor_parallel_size: int, placement_group_gpu_bundles: int | None) -> str | None:
    """vLLM's `distributed_executor_backend` for this process.

    'auto': TP 1 leaves vLLM its default (one process, no executor choice to make). TP > 1 inside a
    Ray placement group with a GPU bundle per shard (a Serve replica of the engine deployment)
    takes 'ray', whose workers land in the group's bundles; elsewhere (a Ray Data actor that owns
    all of its replica's GPUs, a plain process) 'mp' runs the shards on this process's GPUs.
    """
    if configured != "auto":
        return configured
    if tensor_parallel_size <= 1:
        return None
    if placement_group_gpu_bundles is not None and placement_group_gpu_bundles >= tensor_parallel_size:
        return "ray"
    return "mp"


def engine_args_kwargs(
    model: ModelConfig,
    engine: VLLMEngineConfig,
    resources: ResourcesConfig,
    *,
    model_path: str | None = None,
    executor_backend: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `vllm.engine.arg_utils.AsyncEngineArgs`, from our config.

    Every sampling-relevant default is pinned: `generation_config="vllm"` keeps the sampling
    values of the checkpoint's generation_config.json (QVQ's: temperature 0.01, top_k 1,
    repetition_penalty 1.05) from applying silently; our SamplingConfig is the only source of
    sampling settings. vLLM still reads that file's `eos_token_id` as extra stop tokens (see the
    module docstring); our own stop_token_ids cover Qwen's chat stops either way.
    """
    extra = dict(engine.vllm_engine_kwargs)
    clash = sorted(MAPPED_ENGINE_ARGS & set(extra))
    if clash:
        raise ValueError(
            f"engine.vllm_engine_kwargs sets {clash}, which qvq-ray maps from its own config "
            "(model.*, engine.*, resources.tensor_parallel_size); set them there instead"
        )
    tp = resources.tensor_parallel_size
    kwargs: dict[str, Any] = {
        "model": model_path or model.path,
        "served_model_name": model.served_model_name or model.path.rstrip("/").split("/")[-1],
        "dtype": model.dtype,
        "trust_remote_code": model.trust_remote_code,
        "tensor_parallel_size": tp,
        "max_model_len": model.max_model_len or DEFAULT_MAX_MODEL_LEN,
        # Images only (QVQ is single-turn, images only); video 0 also skips profiling for video.
        "limit_mm_per_prompt": {"image": model.max_images_per_prompt, "video": 0},
        # Qwen2-VL's processor reads min_pixels / max_pixels (smart_resize bounds).
        "mm_processor_kwargs": {"min_pixels": model.min_pixels, "max_pixels": model.max_pixels},
        "gpu_memory_utilization": engine.gpu_memory_utilization,
        "max_num_seqs": engine.max_num_seqs or engine.max_batch_size,
        "enforce_eager": engine.enforce_eager,
        "generation_config": "vllm",
    }
    if executor_backend is not None:
        kwargs["distributed_executor_backend"] = executor_backend
    kwargs.update(extra)
    return kwargs


# --------------------------------------------------------------------------- pure: sampling


@dataclass(frozen=True)
class RequestPlan:
    """How one of our requests becomes one vLLM request."""

    params: dict[str, Any]  # SamplingParams kwargs; output_kind as the RequestOutputKind member name
    repeat: int  # how many times the returned samples are repeated (greedy n > 1)


def sampling_params_kwargs(sampling: SamplingConfig, *, stop_token_ids: list[int], stream: bool) -> RequestPlan:
    """`vllm.SamplingParams` kwargs for our SamplingConfig: every field explicit, no vLLM defaults.

    Greedy (temperature 0) ignores top_p/top_k/seed in vLLM (`SamplingParams.__post_init__` resets
    them) and refuses n > 1, so a greedy request asks for one sample and repeats it n times.
    """
    greedy = sampling.greedy  # below GREEDY_BELOW, as vLLM itself treats it
    n = 1 if greedy else sampling.n
    params: dict[str, Any] = {
        "n": n,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "top_k": 0 if greedy else sampling.top_k,  # 0 = off (vLLM also accepts -1)
        "min_p": 0.0 if greedy else sampling.min_p,
        "seed": None if greedy else sampling.seed,
        "stop": list(sampling.stop),
        # with ignore_eos vLLM skips the checkpoint's eos ids; ours would still stop it
        "stop_token_ids": [] if sampling.ignore_eos else list(stop_token_ids),
        "include_stop_str_in_output": False,
        "ignore_eos": sampling.ignore_eos,
        "max_tokens": sampling.max_tokens,
        "min_tokens": sampling.min_tokens,
        "repetition_penalty": sampling.repetition_penalty,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "logprobs": sampling.logprobs,
        "prompt_logprobs": sampling.prompt_logprobs,
        "skip_special_tokens": True,
        "output_kind": "DELTA" if stream else "FINAL_ONLY",
    }
    return RequestPlan(params=params, repeat=sampling.n if greedy else 1)


def stop_token_ids_for(tokenizer: Any) -> list[int]:
    """The tokenizer's eos plus Qwen's `<|im_end|>` and `<|endoftext|>`, deduplicated."""
    ids: list[int] = []
    candidates = [getattr(tokenizer, "eos_token_id", None)]
    for token in QWEN_STOP_TOKENS:
        candidates.append(tokenizer.convert_tokens_to_ids(token))
    unk = getattr(tokenizer, "unk_token_id", None)
    for value in candidates:
        if isinstance(value, int) and value >= 0 and value != unk and value not in ids:
            ids.append(value)
    return ids


# --------------------------------------------------------------------------- pure: prompt


def build_prompt(
    messages: list[Message],
    apply_chat_template: Callable[[list[Message]], str],
    tokenizer: Any,
    *,
    max_images: int,
    special_tokens_in_text: SpecialTokensInText = "escape",
    decode: Callable[[bytes], Any] | None = None,
    chat_template: str | None = None,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A vLLM prompt dict from our messages.

    Chat messages: a `TokensPrompt`, the chat template's token ids with the messages' text
    tokenized as text (a special token typed in it is text, or refused with 'refuse') and one
    `<|vision_start|><|image_pad|><|vision_end|>` per image part, in order; the images decoded to
    RGB PIL images for `multi_modal_data["image"]`. A raw prompt (/v1/completions): a `TextPrompt`
    of its text as is, refused if it holds an image or video placeholder (it carries no images). A
    bad request raises InvalidRequestError. A raw prompt of token ids is a `TokensPrompt` of them.
    `chat_template_kwargs` go to `apply_chat_template` (as keyword arguments), each checked against
    the variables `chat_template` reads.
    """
    raw = raw_prompt_text(messages)
    if (ids := raw_prompt_ids(messages)) is not None:
        check_prompt_ids(ids, len(tokenizer), {tokenizer.convert_tokens_to_ids(t): t for t in media_tokens(tokenizer)})
        return {"prompt_token_ids": ids}
    if raw is not None:
        check_raw_prompt(raw, media_tokens(tokenizer))
        return {"prompt": raw}
    if chat_template_kwargs:
        check_chat_template_kwargs(chat_template, chat_template_kwargs)
        apply = apply_chat_template
        apply_chat_template = lambda marked: apply(marked, **chat_template_kwargs)  # noqa: E731
    template_messages, images = split_images(messages, max_images=max_images, decode=decode)
    ids = chat_prompt_ids(template_messages, apply_chat_template, tokenizer, special_tokens_in_text=special_tokens_in_text)
    prompt: dict[str, Any] = {"prompt_token_ids": ids}
    if images:
        prompt["multi_modal_data"] = {"image": images}
    return prompt


# --------------------------------------------------------------------------- pure: outputs


def finish_reason_from_vllm(reason: str | None) -> FinishReason:
    """vLLM's CompletionOutput.finish_reason -> ours. None (never finished) counts as aborted."""
    if reason in ("stop", "length", "abort"):
        return reason  # type: ignore[return-value]
    if reason is None:
        return "abort"
    raise EngineError(f"vLLM finished a sample with finish_reason {reason!r}")


def logprobs_from_vllm(sample: Any, top: int | None) -> list[TokenLogprob] | None:
    """vLLM's per-token `{token_id: Logprob(logprob, rank, decoded_token)}` (the sampled token and
    the `top` most likely ones) -> OpenAI-shaped entries; None when logprobs were not asked for."""
    if top is None or getattr(sample, "logprobs", None) is None:
        return None

    return [_vllm_step(token_id, step, top) for token_id, step in zip(sample.token_ids, sample.logprobs)]


def _vllm_entry(token_id: int, lp: Any) -> TopLogprob:
    text = lp.decoded_token if lp.decoded_token is not None else str(token_id)
    return TopLogprob(token=text, logprob=max(float(lp.logprob), -9999.0), bytes=list(text.encode()))


def _vllm_step(token_id: int, step: Any, top: int) -> TokenLogprob:
    """One position's `{token_id: Logprob}` (the token and the `top` most likely) as ours."""
    ranked = sorted(step.items(), key=lambda kv: kv[1].rank if kv[1].rank is not None else 1 << 30)
    chosen = _vllm_entry(token_id, step[token_id])
    return TokenLogprob(**chosen.model_dump(), top_logprobs=[_vllm_entry(i, lp) for i, lp in ranked[:top]])


def prompt_logprobs_from_vllm(output: Any, top: int | None, tokenizer: Any = None) -> list[PromptLogprob] | None:
    """RequestOutput.prompt_logprobs (None for the first token, then `{token_id: Logprob}` per
    position) -> ours; the first token's text from the tokenizer when there is one."""
    steps = getattr(output, "prompt_logprobs", None)
    if top is None or steps is None:
        return None
    out = []
    for token_id, step in zip(list(output.prompt_token_ids or []), steps):
        if step is None:
            text = tokenizer.decode([token_id]) if tokenizer is not None else ""
            out.append(PromptLogprob(token=text, logprob=None, bytes=list(text.encode())))
        else:
            out.append(PromptLogprob(**_vllm_step(token_id, step, top).model_dump()))
    return out


def completions_from_output(
    output: Any, *, repeat: int, started: float, now: float | None = None, logprobs: int | None = None,
    prompt_logprobs: int | None = None, tokenizer: Any = None,
) -> list[Completion]:
    """Our Completions from a final (FINAL_ONLY) `vllm.outputs.RequestOutput`, in sample order."""
    now = time.perf_counter() if now is None else now
    prompt_tokens = len(output.prompt_token_ids or [])
    samples = sorted(output.outputs, key=lambda o: o.index)
    prompt_entries = prompt_logprobs_from_vllm(output, prompt_logprobs, tokenizer)
    completions = [
        Completion(
            text=sample.text,
            finish_reason=finish_reason_from_vllm(sample.finish_reason),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(sample.token_ids),
            latency_s=now - started,
            logprobs=logprobs_from_vllm(sample, logprobs),
            prompt_logprobs=prompt_entries,
        )
        for sample in samples
    ]
    if repeat > 1:
        completions = [c.model_copy() for c in completions for _ in range(repeat)]
    return completions


class DeltaAccumulator:
    """Folds DELTA RequestOutputs of one sample (n=1) into text deltas and a final Completion."""

    def __init__(self, started: float, logprobs: int | None = None):
        self.started = started
        self.top_logprobs = logprobs
        self.logprobs: list[TokenLogprob] | None = [] if logprobs is not None else None
        self.text = ""
        self.tokens = 0
        self.prompt_tokens = 0
        self.finish: str | None = None
        self.finished = False
        self.token_times: list[float] = []  # when each output bringing tokens arrived (vLLM's ITL is per step)

    def add(self, output: Any) -> TextDelta:
        """Take one RequestOutput; return its new text (may be ''), with its tokens' log-probabilities
        and the token counts so far."""
        if output.prompt_token_ids and not self.prompt_tokens:
            self.prompt_tokens = len(output.prompt_token_ids)
        delta, entries = "", []
        for sample in output.outputs:
            if sample.index != 0:
                continue
            delta += sample.text
            self.tokens += len(sample.token_ids)
            if sample.token_ids:
                self.token_times.append(time.perf_counter())
            if self.logprobs is not None:
                entries.extend(logprobs_from_vllm(sample, self.top_logprobs) or [])
            if sample.finish_reason is not None:
                self.finish = sample.finish_reason
        if self.logprobs is not None:
            self.logprobs.extend(entries)
        self.text += delta
        self.finished = self.finished or bool(output.finished)
        return TextDelta(delta, entries, (self.prompt_tokens, self.tokens))

    def completion(self, now: float | None = None) -> Completion:
        now = time.perf_counter() if now is None else now
        return Completion(
            text=self.text,
            finish_reason=finish_reason_from_vllm(self.finish),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.tokens,
            latency_s=now - self.started,
            logprobs=self.logprobs,
            timing=timing_from_token_times(self.started, self.token_times),
        )


# vLLM's names (vllm/exceptions.py, vllm/v1/engine/exceptions.py), matched by class name so that
# this module never imports vLLM for them.
VLLM_CLIENT_ERRORS = frozenset({"VLLMClientError", "VLLMValidationError"})
VLLM_RETRYABLE_ERRORS = frozenset({"GracefulHTTPError", "RetryableRequestError"})
VLLM_SERVER_ERRORS = frozenset({"EngineGenerateError", "EngineDeadError"})


def classify_error(exc: BaseException) -> Exception:
    """vLLM's errors -> ours: bad request -> InvalidRequestError (a 4xx, never retried); engine
    busy or a retryable failure -> EngineOverloadedError (a 503, retried); the rest -> EngineError.

    vLLM 0.33 (vllm/exceptions.py): `VLLMError(Exception)` splits into `VLLMClientError` (the
    request's fault: `VLLMValidationError` for a prompt longer than max_model_len, too many images,
    bad parameters; not a ValueError) and `VLLMServerError`. `GracefulHTTPError(VLLMError)` carries
    an `http_status`: admission control raises its `QueueOverflowError` / `MaxQueuedTokensError`
    (503) when the request queue is full; `RetryableRequestError` is answered 503 by vLLM's own
    server. `AsyncLLM.generate` re-raises client and graceful errors as they are and wraps any
    other failure in `EngineGenerateError` (vllm/v1/engine/exceptions.py), so a retryable error is
    also looked for as its cause. A plain ValueError (older vLLM, or SamplingParams refusing a
    value) is the request's fault too.
    """
    if isinstance(exc, (InvalidRequestError, EngineError)):
        return exc
    for candidate in (exc, exc.__cause__):
        if candidate is not None and _class_names(candidate) & VLLM_RETRYABLE_ERRORS:
            message = getattr(candidate, "message", None) or str(candidate) or type(candidate).__name__
            status = int(getattr(candidate, "http_status", 503))
            if 400 <= status < 500 and status != 429:  # a graceful rejection of this request itself
                return InvalidRequestError(message)
            return EngineOverloadedError(f"vLLM cannot take the request now ({status}): {message}")
    names = _class_names(exc)
    if names & VLLM_CLIENT_ERRORS or (isinstance(exc, ValueError) and not names & VLLM_SERVER_ERRORS):
        return InvalidRequestError(str(exc) or type(exc).__name__)
    return EngineError(f"vLLM failed: {type(exc).__name__}: {exc}")


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


# --------------------------------------------------------------------------- the engine


@dataclass
class _VLLMApi:
    """The few vLLM classes a request needs (the real ones, or a named fake in unit tests)."""

    SamplingParams: Any
    RequestOutputKind: Any


def _current_placement_group() -> PlacementGroup | None:
    try:
        import ray

        if not ray.is_initialized():
            return None
        from ray.util import get_current_placement_group

        return get_current_placement_group()
    except Exception:  # not in Ray, or Ray not installed
        return None


def _gpu_bundles(placement_group: PlacementGroup | None) -> int | None:
    if placement_group is None:
        return None
    return sum(1 for bundle in placement_group.bundle_specs if bundle.get("GPU", 0) > 0)


def _prepare_process_for_ray_executor() -> None:
    """Before building a Ray-executor engine in a replica that holds no GPU itself (its placement
    group's GPU bundles go to vLLM's Ray workers).

    Ray 2.60 leaves CUDA_VISIBLE_DEVICES as it was for a zero-GPU actor (ray/_private/utils.py,
    `set_visible_accelerator_ids`); only with RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1, Ray's former
    default, does it set it to '', which would hide the node's GPUs from vLLM's checks in this
    process: an empty value is removed. vLLM caches `current_platform.get_device_capability`
    (an lru_cache) and may have filled it already; we clear it, which is all Ray Serve LLM does
    here (ray: python/ray/llm/_internal/serve/engines/vllm/vllm_engine.py,
    `_clear_current_platform_cache`)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        del os.environ["CUDA_VISIBLE_DEVICES"]
    try:
        from vllm.platforms import current_platform

        cache_clear = getattr(current_platform.get_device_capability, "cache_clear", None)
        if cache_clear is not None:
            cache_clear()
    except Exception:
        pass


class VLLMEngine:
    """`Engine` over vLLM's AsyncLLM: continuous batching, streaming, abort, n samples, TP."""

    def __init__(
        self,
        model: ModelConfig,
        engine: VLLMEngineConfig | None = None,
        resources: ResourcesConfig | None = None,
        *,
        _async_llm: Any = None,
        _api: _VLLMApi | None = None,
        _processor: Any = None,
    ):
        """Build the engine. The underscored arguments are a test seam: a named fake AsyncLLM, its
        API classes and a processor stand in for vLLM where vLLM cannot run (no CUDA here)."""
        from qvq_ray.models.tiny import resolve_model_path

        self.model_config = model
        self.engine_config = engine or VLLMEngineConfig()
        self.resources = resources or ResourcesConfig()
        self.model_name = model.served_model_name or model.path.rstrip("/").split("/")[-1]
        self._closed = False
        self._in_flight = 0  # requests vLLM is working on (health reports)
        self._prepare_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm-prepare")
        if _async_llm is not None:
            self._llm, self._api, self.processor = _async_llm, _api, _processor
        else:
            vllm = import_vllm()
            from vllm.sampling_params import RequestOutputKind, SamplingParams

            from qvq_ray.models.processor import load_processor

            self.path = resolve_model_path(model.path)
            self.processor = load_processor(self.path, min_pixels=model.min_pixels, max_pixels=model.max_pixels)
            self._api = _VLLMApi(SamplingParams=SamplingParams, RequestOutputKind=RequestOutputKind)
            self._llm = self._start(vllm)
        self.stop_token_ids = stop_token_ids_for(self.processor.tokenizer)

    @classmethod
    def from_config(cls, config: QvqConfig) -> "VLLMEngine":
        if not isinstance(config.engine, VLLMEngineConfig):  # build_engine picks this engine by engine.kind
            raise TypeError(f"VLLMEngine needs a VLLMEngineConfig, got {type(config.engine).__name__}")
        return cls(config.model, config.engine, config.resources)

    def _start(self, vllm: ModuleType) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        placement_group = _current_placement_group()
        backend = choose_executor_backend(
            self.engine_config.distributed_executor_backend,
            self.resources.tensor_parallel_size,
            _gpu_bundles(placement_group),
        )
        kwargs = engine_args_kwargs(
            self.model_config, self.engine_config, self.resources, model_path=self.path, executor_backend=backend
        )
        try:
            args = AsyncEngineArgs(**kwargs)
        except TypeError as exc:  # a vllm_engine_kwargs key this vLLM does not know
            raise ValueError(f"vLLM {getattr(vllm, '__version__', '?')} rejected engine arguments: {exc}") from exc
        logger.info("starting vLLM %s: %s", getattr(vllm, "__version__", "?"), kwargs)
        if backend == "ray" and placement_group is not None:
            _prepare_process_for_ray_executor()
            vllm_config = args.create_engine_config(usage_context=UsageContext.ENGINE_CONTEXT)
            vllm_config.parallel_config.placement_group = placement_group
            return AsyncLLM.from_vllm_config(
                vllm_config, usage_context=UsageContext.ENGINE_CONTEXT, disable_log_stats=args.disable_log_stats
            )
        return AsyncLLM.from_engine_args(args, usage_context=UsageContext.ENGINE_CONTEXT)

    # ------------------------------------------------------------------ requests

    async def _request(self, messages: list[Message], sampling: SamplingConfig, stream: bool) -> tuple[dict[str, Any], Any, int]:
        """(prompt, SamplingParams, repeat). The prompt is built on this engine's prepare thread:
        tokenizing a long chat and decoding its images would otherwise hold the event loop that
        every other request's stream runs on (one thread: a tokenizer must not serve two at once)."""
        if self._closed:
            raise EngineError("engine is closed")
        check_prompt_chars(messages, self.model_config.max_prompt_chars)  # before any tokenizer runs
        loop = asyncio.get_running_loop()
        prompt = await loop.run_in_executor(self._prepare_executor, contained_call, self._prompt_within_context, messages, sampling)
        plan = sampling_params_kwargs(sampling, stop_token_ids=self.stop_token_ids, stream=stream)
        params = dict(plan.params)
        api = self._api
        if api is None:  # never: vLLM's classes, or the test seam's, are set with the engine
            raise EngineError("no vLLM API classes")
        params["output_kind"] = getattr(api.RequestOutputKind, params["output_kind"])
        try:
            sampling_params = api.SamplingParams(**params)
        except Exception as exc:
            raise classify_error(exc) from exc
        return prompt, sampling_params, plan.repeat

    def _prompt_within_context(self, messages: list[Message], sampling: SamplingConfig) -> dict[str, Any]:
        """A chat too long for the context is refused after a chunked count (context_bound.py), not
        after tokenizing all of it; vLLM refuses what is over by less."""
        if raw_prompt_text(messages) is None:
            max_model_len = self.model_config.max_model_len or DEFAULT_MAX_MODEL_LEN
            refuse_surely_over_context(messages, hf_token_counter(self.processor.tokenizer), sampling.max_tokens, max_model_len)
        return self._prompt(messages, sampling.chat_template_kwargs)

    def _prompt(
        self, messages: list[Message], chat_template_kwargs: dict[str, Any] | None = None, add_generation_prompt: bool = True
    ) -> dict[str, Any]:
        """build_prompt for this engine. Whatever fails while preparing a prompt (the template, the
        tokenizer, an image) is the request's input at fault: an InvalidRequestError naming it."""
        try:
            return build_prompt(
                messages, lambda marked, **kw: self._apply_template(marked, add_generation_prompt, **kw),
                self.processor.tokenizer,
                max_images=self.model_config.max_images_per_prompt,
                special_tokens_in_text=self.model_config.special_tokens_in_text,
                chat_template=self.processor.chat_template, chat_template_kwargs=chat_template_kwargs,
            )
        except Exception as exc:
            raise preparation_error(exc) from exc

    def _apply_template(self, template_messages: list[Message], add_generation_prompt: bool = True, **kwargs: Any) -> str:
        prompt: str = self.processor.apply_chat_template(
            template_messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )
        return prompt

    async def _outputs(self, prompt: dict[str, Any], params: Any) -> AsyncGenerator[Any, None]:
        """vLLM's RequestOutputs for one request; aborts it if iteration stops before it finishes."""
        request_id = f"qvq-{uuid.uuid4().hex}"
        outputs = self._llm.generate(prompt, params, request_id)
        finished = False
        self._in_flight += 1
        try:
            async for output in outputs:
                finished = finished or bool(output.finished)
                yield output
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            raise classify_error(exc) from exc
        finally:
            self._in_flight -= 1
            if not finished:
                await self._abort(outputs, request_id)

    async def _abort(self, outputs: Any, request_id: str) -> None:
        try:
            await outputs.aclose()  # vLLM's generate() aborts on GeneratorExit
        except Exception as exc:  # best effort: the explicit abort below is what counts
            logger.debug("closing the outputs of %s: %s", request_id, exc)
        finally:  # also when a cancellation arrives meanwhile: it propagates after the abort
            try:
                await self._llm.abort(request_id)
                logger.debug("aborted vLLM request %s", request_id)
            except Exception as exc:  # already finished or engine gone
                logger.debug("abort of %s: %s", request_id, exc)

    async def generate(self, messages: list[Message], sampling: SamplingConfig) -> list[Completion]:
        started = time.perf_counter()
        prompt, params, repeat = await self._request(messages, sampling, stream=False)
        final = None
        async with aclosing(self._outputs(prompt, params)) as outputs:
            async for output in outputs:
                final = output
        if final is None or not final.finished:
            raise EngineError("vLLM ended the request without a final output")
        return completions_from_output(
            final, repeat=repeat, started=started, logprobs=sampling.logprobs,
            prompt_logprobs=sampling.prompt_logprobs, tokenizer=self.processor.tokenizer,
        )

    async def stream(self, messages: list[Message], sampling: SamplingConfig) -> AsyncGenerator[str | Completion, None]:
        """Text deltas of the one sample, then its final Completion (token counts, finish reason)."""
        if sampling.n != 1:
            raise InvalidRequestError("streaming supports n=1 per request")
        started = time.perf_counter()
        prompt, params, _ = await self._request(messages, sampling, stream=True)
        acc = DeltaAccumulator(started, sampling.logprobs)
        # aclosing: a consumer that stops early closes _outputs at once, which aborts the request.
        async with aclosing(self._outputs(prompt, params)) as outputs:
            async for output in outputs:
                delta = acc.add(output)
                if delta:
                    yield delta
        if not acc.finished:
            raise EngineError("vLLM ended the stream without a final output")
        yield acc.completion()

    # ------------------------------------------------------------------ tokenizer (TokenizerAccess)

    async def tokenize(
        self, messages: list[Message], *, add_special_tokens: bool = True, add_generation_prompt: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A raw prompt tokenized as vLLM tokenizes a TextPrompt; chat messages as `_prompt` builds
        them (one `<|image_pad|>` per image: vLLM expands it to the image's features itself)."""
        check_prompt_chars(messages, self.model_config.max_prompt_chars)
        tokenizer = self.processor.tokenizer

        def ids() -> list[int]:
            raw = raw_prompt_text(messages)
            if raw is not None and raw_prompt_ids(messages) is None:
                return list(tokenizer(raw, add_special_tokens=add_special_tokens)["input_ids"])
            return list(self._prompt(messages, chat_template_kwargs, add_generation_prompt)["prompt_token_ids"])

        tokens = await self._on_prepare_thread(ids)
        return {"tokens": tokens, "max_model_len": self.model_config.max_model_len or DEFAULT_MAX_MODEL_LEN}

    async def detokenize(self, tokens: list[int]) -> str:
        tokenizer = self.processor.tokenizer
        if tokens:
            check_prompt_ids(tokens, len(tokenizer), {})
        return await self._on_prepare_thread(lambda: tokenizer.decode(tokens, skip_special_tokens=False))

    async def tokenizer_info(self) -> dict[str, Any]:
        from qvq_ray.engines.prompt_tokens import tokenizer_info

        return tokenizer_info(self.processor.tokenizer, self.processor.chat_template)

    async def _on_prepare_thread(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise EngineError("engine is closed")
        return await asyncio.get_running_loop().run_in_executor(self._prepare_executor, contained_call, fn)

    async def health(self) -> EngineHealth:
        """Closed or errored (vLLM's `AsyncLLM.errored`: its engine core died) is not alive. A stall
        is not judged here: vLLM's engine core runs its own step loop, invisible from this process,
        and FINAL_ONLY requests report nothing until they end; `check_health` asks vLLM itself."""
        errored = bool(getattr(self._llm, "errored", False))
        reason = "engine is closed" if self._closed else ("vLLM engine core is dead" if errored else None)
        return EngineHealth(alive=reason is None, running=self._in_flight, reason=reason)

    async def check_health(self) -> None:
        if self._closed:
            raise EngineError("engine is closed")
        try:
            await self._llm.check_health()
        except Exception as exc:
            raise EngineError(f"vLLM engine is unhealthy: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._prepare_executor.shutdown(wait=False, cancel_futures=True)
        shutdown = getattr(self._llm, "shutdown", None)
        if shutdown is not None:
            # AsyncLLM.shutdown() is synchronous and blocks until the engine-core processes are
            # gone; off the event loop, Serve and the other requests of this loop keep running.
            await asyncio.to_thread(shutdown)


__all__ = [
    "DEFAULT_MAX_MODEL_LEN",
    "VLLMEngine",
    "build_prompt",
    "choose_executor_backend",
    "classify_error",
    "completions_from_output",
    "engine_args_kwargs",
    "import_vllm",
    "sampling_params_kwargs",
    "stop_token_ids_for",
]
