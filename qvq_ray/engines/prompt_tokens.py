"""Token ids of a chat prompt in which only our own message building makes structure.

Why: a chat template pastes message text verbatim into one string, and a tokenizer parses every
special token it finds in that string. A user who types `<|image_pad|>` beside an image added an
image slot with no image behind it (the processor's `next()` over the images raised StopIteration
and the request hung), `<|video_pad|>` a video slot (generate crashed: a 500), `<|im_end|>
<|im_start|>system` a turn of their own. The hole is transformers' (huggingface/transformers#29279,
open) and vLLM's, which tokenizes the rendered template with special tokens parsed (the same
marker-based fix was proposed as vllm-project/vllm#31735 and closed unmerged).

So the rendered prompt is tokenized in pieces: each text part of the messages is rendered as a
marker, the template's own text is split at its special tokens (structure: parsed), and the text
between them, message text put back in, is tokenized with `split_special_tokens=True` (text: a
typed `<|im_end|>` becomes `<`, `|`, `im`, ...). A tokenizer splits its input at special tokens
before anything else, so for text without special tokens the ids equal plain tokenization of the
rendered string (tested). `model.special_tokens_in_text: refuse` refuses such text instead.

A raw prompt (/v1/completions) is the model's input as is: its special tokens are parsed, as
vLLM's completions endpoint does; only image and video placeholders are refused there, since a raw
prompt carries no images for them to stand for (in a transformers batch one would break its
neighbours' image features).
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Any, Callable, Literal

from qvq_ray.engines.base import InvalidRequestError, Message

SpecialTokensInText = Literal["escape", "refuse"]

# Qwen2-VL's (and QVQ's) special tokens: what the openai engine, which has no tokenizer, refuses in
# message text under `special_tokens_in_text: refuse`. The in-process engines ask their tokenizer.
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)


def special_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special tokens (added tokens marked special, plus the named ones), longest
    first so that a regex alternation never stops at a shorter one that prefixes a longer one."""
    found = {str(t.content) for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if getattr(t, "special", False)}
    found.update(str(t) for t in getattr(tokenizer, "all_special_tokens", []) or [])
    return tuple(sorted((t for t in found if t), key=lambda t: (-len(t), t)))


def media_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The image and video placeholder tokens (`<|image_pad|>`, `<|video_pad|>` for Qwen2-VL)."""
    names = (getattr(tokenizer, "image_token", None) or "<|image_pad|>", getattr(tokenizer, "video_token", None) or "<|video_pad|>")
    return tuple(dict.fromkeys(names))


def find_token(text: str, tokens: tuple[str, ...]) -> str | None:
    """The first of `tokens` that occurs in `text` (by position), or None."""
    hits = [(index, token) for token in tokens if (index := text.find(token)) >= 0]
    return min(hits)[1] if hits else None


def check_raw_prompt(text: str, placeholders: tuple[str, ...]) -> None:
    """InvalidRequestError when a raw prompt holds an image or video placeholder token."""
    if (token := find_token(text, placeholders)) is not None:
        raise InvalidRequestError(
            f"a raw prompt carries no images or videos, so it cannot hold the placeholder token {token!r}; "
            "send images as image_url parts through /v1/chat/completions"
        )


def check_no_special_tokens(messages: list[Message], tokens: tuple[str, ...]) -> None:
    """InvalidRequestError naming the first special token typed in message text (the 'refuse' mode)."""
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for part in parts:
            text = part.get("text") if isinstance(part, dict) and part.get("type") == "text" else None
            if isinstance(text, str) and (token := find_token(text, tokens)) is not None:
                raise InvalidRequestError(
                    f"messages[{i}] contains the model's special token {token!r}; this server refuses special "
                    "tokens in message text (model.special_tokens_in_text: refuse)"
                )


def chat_prompt_ids(
    template_messages: list[Message],
    apply_chat_template: Callable[[list[Message]], str],
    tokenizer: Any,
    *,
    special_tokens_in_text: SpecialTokensInText = "escape",
) -> list[int]:
    """Token ids of chat messages (`split_images`' template messages: one `{"type": "image"}` per
    image, one `<|image_pad|>` in the result for it) with message text tokenized as text.

    The tokenizer's split_special_tokens flag is shared state of the tokenizer object: call this
    from one thread per tokenizer (the engines' prepare thread or event loop)."""
    specials = special_tokens(tokenizer)
    if special_tokens_in_text == "refuse":
        check_no_special_tokens(template_messages, specials)
    marked, texts = _marked(template_messages)
    pieces = _pieces(apply_chat_template(marked), texts, specials)
    runs = [value for kind, value in pieces if kind == "text"]
    encoded = iter(tokenizer(runs, add_special_tokens=False, split_special_tokens=True)["input_ids"] if runs else [])
    ids: list[int] = []
    for kind, value in pieces:
        if kind == "text":
            ids.extend(next(encoded))
        else:
            ids.append(_special_id(tokenizer, value))
    return ids


def _special_id(tokenizer: Any, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int):
        raise ValueError(f"the tokenizer has no id for its special token {token!r}")
    return token_id


def _marked(template_messages: list[Message]) -> tuple[list[Message], dict[str, str]]:
    """The messages with each text part replaced by a unique marker (private-use characters around
    a random nonce: no user can type it and no template adds it), and the texts by marker. A
    template that looked into the text (none of Qwen2-VL's does) would see the marker."""
    nonce = uuid.uuid4().hex
    texts: dict[str, str] = {}
    marked: list[Message] = []
    for message in template_messages:
        parts = []
        for part in message.get("content") or []:
            if part.get("type") == "text":
                marker = f"\ue000{nonce}-{len(texts)}\ue001"
                texts[marker] = str(part.get("text", ""))
                part = {**part, "text": marker}
            parts.append(part)
        marked.append({**message, "content": parts})
    return marked, texts


def _pieces(rendered: str, texts: dict[str, str], specials: tuple[str, ...]) -> list[tuple[str, str]]:
    """The rendered template as ("text", run) and ("special", token) pieces in order: the template's
    special tokens are structure; a run is the text between two of them, message text put back in
    (markers are replaced after the split, so a special token typed in a message stays text)."""
    alternatives = [re.escape(t) for t in list(texts) + list(specials)]
    pieces: list[tuple[str, str]] = []
    run, position = "", 0
    for match in re.finditer("|".join(alternatives), rendered) if alternatives else []:
        run += rendered[position : match.start()]
        position = match.end()
        if match.group() in texts:
            run += texts[match.group()]
            continue
        if run:
            pieces.append(("text", run))
        run = ""
        pieces.append(("special", match.group()))
    run += rendered[position:]
    if run:
        pieces.append(("text", run))
    return pieces


# Variables a chat template gets from the engine itself: never a client's chat_template_kwargs key
# (`add_generation_prompt` has its own request field in vLLM, which would override it silently).
ENGINE_TEMPLATE_VARIABLES = frozenset({"messages", "add_generation_prompt", "tools", "documents"})


def template_variables(template: str | None) -> frozenset[str]:
    """The variables a Jinja chat template reads (set from outside), e.g. Qwen2-VL's `add_vision_id`."""
    return _parse_template_variables(template or "")


@functools.lru_cache(maxsize=8)
def _parse_template_variables(template: str) -> frozenset[str]:
    import jinja2
    from jinja2 import meta

    return frozenset(meta.find_undeclared_variables(jinja2.Environment().parse(template)))


def check_chat_template_kwargs(template: str | None, kwargs: dict[str, Any] | None) -> None:
    """InvalidRequestError naming a chat_template_kwargs key the chat template does not read (vLLM
    drops such keys silently; here nothing a client sends is ignored) or one the engine sets itself."""
    if not kwargs:
        return
    readable = template_variables(template) - ENGINE_TEMPLATE_VARIABLES
    for key in kwargs:
        if key not in readable:
            known = ", ".join(sorted(readable)) or "none"
            raise InvalidRequestError(
                f"chat_template_kwargs: {key!r} is not a variable this model's chat template reads "
                f"(it reads: {known}); it would be ignored, so it is refused"
            )


def tokenizer_info(tokenizer: Any, chat_template: str | None) -> dict[str, Any]:
    """vLLM's /tokenizer_info body: `tokenizer_class` and the tokenizer's configuration (its
    tokenizer_config.json keys; special tokens as their text), JSON values only, and no file paths."""
    skipped = {"added_tokens_decoder", "name_or_path", "vocab_file", "merges_file", "tokenizer_file", "is_local",
               "local_files_only", "backend", "tokenizer_object"}
    info: dict[str, Any] = {"tokenizer_class": type(tokenizer).__name__}
    for key, value in getattr(tokenizer, "init_kwargs", {}).items():
        if key in skipped:
            continue
        if hasattr(value, "content"):  # an AddedToken
            value = str(value.content)
        if value is None or isinstance(value, (str, int, float, bool, list, dict)):
            info[key] = value
    info["chat_template"] = chat_template
    return info
