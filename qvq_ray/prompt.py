"""Chat messages for a problem: system prompt, then the user message its prompt template describes.

The user text comes from `PromptConfig` (`prompt:` in the config; presets in `prompt_presets.py`):
template parts over the question, the options, the answer-format instruction, a hint and the
unit, each value inserted as data (a question holding `{` or `{question}` is never re-read).

Images go where the template says. `inline` (the default preset): benchmarks mark where images
belong with placeholders (MathVision `<image1>`, MMMU `<image 1>`, OlympiadBench `<image_1>`), so
each image goes where its placeholder stood and the tag itself is removed; images no placeholder
names go first, as in the QVQ model card's example. MathVision ships one composite picture even
when the text names `<image2>`...: a tag without an image of its own is removed and its picture is
the first one. `first` (VLMEvalKit's and lmms-eval's Qwen2-VL prompts): every image before the
text, tags left in the text as written.

The messages use the chat-template shape every engine accepts (see `engines/base.py`), with
images as encoded bytes so they pickle cheaply across Ray. `prompt_record` is what an output row
keeps of them: the preset, a hash of the recipe, and the user text.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from typing import Any, Callable, TypeVar

from qvq_ray.problem import Problem, PromptRecord
from qvq_ray.prompt_config import CHOICE_FIELDS, PART_FIELDS, UNIT_FIELDS, PromptConfig, parse_template
from qvq_ray.verify.spec import AnswerSpec

T = TypeVar("T")


def _resolved(value: T | None, name: str) -> T:
    """A field of a resolved template (`PromptConfig.resolved()` sets every one)."""
    if value is None:
        raise ValueError(f"prompt.{name} is unset: render with a resolved PromptConfig (PromptConfig.resolved())")
    return value


Message = dict[str, Any]

#: `<image1>`, `<image 1>`, `<image_1>` (case-insensitive); group 1 is the 1-based image number.
IMAGE_PLACEHOLDER = re.compile(r"<image[\s_]*(\d+)>", re.IGNORECASE)
#: How an image is shown in a recorded prompt text.
IMAGE_MARKER = "<image>"

LETTERS = string.ascii_uppercase


def build_messages(
    problem: Problem, image_bytes: list[bytes], *, system_prompt: str | None, prompt: PromptConfig | None = None
) -> list[Message]:
    """System + user messages for one problem; `image_bytes[i]` is the (prepared) image i+1.

    `prompt` is the prompt config (None: the default preset). An empty `system_prompt` leaves the
    system message out.
    """
    template = (prompt or PromptConfig()).resolved()
    messages: list[Message] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": user_content(problem, image_bytes, template)})
    return messages


def user_content(problem: Problem, image_bytes: list[bytes], template: PromptConfig) -> list[Message]:
    """The user message's parts under a resolved template (`PromptConfig.resolved()`)."""
    question = problem.question.strip() if template.strip_question else problem.question
    values = {
        "question": question,
        "choices": _choices_text(problem.spec.choices, template),
        "instruction": instruction_for(problem.spec, _resolved(template.instructions, "instructions")),
        "hint": _hint(problem),
        "unit": _fill(
            parse_template(_resolved(template.unit_format, "unit_format"), UNIT_FIELDS, "prompt.unit_format"),
            {"unit": problem.spec.unit},
        )
        if problem.spec.unit
        else "",
    }
    inline = template.images == "inline"
    placed: set[int] = set()
    question_items = _split_at_tags(question, image_bytes, placed) if inline else [{"type": "text", "text": question}]
    if template.strip_question:  # again once tags are gone: "... of <image 3>" may end in a space
        _strip_ends(question_items)

    content: list[Message] = []
    for i, part in enumerate(_resolved(template.parts, "parts")):
        pieces = parse_template(part, PART_FIELDS, f"prompt.parts[{i}]")
        fields = [name for _, name in pieces if name]
        if fields and not any(values[name] for name in fields):
            continue  # a part about something this problem lacks (no options, no hint)
        items: list[Message] = []
        for literal, name in pieces:
            _add_text(items, literal)
            if name == "question":
                _extend(items, question_items)
            elif name:
                _add_text(items, values[name])
        if not items:
            continue
        if content and content[-1]["type"] == "text" and items[0]["type"] == "text":
            _add_text(content, _resolved(template.joiner, "joiner"))  # no joiner next to an inline image
        _extend(content, items)

    if template.strip:
        _strip_ends(content)
    leading = [{"type": "image", "image": data} for i, data in enumerate(image_bytes) if i not in placed]
    return leading + content


def instruction_for(spec: AnswerSpec, instructions: dict[str, str]) -> str:
    """The answer-format instruction for the kind of answer `spec` asks for ('' when the template has none).

    Kinds: 'choice' when the problem has options; else 'integer', 'float' ('float_<p>' first, p the
    gold's decimals) or 'list' by `answer_type`, each falling back to 'free'; 'free' for the rest.
    """
    if spec.choices:
        keys = ["choice"]
    else:
        kind = (spec.answer_type or "").strip().lower()
        keys = {"integer": ["integer"], "list": ["list"]}.get(kind, [])
        if kind == "float":
            keys = ([f"float_{spec.precision}"] if spec.precision is not None else []) + ["float"]
        keys.append("free")
    return next((instructions[k] for k in keys if instructions.get(k)), "")


def _split_at_tags(question: str, image_bytes: list[bytes], placed: set[int]) -> list[Message]:
    """Question text with each image at its first placeholder (the tag removed); `placed` gets their indices."""
    items: list[Message] = []
    pos = 0
    for match in IMAGE_PLACEHOLDER.finditer(question):
        _add_text(items, question[pos : match.start()])
        index = int(match.group(1)) - 1
        if 0 <= index < len(image_bytes) and index not in placed:
            items.append({"type": "image", "image": image_bytes[index]})
            placed.add(index)
        pos = match.end()
    _add_text(items, question[pos:])
    # Text left only between tags (a line break between two pictures) goes with them.
    return [item for item in items if item["type"] != "text" or item["text"].strip()]


def _add_text(items: list[Message], text: str) -> None:
    """Append text, merging with a preceding text part (a removed tag leaves two pieces side by side)."""
    if not text:
        return
    if items and items[-1]["type"] == "text":
        items[-1]["text"] += text
    else:
        items.append({"type": "text", "text": text})


def _strip_ends(items: list[Message]) -> None:
    """Strip whitespace off the text at either end of `items` (in place), dropping text left empty."""
    if items and items[0]["type"] == "text":
        items[0]["text"] = items[0]["text"].lstrip()
    if items and items[-1]["type"] == "text":
        items[-1]["text"] = items[-1]["text"].rstrip()
    items[:] = [item for item in items if item["type"] != "text" or item["text"]]


def _extend(items: list[Message], more: list[Message]) -> None:
    """Append parts (copies), merging text that meets text."""
    for item in more:
        if item["type"] == "text":
            _add_text(items, item["text"])
        else:
            items.append(dict(item))


def _fill(pieces: list[tuple[str, str | None]], values: dict[str, Any]) -> str:
    """A parsed template with its fields replaced by `values`, as plain text (never re-parsed)."""
    return "".join(literal + (str(values[name]) if name else "") for literal, name in pieces)


def _choices_text(choices: list[str], template: PromptConfig) -> str:
    """The lettered options, or '' when there are none (or they are only letters and the template omits them)."""
    if not choices:
        return ""
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} choices; at most {len(LETTERS)} can be lettered")
    if template.letter_choices == "omit" and choices_are_letters(choices):
        return ""
    pieces = parse_template(_resolved(template.choice_format, "choice_format"), CHOICE_FIELDS, "prompt.choice_format")
    lines = [
        _fill(pieces, {"letter": LETTERS[i], "text": str(choice).strip() if template.strip_choices else str(choice)})
        for i, choice in enumerate(choices)
    ]
    return _resolved(template.choice_joiner, "choice_joiner").join(lines)


def _hint(problem: Problem) -> str:
    """A dataset's context line (`meta["hint"]`), unless the loader already put it into the question."""
    hint = problem.meta.get("hint")
    if not isinstance(hint, str) or not hint.strip() or hint in problem.question:
        return ""
    return hint


def choices_are_letters(choices: list[str]) -> bool:
    """True for MathVision-style options ["A", "B", ...] or ["(A)", "(B)", ...]: the real options are in the image."""
    return bool(choices) and all(
        re.sub(r"[\s().:]", "", str(choice)).upper() == LETTERS[i] for i, choice in enumerate(choices)
    )


# ---------------------------------------------------------------- what a row records


def template_sha(prompt: PromptConfig, system_prompt: str | None) -> str:
    """16 hex digits of sha256 over the resolved template and the system prompt: one value per prompt recipe."""
    recipe = {"template": prompt.resolved().model_dump(exclude={"preset"}), "system_prompt": system_prompt or ""}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def user_text(messages: list[Message]) -> str:
    """The user message as text, each image shown as IMAGE_MARKER."""
    user = next((m for m in reversed(messages) if m["role"] == "user"), None)
    if user is None:
        return ""
    return "".join(p["text"] if p["type"] == "text" else IMAGE_MARKER for p in user["content"])


def prompt_record(messages: list[Message], prompt: PromptConfig, system_prompt: str | None, *, sha: str | None = None) -> PromptRecord:
    """What an output row keeps of the prompt it was solved with.

    `prompt` is the config as given (its overrides are recorded), `sha` a precomputed `template_sha`.
    """
    return PromptRecord(
        preset=prompt.preset,
        overrides=prompt.overrides(),
        template_sha=sha or template_sha(prompt, system_prompt),
        text=user_text(messages),
    )


# ---------------------------------------------------------------- OpenAI chat messages


_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def messages_from_openai(
    messages: list[dict[str, Any]],
    loader: Callable[[str], bytes],
    *,
    max_images: int | None = None,
    system_prompt: str | None = None,
) -> list[Message]:
    """Convert OpenAI chat messages to the internal shape, loading each `image_url` with `loader`.

    The caller's `loader` applies its own limits and URL policy (the online ingress passes one
    that refuses local files). `system_prompt` is prepended when the request has no system
    message. Raises ValueError with a message fit for a 400 response on anything unsupported.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    out: list[Message] = []
    images = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}] must be an object, got {type(message).__name__}")
        role = _ROLES.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise ValueError(
                f"messages[{i}] has unsupported role {message.get('role')!r}; "
                "expected system, developer, user or assistant"
            )
        parts = _parts_from_openai(message.get("content"), i, role, loader)
        images += sum(1 for p in parts if p["type"] == "image")
        if max_images is not None and images > max_images:
            raise ValueError(f"too many images: more than {max_images} in one request")
        out.append({"role": role, "content": parts})
    if system_prompt and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    return out


def _parts_from_openai(content: Any, i: int, role: str, loader: Callable[[str], bytes]) -> list[Message]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ValueError(f"messages[{i}].content must be a string or a list of parts, got {type(content).__name__}")
    parts: list[Message] = []
    for j, part in enumerate(content):
        where = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise ValueError(f"{where}: a text part needs a string 'text'")
            parts.append({"type": "text", "text": text})
        elif kind == "image_url":
            if role != "user":
                raise ValueError(f"{where}: images are only accepted in user messages, not {role}")
            spec = part.get("image_url")
            url = spec.get("url") if isinstance(spec, dict) else spec
            if not isinstance(url, str) or not url:
                raise ValueError(f"{where}: an image_url part needs image_url.url")
            parts.append({"type": "image", "image": loader(url)})
        else:
            raise ValueError(f"{where}: unsupported content part type {kind!r}; expected 'text' or 'image_url'")
    return parts
