"""Chat messages for QVQ: system prompt, images where the question refers to them, options, answer instruction.

Benchmarks mark where images belong with placeholders (MathVision `<image1>`, MMMU `<image 1>`,
OlympiadBench `<image_1>`). QVQ reads interleaved image and text parts, so each image goes where
its placeholder stood and the tag itself is removed; images no placeholder names go first, as in
the QVQ model card's example. MathVision ships one composite picture even when the text names
`<image2>`...: a tag without an image of its own is removed and its picture is the first one.

The messages use the chat-template shape every engine accepts (see `engines/base.py`), with
images as encoded bytes so they pickle cheaply across Ray.
"""

from __future__ import annotations

import re
import string
from typing import Any, Callable

from qvq_ray.problem import Problem

Message = dict[str, Any]

#: `<image1>`, `<image 1>`, `<image_1>` (case-insensitive); group 1 is the 1-based image number.
IMAGE_PLACEHOLDER = re.compile(r"<image[\s_]*(\d+)>", re.IGNORECASE)

LETTERS = string.ascii_uppercase
CHOICE_INSTRUCTION = "Answer with the option's letter from the given choices."
BOXED_INSTRUCTION = "Please put your final answer within \\boxed{}."


def build_messages(problem: Problem, image_bytes: list[bytes], *, system_prompt: str | None) -> list[Message]:
    """System + user messages for one problem; `image_bytes[i]` is the (prepared) image i+1.

    An empty `system_prompt` leaves the system message out.
    """
    content = _interleave(problem.question, image_bytes)
    tail = "\n".join(_choice_lines(problem.spec.choices) + [BOXED_INSTRUCTION])
    if content and content[-1]["type"] == "text":
        content[-1]["text"] = f"{content[-1]['text'].rstrip()}\n{tail}"
    else:
        content.append({"type": "text", "text": tail})
    messages: list[Message] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": content})
    return messages


def _interleave(question: str, image_bytes: list[bytes]) -> list[Message]:
    """Content parts: unreferenced images first, then text with each image at its first placeholder."""
    items: list[Message] = []
    placed: set[int] = set()
    pos = 0
    for match in IMAGE_PLACEHOLDER.finditer(question):
        _add_text(items, question[pos : match.start()])
        index = int(match.group(1)) - 1
        if 0 <= index < len(image_bytes) and index not in placed:
            items.append({"type": "image", "image": image_bytes[index]})
            placed.add(index)
        pos = match.end()
    _add_text(items, question[pos:])
    leading = [{"type": "image", "image": data} for i, data in enumerate(image_bytes) if i not in placed]
    items = [part for part in items if part["type"] != "text" or part["text"].strip()]
    if items and items[0]["type"] == "text":
        items[0]["text"] = items[0]["text"].lstrip()
    return leading + items


def _add_text(items: list[Message], text: str) -> None:
    """Append text, merging with a preceding text part (a removed tag leaves two pieces side by side)."""
    if not text:
        return
    if items and items[-1]["type"] == "text":
        items[-1]["text"] += text
    else:
        items.append({"type": "text", "text": text})


def _choice_lines(choices: list[str]) -> list[str]:
    """'Choices:' and lettered options, unless the options are just the letters (drawn in the image)."""
    if not choices:
        return []
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} choices; at most {len(LETTERS)} can be lettered")
    if choices_are_letters(choices):
        return [CHOICE_INSTRUCTION]
    lines = ["Choices:"] + [f"{LETTERS[i]}. {str(choice).strip()}" for i, choice in enumerate(choices)]
    return lines + [CHOICE_INSTRUCTION]


def choices_are_letters(choices: list[str]) -> bool:
    """True for MathVision-style options ["A", "B", ...] or ["(A)", "(B)", ...]: the real options are in the image."""
    return bool(choices) and all(
        re.sub(r"[\s().:]", "", str(choice)).upper() == LETTERS[i] for i, choice in enumerate(choices)
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
