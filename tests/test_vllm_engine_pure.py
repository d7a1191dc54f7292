"""The vLLM engine's pure parts, without vLLM: argument mapping, sampling and output conversion.

vLLM needs CUDA and cannot be installed here, so what reaches it is checked against its real
API: the field names of `AsyncEngineArgs` and `SamplingParams` as vLLM 0.33's source defines them
(vllm/engine/arg_utils.py `EngineArgs`, vllm/sampling_params.py `SamplingParams`) and, where vLLM
is importable, against the installed classes themselves. The engine's request flow (streaming,
n, abort when the consumer stops, errors) runs over `FakeAsyncLLM`, a stand-in named as such that
behaves like `vllm.v1.engine.async_llm.AsyncLLM.generate` / `abort` / `shutdown`, raising named
copies of vLLM's own exception classes; the real engine runs in
tests/test_vllm_engine_gpu.py and the conformance suite on a CUDA host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import re
import sys
import threading
import types
from dataclasses import dataclass, field
from http import HTTPStatus

import pytest
import yaml

from qvq_ray.config import ModelConfig, QvqConfig, ResourcesConfig, SamplingConfig, VLLMEngineConfig
from qvq_ray.engines.base import EngineError, EngineOverloadedError, InvalidRequestError, raw_prompt, split_images
from qvq_ray.engines.vllm_engine import (
    DEFAULT_MAX_MODEL_LEN,
    DeltaAccumulator,
    VLLMEngine,
    _prepare_process_for_ray_executor,
    _VLLMApi,
    build_prompt,
    choose_executor_backend,
    classify_error,
    completions_from_output,
    engine_args_kwargs,
    sampling_params_kwargs,
    stop_token_ids_for,
)
from tests.conftest import png_bytes

# Fields of vllm.engine.arg_utils.EngineArgs / AsyncEngineArgs we set, as vLLM 0.33 declares them.
VLLM_ENGINE_ARGS_FIELDS = {
    "model", "served_model_name", "tokenizer", "dtype", "trust_remote_code", "seed", "max_model_len",
    "distributed_executor_backend", "tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization",
    "max_num_seqs", "max_num_batched_tokens", "enforce_eager", "limit_mm_per_prompt", "mm_processor_kwargs",
    "generation_config", "override_generation_config", "quantization", "kv_cache_dtype", "enable_prefix_caching",
    "disable_log_stats", "enable_log_requests",
}
# Fields of vllm.sampling_params.SamplingParams, as vLLM 0.33 declares them (the ones we set and more).
VLLM_SAMPLING_FIELDS = {
    "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k", "min_p",
    "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs", "prompt_logprobs",
    "detokenize", "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output",
    "output_kind", "structured_outputs", "logit_bias", "allowed_token_ids", "extra_args", "bad_words",
}
# Keys of vllm.inputs.data.TextPrompt and TokensPrompt (vLLM 0.33): a prompt dict with other keys is not one.
VLLM_TEXT_PROMPT_KEYS = {"prompt", "multi_modal_data", "mm_processor_kwargs", "multi_modal_uuids", "cache_salt"}
VLLM_TOKENS_PROMPT_KEYS = {"prompt_token_ids", "token_type_ids", "multi_modal_data", "mm_processor_kwargs", "multi_modal_uuids", "cache_salt"}
QVQ = ModelConfig(path="Qwen/QVQ-72B-Preview", served_model_name="qvq-72b-preview", dtype="bfloat16", max_pixels=1003520, max_model_len=32768)


def _installed_fields(module: str, name: str) -> set[str] | None:
    try:
        mod = __import__(module, fromlist=[name])
    except Exception:
        return None
    cls = getattr(mod, name)
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    return set(getattr(cls, "__struct_fields__", ())) or None


# --------------------------------------------------------------------------- engine arguments


def test_engine_args_for_qvq_72b_tp4():
    kwargs = engine_args_kwargs(
        QVQ,
        VLLMEngineConfig(max_batch_size=64, gpu_memory_utilization=0.92),
        ResourcesConfig(num_cpus=8, tensor_parallel_size=4),
        executor_backend="ray",
    )
    assert kwargs == {
        "model": "Qwen/QVQ-72B-Preview",
        "served_model_name": "qvq-72b-preview",
        "dtype": "bfloat16",
        "trust_remote_code": False,
        "tensor_parallel_size": 4,
        "distributed_executor_backend": "ray",
        "max_model_len": 32768,
        "limit_mm_per_prompt": {"image": 8, "video": 0},
        "mm_processor_kwargs": {"min_pixels": 3136, "max_pixels": 1003520},
        "gpu_memory_utilization": 0.92,
        "max_num_seqs": 64,
        "enforce_eager": False,
        "generation_config": "vllm",  # the checkpoint's generation_config never applies
    }
    assert set(kwargs) <= VLLM_ENGINE_ARGS_FIELDS
    installed = _installed_fields("vllm.engine.arg_utils", "AsyncEngineArgs")
    if installed is not None:
        assert set(kwargs) <= installed


def test_engine_args_defaults_and_passthrough():
    kwargs = engine_args_kwargs(
        ModelConfig(path="/models/qvq", max_images_per_prompt=2),
        VLLMEngineConfig(max_batch_size=12, max_num_seqs=None, enforce_eager=True, vllm_engine_kwargs={"kv_cache_dtype": "fp8"}),
        ResourcesConfig(),
        model_path="/resolved/qvq",
    )
    assert kwargs["max_model_len"] == DEFAULT_MAX_MODEL_LEN == 32768
    assert kwargs["max_num_seqs"] == 12 and kwargs["enforce_eager"] is True
    assert kwargs["model"] == "/resolved/qvq" and kwargs["served_model_name"] == "qvq"
    assert kwargs["limit_mm_per_prompt"] == {"image": 2, "video": 0}
    assert kwargs["kv_cache_dtype"] == "fp8"
    assert "distributed_executor_backend" not in kwargs  # TP 1: vLLM's own default
    with pytest.raises(ValueError, match="max_model_len"):
        engine_args_kwargs(ModelConfig(), VLLMEngineConfig(vllm_engine_kwargs={"max_model_len": 4096}), ResourcesConfig())


@pytest.mark.parametrize(
    "configured, tp, bundles, expected",
    [
        ("auto", 1, None, None),
        ("auto", 1, 4, None),
        ("auto", 4, 4, "ray"),  # a Serve replica in its STRICT_PACK group of 4 GPU bundles
        ("auto", 4, None, "mp"),  # a Ray Data actor owning 4 GPUs, or a plain process
        ("auto", 4, 2, "mp"),
        ("mp", 4, 4, "mp"),
        ("ray", 2, None, "ray"),
    ],
)
def test_executor_backend(configured, tp, bundles, expected):
    assert choose_executor_backend(configured, tp, bundles) == expected


# --------------------------------------------------------------------------- sampling


def test_sampling_params_are_all_explicit():
    plan = sampling_params_kwargs(
        SamplingConfig(temperature=0.7, top_p=0.9, top_k=20, seed=3, stop=["END"], n=4, max_tokens=8192, repetition_penalty=1.05),
        stop_token_ids=[151645, 151643],
        stream=False,
    )
    assert plan.repeat == 1
    assert plan.params == {
        "n": 4, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.0, "seed": 3, "stop": ["END"],
        "stop_token_ids": [151645, 151643], "include_stop_str_in_output": False, "ignore_eos": False,
        "max_tokens": 8192, "min_tokens": 0, "repetition_penalty": 1.05, "presence_penalty": 0.0,
        "frequency_penalty": 0.0, "logprobs": None, "prompt_logprobs": None, "skip_special_tokens": True,
        "output_kind": "FINAL_ONLY",
    }
    assert set(plan.params) <= VLLM_SAMPLING_FIELDS
    vllm_style = sampling_params_kwargs(
        SamplingConfig(temperature=1.0, min_p=0.05, min_tokens=3, presence_penalty=0.5, frequency_penalty=-0.5, logprobs=2),
        stop_token_ids=[], stream=False,
    ).params
    assert (vllm_style["min_p"], vllm_style["min_tokens"], vllm_style["presence_penalty"]) == (0.05, 3, 0.5)
    assert (vllm_style["frequency_penalty"], vllm_style["logprobs"]) == (-0.5, 2)
    installed = _installed_fields("vllm.sampling_params", "SamplingParams")
    if installed is not None:
        assert set(plan.params) <= installed


def test_greedy_n_is_one_request_repeated_and_streams_are_delta():
    plan = sampling_params_kwargs(SamplingConfig(n=3, max_tokens=16, seed=9, top_k=5), stop_token_ids=[1], stream=True)
    assert plan.repeat == 3
    assert (plan.params["n"], plan.params["seed"], plan.params["top_k"], plan.params["top_p"]) == (1, None, 0, 1.0)
    assert plan.params["output_kind"] == "DELTA"


def test_stop_tokens_of_the_tiny_checkpoint(tiny_model_dir):
    from qvq_ray.models.processor import load_processor

    tok = load_processor(tiny_model_dir).tokenizer
    ids = stop_token_ids_for(tok)
    assert tok.convert_tokens_to_ids("<|im_end|>") in ids and tok.convert_tokens_to_ids("<|endoftext|>") in ids
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- prompt


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from qvq_ray.models.processor import load_processor

    return load_processor(tiny_model_dir, max_pixels=200704)


def _template(processor):
    return lambda msgs: processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def _build(processor, messages, **kwargs):
    kwargs.setdefault("max_images", 4)
    return build_prompt(messages, _template(processor), processor.tokenizer, **kwargs)


def test_prompt_has_one_placeholder_per_image_in_order(processor):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Think."}]},
        {"role": "user", "content": [
            {"type": "image", "image": png_bytes("1", size=(56, 56))},
            {"type": "text", "text": "and"},
            {"type": "image", "image": png_bytes("2", size=(112, 56))},
            {"type": "text", "text": "Which is larger?"},
        ]},
    ]
    prompt = _build(processor, messages)
    assert set(prompt) == {"prompt_token_ids", "multi_modal_data"}  # a vllm.inputs TokensPrompt
    ids = prompt["prompt_token_ids"]
    text = processor.tokenizer.decode(ids)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert "<|vision_start|><|image_pad|><|vision_end|>and<|vision_start|><|image_pad|><|vision_end|>Which is larger?" in text
    assert text.endswith("<|im_start|>assistant\n") and text.startswith("<|im_start|>system\nThink.")
    # without special tokens in the text: exactly the ids vLLM would get by tokenizing the rendered template
    rendered = _template(processor)(split_images(messages, max_images=4)[0])
    assert ids == processor.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    images = prompt["multi_modal_data"]["image"]
    assert [im.size for im in images] == [(56, 56), (112, 56)] and images[0].mode == "RGB"
    text_only = _build(processor, [{"role": "user", "content": "hi"}])
    assert "multi_modal_data" not in text_only


SPECIAL_TOKENS = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]


@pytest.mark.parametrize("with_image", [True, False])
@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_special_tokens_typed_in_text_are_text_in_the_token_prompt(processor, token, with_image):
    """A special token typed in a message (user or system) is tokenized as its characters: the prompt
    holds exactly one image placeholder per image and the template's own structure, nothing more."""
    tok = processor.tokenizer
    user = ([{"type": "image", "image": png_bytes()}] if with_image else []) + [{"type": "text", "text": f"what is {token} here"}]
    messages = [{"role": "system", "content": f"sys {token}"}, {"role": "user", "content": user}]
    ids = _build(processor, messages)["prompt_token_ids"]
    special = {name: tok.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    assert ids.count(special["<|image_pad|>"]) == ids.count(special["<|vision_start|>"]) == ids.count(special["<|vision_end|>"]) == int(with_image)
    assert special["<|video_pad|>"] not in ids and special["<|endoftext|>"] not in ids
    assert ids.count(special["<|im_start|>"]) == 3 and ids.count(special["<|im_end|>"]) == 2  # system, user, assistant turns
    assert f"what is {token} here" in tok.decode(ids) and f"sys {token}" in tok.decode(ids)  # the typed text, as text


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_special_tokens_in_text_are_refused_when_configured(processor, token):
    messages = [{"role": "user", "content": [{"type": "image", "image": png_bytes()}, {"type": "text", "text": f"a {token} b"}]}]
    with pytest.raises(InvalidRequestError, match=f"messages\\[0\\].*{re.escape(token)}.*refuse"):
        _build(processor, messages, special_tokens_in_text="refuse")
    assert _build(processor, [{"role": "user", "content": "no special tokens"}], special_tokens_in_text="refuse")["prompt_token_ids"]


def test_a_raw_prompt_goes_as_text_with_its_special_tokens_but_no_media_placeholders(processor):
    text = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert _build(processor, raw_prompt(text)) == {"prompt": text}  # vLLM parses them: a raw prompt's point
    for token in ("<|image_pad|>", "<|video_pad|>"):
        with pytest.raises(InvalidRequestError, match=re.escape(token)):
            _build(processor, raw_prompt(f"look: {token}"))


@pytest.mark.parametrize(
    "messages, needle",
    [
        ([{"role": "user", "content": [{"type": "image", "image": b"garbage"}]}], "cannot decode image"),
        ([{"role": "user", "content": [{"type": "image", "image": "a string"}]}], "encoded image bytes"),
        ([{"role": "user", "content": [{"type": "image", "image": png_bytes()}] * 3}], "3 images"),
        ([{"role": "user", "content": [{"type": "video", "video": b""}]}], "video"),
        ([{"role": "robot", "content": "x"}], "role"),
        ([], "non-empty"),
    ],
)
def test_bad_prompts_are_invalid_requests(processor, messages, needle):
    with pytest.raises(InvalidRequestError, match=needle):
        _build(processor, messages, max_images=2)


# --------------------------------------------------------------------------- outputs


@dataclass
class FakeCompletionOutput:
    """Field-for-field vllm.outputs.CompletionOutput (index, text, token_ids, finish_reason...)."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: object = None
    finish_reason: str | None = None
    stop_reason: object = None


@dataclass
class FakeRequestOutput:
    """Field-for-field vllm.outputs.RequestOutput (request_id, prompt_token_ids, outputs, finished)."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: object
    outputs: list[FakeCompletionOutput]
    finished: bool


@dataclass
class FakeLogprob:
    """Field-for-field vllm.logprobs.Logprob (logprob, rank, decoded_token)."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


def test_vllm_logprobs_become_openai_entries_with_the_sampled_token_and_the_top_ones():
    from qvq_ray.engines.vllm_engine import completions_from_output

    steps = [
        {11: FakeLogprob(-0.1, 1, "Hi"), 12: FakeLogprob(-2.5, 2, "Hello")},
        # the sampled token (rank 3) is not among the top 2
        {21: FakeLogprob(-3.0, 3, "!"), 22: FakeLogprob(-0.2, 1, "."), 23: FakeLogprob(-1.9, 2, "?")},
    ]
    output = FakeRequestOutput("r", "p", [1, 2], None, [FakeCompletionOutput(0, "Hi!", [11, 21], logprobs=steps, finish_reason="stop")], True)
    (completion,) = completions_from_output(output, repeat=1, started=0.0, now=1.0, logprobs=2)
    first, second = completion.logprobs
    assert (first.token, first.logprob, [t.token for t in first.top_logprobs]) == ("Hi", -0.1, ["Hi", "Hello"])
    assert (second.token, second.logprob, [t.token for t in second.top_logprobs]) == ("!", -3.0, [".", "?"])
    assert completions_from_output(output, repeat=1, started=0.0, now=1.0)[0].logprobs is None


def test_final_output_to_completions_in_sample_order():
    output = FakeRequestOutput("r", "p", list(range(40)), None, [
        FakeCompletionOutput(2, "c", [5, 6, 7], finish_reason="length"),
        FakeCompletionOutput(0, "a", [1], finish_reason="stop"),
        FakeCompletionOutput(1, "b", [2, 3], finish_reason="abort"),
    ], True)
    out = completions_from_output(output, repeat=1, started=10.0, now=12.5)
    assert [(c.text, c.finish_reason, c.completion_tokens, c.prompt_tokens) for c in out] == [
        ("a", "stop", 1, 40), ("b", "abort", 2, 40), ("c", "length", 3, 40)
    ]
    assert out[0].latency_s == 2.5
    single = FakeRequestOutput("r", "p", [1, 2], None, [FakeCompletionOutput(0, "x", [9], finish_reason="stop")], True)
    assert [c.text for c in completions_from_output(single, repeat=3, started=0.0)] == ["x", "x", "x"]
    with pytest.raises(EngineError, match="finish_reason 'error'"):
        completions_from_output(
            FakeRequestOutput("r", "p", [1], None, [FakeCompletionOutput(0, "", [], finish_reason="error")], True), repeat=1, started=0.0
        )


def test_delta_outputs_accumulate():
    acc = DeltaAccumulator(started=0.0)
    chunks = [
        FakeRequestOutput("r", "p", [1, 2, 3], None, [FakeCompletionOutput(0, "He", [7])], False),
        FakeRequestOutput("r", "p", None, None, [FakeCompletionOutput(0, "", [8])], False),
        FakeRequestOutput("r", "p", None, None, [FakeCompletionOutput(0, "llo", [9, 10], finish_reason="length")], True),
    ]
    assert [acc.add(c) for c in chunks] == ["He", "", "llo"]
    final = acc.completion(now=1.0)
    assert (final.text, final.finish_reason, final.prompt_tokens, final.completion_tokens) == ("Hello", "length", 3, 4)


# vLLM's errors, named and related as vLLM 0.33 defines them: vllm/exceptions.py (VLLMError and its
# client / server split, GracefulHTTPError with the admission-control QueueOverflowError) and
# vllm/v1/engine/exceptions.py (EngineGenerateError, EngineDeadError). VLLMValidationError is a
# VLLMClientError, not a ValueError. RetryableRequestError (vllm.exceptions; vLLM's server answers it
# 503) is only matched by name; its base class here is VLLMError.
class VLLMError(Exception):
    pass


class VLLMClientError(VLLMError):
    pass


class VLLMServerError(VLLMError):
    pass


class VLLMValidationError(VLLMClientError):
    pass


class GracefulHTTPError(VLLMError):
    def __init__(self, message: str, http_status: HTTPStatus):
        super().__init__(message)
        self.message = message
        self.http_status = http_status


class QueueOverflowError(GracefulHTTPError):
    def __init__(self):
        super().__init__(
            "The engine is currently busy and cannot accept new requests. Please try again later or on a different instance.",
            HTTPStatus.SERVICE_UNAVAILABLE,
        )


class RetryableRequestError(VLLMError):
    pass


class EngineGenerateError(VLLMServerError):
    pass


class EngineDeadError(VLLMServerError):
    pass


def _wrapped_by_generate(cause: Exception) -> EngineGenerateError:
    """What AsyncLLM.generate raises for a failure it does not re-raise as is: `raise EngineGenerateError() from e`."""
    try:
        raise EngineGenerateError() from cause
    except EngineGenerateError as exc:
        return exc


@pytest.mark.parametrize(
    "error, expected",
    [
        (VLLMValidationError("The decoder prompt (length 40000) is longer"), InvalidRequestError),
        (ValueError("n must be 1 when using greedy sampling"), InvalidRequestError),  # SamplingParams, older vLLM
        (QueueOverflowError(), EngineOverloadedError),  # admission control: 503
        (RetryableRequestError("Multi-modal processor cache miss."), EngineOverloadedError),
        (_wrapped_by_generate(RetryableRequestError("cache miss")), EngineOverloadedError),
        (GracefulHTTPError("too large for this tier", HTTPStatus.BAD_REQUEST), InvalidRequestError),
        (EngineDeadError(), EngineError),
        (EngineGenerateError(), EngineError),
        (_wrapped_by_generate(ValueError("deep inside the engine")), EngineError),  # vLLM's server error stays one
        (RuntimeError("x"), EngineError),
    ],
)
def test_error_classification(error, expected):
    assert not issubclass(VLLMValidationError, ValueError) and issubclass(QueueOverflowError, VLLMError)
    classified = classify_error(error)
    assert type(classified) is expected
    if isinstance(error, GracefulHTTPError):
        assert error.message in str(classified)


def test_an_overloaded_engine_is_a_503_in_openai_shape():
    """The ingress answers an EngineOverloadedError (as Serve hands it over: wrapped, with `cause`)
    with 503 and OpenAI's error body; anything else unexpected stays a 500."""
    import json

    from qvq_ray.serve.ingress import _server_error

    class RayTaskErrorLike(Exception):
        def __init__(self, cause):
            super().__init__(str(cause))
            self.cause = cause

    busy = asyncio.run(_server_error(None, RayTaskErrorLike(classify_error(QueueOverflowError()))))
    body = json.loads(busy.body)
    assert busy.status_code == 503 and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "server_error" and "currently busy" in body["error"]["message"]
    assert asyncio.run(_server_error(None, RuntimeError("bug"))).status_code == 500


def test_ray_executor_preparation_leaves_visible_devices_and_clears_the_capability_cache(monkeypatch):
    """Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone for a zero-GPU replica; only an empty value (Ray's
    old override, RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1) is removed. vLLM's cached device capability
    is cleared, as Ray Serve LLM does."""
    cleared = []

    def get_device_capability():
        return None

    get_device_capability.cache_clear = lambda: cleared.append(True)
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = types.SimpleNamespace(get_device_capability=get_device_capability)
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    _prepare_process_for_ray_executor()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5" and cleared == [True]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    _prepare_process_for_ray_executor()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and cleared == [True, True]


# --------------------------------------------------------------------------- request flow over a named fake


class FakeRequestOutputKind(enum.Enum):
    """vllm.sampling_params.RequestOutputKind's members."""

    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class FakeSamplingParams:
    """Records the kwargs vllm.SamplingParams would get; refuses fields it does not have."""

    def __init__(self, **kwargs):
        unknown = set(kwargs) - VLLM_SAMPLING_FIELDS
        if unknown:
            raise TypeError(f"unexpected keyword arguments {unknown}")
        self.__dict__.update(kwargs)


@dataclass
class FakeAsyncLLM:
    """A stand-in for vllm.v1.engine.async_llm.AsyncLLM (vLLM needs CUDA): same `generate`
    contract (an async generator of RequestOutputs that aborts itself when closed or cancelled),
    `abort`, `check_health`, `shutdown`. Each sample is `tokens` pieces 't0', 't1', ..."""

    tokens: int = 4
    delay: float = 0.0
    fail: Exception | None = None
    cleanup_error: BaseException | None = None  # raised while it aborts itself (e.g. a cancellation)
    requests: list = field(default_factory=list)
    aborted: list = field(default_factory=list)
    closed: list = field(default_factory=list)
    shut_in_thread: int | None = None  # the thread that called shutdown()

    async def generate(self, prompt, sampling_params, request_id):
        schema = VLLM_TOKENS_PROMPT_KEYS if "prompt_token_ids" in prompt else VLLM_TEXT_PROMPT_KEYS
        if not set(prompt) <= schema or not ({"prompt", "prompt_token_ids"} & set(prompt)):
            raise TypeError(f"not a vLLM TextPrompt or TokensPrompt: {sorted(prompt)}")
        self.requests.append((prompt, sampling_params, request_id))
        if self.fail is not None:
            raise self.fail
        delta = sampling_params.output_kind is FakeRequestOutputKind.DELTA
        try:
            for step in range(self.tokens):
                if self.delay:
                    await asyncio.sleep(self.delay)
                last = step == self.tokens - 1
                if delta:
                    yield FakeRequestOutput(request_id, None, [1] * 30 if step == 0 else None, None,
                                            [FakeCompletionOutput(0, f"t{step}", [step], finish_reason="length" if last else None)], last)
                elif last:
                    samples = [
                        FakeCompletionOutput(i, "".join(f"t{k}" for k in range(self.tokens)) + f"#{i}", list(range(self.tokens)), finish_reason="length")
                        for i in range(sampling_params.n)
                    ]
                    yield FakeRequestOutput(request_id, None, [1] * 30, None, samples, True)
        except (GeneratorExit, asyncio.CancelledError):
            if self.cleanup_error is not None:
                raise self.cleanup_error
            await self.abort(request_id)
            raise
        finally:
            self.closed.append(request_id)

    async def abort(self, request_id):
        self.aborted.append(request_id)

    async def check_health(self):
        return None

    def shutdown(self):  # AsyncLLM.shutdown is a plain, blocking method
        self.shut_in_thread = threading.get_ident()


def _engine(processor, llm, **model):
    return VLLMEngine(
        ModelConfig(path="tiny", max_images_per_prompt=2, **model),
        VLLMEngineConfig(),
        _async_llm=llm,
        _api=_VLLMApi(SamplingParams=FakeSamplingParams, RequestOutputKind=FakeRequestOutputKind),
        _processor=processor,
    )


MSG = [{"role": "user", "content": [{"type": "image", "image": png_bytes()}, {"type": "text", "text": "What?"}]}]


def test_generate_and_stream_over_the_async_engine(processor):
    llm = FakeAsyncLLM(tokens=4)
    engine = _engine(processor, llm)

    async def go():
        sampled = await engine.generate(MSG, SamplingConfig(temperature=1.0, seed=1, n=3, max_tokens=4))
        items = [x async for x in engine.stream(MSG, SamplingConfig(max_tokens=4))]
        return sampled, items

    sampled, items = asyncio.run(go())
    assert [c.text for c in sampled] == ["t0t1t2t3#0", "t0t1t2t3#1", "t0t1t2t3#2"]
    assert all(c.completion_tokens == 4 and c.prompt_tokens == 30 and c.finish_reason == "length" for c in sampled)
    assert items[:-1] == ["t0", "t1", "t2", "t3"] and items[-1].text == "t0t1t2t3" and items[-1].completion_tokens == 4
    (prompt, params, _), (_, stream_params, _) = llm.requests
    assert params.output_kind is FakeRequestOutputKind.FINAL_ONLY and params.n == 3 and params.seed == 1
    assert stream_params.output_kind is FakeRequestOutputKind.DELTA
    assert engine.stop_token_ids == params.stop_token_ids and params.stop_token_ids
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert prompt["prompt_token_ids"].count(image_pad) == 1 and len(prompt["multi_modal_data"]["image"]) == 1
    assert llm.aborted == []  # finished requests are not aborted


def test_consumer_that_stops_aborts_the_request(processor):
    llm = FakeAsyncLLM(tokens=50, delay=0.001)
    engine = _engine(processor, llm)

    async def close_early():
        agen = engine.stream(MSG, SamplingConfig(max_tokens=50))
        got = [await agen.__anext__(), await agen.__anext__()]
        await agen.aclose()  # Serve closes the stream when the client disconnects
        return got

    async def break_early():
        async for _ in engine.stream(MSG, SamplingConfig(max_tokens=50)):
            break  # the generator is dropped without aclose: the loop's finalizer closes it
        for _ in range(5):
            await asyncio.sleep(0)

    async def cancel():
        task = asyncio.create_task(engine.generate(MSG, SamplingConfig(max_tokens=50)))
        await asyncio.sleep(0.01)
        task.cancel()  # the solver cuts a loop
        with pytest.raises(asyncio.CancelledError):
            await task

    assert asyncio.run(close_early()) == ["t0", "t1"]
    asyncio.run(break_early())
    asyncio.run(cancel())
    request_ids = [r[2] for r in llm.requests]
    assert len(request_ids) == 3
    for request_id in request_ids:
        assert request_id in llm.aborted and request_id in llm.closed


def test_a_cancellation_while_vllm_aborts_is_not_swallowed_and_the_abort_still_happens(processor):
    llm = FakeAsyncLLM(tokens=50, cleanup_error=asyncio.CancelledError())
    engine = _engine(processor, llm)

    async def close_early():
        agen = engine.stream(MSG, SamplingConfig(max_tokens=50))
        await anext(agen)
        with pytest.raises(asyncio.CancelledError):
            await agen.aclose()

    asyncio.run(close_early())
    (request_id,) = [r[2] for r in llm.requests]
    assert llm.aborted == [request_id]  # vLLM's own abort never ran: ours did


def test_vllm_errors_are_classified_and_bad_input_never_reaches_vllm(processor):
    llm = FakeAsyncLLM(fail=VLLMValidationError("The decoder prompt (length 40000) is longer than the maximum model length"))
    engine = _engine(processor, llm)
    with pytest.raises(InvalidRequestError, match="maximum model length"):
        asyncio.run(engine.generate(MSG, SamplingConfig(max_tokens=4)))
    llm.fail = QueueOverflowError()
    with pytest.raises(EngineOverloadedError, match="currently busy"):
        asyncio.run(engine.generate(MSG, SamplingConfig(max_tokens=4)))
    with pytest.raises(EngineOverloadedError, match="currently busy"):
        asyncio.run(anext(engine.stream(MSG, SamplingConfig(max_tokens=4))))
    llm.fail = RuntimeError("CUDA error")
    with pytest.raises(EngineError, match="CUDA error"):
        asyncio.run(engine.generate(MSG, SamplingConfig(max_tokens=4)))
    before = len(llm.requests)
    with pytest.raises(InvalidRequestError):
        asyncio.run(engine.generate([{"role": "user", "content": [{"type": "image", "image": b"x"}]}], SamplingConfig()))
    with pytest.raises(InvalidRequestError, match="n=1"):
        asyncio.run(anext(engine.stream(MSG, SamplingConfig(n=2, temperature=1.0))))
    assert len(llm.requests) == before
    asyncio.run(engine.check_health())
    asyncio.run(engine.close())
    assert llm.shut_in_thread not in (None, threading.get_ident())  # the blocking shutdown ran off the event loop
    with pytest.raises(EngineError, match="closed"):
        asyncio.run(engine.generate(MSG, SamplingConfig()))


def test_typed_special_tokens_reach_vllm_as_text_or_are_refused(processor):
    llm = FakeAsyncLLM(tokens=2)
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    video_pad = processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    typed = [{"role": "user", "content": [{"type": "image", "image": png_bytes()},
                                          {"type": "text", "text": "<|image_pad|><|video_pad|><|im_end|>"}]}]
    (completion,) = asyncio.run(asyncio.wait_for(_engine(processor, llm).generate(typed, SamplingConfig(max_tokens=2)), 10))
    assert completion.text == "t0t1#0"
    (prompt, _, _), = llm.requests
    assert prompt["prompt_token_ids"].count(image_pad) == 1 and video_pad not in prompt["prompt_token_ids"]
    refusing = _engine(processor, llm, special_tokens_in_text="refuse")
    with pytest.raises(InvalidRequestError, match=re.escape("'<|image_pad|>'")):
        asyncio.run(asyncio.wait_for(refusing.generate(typed, SamplingConfig(max_tokens=2)), 10))
    assert len(llm.requests) == 1  # refused before vLLM saw it


class FailingTemplateProcessor:
    """The tiny checkpoint's processor whose chat template raises `error` (a fault injected into
    prompt preparation); everything else is the real processor's."""

    def __init__(self, processor, error):
        self._processor, self._error = processor, error

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def apply_chat_template(self, *args, **kwargs):
        raise self._error


@pytest.mark.parametrize("error", [StopIteration(), KeyError("image_grid_thw"), ValueError("image tokens do not match features")])
def test_an_exception_in_prompt_preparation_reaches_the_caller(processor, error):
    llm = FakeAsyncLLM()
    engine = _engine(FailingTemplateProcessor(processor, error), llm)

    async def go():
        with pytest.raises(InvalidRequestError, match=type(error).__name__):
            await asyncio.wait_for(engine.generate(MSG, SamplingConfig(max_tokens=2)), 10)
        with pytest.raises(InvalidRequestError, match=type(error).__name__):
            await asyncio.wait_for(anext(engine.stream(MSG, SamplingConfig(max_tokens=2))), 10)

    asyncio.run(go())
    assert llm.requests == []


# --------------------------------------------------------------------------- wiring: build_engine, Serve, configs


def test_build_engine_without_vllm_names_the_extra():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    from qvq_ray.engines import build_engine

    config = QvqConfig.model_validate({"engine": {"kind": "vllm"}})
    with pytest.raises(ImportError, match=r"pip install 'qvq-ray\[vllm\]'"):
        build_engine(config)


def test_build_engine_openai_and_unknown():
    from qvq_ray.engines import build_engine
    from qvq_ray.engines.openai_engine import OpenAIEngine

    engine = build_engine(QvqConfig.model_validate({"engine": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1"}, "model": {"path": "m"}}))
    assert isinstance(engine, OpenAIEngine) and engine.model_name == "m"
    with pytest.raises(Exception, match="kind"):
        QvqConfig.model_validate({"engine": {"kind": "sglang"}})


def test_serve_placement_for_vllm_tp_and_openai():
    from qvq_ray.serve.app import engine_deployment_options

    vllm_tp4 = QvqConfig.model_validate({"engine": {"kind": "vllm"}, "resources": {"num_cpus": 8, "tensor_parallel_size": 4}})
    options = engine_deployment_options(vllm_tp4)
    assert options["placement_group_bundles"] == [{"CPU": 8.0, "GPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}]
    assert options["placement_group_strategy"] == "STRICT_PACK"
    assert options["ray_actor_options"] == {"num_cpus": 8.0, "num_gpus": 0}  # every bundle's GPU is a vLLM worker's
    vllm_tp1 = QvqConfig.model_validate({"engine": {"kind": "vllm"}, "resources": {"num_gpus": 1}})
    assert engine_deployment_options(vllm_tp1)["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}
    remote = QvqConfig.model_validate({"engine": {"kind": "openai", "base_url": "http://x/v1"}, "resources": {"tensor_parallel_size": 4}})
    assert engine_deployment_options(remote)["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0}
    assert "placement_group_bundles" not in engine_deployment_options(remote)


def _app_config(path):
    spec = yaml.safe_load(open(path))
    return spec["applications"][0]["args"]["config"]


def test_shipped_configs_validate():
    raw = _app_config("serve_configs/qvq-72b-vllm-tp4.yaml")
    assert raw["model"]["max_model_len"] == 32768  # set explicitly, not the checkpoint's 128000
    tp4 = QvqConfig.model_validate(raw)
    assert (tp4.engine.kind, tp4.resources.tensor_parallel_size) == ("vllm", 4)
    scaling = tp4.serve.engine_autoscaling
    assert scaling.min_replicas == 1 and scaling.max_replicas > 1
    remote = QvqConfig.model_validate(_app_config("serve_configs/remote-openai.yaml"))
    assert remote.engine.kind == "openai" and remote.engine.base_url.endswith("/v1") and remote.engine.api_key is None
    batch = QvqConfig.from_yaml("pipelines/qvq-72b-vllm.yaml")
    assert batch.engine.kind == "vllm" and batch.model.max_model_len == 32768
    assert batch.batch.max_concurrent_solves >= (batch.engine.max_num_seqs or batch.engine.max_batch_size)
    old = QvqConfig.from_yaml("pipelines/qvq-72b-hf.yaml")  # existing configs still validate
    assert old.engine.kind == "hf"


def test_cli_solve_engine_options(monkeypatch, capsys):
    from qvq_ray import cli, jobs

    class Captured(Exception):
        pass

    seen = {}

    def capture(input, out, config, **kwargs):  # stands in for the Ray job: only the config is checked
        seen["config"] = config
        raise Captured

    monkeypatch.setattr(jobs, "run_solve_job", capture)
    with pytest.raises(Captured):
        cli.main(["solve", "in.jsonl", "--out", "o", "--model", "qvq-72b-preview", "--base-url", "http://h:8000/v1"])
    assert (seen["config"].engine.kind, seen["config"].engine.base_url) == ("openai", "http://h:8000/v1")
    assert seen["config"].model.path == "qvq-72b-preview"
    with pytest.raises(Captured):
        cli.main(["solve", "in.jsonl", "--out", "o", "--engine", "vllm"])
    assert seen["config"].engine.kind == "vllm"
    assert cli.main(["solve", "in.jsonl", "--out", "o", "--engine", "openai"]) == 2
    assert cli.main(["solve", "in.jsonl", "--out", "o", "--engine", "hf", "--base-url", "http://h/v1"]) == 2
    assert "--base-url" in capsys.readouterr().err


def test_a_chat_surely_over_the_context_is_refused_on_the_prepare_thread_before_vllm(processor):
    """Counted a chunk at a time off the event loop (context_bound.py); vLLM never sees it."""
    llm = FakeAsyncLLM(tokens=4)
    engine = _engine(processor, llm, max_model_len=2048)
    threads: list[str] = []
    real = engine._prompt_within_context
    engine._prompt_within_context = lambda *a: threads.append(threading.current_thread().name) or real(*a)
    long = [{"role": "user", "content": "seven plus eleven is eighteen " * 8000}]
    with pytest.raises(InvalidRequestError, match=r"at least \d+ tokens.*limit of 2048"):
        asyncio.run(engine.generate(long, SamplingConfig(max_tokens=4)))
    assert llm.requests == [] and threads and threads[0].startswith("vllm-prepare")
    asyncio.run(engine.generate(MSG, SamplingConfig(max_tokens=4)))  # and the engine goes on
    assert len(llm.requests) == 1


# --------------------------------------------------------------------------- issue 22: lm-eval and load generators


def test_ignore_eos_and_prompt_logprobs_reach_sampling_params():
    """vLLM's ignore_eos drops the checkpoint's eos from the stop ids; ours must go too, or <|im_end|>
    would still stop the request. Echo's prompt log-probabilities are SamplingParams.prompt_logprobs."""
    plain = sampling_params_kwargs(SamplingConfig(max_tokens=5), stop_token_ids=[151645], stream=False).params
    ignoring = sampling_params_kwargs(
        SamplingConfig(max_tokens=5, ignore_eos=True, prompt_logprobs=2), stop_token_ids=[151645], stream=True
    ).params
    assert (plain["ignore_eos"], plain["stop_token_ids"], plain["prompt_logprobs"]) == (False, [151645], None)
    assert (ignoring["ignore_eos"], ignoring["stop_token_ids"], ignoring["prompt_logprobs"]) == (True, [], 2)
    assert set(ignoring) <= VLLM_SAMPLING_FIELDS


def test_prompt_logprobs_of_a_request_output_start_with_the_contextless_first_token(processor):
    from qvq_ray.engines.vllm_engine import completions_from_output

    prompt = [None, {12: FakeLogprob(-1.5, 3, " b"), 99: FakeLogprob(-0.5, 1, " z")}]
    output = FakeRequestOutput("r", "a b", [64, 12], prompt, [FakeCompletionOutput(0, "!", [5], finish_reason="length")], True)
    (completion,) = completions_from_output(output, repeat=1, started=0.0, now=1.0, prompt_logprobs=1, tokenizer=processor.tokenizer)
    first, second = completion.prompt_logprobs
    assert (first.token, first.logprob) == (processor.tokenizer.decode([64]), None)
    assert (second.token, second.logprob, [t.token for t in second.top_logprobs]) == (" b", -1.5, [" z"])
    assert completions_from_output(output, repeat=1, started=0.0, now=1.0)[0].prompt_logprobs is None


def test_a_token_id_prompt_goes_as_its_ids_and_bad_ids_are_refused(processor):
    from qvq_ray.engines.base import InvalidRequestError, raw_prompt

    assert _build(processor, raw_prompt([16, 256, 220])) == {"prompt_token_ids": [16, 256, 220]}
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for ids, needle in (([16, image_pad], "<|image_pad|>"), ([16, len(processor.tokenizer)], "out of the vocabulary")):
        with pytest.raises(InvalidRequestError, match=re.escape(needle)):
            _build(processor, raw_prompt(ids))


def test_chat_template_kwargs_reach_the_template_and_unknown_keys_are_refused(processor):
    from qvq_ray.engines.base import InvalidRequestError

    messages = [{"role": "user", "content": [{"type": "image", "image": png_bytes("1", size=(56, 56))}, {"type": "text", "text": "hi"}]}]

    def template(msgs, **kwargs):
        return processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kwargs)

    def build(kwargs):
        return build_prompt(messages, template, processor.tokenizer, max_images=4, chat_template=processor.chat_template,
                            chat_template_kwargs=kwargs)["prompt_token_ids"]

    plain, numbered = build(None), build({"add_vision_id": True})
    assert processor.tokenizer.decode(numbered).count("Picture 1: ") == 1 and "Picture" not in processor.tokenizer.decode(plain)
    for key in ("enable_thinking", "add_generation_prompt", "messages"):
        with pytest.raises(InvalidRequestError, match=re.escape(f"{key!r}")):
            build({key: False})


def test_stream_deltas_carry_their_tokens_logprobs_and_the_counts_so_far():
    acc = DeltaAccumulator(started=0.0, logprobs=0)
    step = lambda token, text: {token: FakeLogprob(-0.5, 1, text)}  # noqa: E731
    first = acc.add(FakeRequestOutput("r", "p", [1, 2, 3], None, [FakeCompletionOutput(0, "He", [7], logprobs=[step(7, "He")])], False))
    second = acc.add(FakeRequestOutput("r", "p", None, None, [
        FakeCompletionOutput(0, "llo", [8, 9], logprobs=[step(8, "l"), step(9, "lo")], finish_reason="length")], True))
    assert ([e.token for e in first.logprobs], first.usage) == (["He"], (3, 1))
    assert ([e.token for e in second.logprobs], second.usage) == (["l", "lo"], (3, 3))
    assert [e.token for e in acc.completion(now=1.0).logprobs] == ["He", "l", "lo"]
