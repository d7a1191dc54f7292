"""Pydantic configs for every part of qvq-ray, loadable from one YAML file.

One `QvqConfig` object carries model, prompt, engine, sampling, policy, verifier, resources, batch
and serve settings, so the tiny CPU demo and QVQ-72B on a GPU cluster differ by config, never by code.
Every model forbids unknown keys: a typo in a YAML file is an error, not a silently ignored field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

# The verdict issues a policy can re-sample on: exactly the verifier's (a typo is an error, not a
# re-sampling rule that never triggers), plus `<check>:<issue>` from a user check
# (`verifier.checks`), validated against the checks' declared issues when the whole config loads.
from qvq_ray.issues import ISSUES, USER_CHECK_FAILED, USER_ISSUE_PATTERN
from qvq_ray.prompt_config import PromptConfig

QVQ_SYSTEM_PROMPT = (
    "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. "
    "You should think step-by-step."
)

# Qwen2-VL image geometry (preprocessor_config.json of Qwen2-VL / QVQ-72B-Preview).
QWEN2VL_PATCH = 14
QWEN2VL_MERGE = 2
QWEN2VL_FACTOR = QWEN2VL_PATCH * QWEN2VL_MERGE  # 28 pixels per visual token side


class StrictModel(BaseModel):
    """Base for configs: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ImageLimits(StrictModel):
    """What an image may cost before we refuse it: bytes, decoded pixels, count, and where from."""

    max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest encoded image accepted, in bytes.")
    max_pixels_decoded: int = Field(
        50_000_000,
        ge=1,
        description="Largest width*height accepted, read from the header before any pixel is decoded "
        "(decompression-bomb guard). PIL itself refuses more than 2 x Image.MAX_IMAGE_PIXELS.",
    )
    max_images: int = Field(8, ge=0, description="Most images in one problem or request.")
    max_total_pixels_decoded: int = Field(
        64_000_000,
        ge=1,
        description="Most pixels decoded for one problem or request, all its images together, each image's size "
        "read from its header before decoding (8 blank 7000x7000 PNGs are a 65 KB request and 392 M pixels).",
    )
    allow_urls: bool = Field(False, description="Fetch http(s) image URLs (never from private/loopback hosts).")
    allow_local_files: bool = Field(
        True,
        description="Read file paths. Problem files need this; an online ingress must set it False so a "
        "request cannot read the server's files.",
    )
    url_timeout_s: float = Field(10.0, gt=0, description="Total time allowed to fetch one image URL.")
    max_redirects: int = Field(3, ge=0, description="Redirects followed when fetching a URL (each one re-checked).")


class ModelConfig(StrictModel):
    path: str = Field(
        "tiny",
        description="Checkpoint to load: a local directory, a Hugging Face id such as "
        "'Qwen/QVQ-72B-Preview', 'tiny' (the embedded Qwen2-VL trained on visual arithmetic, shipped "
        "in the package) or 'tiny-random' (a random-weight one, built offline into the user cache on first use).",
    )
    served_model_name: str | None = Field(
        None, description="Name reported by /v1/models and accepted in requests; defaults to the path's last part."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' uses the checkpoint's (bf16 for QVQ-72B), float32 on CPU."
    )
    system_prompt: str = Field(QVQ_SYSTEM_PROMPT, description="System message sent with every problem.")
    min_pixels: int = Field(4 * QWEN2VL_FACTOR**2, ge=QWEN2VL_FACTOR**2, description="Qwen2-VL min pixels per image.")
    max_pixels: int = Field(
        1280 * QWEN2VL_FACTOR**2,
        ge=QWEN2VL_FACTOR**2,
        description="Qwen2-VL max pixels per image after smart_resize (QVQ card suggests 256..1280 x 28^2).",
    )
    max_images_per_prompt: int = Field(8, ge=0, description="Images allowed in one prompt.")
    max_prompt_chars: int = Field(
        262_144,
        ge=1,
        description="Longest prompt text (all messages' text together, in characters) accepted: refused before "
        "tokenizing, so an 18 MB prompt costs nothing. Keep it a few times max_model_len.",
    )
    max_model_len: int | None = Field(
        None, description="Prompt + output token limit; None = the checkpoint's own (set it for QVQ-72B on vLLM)."
    )
    trust_remote_code: bool = Field(False, description="Passed to from_pretrained; Qwen2-VL needs none.")
    special_tokens_in_text: Literal["escape", "refuse"] = Field(
        "escape",
        description="What a special token of the model typed in message text (chat, /v1/solve and batch problems: "
        "'<|image_pad|>', '<|im_end|>', ...) does. 'escape' (the default, as OpenAI's API treats such strings): it is "
        "tokenized as the plain text it is, never as structure; prompts without special tokens are tokenized exactly as "
        "before. 'refuse': the request is refused with a 400 naming the token. Image placeholders and the chat turns "
        "come only from our own message building either way. A raw /v1/completions prompt is the model's input as is: "
        "its special tokens are parsed, except image/video placeholders (it carries no images), which are refused. "
        "The openai engine sends message text as text (the endpoint tokenizes it) and, with 'refuse', refuses "
        "Qwen2-VL's special tokens itself.",
    )


# Below this temperature sampling is greedy (vLLM's _SAMPLING_EPS): dividing logits by a
# temperature near 0 overflows them to inf/NaN instead of sampling.
GREEDY_BELOW = 1e-5
# Longest stop string accepted. Matching costs per new token, over a window this long; vLLM has
# no cap, but a 500 KB stop string is an attack, not a use.
MAX_STOP_CHARS = 1024
# The seed range torch.manual_seed (and numpy) accept: a signed or an unsigned 64-bit integer.
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


class SamplingConfig(StrictModel):
    """Sampling for one generation; always explicit so no engine applies hidden checkpoint defaults."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description=f"0 = greedy; below {GREEDY_BELOW} is greedy too.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, description="0 = off.")
    max_tokens: int = Field(8192, ge=1, description="Max new tokens (QVQ card: 8192).")
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX, description="Seed for sampling (a 64-bit integer); None = engine's RNG.")
    stop: list[Annotated[str, Field(max_length=MAX_STOP_CHARS)]] = Field(
        default_factory=list, max_length=16, description=f"Stop strings (not included in the output), each at most {MAX_STOP_CHARS} characters."
    )
    n: int = Field(1, ge=1, le=16, description="Samples returned for one prompt.")
    repetition_penalty: float = Field(
        1.0, ge=0.01, le=100.0, description="1.0 = off; bounded so logits stay finite (a penalty of 1e-300 overflows them)."
    )
    presence_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="OpenAI's: subtracted once from every token already generated; 0 = off."
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="OpenAI's: subtracted per occurrence of a token already generated; 0 = off."
    )
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="vLLM's: drop tokens below min_p x the top token's probability; 0 = off.")
    min_tokens: int = Field(0, ge=0, description="vLLM's: no end of sequence before this many tokens (stop strings still stop).")
    logprobs: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Return each generated token's log-probability and this many most likely alternatives "
        "(vLLM's SamplingParams.logprobs; OpenAI's top_logprobs); None = off.",
    )
    prompt_logprobs: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Return each prompt token's log-probability and this many most likely alternatives "
        "(vLLM's SamplingParams.prompt_logprobs; OpenAI's echo with logprobs); None = off.",
    )
    ignore_eos: bool = Field(
        False, description="vLLM's: generate past the end-of-sequence token, to max_tokens or a stop string (load tests)."
    )
    chat_template_kwargs: dict[str, Any] | None = Field(
        None,
        description="vLLM's: variables the chat template reads (Qwen2-VL's: add_vision_id); one it does not read "
        "is refused by name.",
    )

    @property
    def greedy(self) -> bool:
        """Whether engines decode greedily (temperature below GREEDY_BELOW)."""
        return self.temperature < GREEDY_BELOW


class EngineSettings(StrictModel):
    """Settings every engine kind reads."""

    max_batch_size: int = Field(
        8,
        ge=1,
        description="Requests one replica works on at once: hf's micro-batch size; vllm's max_num_seqs unless "
        "that is set; the Serve autoscaling target (ongoing requests per replica) for every kind.",
    )
    stall_limit_s: float = Field(
        120.0,
        gt=0,
        description="Liveness: the engine is stuck (and its Serve replica restarted) when work is in flight and "
        "no generation step has finished for this long. One step is one token for every running sequence, or "
        "a prompt's prefill: set it above the slowest prefill the model can see.",
    )


class HFEngineConfig(EngineSettings):
    """The transformers engine: in-process, CPU or GPU, with a micro-batcher."""

    kind: Literal["hf"] = Field("hf", description="Transformers (qvq_ray/engines/hf_engine.py).")
    device: str = Field("auto", description="'auto' (cuda if available else cpu), 'cpu', 'cuda', 'cuda:1'...")
    device_map: str | None = Field(
        None,
        description="Transformers device_map, e.g. 'auto' to shard one replica's copy over its GPUs; "
        "None = whole model on `device`.",
    )
    batch_wait_ms: float = Field(5.0, ge=0, description="Micro-batcher: how long to wait to fill a batch.")
    torch_threads: int | None = Field(None, ge=1, description="Torch.set_num_threads for CPU engines.")


class VLLMEngineConfig(EngineSettings):
    """vLLM's async engine: continuous batching, tensor parallel; needs `pip install 'qvq-ray[vllm]'` and CUDA."""

    kind: Literal["vllm"] = Field("vllm", description="VLLM (qvq_ray/engines/vllm_engine.py).")
    gpu_memory_utilization: float = Field(
        0.90, gt=0.0, le=1.0, description="Fraction of each GPU's memory vLLM may take (weights + KV cache)."
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="Most sequences in one continuous batch; None = max_batch_size."
    )
    enforce_eager: bool = Field(
        False, description="Disable CUDA graphs (less memory, slower decode; useful to debug)."
    )
    distributed_executor_backend: Literal["auto", "ray", "mp", "uni"] = Field(
        "auto",
        description="How tensor-parallel workers run. 'auto': 'ray' inside a Ray placement group with one "
        "GPU bundle per shard (a Serve replica), 'mp' (worker processes on this process's GPUs, e.g. a Ray "
        "Data actor that owns tensor_parallel_size GPUs) otherwise; vLLM's own default when TP is 1.",
    )
    vllm_engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Further vllm.AsyncEngineArgs fields passed as given (e.g. quantization, "
        "kv_cache_dtype, enable_prefix_caching). Fields this config already maps are refused here.",
    )


class OpenAIEngineConfig(EngineSettings):
    """Any OpenAI-compatible HTTP endpoint: `vllm serve`, a hosted QVQ, another qvq-ray app."""

    kind: Literal["openai"] = Field("openai", description="OpenAI-compatible endpoint (qvq_ray/engines/openai_engine.py).")
    base_url: str | None = Field(
        None, description="The endpoint's API root, e.g. 'http://host:8000/v1' or 'https://api.example.com/v1'."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="Environment variable holding the API key, read when a request is sent. If neither "
        "it nor api_key is set, requests go without an Authorization header (a local `vllm serve`).",
    )
    api_key: str | None = Field(
        None,
        description="The API key itself; prefer api_key_env so the key stays out of config files "
        "(a literal key travels with the config to every replica).",
    )
    remote_model: str | None = Field(
        None, description="Model name sent to the endpoint; None = model.served_model_name or model.path."
    )
    max_concurrency: int = Field(
        64, ge=1, description="Most HTTP requests in flight from one engine (one replica or actor)."
    )
    request_timeout_s: float = Field(
        900.0, gt=0, description="Time allowed for one request, read gaps while streaming included."
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Time allowed to open a connection.")
    max_retries: int = Field(
        4,
        ge=0,
        description="Retries (the openai SDK's) after a 408, 409, 429, 5xx, a timeout or a failed connection, "
        "with exponential backoff and jitter (0.5 s doubling up to 8 s; Retry-After wins); other 4xx never.",
    )
    send_extra_sampling: bool = Field(
        True,
        description="Also send top_k and repetition_penalty (vLLM / qvq-ray extensions) so the server "
        "applies no checkpoint defaults; set False for endpoints that reject unknown fields.",
    )




def _engine_kind(value: Any) -> Any:
    """The union's tag: `kind`, defaulting to 'hf' as the config's default engine does (Any: as
    written, whatever it is; pydantic reports one that names no engine)."""
    if isinstance(value, dict):
        return value.get("kind", "hf")
    return getattr(value, "kind", "hf")


# Which engine runs the model, and only that engine's settings: a field of another kind is an
# error (a YAML file that switches `kind` must drop the old engine's fields).
EngineConfig = Annotated[
    Union[
        Annotated[HFEngineConfig, Tag("hf")],
        Annotated[VLLMEngineConfig, Tag("vllm")],
        Annotated[OpenAIEngineConfig, Tag("openai")],
    ],
    Discriminator(_engine_kind),
]
ENGINE_CONFIGS = {"hf": HFEngineConfig, "vllm": VLLMEngineConfig, "openai": OpenAIEngineConfig}


class ResourcesConfig(StrictModel):
    """What one engine replica (batch actor or Serve replica) reserves on the Ray cluster."""

    num_cpus: float = Field(1.0, gt=0, description="CPUs per engine replica (fractional allowed).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica when tensor_parallel_size is 1.")
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs one replica spans; >1 reserves one bundle per GPU with STRICT_PACK."
    )
    custom: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources each batch engine actor (the solve stage) reserves, e.g. "
        "{'engine_slot': 1} on a cluster whose nodes declare how many engines each may host "
        "(`ray start --resources`); CPU and GPU go in num_cpus / num_gpus. Serve replicas do not read it.",
    )

    @field_validator("custom")
    @classmethod
    def _custom_resources(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ValueError(f"{name!r} is not a custom resource: set it with num_cpus / num_gpus")
            if amount < 0:
                raise ValueError(f"resources.custom[{name!r}] must be >= 0, got {amount}")
        return value


class PolicyConfig(StrictModel):
    """How the solver spends its samples. `self` never reads gold; `oracle` is rejection sampling."""

    mode: Literal["self", "oracle"] = Field(
        "self",
        description="'self': gold is never read while solving (honest benchmark accuracy; the only mode "
        "online). 'oracle': re-sample until the answer matches gold (data generation); its accuracy is "
        "pass@k and is labelled so.",
    )
    max_attempts: int = Field(3, ge=1, le=64, description="Most samples per problem (k).")
    schedule: list[SamplingConfig] = Field(
        default_factory=list,
        description="Sampling per attempt: attempt i uses schedule[i] (the last entry repeats). Empty: "
        "attempt 0 uses `sampling`, later ones `resample_sampling`.",
    )
    resample_on: list[str] = Field(
        default_factory=lambda: ["no_final_answer", "truncated", "repetition_loop", "language_mixing", "unparseable"],
        description="Verdict issues that make an attempt a failure to re-sample (gold-free): the verifier's "
        "own (qvq_ray/issues.py ISSUES) or '<check>:<issue>' of a user check in `verifier.checks` "
        "that declares that issue ('<check>:failed' when it raised or timed out).",
    )
    import_path: str | None = Field(
        None,
        description="A user policy class ('package.module:Name' or 'package.module.Name') written against "
        "`qvq_ray.policies.Policy`, used instead of the built-in ones; its module must be importable where "
        "solves run (PYTHONPATH or the Ray runtime_env working_dir). The limits here (max_attempts, "
        "token_budget, parallel_samples) still bound it.",
    )

    @field_validator("resample_on")
    @classmethod
    def _known_issues(cls, value: list[str]) -> list[str]:
        """A built-in name is checked here (a typo is an error); a user check's `<check>:<issue>` by QvqConfig."""
        import re

        for issue in value:
            if issue not in ISSUES and not re.match(USER_ISSUE_PATTERN, issue):
                raise ValueError(
                    f"unknown issue {issue!r}: one of {list(ISSUES)} or '<check>:<issue>' of a check in verifier.checks"
                )
        return value
    resample_sampling: SamplingConfig | None = Field(
        None,
        description="Sampling for re-samples when no schedule is given; None = `sampling` at temperature "
        ">= 0.7 (a greedy re-sample would repeat the same failure).",
    )
    self_consistency: bool = Field(
        False,
        description="Sample up to max_attempts answers, cluster them by equivalence and answer with the "
        "largest cluster (confidence = its share). Off: stop at the first healthy attempt.",
    )
    quorum: int = Field(3, ge=1, description="Self-consistency: stop early once one answer has this many votes.")
    parallel_samples: int = Field(
        1, ge=1, le=16, description="Requests of one problem in flight at once (streamed: each can be cut off)."
    )
    samples_per_request: int = Field(
        1,
        ge=1,
        le=16,
        description="Samples asked of the engine in one request (`n`): shares the prompt's prefill; such "
        "requests are not streamed, so the loop cut-off does not apply to them.",
    )
    token_budget: int | None = Field(
        None, ge=1, description="Most completion tokens per problem; no new attempt starts past it."
    )
    retry_hint: str | None = Field(
        None,
        description="Appended to the question on re-samples (QVQ is single-turn: a re-sample is a fresh "
        "prompt), e.g. 'End with **Final Answer** and \\boxed{}.'",
    )
    loop_cutoff: bool = Field(
        True, description="With a streaming engine, stop a generation that has fallen into a repetition loop."
    )
    loop_min_chars: int = Field(200, ge=20, description="Loop cut-off: the repeated tail must span this many chars.")
    loop_repeats: int = Field(4, ge=2, description="Loop cut-off: copies of the same cycle that count as a loop.")


class UserCheckConfig(StrictModel):
    """A user check: a function `(response, answer, problem) -> list[str]` run in the verifier's workers."""

    path: str = Field(
        ...,
        pattern=r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$",
        description="Import path of the function, 'package.module:function' or 'package.module.function'; the "
        "module must be importable by the verifier's workers (PYTHONPATH or the Ray runtime_env working_dir).",
    )
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Prefix of its issues in verdicts ('<name>:<issue>'); None = the function's name.",
    )
    issues: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]] = Field(
        default_factory=list,
        description="Issue names the function may return: the ones `policy.resample_on` may name as "
        "'<name>:<issue>'. A returned name not declared here is still recorded.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        """`checks: [pkg.mod:fn]` is short for `checks: [{path: pkg.mod:fn}]`."""
        return {"path": data} if isinstance(data, str) else data

    @property
    def check_name(self) -> str:
        """The prefix of this check's issues."""
        import re

        return self.name or re.split(r"[.:]", self.path)[-1]


class JudgeConfig(StrictModel):
    """A judge model for the cases rules cannot decide (qvq_ray/judge/).

    Asked only when the rules found no answer in a response (extraction), or the gold is free text
    (a sentence, a name) and the string rules said "different" (equivalence); never on math, where
    sympy's verdict stands. A call that fails, times out, answers unreadably or is over budget
    leaves the case not judged (`correct` None), never guessed. In mode `self` the judge sees no gold.
    """

    engine: OpenAIEngineConfig | None = Field(
        None,
        description="An OpenAI-compatible endpoint to judge with (any server: vLLM, `qvq-ray serve`, a hosted "
        "model); None = the engine that is already solving (the batch job's engine actors, the Serve app's "
        "engine deployment; `qvq-ray rescore` builds the config's engine).",
    )
    prompts: Literal["mathvista", "vlmevalkit"] = Field(
        "mathvista",
        description="Shipped prompt presets (qvq_ray/judge/prompts.py, sources named there): 'mathvista' "
        "follows MathVista's answer-extraction prompt; 'vlmevalkit' VLMEvalKit's (its option-matching prompt "
        "for multiple choice). Both use VLMEvalKit's MathVerse consistency prompt for equivalence.",
    )
    extraction_template: str | None = Field(
        None,
        description="Your own extraction prompt instead of the preset's; fields {question} {choices} {response}.",
    )
    choice_template: str | None = Field(
        None,
        description="Your own prompt for multiple choice (answer with a letter, or Z for none); fields "
        "{question} {choices} {response}.",
    )
    equivalence_template: str | None = Field(
        None,
        description="Your own equivalence prompt (the judge answers 1 or 0); fields {question} {answer} {gold}.",
    )
    tasks: list[Literal["extraction", "equivalence"]] = Field(
        ["extraction", "equivalence"], description="What the judge is asked: extraction, equivalence, or both."
    )
    max_calls_per_problem: int = Field(
        4, ge=1, description="Budget: judge calls per problem (cached answers are free); past it, not judged."
    )
    max_tokens_per_problem: int = Field(
        16384, ge=1, description="Budget: judge tokens (prompt + completion) per problem; past it, not judged."
    )
    max_tokens: int = Field(64, ge=1, le=4096, description="Tokens the judge may write per call.")
    max_response_chars: int = Field(
        4000,
        ge=200,
        description="The judge reads at most this many characters of a response, its end (where answers are).",
    )
    timeout_s: float = Field(60.0, gt=0, description="Time one judge call may take (queueing included).")
    cache_path: str | None = Field(
        "~/.cache/qvq-ray/judge.sqlite3",
        description="SQLite file caching judge answers keyed by the exact inputs (judge model, task, prompt, "
        "limits): a re-run makes no call for a case judged before. None = this process only. On a multi-node "
        "cluster, put it on shared storage to share it.",
    )


class VerifierConfig(StrictModel):
    """The verifier (`qvq_ray.verify`): its worker pool, limits and gold-free checks."""

    judge: JudgeConfig | None = Field(
        None,
        description="A judge model for what rules cannot decide (no answer found, free-text gold); None = rules "
        "and sympy only. Every verdict says who decided it (`decided_by`).",
    )

    checks: list[UserCheckConfig] = Field(
        default_factory=list,
        description="User checks run after the built-in gold-free ones, each as one call in a worker process "
        "under `timeout_s`; each returned issue lands in the verdict as '<name>:<issue>', and a check that "
        "raises, returns something other than a list of strings, or times out adds '<name>:failed' (the "
        "verdict is otherwise unchanged). They see a gold-free view of the problem (see qvq_ray/verify/user_checks.py).",
    )

    timeout_s: float = Field(
        5.0,
        gt=0,
        description="Wall-clock limit of one check (all of its sympy work together); a worker still "
        "busy past it is killed and replaced, and the verdict carries the issue 'timeout'.",
    )
    workers: int = Field(2, ge=1, description="Verifier worker processes (each runs one check at a time).")
    memory_limit_mb: int = Field(
        1024,
        ge=0,
        description="Address-space cap (RLIMIT_AS) of each worker process in MiB; 0 = none. A check "
        "past it fails with the issue 'timeout' instead of exhausting the machine's memory.",
    )
    check_calculations: bool = Field(
        True,
        description="Check the closed numeric claims of a chain of thought (97-73=24) with sympy and "
        "flag 'false_calculation' when one is wrong.",
    )
    max_claims: int = Field(64, ge=0, description="Most numeric claims checked per response.")
    health_checks: bool = Field(
        True, description="Flag 'repetition_loop' and 'language_mixing' (gold-free, in-process string work)."
    )
    missing_unit: Literal["reject", "assume_gold"] = Field(
        "reject",
        description="A gold that writes its unit (0.64 N) against an answer without one: 'reject' (the "
        "OlympiadBench judge's rule) or 'assume_gold' (read the bare number in the gold's unit). With "
        "the problem's own `unit` field, a bare number is always read in that unit.",
    )


class BatchConfig(StrictModel):
    num_replicas: int = Field(1, ge=1, description="Engine actors in the solve stage's ActorPoolStrategy.")
    max_concurrent_solves: int = Field(
        16, ge=1, description="Solves in flight per engine actor (asyncio); a finished one's slot is refilled at once."
    )
    rows_per_batch: int = Field(
        16, ge=1, description="Rows per Ray Data block (read, prepared, solved and written together: one part file)."
    )
    rows_in_flight_per_actor: int | None = Field(
        None,
        ge=1,
        description="Rows an engine actor holds at once, solving or waiting for a slot; None = 4 x "
        "max_concurrent_solves, so that blocks waiting on their slowest chain of thought still leave "
        "enough rows to keep every slot busy.",
    )
    output_format: Literal["parquet", "jsonl"] = Field("parquet", description="Output files' format.")
    input: str | None = Field(None, description="Problem set to solve (a job config's default for INPUT).")
    input_format: str | None = Field(None, description="Force the loader (mathvision, mathvista, mmmu, ...).")
    output: str | None = Field(None, description="Output directory (a job config's default for --out).")
    limit: int | None = Field(None, ge=1, description="Solve only the first N problems.")
    allow_paths_outside: bool = Field(
        False,
        description="Read image files a problem set names outside its own folder (absolute paths, '..', symlinks "
        "leaving it; the folder is the dataset's, or --images DIR). Off: such a row is an error row and the file "
        "is never opened, since problem sets come from strangers. Devices and FIFOs are refused either way.",
    )
    min_free_space_mb: int = Field(
        64,
        ge=0,
        description="Refuse to start (before Ray) when the output folder's filesystem has less free space than this, "
        "in MiB: a full disk would otherwise fail at the first part file, after the cluster and engines started. 0: no check.",
    )


class AutoscalingConfig(StrictModel):
    min_replicas: int = Field(1, ge=0, description="0 allows scale to zero.")
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: float | None = Field(
        None, gt=0, description="Per replica; None = derived from the engine's batch capacity (max_batch_size)."
    )
    upscale_delay_s: float = Field(5.0, ge=0, description="Load must stay high this long before a scale-up.")
    downscale_delay_s: float = Field(60.0, ge=0, description="Load must stay low this long before a scale-down.")
    look_back_period_s: float = Field(10.0, gt=0, description="Window over which ongoing requests are averaged.")
    metrics_interval_s: float = Field(2.0, gt=0, description="How often replicas report their load.")


class ServeConfig(StrictModel):
    engine_autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    ingress_num_cpus: float = Field(0.25, gt=0, description="CPUs for each ingress replica.")
    engine_max_ongoing_requests: int | None = Field(
        None, ge=1, description="Requests one engine replica accepts at once; None = 2 x max_batch_size (min 4)."
    )
    max_request_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_tokens_limit: int = Field(8192, ge=1, description="Largest max_tokens a client may ask for.")
    api_keys: list[str] = Field(
        default_factory=list,
        description="Bearer keys accepted on /v1 routes; empty and no keys in `api_keys_env` = no auth.",
    )
    api_keys_env: str = Field(
        "QVQ_RAY_API_KEYS", description="Environment variable with more accepted keys, comma-separated."
    )
    docs_public: bool = Field(
        False,
        description="With API keys set, /docs, /redoc and /openapi.json need a key too unless this is true "
        "(without keys they are always open).",
    )
    health_check_period_s: float = Field(
        10.0, gt=0, description="Serve calls each engine replica's liveness check this often."
    )
    health_check_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Serve restarts an engine replica whose liveness check fails or takes longer than this. The "
        "check never waits on generation, so only a stuck engine (see engine.stall_limit_s) or a dead one fails.",
    )
    readiness_timeout_s: float = Field(
        1.0,
        gt=0,
        description="How long /health's probe of an engine replica may wait. A probe queues behind user work, so "
        "when none answers in time Serve's controller is asked instead: a running replica means ready and "
        "saturated (200), none means 503 (serve/health.py).",
    )


class QvqConfig(StrictModel):
    """The whole configuration of one qvq-ray job or app."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    prompt: PromptConfig = Field(
        default_factory=PromptConfig,
        description="The user message of a problem: a shipped preset (QVQ's, VLMEvalKit's or lmms-eval's per "
        "benchmark) and any of its parts overridden; see qvq_ray/prompt_config.py.",
    )
    engine: EngineConfig = Field(default_factory=HFEngineConfig, description="Engine kind ('hf', 'vllm', 'openai') and its settings.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    verifier: VerifierConfig = Field(default_factory=VerifierConfig)
    images: ImageLimits = Field(default_factory=ImageLimits, description="Limits on every image read.")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _user_issues_are_declared(self) -> "QvqConfig":
        """`policy.resample_on`'s '<check>:<issue>' names must be issues a configured check declares."""
        declared = {
            f"{c.check_name}:{issue}" for c in self.verifier.checks for issue in [*c.issues, USER_CHECK_FAILED]
        }
        names = [c.check_name for c in self.verifier.checks]
        if len(set(names)) != len(names):
            raise ValueError(f"verifier.checks: two checks share a name ({names}); set `name` on one")
        unknown = [i for i in self.policy.resample_on if i not in ISSUES and i not in declared]
        if unknown:
            raise ValueError(f"policy.resample_on names {unknown}, which no check in verifier.checks declares ({sorted(declared)})")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> "QvqConfig":
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        return cls.model_validate(data)

    @classmethod
    def preset(cls, name: str) -> "QvqConfig":
        """A config shipped inside the package (qvq_ray/presets/NAME.yaml), e.g. 'tiny-cpu'."""
        return cls.from_yaml(Path(__file__).parent / "presets" / f"{name}.yaml")

    @classmethod
    def from_any(cls, value: "QvqConfig | dict[str, Any] | str | Path | None") -> "QvqConfig":
        """Accept a config object, a dict (Serve YAML `args`), a YAML path, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, QvqConfig):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        return cls.from_yaml(value)
