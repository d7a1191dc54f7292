"""Find the final answer in a model response, as the model wrote it, and flag gold-free issues.

Pure string work that runs in-process (on an event loop or in a Ray actor): every scan is a
single linear pass with simple regexes (no nested quantifiers), so a 100k-character response costs
milliseconds, whatever it holds. Nothing here parses math; equivalence lives in `equivalence.py`.

Order of precedence:

1. the LAST `\\boxed{...}` / `\\fbox{...}` (balanced braces, escaped braces skipped). If the last
   box is empty or never closed (a truncated response), there is no answer: an earlier box is an
   intermediate result, and a statement before a cut-off box is not the final word either;
2. otherwise the last final-answer statement: `**Final Answer**` (text on the same or a following
   line), `Final Answer: X`, `the answer is X`, `Answer: X`, `答案是 X`, `**答案**`, `最终答案`.
"""

from __future__ import annotations

import re

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# One token per step: an escaped character (skipped as a unit, so `\{` and `\\}` count right) or a brace.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.S)
# Final-answer statements; alternation of literals with bounded `\s` runs, linear on any input.
_STATEMENT = re.compile(
    r"final\s+answer(?:\s+is)?"
    r"|answer\s+is"
    r"|answer\s*[:：]"
    r"|最终答案(?:是|为)?"
    r"|答案(?:是|为)"
    r"|答案\s*[:：]"
    r"|\*\*答案\*\*",
    re.IGNORECASE,
)
# A sentence end after the answer: period + whitespace (never inside a decimal like 3.5) or 。
_SENTENCE_END = re.compile(r"\.\s|。")
_MAX_STATEMENT_LINES = 6  # lines looked at after a statement marker (display math spans a few)
_MAX_STATEMENT_CHARS = 2000  # an "answer" longer than this is prose, not an answer


def extract_final_answer(response: str) -> str | None:
    """The final answer as written (delimiters and a trailing period removed), or None."""
    if not response:
        return None
    box = _last_box(response)
    if box is not None:
        content, found = box
        if not found:
            return None
        return _clean(content) or None
    return _statement_answer(response)


def detect_issues(response: str, finish_reason: str | None = "stop", *, answer: str | None | object = ...) -> list[str]:
    """Gold-free issues of a response: `no_final_answer`, `truncated`.

    Pass `answer` when it is already extracted to skip a second scan. A later issue adds
    repetition loops and language mixing here; callers only rely on the names in
    `verdict.ISSUES`.
    """
    if answer is ...:
        answer = extract_final_answer(response)
    issues: list[str] = []
    if answer is None:
        issues.append("no_final_answer")
    if finish_reason == "length":
        issues.append("truncated")
    return issues


# ---------------------------------------------------------------- boxes


def _last_box(text: str) -> tuple[str, bool] | None:
    """(content, closed) of the last box command, or None when the text has no box at all.

    `\\boxedfoo` is some other command, not a box; a box with no `{` after it (`\\boxed 5`, rare)
    yields the next whitespace-delimited token.
    """
    last = None
    for last in _BOX_COMMAND.finditer(text):
        pass
    if last is None:
        return None
    return _box_content(text, last.end())


def _box_content(text: str, pos: int) -> tuple[str, bool]:
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    if pos >= n:
        return "", False
    if text[pos] != "{":
        token_end = pos
        while token_end < n and not text[token_end].isspace() and text[token_end] not in "$}":
            token_end += 1
        return text[pos:token_end], token_end > pos
    depth = 0
    for m in _BRACE_TOKEN.finditer(text, pos):
        tok = m.group()
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : m.start()], True
    return "", False  # unterminated


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
            return answer if len(answer) <= _MAX_STATEMENT_CHARS else None
    return None


def _first_sentence(text: str) -> str:
    m = _SENTENCE_END.search(text)
    return text[: m.start()] if m else text


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
