"""Find the final answer in a model response, as the model wrote it, say how it was found, and
flag gold-free issues.

Pure string work that runs in-process (on an event loop or in a Ray actor): every scan is a
linear pass with simple regexes (no nested quantifiers), and only the last few boxes are ever
brace-matched, so a 200 KB response costs milliseconds, whatever it holds. Nothing here parses
math; equivalence lives in `equivalence.py`.

What a careful grader reads as the answer, in order (invisible characters are removed first);
`Extraction.how` names the rule:

1. `boxed` / `statement`: the last explicit final answer, a `\\boxed{...}` / `\\fbox{...}` or a
   final-answer statement, whichever comes LAST (`... \\boxed{12} ... so the answer is (C)` is
   `(C)`). Statements: `**Final Answer**` (text on the same or a following line), `Final Answer:
   X`, `the answer is X`, `the correct option is X`, `Answer: X`, `答案是 X`, `所以最终答案是 X`,
   `**答案**`, `故选 C`. A statement written as prose keeps its answer-bearing span (`the answer is
   therefore choice (B)` -> `choice (B)`, `the area is $12$ square units` -> `12`); a statement after
   a box that is no answer (`the answer is correct`) leaves the box. If the last box is empty or
   never closed (a truncated response), there is no answer. Several boxes in a row, separated only
   by commas, `and` or part labels (`(a) \\boxed{3} (b) \\boxed{5}`, `① \\boxed{3} ② \\boxed{5}`), are one
   multi-part answer.
2. `whole_response`: a response that is only an answer (`-5`, `(D)`, `7,425,000`, `B) plants
   increase`), or an answer-first response whose first line is the answer (`(D)\\n\\nExplanation:`).
3. `final_sentence` (weak): no marker at all; the answer-bearing span of the last sentence(s): a
   bold span, `... is 0.11 meters.`, `there are 3 bars ...`, the only number in the sentence, or a
   bare answer on the last line.
4. `choice_mention` (weak, with choices): the last sentences mention exactly one option (its
   letter as `B`, `(B)`, `option B`, `choice (B)`, or its text, or its value with or without the
   option's unit); two different options are a hedge, not an answer.
5. `restatement` (weak, with the question: `restatement.py`): an answer given only by restating the
   question. A blank written back filled or a `how many` count of the things asked about is read
   before rule 3; a yes/no proposition restated (or denied), an option paired with the question,
   or one new number in a first sentence that restates the question, when rules 3-4 find nothing.
   A first-sentence value beats a last-sentence number that only repeats the question's; when the
   two differ otherwise, and the last sentence draws no conclusion, there is no answer.

Before the rules (see `prose.py`): invisible characters and end-of-sequence markers (`</s>`) are
removed; a Q/A answer label (`A: No, ...`) is not option A; a run-on into a prompt turn the model
wrote itself (`\nQuestion: ...`, `\nHuman: ...`) is cut off when what precedes it holds an answer;
for the answer-only and weak rules, closing pleasantries and offers (`Let me know if you have other
questions.`) and the tables and code blocks after the last sentence are dropped. A stated answer
is taken back only by a later remark that names the answer (`we cannot provide a definitive
answer`), not by one that reports what the model cannot see. `A is the correct option` and
`option B, "surplus," is the correct answer` are statements too. In the last sentence a count
(`there are three cubes left`, `2 balls are left`) is the answer, not the last number in it.

The weak rules never run on a truncated response (`finish_reason="length"`) or on one that says
it cannot answer (`not enough information`, `please provide the image`). A hedge is not an answer:
`A or B`, `\\boxed{A} or \\boxed{B}`, `3 or 4`.
"""

from __future__ import annotations

import re
from collections import deque
from typing import NamedTuple

from qvq_ray.verify.prose import answer_text, before_new_turn, number_word_value, qa_label_removed, strip_end_tokens, subject_count
from qvq_ray.verify.restatement import BLANK, pinned_answer, restated_answer, settled_value
from qvq_ray.verify.text import find_command_arg, strip_invisible
from qvq_ray.verify.verdict import WEAK_EXTRACTIONS, ExtractionRule

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# One token per step: an escaped character (skipped as a unit, so `\{` and `\\}` count right) or a brace.
_BRACE_TOKEN = re.compile(r"\\.|[{}]", re.S)
# Final-answer statements; alternation of literals with bounded `\s` runs, linear on any input.
_STATEMENT = re.compile(
    r"final\s+answer(?:\s+is)?"
    r"|answer\s+(?:is|should\s+be|would\s+be|will\s+be)"
    r"|answer\s+to\s+(?:your|the|this|that)\s+question\s+is"
    r"|correct\s+(?:answer|option|choice)(?:\s+letter)?\s+(?:is|should\s+be|would\s+be)"
    r"|(?:best|right)\s+(?:answer|option|choice)\s+is"
    r"|answer\s*[:：]"
    r"|最终答案(?:是|为)?"
    r"|答案(?:是|为|应为|应该是)"
    r"|答案\s*[:：]"
    r"|\*\*答案\*\*"
    r"|(?:故|所以|因此|应|答案|我)选(?:择)?(?:项)?\s*[:：]?(?=\s*[(（]?[A-J](?![A-Za-z]))",
    re.IGNORECASE,
)
# A sentence end after the answer: period + whitespace (never inside a decimal like 3.5) or 。
_SENTENCE_END = re.compile(r"\.\s|\?\s+(?=[A-Z])|(?<=\.[\"”'])\s|。|[,，]\s*(?:because|since|which|as\s+(?:this|it)|so\s+that|thus|hence)\b", re.IGNORECASE)
_MAX_STATEMENT_LINES = 6  # lines looked at after a statement marker (display math spans a few)
_MAX_STATEMENT_CHARS = 2000  # an "answer" longer than this is prose, not an answer
_LAST_BOXES = 8  # boxes examined from the end (a multi-part answer has a few)
_MAX_JOIN_GAP = 120  # characters between two boxes of one multi-part answer
_TAIL_CHARS = 1500  # the weak rules read only this much of the end of a response
_DECLINE_CHARS = 600  # where a refusal to answer counts (the end: `... Please provide the image.`)


class Extraction(NamedTuple):
    """The final answer as written (None: none found) and the rule that found it (`verdict.EXTRACTIONS`)."""

    answer: str | None
    how: ExtractionRule | None


_NONE = Extraction(None, None)


def extract(
    response: str, choices: list[str] | None = None, finish_reason: str | None = None, question: str | None = None
) -> Extraction:
    """The final answer and how it was found (see the module doc); `Extraction(None, None)` if none.
    `question`: the problem's question, for answers given only by restating it (`restatement.py`)."""
    if not response:
        return _NONE
    choices = [str(c) for c in choices] if choices else []
    text = qa_label_removed(strip_end_tokens(strip_invisible(response)), choices[0] if choices else None)
    head = before_new_turn(text)
    if head is not None:  # `The answer is 2.\n\nQuestion: ...`: what follows answers other questions
        found = _extract(head, choices, finish_reason, question)
        if found.answer is not None:
            return found
    return _extract(text, choices, finish_reason, question)


def _extract(text: str, choices: list[str], finish_reason: str | None, question: str | None = None) -> Extraction:
    boxes = _last_boxes(text)
    statement = _last_statement(text)
    named = _last_letter_named(text)
    if named is not None and named.start() > max(statement.start() if statement else -1, boxes[-1].start if boxes else -1):
        return _checked(named.group(1), "statement")  # `Option B is the correct answer.`
    if boxes and (statement is None or boxes[-1].start >= statement.start()):
        return _checked(_boxed_answer(text, boxes), "boxed")
    if statement is not None:
        after = text[statement.end() :]
        cut = _SENTENCE_END.search(after)
        if cut is not None and _RETRACTION.search(after[cut.end() :][:_DECLINE_CHARS]):
            return _NONE  # `... the answer is B (No). Without the data, we cannot provide a definitive answer.`
        answer = _statement_answer(text, statement, choices)
        if answer is not None and not boxes and _is_sentence(answer, choices):  # `Here is the answer:\n\nThe model has ...`
            restated = pinned_answer(text[statement.end() :], question, choices) or restated_answer(
                text[statement.end() :], question, choices
            )
            if restated is not None:
                return _checked(restated, "restatement")
        if answer is not None and (not boxes or _answer_like(answer, choices)):
            return _checked(answer, "statement")
        if boxes:
            return _checked(_boxed_answer(text, boxes), "boxed")
        return _NONE
    text = answer_text(text)
    whole = _whole_response(text, choices)
    if whole is not None:
        return _checked(whole, "whole_response")
    if finish_reason == "length":
        return _NONE
    tail = text[-_TAIL_CHARS:]
    if _DECLINE.search(tail[-_DECLINE_CHARS:]):
        return _NONE
    pinned = pinned_answer(tail, question, choices)
    if pinned is not None:
        return _checked(pinned, "restatement")
    found = _final_sentence(tail, choices)
    if found.answer is None and choices:  # `No, Periwinkle is not the maximum. It is ...`
        found = _checked(_leading_option_word(text, choices), "whole_response")
    return _with_restatement(found, tail, question, choices)


def _with_restatement(found: Extraction, tail: str, question: str | None, choices: list[str]) -> Extraction:
    """The last-sentence reading, checked against what the response says by restating the question
    (`restatement.py`): the restatement when the rules found nothing, or when the last sentence
    only repeats a number of the question's; no answer when the two state different values."""
    restated = restated_answer(tail, question, choices)
    if restated is None or found.how == "whole_response":
        return found
    if found.answer is None:
        return _checked(restated, "restatement")
    if choices:
        return found
    settled = settled_value(found.answer, restated, question or "", tail)
    return _NONE if settled is None else _checked(settled, "restatement" if settled is restated else found.how)


def extract_final_answer(
    response: str, choices: list[str] | None = None, finish_reason: str | None = None, question: str | None = None
) -> str | None:
    """The final answer as written (delimiters and a trailing period removed), or None."""
    return extract(response, choices, finish_reason, question).answer


_RUNAWAY_DIGITS = re.compile(r"(\d)\1{15,}")  # `0.99999999...`: a repetition loop, no value


def _checked(answer: str | None, how: ExtractionRule | None) -> Extraction:
    if answer is None or not answer.strip() or is_hedge(answer) or _RUNAWAY_DIGITS.search(answer):
        return _NONE
    return Extraction(answer, how)


def detect_issues(
    response: str,
    finish_reason: str | None = "stop",
    *,
    answer: str | None | object = ...,
    extraction: str | None = None,
    health: bool = True,
) -> list[str]:
    """Gold-free issues of a response found by string work: `no_final_answer`, `truncated`,
    `weak_extraction` (the answer was found by a weak rule: pass `extraction`), `repetition_loop`,
    `language_mixing` (the last two with `health`; see `health.py`).

    Pass `answer` when it is already extracted to skip a second scan. `unparseable` and
    `false_calculation` need sympy: the `Verifier` adds them from its worker.
    """
    if answer is ...:
        found = extract(response, finish_reason=finish_reason)
        answer, extraction = found.answer, found.how
    issues: list[str] = []
    if answer is None:
        issues.append("no_final_answer")
    elif extraction in WEAK_EXTRACTIONS:
        issues.append("weak_extraction")
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

# `A or B`, `(A)/(C)`; a bare `E / B` is a ratio (or a pair), not a hedge
_LETTER_HEDGE = re.compile(
    r"(?:either\s+)?[(\[]?[A-J][)\]]?\s*(?:or|或|或者)\s*[(\[]?[A-J][)\]]?(?:\s*(?:or|/|或)\s*[(\[]?[A-J][)\]]?)*"
    r"|[(\[][A-J][)\]]\s*/\s*[(\[][A-J][)\]](?:\s*/\s*[(\[][A-J][)\]])*"
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
    starts: deque[re.Match[str]] = deque(maxlen=_LAST_BOXES)
    for m in _BOX_COMMAND.finditer(text):
        starts.append(m)
    boxes: list[_Box] = []
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
    r"|[\u2460-\u2473]\s*[:：.]?"
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


def _last_statement(text: str) -> re.Match[str] | None:
    """The last final-answer marker, not counting one the text ends in before its answer (a
    repetition loop cut off at `The correct option letter is (`)."""
    last = None
    for m in _STATEMENT.finditer(text):
        if re.search(r"\w", text[m.end() :]):
            last = m
    return last


# A statement that names its option before the verdict: `A is the correct option`, `option (B) no
# is the correct answer`, `Option B, "increase," is the correct answer`.
_LETTER_NAMED = re.compile(
    r"(?<![A-Za-z])(?:(?:option|choice)\s+)?\(?([A-J])\)?(?:\s*[,:]?\s*\"[^\"\n]{0,80}\"\s*,?|\s+[^\s.,;]{1,20})?"
    r"\s+is\s+the\s+(?:(?:correct|right|best)\s+)?(?:answer|option|choice)\b",
    re.IGNORECASE,
)


def _last_letter_named(text: str) -> re.Match[str] | None:
    last = None
    for m in _LETTER_NAMED.finditer(text):
        if m.group(1).isupper():
            last = m
    return last


# A later remark that takes the stated answer back (it names the answer): `Without the data, we
# cannot provide a definitive answer.` One that only reports what the model cannot see (`I cannot
# see any red cars in the picture`) takes nothing back.
_RETRACTION = re.compile(
    r"(?:cannot|can'?t|can\s+not|unable\s+to|not\s+possible\s+to|impossible\s+to|not\s+able\s+to)\s+"
    r"(?:(?:be\s+)?\w+\s+){0,3}?(?:(?:a|an|the|any|one|this|my|that)\s+)?"
    r"(?:(?:definitive|definite|certain|accurate|exact|precise|correct|final|clear|single|specific|confident)\s+)?"
    r"(?:answer|option|choice)\b"
    r"|not\s+(?:sure|certain)\s+(?:about|of)\s+(?:the|my|this|that)\s+answer",
    re.IGNORECASE,
)


# Words between a statement marker and its answer (`the answer is therefore choice (B)`).
_FILLER = re.compile(
    r"^(?:(?:therefore|thus|hence|so|then|clearly|indeed|simply|just|actually|probably|likely|also|definitely|"
    r"that|given\s+by|as\s+follows|indeed|should\s+be|would\s+be|will\s+be|must\s+be|is|are|was|be|:|,)\s*)+",
    re.IGNORECASE,
)
# Statement "answers" that are a verdict on an answer, not one (`the answer is correct`).
_NOT_AN_ANSWER = re.compile(
    r"^(?:not\b|correct\b|incorrect\b|right\b|wrong\b|valid\b|invalid\b|reasonable\b|consistent\b|confirmed\b|"
    r"the\s+same\b|above\b|below\b|shown\b|given\b|boxed\b|in\s+the\s+box|as\s+(?:above|follows|shown)|"
    r"unclear\b|unknown\b|undetermined\b|indeterminate\b|cannot\b|can't\b|none\s+of\s+the\s+(?:above|options)\b.*not"
    r"|(?:an?\s+)?(?:integer|number|whole\s+number|positive|negative|real\s+number|decimal|float|floating|fraction|single|numerical|numeric)\b)",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"^\s*(?:\(?\d{1,2}[.)）、]|[①②③④⑤⑥⑦⑧⑨⑩]|[-*•]\s)\s*")
_CIRCLED = re.compile("[\u2460-\u2473]")  # ① ... ⑳: part labels


def _statement_answer(text: str, marker: re.Match[str], choices: list[str]) -> str | None:
    rest = text[marker.end() : marker.end() + _MAX_STATEMENT_CHARS * 2]
    lines = rest.split("\n", _MAX_STATEMENT_LINES)[:_MAX_STATEMENT_LINES]
    for k, line in enumerate(lines):
        item = _LIST_MARKER.match(line)
        if item and k > 0 and not _CIRCLED.search(line[item.end() :]):  # `①3；②5` on one line: labelled parts
            return _list_answer(lines[k:], choices)
        answer = _clean(_first_sentence(_clean(line)))
        if not answer:
            continue
        if len(answer) > _MAX_STATEMENT_CHARS:
            return None
        answer = _FILLER.sub("", answer).strip()
        answer = _clean(answer)
        if not answer or _NOT_AN_ANSWER.match(answer):
            return None
        span = _span_of(answer, choices, whole_ok=True)
        return None if span is None or _NOT_AN_ANSWER.match(span) else span
    return None


def _list_answer(lines: list[str], choices: list[str]) -> str | None:
    """`**答案**` followed by a numbered list: the answers of its items, in order (`1. 5  2. 7` -> `5, 7`)."""
    parts = []
    for line in lines:
        if not line.strip():
            continue
        m = _LIST_MARKER.match(line)
        if not m:
            break
        item = _clean(_first_sentence(_clean(line[m.end() :])))
        part = _span_of(item, choices, whole_ok=True) if item else None
        if part is None:
            return None
        parts.append(part)
    return ", ".join(parts) if parts else None


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


# ---------------------------------------------------------------- answer-bearing spans

_BOLD = re.compile(r"\*\*([^*\n]{1,200}?)\*\*")
# `is X`, `are X`, `= X`, `equals X`, `是 X`, `为 X`: the last one in a sentence carries its answer
_COPULA = re.compile(
    r"(?:\b(?:is|are|was|were|be|equals|equal\s+to|gives|get|becomes|approximately|about|around|of)\b"
    r"|(?<![<>!=])=(?!=)|≈|\\approx|是|为|等于|约为)\s*",
    re.IGNORECASE,
)
_MAX_COPULAS = 4  # copulas of one sentence tried, from its last
_LEADING_ARTICLE = re.compile(r"^(?:a\s+total\s+of|a|an|the|exactly|only|just|about|around|approximately|roughly|nearly|option|choice)\s+", re.I)
_NUMBER = re.compile(r"(?<![\w.])[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])|(?<![\w.])[-−]?\.\d+(?![\w])")
_NUMBER_AT_START = re.compile(
    r"^[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d.,])(?!\s*(?:-|–|:|to\b|or\b)\s*\d)(?:\s*(?:%|°|\\%|\^\\circ|\^\{\\circ\}))?"
)
_CJK_COPULA = re.compile(r"[\u4e00-\u9fff](?:是|为|等于|约为)\s*\S")
_WORD = re.compile(r"[A-Za-z\u00b0\u4e00-\u9fff/^0-9{}\\]+")


def _span_of(answer: str, choices: list[str], *, whole_ok: bool) -> str | None:
    """The answer-bearing part of a statement's text: math inside prose, a bold span, `is X`,
    a number with its unit, an option mentioned; the text itself when it is no prose."""
    answer = _math_of_prose(answer)
    if not _is_prose(answer) and not _CJK_COPULA.search(answer):
        return answer
    if choices:
        from qvq_ray.verify.choices import choice_letter

        if choice_letter(answer, len(choices)) is not None or _option_text_index(answer, choices) is not None:
            return answer
    span = _answer_span(answer, choices)
    if span is not None:
        return span
    return answer if whole_ok else None


def _is_prose(s: str) -> bool:
    """Several words of running text (an answer like `6 yards` or `no solution` is not prose)."""
    if re.search(r"[\u4e00-\u9fff]{4,}", s) or _CJK_COPULA.search(s):
        return True
    words = re.findall(r"[A-Za-z]{2,}", s)
    if len(words) <= 2 and len(s) <= 40:
        return False
    return bool(_PROSE_WORDS.search(s)) and len(words) >= 3 or bool(re.search(r"[\u4e00-\u9fff]{4,}", s))


def _answer_span(sentence: str, choices: list[str]) -> str | None:
    """The answer-bearing span of one sentence of prose, or None."""
    bolds = [b.strip() for b in _BOLD.findall(sentence) if b.strip() and not re.search(r"answer|solution", b, re.I)]
    for bold in reversed(bolds):
        bold = _clean(bold)
        if bold and not _is_prose(bold):
            return _reduce_value(bold) or bold
    plain = sentence.replace("**", "")
    count = subject_count(plain)
    span = _copula_span(plain, count)
    if span is not None:
        return span
    if count is not None:
        return count
    numbers = {n.replace(",", "").replace("−", "-") for n in _NUMBER.findall(plain)}
    if len(numbers) == 1 and (m := _NUMBER.search(plain)) is not None:
        return _reduce_value(plain[m.start() :]) or m.group()
    return None


def _copula_span(plain: str, count: str | None) -> str | None:
    """The value after the last `is`/`are`/`=` that reads as one (`... is 0.11 meters`), trying
    earlier ones when a later one is followed by prose (`there are three models with an accuracy
    of less than 8 in ...`: `of` leads nowhere, `are` to `three models`)."""
    for cop in reversed(list(_COPULA.finditer(plain))[-_MAX_COPULAS:]):
        after = plain[cop.end() :].strip()
        if cop.group().strip().lower() == "of" and (
            re.match(r"(?i)(?:the|these|those|all)\b", after) or re.search(r"(?i)\bout\s*$", plain[: cop.start()])
        ):
            continue  # `of the three people, ...`: a part of a whole; `1 out of 10`: a rate's whole, not a value
        value = _clean(_LEADING_ARTICLE.sub("", after).strip())
        if not value:
            continue
        if count is not None and not re.search(r"\d", value) and number_word_value(value) is None:
            return count  # `2 balls are left`, `Approximately 50% of the stripes are horizontal`
        if not _is_prose(value):
            return number_word_value(value) if _is_number_word(value) else value
        reduced = _reduce_value(value)
        if reduced is not None:
            return reduced
    return None


def _is_number_word(value: str) -> bool:
    """`two`, `Three.`: a count written as a word, alone."""
    return number_word_value(value) is not None and len(value.split()) == 1


def _reduce_value(value: str) -> str | None:
    """`0.11 meters.` -> `0.11 meters`, `3 bars that have ...` -> `3 bars`; None if no number leads."""
    value = value.strip()
    m = _NUMBER_AT_START.match(value)
    if not m:
        return number_word_value(value)  # `three objects left` -> `3`
    number = m.group()
    rest = value[m.end() :]
    unit = _unit_after(rest)
    return f"{number} {unit}" if unit else number


def _unit_after(rest: str) -> str | None:
    """A unit (or unit phrase: `square meters`, `cubic cm`, `km/h`, `米/秒`) right after a number."""
    from qvq_ray.verify.units import unit_phrase

    return unit_phrase(rest)


_MIN_SENTENCE_WORDS = 6


def _is_sentence(answer: str, choices: list[str]) -> bool:
    """Whether a statement's "answer" is a whole sentence of prose naming no option (`Here is the
    answer: The model has 9 dots divided into 3 equal groups`): it states no answer by itself."""
    return _is_prose(answer) and len(answer.split()) >= _MIN_SENTENCE_WORDS and not _mentions(answer, choices)


def _answer_like(answer: str, choices: list[str]) -> bool:
    """Whether a statement found after a box reads like an answer (else the box is kept)."""
    if _NOT_AN_ANSWER.match(answer):
        return False
    if re.search(r"\d|\\|[A-Z]\)|\([A-Z]\)", answer) or len(answer.split()) <= 3:
        return True
    return bool(choices) and _option_text_index(answer, choices) is not None


# ---------------------------------------------------------------- answer-only responses

_ANSWER_FIRST_NEXT = re.compile(r"^\s*(?:\*\*)?(?:explanation|reason(?:ing)?|because|justification|rationale|solution|since)\b", re.I)


def _bare(line: str, choices: list[str]) -> str | None:
    """A line that is only an answer: an option letter (with or without its text), a number or
    math without prose, an option's text, a short value; else None."""
    s = _clean(line)
    if not s or len(s) > 400:
        return None
    from qvq_ray.verify.choices import LETTERS, choice_letter

    if choice_letter(s, len(choices) or None) is not None:
        return s
    if len(s) > 120:
        return None
    if choices:  # `Increase in phytoplankton (A)`: an option's text with its own letter
        m = re.fullmatch(r"(.+?)\s*[(（]([A-J])[)）]", s)
        if m and LETTERS.index(m.group(2)) < len(choices) and _option_text_index(m.group(1), choices) == LETTERS.index(m.group(2)):
            return m.group(2)
    if choices and _option_text_index(s, choices) is not None:
        return s
    if re.search(r"[.?!。？！:：]\s", s) or s.endswith((":", "：", "?", "？")):
        return None
    if re.match(r"(?i)(?:step|part|solution|case|question|problem)\b", s):
        return None
    words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]{2,}", s)
    if re.search(r"\d", s):
        if not words or _reduce_value(s) == s.strip() or (len(words) == 1 and _reduce_value(s) is not None):
            return s  # math, a number, a number with its unit
        return None
    if len(words) <= 3 and not _is_prose(s) and not _NO_ANSWER.fullmatch(s):
        return s  # a short value: `Yes`, `quarter past`
    return None


_NO_ANSWER = re.compile(
    r"(?i)\s*(?:no\s+answer|n/?a|unknown|not\s+sure|unsure|no\s+idea|i\s+don'?t\s+know|idk|pass|skip|"
    r"cannot\s+(?:answer|determine|say|tell)|can'?t\s+(?:answer|determine|say|tell)|undetermined|none\s+given)\W*"
)


def _leading_option_word(line: str, choices: list[str]) -> str | None:
    """`No, Periwinkle is not the maximum.` with options Yes/No -> `No`: a one-word option the
    response opens with, then a pause (`,` `.` `!` `;`); None otherwise."""
    m = re.match(r"\s*(?:\*\*)?([A-Za-z]+)(?:\*\*)?\s*[,.!;](?:\s|$)", line)
    if m is None:
        return None
    hits = [c.strip() for c in choices if c.strip().casefold() == m.group(1).casefold()]
    return hits[0] if len(hits) == 1 else None


def _whole_response(text: str, choices: list[str]) -> str | None:
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if not lines:
        return None
    if len(lines) == 1:
        return _bare(lines[0], choices)
    first = _bare(lines[0], choices)
    if first is None:
        return None
    from qvq_ray.verify.choices import choice_letter

    if choice_letter(first, len(choices) or None) is not None or _ANSWER_FIRST_NEXT.match(lines[1]):
        return first
    return None


# ---------------------------------------------------------------- weak rules

_DECLINE = re.compile(
    r"can(?:not|'t|\s+not)\s+(?:be\s+)?(?:determine|determined|answer|answered|provide|provided|solve|solved|confidently|"
    r"deduce|deduced|infer|conclude|decide|decided|know|find|found|"
    r"definitively|accurately|select|choose|say|tell|see|view|access|calculate|compute|identify|give)"
    r"|(?:not|n't)\s+(?:enough|sufficient)\s+(?:information|info|data|context|details)"
    r"|insufficient\s+(?:information|data|context|details)|please\s+provide|unable\s+to"
    r"|(?:not|n't)\s+possible\s+to\s+(?:determine|answer|tell|say|solve)|(?:do|does|did)\s+(?:not|n't)\s+(?:provide|include|contain|give|show)"
    r"|(?:image|figure|picture|diagram|graph|table|function|data|chart|options?|choices)\s+(?:is|are|was|were)\s+not\s+(?:provided|given|included|shown|visible|available)"
    r"|I'm\s+sorry|I\s+apologi[sz]e|impossible\s+to\s+(?:provide|give|know|find|calculate|compute|solve|answer|determine|tell|say)"
    r"|without\s+(?:the|an|any|more|additional|further|seeing)\s+(?:image|figure|picture|diagram|graph|information|data|context|details|visual|table)"
    r"|need\s+(?:more|additional|further)\s+(?:information|details|context)|无法|不能确定"
    r"|none\s+of\s+the\s+(?:given\s+|provided\s+|answer\s+|above\s+)?(?:options|choices|answers|values)"
    r"|(?:no|not\s+an?)\s+(?:option|choice)\s+(?:matches|match|is\s+correct)|(?:options|choices)\s+(?:do|does)\s+not\s+(?:match|include)",
    re.IGNORECASE,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?。！？])\s+|\n+")


def _final_sentence(tail: str, choices: list[str]) -> Extraction:
    lines = [line for line in tail.rstrip().split("\n") if line.strip()]
    if not lines:
        return _NONE
    if _ends_with_option_list(lines):
        return _NONE  # `(C) yes\n(D) no`: options listed (or made up), none chosen
    last_line = lines[-1]
    bare = _bare(last_line, choices)
    if bare is not None and len(lines) > 1:
        return _checked(bare, "final_sentence")
    sentences = [s.strip() for s in _SENTENCE_SPLIT.split("\n".join(lines[-6:])) if s.strip()]
    if len(sentences) > 1:
        from qvq_ray.verify.choices import choice_letter

        if choice_letter(sentences[-1], len(choices) or None) is not None and len(sentences[-1]) <= 4:
            return _checked(sentences[-1], "final_sentence")
    if not sentences or not _terminated(sentences[-1]) or BLANK.search(sentences[-1]):
        return _NONE  # `The model has ___ dots ...`: the question's blank copied, not filled
    named = _named_option(tail, choices)
    for sentence in reversed(sentences[-2:]):
        span = _answer_span(_strip_markup(sentence), choices)
        if span is not None and not _NOT_AN_ANSWER.match(span):
            if choices:
                mention = _choice_mention(span, choices)
                if mention is not None:
                    return _checked(mention, "final_sentence")
                if not re.search(r"\d", span) or not any(re.search(r"\d", c) for c in choices):
                    span = None  # `a surplus of 1,300 units` when the options are words: the word is the answer
            if span is not None:
                return _checked(span, "final_sentence")
        if choices:
            mention = _choice_mention(sentence, choices)
            if mention is not None:
                return _checked(named or mention, "choice_mention")
            if mention is None and _mentions(sentence, choices):
                return _checked(named, "choice_mention")  # two options named: a hedge, unless one was named first
    return _checked(named, "choice_mention")


def _named_option(text: str, choices: list[str]) -> str | None:
    """The letter of the one option the text names with its letter AND its text (`... are (C)
    Snake and raccoon.`): an answer stated before an explanation that goes on to mention other
    options' words. None when no option, or several, are named so."""
    from qvq_ray.verify.choices import LETTERS

    named = {
        k
        for k, option in enumerate(choices[: len(LETTERS)])
        if option.strip()
        and re.search(r"\(" + LETTERS[k] + r"\)\s*" + re.escape(option.strip()) + r"(?![\w])", text, re.IGNORECASE)
    }
    return LETTERS[named.pop()] if len(named) == 1 else None


_OPTION_LINE = re.compile(r"^\s*\(?[A-Z]{1,2}[).:]\s*\S")


def _ends_with_option_list(lines: list[str]) -> bool:
    """Whether the response ends with two or more lines shaped like options (`(C) yes`, `(D) no`)."""
    return len(lines) >= 2 and all(_OPTION_LINE.match(line) for line in lines[-2:])


def _terminated(sentence: str) -> bool:
    s = sentence.rstrip(" *$)]}\\\"”'’")
    if s.endswith((".", "!", "。", "！")) or sentence.rstrip().endswith(("$", "**", "\\]", "\\)")):
        return True
    return bool(re.search(r"(?:[:=]|\b(?:is|are|was|equals))\s*[-−]?\d[\d,.]*\s*(?:%|°|[A-Za-z/^{}0-9]{1,12})?\s*$", sentence))


def _strip_markup(sentence: str) -> str:
    return re.sub(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+", "", sentence).strip()


# ---------------------------------------------------------------- options mentioned

_LETTER_MENTION = re.compile(
    r"(?:\b(?:option|choice|letter|answer)\s*[:：]?\s*\(?([A-J])\)?(?![A-Za-z])"
    r"|\(([A-J])\)"
    r"|(?<![A-Za-z(\-–])([A-J])\)"
    r"|(?:^|\s)([A-J])[.:](?:\s|$)"
    r"|\b(?:is|选)\s*([A-J])\s*[.。]?\s*$"
    r"|^\s*([A-J])\s*$)",
)


_LETTER_LIST = re.compile(
    r"(?:\b(?:options|choices|letters)\s*\(?|\()((?<![A-Za-z])[A-J](?:\s*(?:,|/|\band\b|\bor\b)\s*(?:(?:and|or)\s+)?[A-J](?![A-Za-z]))+)"
)


def _mentions(sentence: str, choices: list[str]) -> set[int]:
    """Indices of the options a sentence names: by letter, by text, or by value."""
    from qvq_ray.verify.choices import LETTERS

    found: set[int] = set()
    n = len(choices)
    letters = [next(g for g in m.groups() if g) for m in _LETTER_MENTION.finditer(sentence)]
    for m in _LETTER_LIST.finditer(sentence):  # `the other options (B, C, and D)`
        letters += re.findall(r"[A-J]", m.group(1))
    for letter in letters:
        k = LETTERS.index(letter)
        if k < n:
            found.add(k)
    found |= _option_texts_in(sentence, choices)
    return found


def _choice_mention(sentence: str, choices: list[str]) -> str | None:
    """The one option a sentence names (its letter, or its text), or None (none, or several)."""
    from qvq_ray.verify.choices import LETTERS

    found = _mentions(sentence, choices)
    if len(found) != 1:
        return None
    k = found.pop()
    return LETTERS[k]


def _option_key(option: str) -> str:
    s = option.replace("$", "")
    s = re.sub(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\*?\s*\\degree\b", "°", s)  # `60*\\degree` (MathVista's degrees)
    s = s.replace("\\circ", "°").replace("^°", "°").replace("^{°}", "°").replace("~", " ").replace("\\,", " ")
    return re.sub(r"\s+", " ", s).strip().casefold()


def _option_text_index(text: str, choices: list[str]) -> int | None:
    key = _option_key(text).rstrip(".")
    hits = [k for k, c in enumerate(choices) if _option_key(c).rstrip(".") == key and key]
    return hits[0] if len(hits) == 1 else None


# An option that is a number with its unit, or a qualified number (`around 31%`, `4.40米`).
_OPTION_NUMBER = re.compile(
    r"(?:(?:around|about|approximately|roughly|nearly)\s+)?(-?\d+(?:\.\d+)?)\s*(?:°|%|[a-z]{1,3}(?:\^?\{?\d\}?)?|[\u4e00-\u9fff]{1,3})?"
)


def _option_texts_in(sentence: str, choices: list[str]) -> set[int]:
    """Options whose text (2+ characters) or numeric value appears in the sentence as whole words;
    a text inside a longer matched text does not count (`quarter` inside `quarter past`)."""
    s = _option_key(sentence)
    spans: list[tuple[int, int, int]] = []
    for k, option in enumerate(choices):
        key = _option_key(option).rstrip(".")
        if len(key) < 2 and not key.isdigit():
            continue
        for m in re.finditer(r"(?<![\w.])" + re.escape(key) + r"(?![\w])", s):
            spans.append((m.start(), m.end(), k))
        number = _OPTION_NUMBER.fullmatch(key)
        if number and number.group(1) != key:
            for m in re.finditer(r"(?<![\w.])" + re.escape(number.group(1)) + r"(?![\w.]|\.\d)", s):
                spans.append((m.start(), m.end(), k))
    found = set()
    for a, b, k in spans:
        if any((a2 <= a and b <= b2) and (b2 - a2) > (b - a) and k2 != k for a2, b2, k2 in spans):
            continue
        found.add(k)
    return found


# ---------------------------------------------------------------- cleaning

_MAX_CLEAN_PASSES = 8
_WRAPPERS = (("\\[", "\\]"), ("\\(", "\\)"), ("$$", "$$"), ("$", "$"), ("**", "**"))


def _clean(text: str) -> str:
    """Strip delimiters around an answer: whitespace, `$`, `\\[ \\]`, `\\( \\)`, `**`, `:`, a final period."""
    for _ in range(_MAX_CLEAN_PASSES):  # bounded: `$$$$...` must not cost a pass per layer
        prev = text
        text = text.strip().lstrip(":：").strip()
        if len(text) > 1 and text[0] in "\"“'‘" and text[-1] in "\"”'’":
            text = text[1:-1].strip()
        if text.startswith("**") or text.endswith("**"):
            text = text.strip("*").strip()  # `**32**.` -> `32` (the period goes next pass)
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
            text = _strip_edge_dollars(_strip_unmatched_closers(text))
        if text == prev:
            break
    return text.strip()


def _strip_unmatched_closers(text: str) -> str:
    """`378}` / `B.}` -> `378` / `B.`: closing braces at the end that open nowhere in the answer
    belong to a group around it (`\\text{The answer is B.}`, a `\\boxed{` the prompt opened
    and the model closed); `\\}` is a literal brace and `{3}` a matched one, both kept."""
    if not text.endswith("}"):
        return text
    depth = 0
    for m in _BRACE_TOKEN.finditer(text):
        depth += {"{": 1, "}": -1}.get(m.group(), 0)
    while depth < 0 and text.endswith("}") and not text.endswith("\\}"):
        text, depth = text[:-1].rstrip(), depth + 1
    return text


def _strip_edge_dollars(text: str) -> str:
    """`$24` / `24$` (one delimiter lost to a line split) lose the stray `$`."""
    if text.count("$") == 1 and (text.startswith("$") or text.endswith("$")):
        return text.strip("$")
    return text
