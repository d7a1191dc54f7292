"""Find the final answer in a model response, as the model wrote it, and flag gold-free issues.

Pure string work that runs in-process (on an event loop or in a Ray actor): every scan is a
linear pass with simple regexes (no nested quantifiers), and only the last few boxes are ever
brace-matched, so a 200 KB response costs milliseconds, whatever it holds. Nothing here parses
math; equivalence lives in `equivalence.py`.

Order of precedence (invisible characters are removed first):

1. the LAST `\\boxed{...}` / `\\fbox{...}` (balanced braces, escaped braces skipped). If the last
   box is empty or never closed (a truncated response), there is no answer: an earlier box is an
   intermediate result, and a statement before a cut-off box is not the final word either.
   Several boxes in a row, separated only by commas, `and` or part labels (`(a) \\boxed{3}
   (b) \\boxed{5}`), are one multi-part answer: `3, 5` (a `x = ` written before a box is kept);
2. otherwise the last final-answer statement: `**Final Answer**` (text on the same or a following
   line), `Final Answer: X`, `the answer is X`, `the correct option is X`, `Answer: X`, `答案是 X`,
   `所以最终答案是 X`, `**答案**`, `故选 C`. A statement written as prose around math keeps the math.

A hedge is not an answer: `A or B`, `\\boxed{A} or \\boxed{B}`, `3 or 4`.
"""

from __future__ import annotations

import re
from collections import deque

from qvq_ray.verify.text import find_command_arg, strip_invisible

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# One token per step: an escaped character (skipped as a unit, so `\{` and `\\}` count right) or a brace.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.S)
# Final-answer statements; alternation of literals with bounded `\s` runs, linear on any input.
_STATEMENT = re.compile(
    r"final\s+answer(?:\s+is)?"
    r"|answer\s+(?:is|should\s+be|would\s+be|will\s+be)"
    r"|correct\s+(?:answer|option|choice)\s+(?:is|should\s+be)"
    r"|answer\s*[:：]"
    r"|最终答案(?:是|为)?"
    r"|答案(?:是|为|应为|应该是)"
    r"|答案\s*[:：]"
    r"|\*\*答案\*\*"
    r"|(?:故|所以|因此|应|答案|我)选(?:择)?(?:项)?\s*[:：]?(?=\s*[(（]?[A-J](?![A-Za-z]))",
    re.IGNORECASE,
)
# A sentence end after the answer: period + whitespace (never inside a decimal like 3.5) or 。
_SENTENCE_END = re.compile(r"\.\s|。|[,，]\s*(?:because|since|which|as\s+(?:this|it)|so\s+that|thus|hence)\b", re.IGNORECASE)
_MAX_STATEMENT_LINES = 6  # lines looked at after a statement marker (display math spans a few)
_MAX_STATEMENT_CHARS = 2000  # an "answer" longer than this is prose, not an answer
_LAST_BOXES = 8  # boxes examined from the end (a multi-part answer has a few)
_MAX_JOIN_GAP = 120  # characters between two boxes of one multi-part answer


def extract_final_answer(response: str) -> str | None:
    """The final answer as written (delimiters and a trailing period removed), or None."""
    if not response:
        return None
    text = strip_invisible(response)
    boxes = _last_boxes(text)
    if boxes:
        answer = _boxed_answer(text, boxes)
    else:
        answer = _statement_answer(text)
    if answer is None or is_hedge(answer):
        return None
    return answer


def detect_issues(
    response: str,
    finish_reason: str | None = "stop",
    *,
    answer: str | None | object = ...,
    health: bool = True,
) -> list[str]:
    """Gold-free issues of a response found by string work: `no_final_answer`, `truncated`,
    `repetition_loop`, `language_mixing` (the last two with `health`; see `health.py`).

    Pass `answer` when it is already extracted to skip a second scan. `unparseable` and
    `false_calculation` need sympy: the `Verifier` adds them from its worker.
    """
    if answer is ...:
        answer = extract_final_answer(response)
    issues: list[str] = []
    if answer is None:
        issues.append("no_final_answer")
    if finish_reason == "length":
        issues.append("truncated")
    if health and response:
        from qvq_ray.verify.health import language_mixing, repetition_loop

        if repetition_loop(response):
            issues.append("repetition_loop")
        if language_mixing(response):
            issues.append("language_mixing")
    return issues


# ---------------------------------------------------------------- hedges

_LETTER_HEDGE = re.compile(
    r"(?:either\s+)?[(\[]?[A-J][)\]]?\s*(?:or|/|或|或者)\s*[(\[]?[A-J][)\]]?(?:\s*(?:or|/|或)\s*[(\[]?[A-J][)\]]?)*"
)
_NUMBER_HEDGE = re.compile(r"(?:either\s+)?-?\d+(?:\.\d+)?\s+or\s+-?\d+(?:\.\d+)?|(?:maybe|perhaps|possibly|probably)\b.*", re.I | re.S)


def is_hedge(answer: str) -> bool:
    """`A or B`, `(A)/(C)`, `3 or 4`, `maybe 5`: more than one answer offered, which is none."""
    s = answer.strip().replace("$", "").strip()
    s = re.sub(r"\\(?:text|textbf|mathrm)\s*\{([^{}]*)\}", r"\1", s).strip()
    return bool(_LETTER_HEDGE.fullmatch(s) or _NUMBER_HEDGE.fullmatch(s))


# ---------------------------------------------------------------- boxes


class _Box:
    __slots__ = ("start", "end", "content", "closed")

    def __init__(self, start: int, end: int, content: str, closed: bool) -> None:
        self.start, self.end, self.content, self.closed = start, end, content, closed


def _last_boxes(text: str) -> list[_Box]:
    """The last few box commands with their contents, in order (only those are brace-matched)."""
    starts: deque = deque(maxlen=_LAST_BOXES)
    for m in _BOX_COMMAND.finditer(text):
        starts.append(m)
    boxes = []
    for m in reversed(starts):
        content, closed, end = _box_content(text, m.end(), len(text))
        # a box inside this one (`\\boxed{\\boxed{5}}`) is part of its content, not another answer
        boxes = [b for b in boxes if not (closed and b.start < end)]
        boxes.append(_Box(m.start(), end, content, closed))
    return list(reversed(boxes))


def _box_content(text: str, pos: int, limit: int) -> tuple[str, bool, int]:
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    if pos >= n:
        return "", False, n
    if text[pos] != "{":
        token_end = pos
        while token_end < n and not text[token_end].isspace() and text[token_end] not in "$}":
            token_end += 1
        return text[pos:token_end], token_end > pos, token_end
    depth = 0
    for m in _BRACE_TOKEN.finditer(text, pos):
        tok = m.group()
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : m.start()], True, m.end()
    return "", False, n  # unterminated


def _boxed_answer(text: str, boxes: list[_Box]) -> str | None:
    last = boxes[-1]
    if not last.closed or not _clean(last.content):
        return None
    group = [last]
    for box in reversed(boxes[:-1]):
        between = text[box.end : group[0].start]
        if not box.closed:
            break
        if _is_or(between):
            return None  # \boxed{A} or \boxed{B}: a hedge
        if not _joinable(between):
            break
        group.insert(0, box)
    if len(group) == 1:
        return _unbox(_clean(last.content)) or None
    parts: list[str] = []
    for box in group:
        content = _unbox(_clean(box.content))
        if not content:
            continue
        prefix = _assignment_prefix(text[max(0, box.start - 40) : box.start])
        part = f"{prefix} = {content}" if prefix and "=" not in content else content
        if part not in parts:
            parts.append(part)
    return ", ".join(parts) if parts else None


def _unbox(content: str) -> str:
    """`\\boxed{\\boxed{5}}` -> `5`: a box that is all of a box's content."""
    for _ in range(4):
        spans = find_command_arg(content, "\\boxed")
        if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(content):
            content = _clean(spans[0][2])
        else:
            break
    return content


_JOINER = re.compile(
    r"\$+|\\\[|\\\]|\\\(|\\\)|\\q?quad|\\text\{\s*(?:and|,|;)?\s*\}|\\textbf\{[^{}]{0,12}\}|\*\*|[,;，；、&]|\band\b|和|及|\s+"
    r"|(?:part|question|case|problem|小题|问)?\s*[(（]?(?:[a-z]|[ivx]{1,4}|\d{1,2})[)）]\s*[:：.]?"
    r"|(?:part|question|case)\s*(?:[a-z]|\d{1,2})\s*[:：.]?|(?:^|\s)(?:[a-z]|\d{1,2})[.:]\s"
    r"|(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?\s*=",
    re.IGNORECASE,
)


def _joinable(between: str) -> bool:
    """Whether the text between two boxes is only separators and part labels."""
    if len(between) > _MAX_JOIN_GAP:
        return False
    rest = _JOINER.sub("", between)
    return not rest.strip(" .:：\n\t")


def _is_or(between: str) -> bool:
    s = re.sub(r"\$|\\\(|\\\)|\\\[|\\\]", "", between).strip().lower()
    return s in ("or", "或", "或者", "/", "or possibly", "or maybe")


_PREFIX = re.compile(r"((?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?)\s*=\s*(?:\$|\\\(|\\\[)?\s*$")


def _assignment_prefix(before: str) -> str | None:
    m = _PREFIX.search(before)
    return m.group(1) if m else None


# ---------------------------------------------------------------- statements


def _statement_answer(text: str) -> str | None:
    last = None
    for last in _STATEMENT.finditer(text):
        pass
    if last is None:
        return None
    rest = text[last.end() : last.end() + _MAX_STATEMENT_CHARS * 2]
    for line in rest.split("\n", _MAX_STATEMENT_LINES)[:_MAX_STATEMENT_LINES]:
        answer = _clean(_first_sentence(_clean(line)))
        if answer:
            if len(answer) > _MAX_STATEMENT_CHARS:
                return None
            return _math_of_prose(answer)
    return None


def _first_sentence(text: str) -> str:
    m = _SENTENCE_END.search(text)
    return text[: m.start()] if m else text


_INLINE_MATH = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_PROSE_WORDS = re.compile(r"[A-Za-z]{2,}(?:\s+[A-Za-z]{2,})+|[\u4e00-\u9fff]{2,}")


def _math_of_prose(answer: str) -> str:
    """`The area is \\( 12 \\) square units` -> `12`; an answer without prose is kept whole."""
    segments = [next(g for g in m.groups() if g is not None).strip() for m in _INLINE_MATH.finditer(answer)]
    if not segments:
        return answer
    outside = _INLINE_MATH.sub(" ", answer)
    if not _PROSE_WORDS.search(outside):
        return answer
    return ", ".join(s for s in segments if s)


# ---------------------------------------------------------------- cleaning

_MAX_CLEAN_PASSES = 8
_WRAPPERS = (("\\[", "\\]"), ("\\(", "\\)"), ("$$", "$$"), ("$", "$"), ("**", "**"))


def _clean(text: str) -> str:
    """Strip delimiters around an answer: whitespace, `$`, `\\[ \\]`, `\\( \\)`, `**`, `:`, a final period."""
    for _ in range(_MAX_CLEAN_PASSES):  # bounded: `$$$$...` must not cost a pass per layer
        prev = text
        text = text.strip().lstrip("*:：").strip()
        for left, right in _WRAPPERS:
            if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
                text = text[len(left) : len(text) - len(right)]
                break
        else:
            # Lone opening/closing delimiters (a display block split over lines, `$24$.`).
            for tok in ("\\[", "\\]", "\\(", "\\)", "$$"):
                if text == tok:
                    text = ""
            if text.endswith((".", "。")) and not text.endswith(".."):
                text = text[:-1]
            text = _strip_edge_dollars(text)
        if text == prev:
            break
    return text.strip()


def _strip_edge_dollars(text: str) -> str:
    """`$24` / `24$` (one delimiter lost to a line split) lose the stray `$`."""
    if text.count("$") == 1 and (text.startswith("$") or text.endswith("$")):
        return text.strip("$")
    return text
