"""The embedded models: a tiny Qwen2-VL trained on visual arithmetic, and a random-weight one.

Why: tests and the CPU demo need a real `Qwen2VLForConditionalGeneration` loaded through the
exact code that loads Qwen/QVQ-72B-Preview, with no model hub. So the tiny checkpoints are saved in
the same on-disk layout (config.json, model.safetensors, tokenizer.json + tokenizer_config.json
with the chat template, preprocessor_config.json, generation_config.json); only their sizes differ.

- 'tiny' is the trained model shipped in the package (qvq_ray/assets/tiny-qwen2-vl-arith/): 2.3M
  parameters trained from scratch on CPU by pipelines/train_tiny.py to read two numbers written in
  a column and add or subtract them, answering in QVQ's shape (`97-73=24`, then `**Final Answer**`
  and `\\boxed{24}`). It is right most of the time, not always: the demo's point is that sampling
  is noisy and verification plus re-sampling pays off. Its command, seed and sha256 are in
  TRAINED_* below and in the checkpoint's qvq_ray_tiny.json; a test checks the hash.
- 'tiny-random' is built offline in seconds into the user cache (QVQ_RAY_CACHE) on first use:
  random weights, the fastest real Qwen2-VL for tests that only need the machinery.

The tokenizer is a byte-level BPE trained locally with `tokenizers` on a small fixed corpus, using
Qwen2's pre-tokenizer split (every digit its own token) and Qwen2-VL's special tokens. Everything
is deterministic for a seed: same seed, same bytes on disk (a test checks the hash).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qvq_ray.config import QVQ_SYSTEM_PROMPT

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

TRAINED_ALIAS = "tiny"
RANDOM_ALIAS = "tiny-random"
TINY_ALIASES = (TRAINED_ALIAS, RANDOM_ALIAS)
DEFAULT_SEED = 0

# The trained checkpoint shipped in the package, and how it was made (pipelines/train_tiny.py).
TRAINED_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-qwen2-vl-arith"
TRAINED_COMMAND = "python pipelines/train_tiny.py --steps 600 --seed 0 --eval-every 100 --out qvq_ray/assets/tiny-qwen2-vl-arith"
TRAINED_SHA256 = "a40d3ffcaad369ab001ff6fdef41e1fb01bc9b7913c6c1539f0deace2ece14f0"  # checkpoint_digest(TRAINED_DIR); a test checks it

# Qwen2-VL's special tokens, in Qwen2's order (ids follow the BPE vocabulary here).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2-VL's chat template (as shipped with Qwen2-VL / QVQ-72B-Preview) with QVQ's default system prompt.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + QVQ_SYSTEM_PROMPT + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2's pre-tokenizer pattern: digits split one by one, words, punctuation runs, whitespace.
QWEN2_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Sizes of the random tiny model (QVQ-72B: hidden 8192, 80 layers, 64 heads, 8 KV heads, vision 1280x32).
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
TINY_VISION = dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2)
# Sizes of the trained tiny model (about 2.3M parameters).
TRAINED_TEXT = dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2)
TRAINED_VISION = dict(depth=2, embed_dim=96, num_heads=4, mlp_ratio=4)
TINY_BPE_VOCAB = 600


def _training_corpus(scaffold_merges: bool = False) -> list[str]:
    """A fixed corpus covering chat scaffolding, math notation and plain English.

    `scaffold_merges` (the trained model's tokenizer) adds the prompt scaffolding several times so
    BPE merges it: a shorter prompt keeps CPU training fast. The random model keeps the plain
    corpus, so its bytes (and every test written against its outputs) stay as they were.
    """
    words = (
        "the answer is final so we have let find what how many which value area angle length "
        "triangle circle square number sum difference product total image shows figure result "
        "calculation option choices correct because therefore first then next step think"
    ).split()
    math = [r"\boxed{", r"\frac{", r"\sqrt{", r"\times", r"\cdot", r"\pi", "**Final Answer**", "^", "=", "+", "-"]
    scaffold = [
        QVQ_SYSTEM_PROMPT,
        "What is the result of the calculation shown in the image?",
        "Please put your final answer within \\boxed{}.",
        "\n\n**Final Answer**\n\n",
        "system",
        "user",
        "assistant",
    ]
    lines = (scaffold * 3 if scaffold_merges else [QVQ_SYSTEM_PROMPT])
    lines += ["Choices:", "A. B. C. D. E.", "Answer with the option's letter."]
    for i, w in enumerate(words):
        lines.append(f"Let me {w} {words[(i * 7) % len(words)]} {math[i % len(math)]}{i % 10}" + "}")
    lines.extend(f"{a} + {b} = {a + b}" for a in range(0, 100, 7) for b in range(0, 100, 11))
    return lines


def build_tokenizer(scaffold_merges: bool = False) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE and wrap it as a transformers fast tokenizer (left padding).

    `scaffold_merges=True` is the trained model's tokenizer (see `_training_corpus`).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_BPE_VOCAB,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_training_corpus(scaffold_merges), trainer=trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        padding_side="left",
        model_max_length=32768,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_config(
    tokenizer: PreTrainedTokenizerBase,
    text_sizes: dict[str, Any] | None = None,
    vision_sizes: dict[str, Any] | None = None,
    initializer_range: float = 0.25,
) -> Qwen2VLConfig:
    """Qwen2-VL config of the given sizes (default: the random tiny model's).

    initializer_range 0.25 (larger than 0.02) makes a random model's outputs depend on its input
    (tests compare them); a model to be trained uses 0.02.
    """
    from transformers import Qwen2VLConfig

    text_sizes = text_sizes or TINY_TEXT
    vision_sizes = vision_sizes or TINY_VISION
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = text_sizes["hidden_size"] // text_sizes["num_attention_heads"]
    # mrope_section splits head_dim/2 rotary frequencies over (temporal, height, width).
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    text = dict(
        text_sizes,
        vocab_size=len(tokenizer),
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        initializer_range=initializer_range,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
    )
    vision = dict(
        vision_sizes,
        initializer_range=initializer_range,
        hidden_size=text_sizes["hidden_size"],
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen2VLForConditionalGeneration"]
    return config


def build_image_processor() -> Qwen2VLImageProcessorPil:
    """Qwen2-VL's preprocessor_config (patch 14, merge 2, temporal 2, CLIP mean/std)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2, merge_size=2
    )


def make_tiny_model(out_dir: str | Path, seed: int = DEFAULT_SEED) -> Path:
    """Write the tiny Qwen2-VL checkpoint to `out_dir` (offline, deterministic for `seed`)."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    tokenizer = build_tokenizer()
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).to(torch.float32).eval()
    return save_checkpoint(model, tokenizer, out_dir, {"seed": seed, "builder": "qvq_ray.models.tiny"})


def save_checkpoint(
    model: Qwen2VLForConditionalGeneration, tokenizer: PreTrainedTokenizerBase, out_dir: str | Path, meta: dict[str, Any]
) -> Path:
    """Write a tiny model in the Qwen2-VL on-disk layout (float32 safetensors) plus qvq_ray_tiny.json."""
    import torch
    from transformers import GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    model = model.to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    build_image_processor().save_pretrained(out)
    (out / "qvq_ray_tiny.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return out


def checkpoint_digest(path: str | Path) -> str:
    """SHA-256 over the checkpoint's weight and config files (for reproducibility checks)."""
    h = hashlib.sha256()
    root = Path(path)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("QVQ_RAY_CACHE", user_cache_dir("qvq-ray")))


def resolve_model_path(path: str) -> str:
    """'tiny': the trained checkpoint shipped in the package; 'tiny-random': the random one in the
    user cache (built on first use); any other path or model id passes through."""
    if path == TRAINED_ALIAS:
        if not (TRAINED_DIR / "model.safetensors").exists():
            raise FileNotFoundError(
                f"the trained tiny model is missing from {TRAINED_DIR}; rebuild it with `{TRAINED_COMMAND}` "
                f"or use --model {RANDOM_ALIAS}"
            )
        return str(TRAINED_DIR)
    if path != RANDOM_ALIAS:
        return path
    target = cache_dir() / f"tiny-qwen2-vl-seed{DEFAULT_SEED}"
    if not (target / "model.safetensors").exists():
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        make_tiny_model(tmp)
        try:
            tmp.rename(target)  # atomic: concurrent first uses (several Ray actors) never see half a checkpoint
        except OSError:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
