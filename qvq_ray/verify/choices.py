"""Multiple choice: option letters <-> option texts, using the problem's choices.

Never by string distance (MathVista's grader maps an empty or unrelated answer to the closest
option): an answer names an option by its letter (`C`, `(C)`, `C.`, `\\text{(C)}`, `Option C`,
`选C`), or by stating an option's text, judged by the same equivalence as any answer, and only
when exactly one option matches. Anything else names no option.
"""

from __future__ import annotations

import re
from typing import Callable

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_LETTERS = 10  # without choices, A-J count as option letters (MMMU goes to I)

_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|textrm|operatorname)\s*\{([^{}]*)\}")
_PREFIX = re.compile(
    r"^(?:(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:：]?\s*|选项\s*|选择\s*|选\s*|答案\s*[:：]?\s*)",
    re.IGNORECASE,
)
_SUFFIX = re.compile(
    r"\s*(?:选项|项|(?:是|为)?正确(?:的)?(?:答案|选项)?|is\s+correct|is\s+the\s+(?:correct\s+|right\s+|best\s+)?(?:answer|option|choice))\s*$",
    re.IGNORECASE,
)
# (C) | [C] | C | C. text | C: text | C) text | (C) text | (c) | C - text
_LETTER = re.compile(r"(?:\((?P<p>[A-Za-z])\)|\[(?P<b>[A-Z])\]|(?P<l>[A-Z])(?=$|[.:：)、,]|\s+[(（]|\s+[-–—]\s))(?P<rest>.*)", re.S)
_DASH = re.compile(r"^\s+[-–—]\s+")
_SEPARATORS = re.compile(r"\s*(?:,|，|、|;|\band\b|和|&)\s*")


def _clean(answer: str) -> str:
    s = answer.strip().replace("$", "").strip()
    for _ in range(3):
        s2 = _WRAP.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = s.strip().strip("*").strip()
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[7:-1].strip()
    s = _PREFIX.sub("", s, count=1).strip()
    s = _SUFFIX.sub("", s).strip()
    return s.rstrip("。.").strip()


def choice_letter(answer: str | None, n_choices: int | None = None) -> str | None:
    """The option letter an answer names, upper-cased, or None.

    `C`, `(C)`, `(c)`, `[C]`, `C.`, `C:`, `C) 24`, `(C) 24`, `C. 24`, `\\text{(C)}`, `**C**`,
    `Option C`, `选C`, `C选项`. Not `x = 2`, `AB`, `I think`, `A or B`. With `n_choices`, only
    letters naming an option (A up to the n-th letter).
    """
    if not answer:
        return None
    s = _clean(answer)
    if not s or len(s) > 300:
        return None
    m = _LETTER.fullmatch(s)
    if m is None:
        return None
    letter = (m.group("p") or m.group("b") or m.group("l")).upper()
    rest = _DASH.sub(": ", m.group("rest"), count=1)  # `B - quarter`: the letter, then its option
    if rest and m.group("l") and rest[0] not in ".:：)、,":
        if not re.fullmatch(r"\s+[(（][^()（）]*[)）]\s*", rest):  # `C (145°)`: the letter, then its option
            return None
    if rest and not rest.strip(" .:：)、,"):
        rest = ""
    if rest and _SEPARATORS.match(rest) and choice_letters(s, n_choices) is not None:
        return None  # several letters: not one option
    limit = n_choices if n_choices else DEFAULT_LETTERS
    if LETTERS.index(letter) >= max(limit, 1):
        return None
    return letter


def choice_letters(answer: str | None, n_choices: int | None = None) -> tuple[str, ...] | None:
    """Several option letters (`A, C`, `A and C`, `AC` with choices), sorted; None if not that."""
    if not answer:
        return None
    s = _clean(answer)
    limit = n_choices if n_choices else DEFAULT_LETTERS
    parts = [p.strip("() []") for p in _SEPARATORS.split(s) if p.strip()]
    if len(parts) < 2:
        if n_choices and re.fullmatch(r"[A-Z]{2,6}", s):
            parts = list(s)
        else:
            return None
    letters = []
    for p in parts:
        if len(p) != 1 or p.upper() not in LETTERS[:limit] or not p.isupper():
            return None
        letters.append(p.upper())
    return tuple(sorted(set(letters)))


def letter_text(answer: str | None) -> str:
    """What follows the option letter of an answer (`(D) 120^\\circ` -> `120^\\circ`, `C (145°)` -> `145°`)."""
    if not answer:
        return ""
    s = _clean(answer)
    m = _LETTER.fullmatch(s)
    if m is None:
        return ""
    rest = _DASH.sub("", m.group("rest"), count=1).strip().lstrip(".:：)、,").strip()
    if rest[:1] in "(（" and rest[-1:] in ")）":
        rest = rest[1:-1].strip()
    return rest


def letter_contradicted(
    letter: str, answer: str, choices: list[str], equal: Callable[[str, str], bool]
) -> bool:
    """Whether an answer that names option `letter` also states something else (`(D) 120°` when D
    is 108°, `(B) Green` when Green is option E): two different answers, so it names no option.
    Only values contradict values (a number or math on both sides, judged by `equal`, which may
    raise `NeedsSympy`); a text contradicts only by being another option's text. A paraphrase,
    `9:30` for `21:30`, or `5°` for `another value` never contradicts; options that are only
    letters (the real ones drawn in the image) cannot."""
    rest = letter_text(answer)
    index = LETTERS.index(letter)
    if not rest or index >= len(choices) or not choices[index].strip() or choice_letter(choices[index]) == letter:
        return False
    own = choices[index]
    if any(m.group(1) != letter for m in re.finditer(r"\(([A-J])\)", rest)):
        return True  # `(A) PQ, (C) PS`: two options
    if _text_key(rest) == _text_key(own) or _loose_key(rest) == _loose_key(own):
        return False
    if any(k != index and c.strip() and _text_key(c) == _text_key(rest) for k, c in enumerate(choices)):
        return True
    if not (_value_like(rest) and _value_like(own)):
        return False
    return not equal(own, rest)


def _loose_key(s: str) -> str:
    """`5√3 m` and `5\\sqrt{3}m` alike: spacing, braces and delimiters gone."""
    from qvq_ray.verify.structures import normalize_answer

    return re.sub(r"[\s{}$~]|\\[,;: !]", "", normalize_answer(s)).casefold()


_MATH_COMMAND = re.compile(r"\\(?:frac|dfrac|sqrt|pi|times|cdot|circ)(?![A-Za-z])|\^")


def _value_like(text: str) -> bool:
    """A number (with a unit, %, degrees) or math, not words."""
    from qvq_ray.verify.numbers import parse_number
    from qvq_ray.verify.structures import normalize_answer
    from qvq_ray.verify.units import split_quantity

    s = _clean(normalize_answer(text))
    if not s:
        return False
    q = split_quantity(s)
    if parse_number(q.value) is not None:
        return True
    if re.search(r"[A-Za-z]{3,}", re.sub(r"\\[A-Za-z]+|\{[^{}]*\}", "", q.value)):
        return False
    return bool(_MATH_COMMAND.search(q.value)) and bool(re.search(r"\d", q.value))


def is_letter_hedge(answer: str | None) -> bool:
    """`A or B`, `(A) or (C)`, `A/B`, `A 或 B`: two options offered, which is no answer."""
    if not answer:
        return False
    s = _clean(answer)
    return bool(re.fullmatch(r"\(?[A-J]\)?\s*(?:or|/|或|或者)\s*\(?[A-J]\)?(?:\s*(?:or|/|或)\s*\(?[A-J]\)?)*", s))


def option_index(
    answer: str, choices: list[str], equal: Callable[[str, str], bool], *, exact_only: bool = False
) -> int | None:
    """The index of the one option `answer` states (by text), or None (none, or several match).

    `equal(option, answer)` judges value equality (the verifier's equivalence); exact text
    equality (case, spacing and wrappers folded) is tried first.
    """
    if not answer or not choices:
        return None
    key = _text_key(answer)
    exact = [i for i, c in enumerate(choices) if _text_key(c) == key]
    if len(exact) == 1:
        return exact[0]
    if len(exact) > 1 or exact_only:
        return None
    matches = [i for i, c in enumerate(choices) if c and c.strip() and equal(c, answer)]
    return matches[0] if len(matches) == 1 else None


def _case_differs_on_letter(answer: str, option: str) -> bool:
    """`(E)` against the option text `(e)`: a capital letter names option E, not the text `(e)`."""
    a, o = _clean(answer), _clean(option)
    return bool(re.fullmatch(r"\(?[A-Za-z]\)?", a)) and a != o and a.casefold() == o.casefold()


def _option_after_stray_letter(answer: str, choices: list[str], n: int | None) -> int | None:
    """`(D) no` when there are two options: a letter past the last option (the model numbered its
    own list) with one option's exact text after it names that option by its text."""
    m = _LETTER.fullmatch(_clean(answer))
    if m is None:
        return None
    letter = (m.group("p") or m.group("b") or m.group("l")).upper()
    if LETTERS.index(letter) < (n or DEFAULT_LETTERS):
        return None
    rest = letter_text(answer)
    return option_index(rest, choices, lambda a, b: False, exact_only=True) if rest else None


def _text_key(s: str) -> str:
    from qvq_ray.verify.structures import normalize_answer

    s = _clean(normalize_answer(s))
    s = re.sub(r"\s+", "", s)
    return s.casefold()


def compare_choice(
    answer: str, gold: str, choices: list[str] | None, equal: Callable[[str, str], bool]
) -> bool | None:
    """The verdict when this is a multiple-choice comparison, else None (compare as values).

    - the gold names an option (its letter, or its text exactly as in `choices`): the answer must
      name the same option, by letter or by stating that option's text; an answer that names no
      option is wrong when the gold is a letter, and compared as a value when the gold is a text;
    - the gold is a value that is no option: an answer letter is replaced by its option's text;
    - several letters (`AC`, `A, C`) compare as sets;
    - no choices and no letter gold: None.
    """
    choices = list(choices or [])
    n = len(choices) or None
    if choices:
        gold_letters = choice_letters(gold, n)
        if gold_letters is not None:
            answer_letters = choice_letters(answer, n)
            if answer_letters is None:
                single = choice_letter(answer, n)
                answer_letters = (single,) if single else None
            return answer_letters == gold_letters
    gold_index = option_index(gold, choices, equal, exact_only=True) if choices else None
    gold_is_letter = False
    if gold_index is None:
        gold_letter = choice_letter(gold, n)
        if gold_letter is None:
            if not choices:
                return None
            letter = choice_letter(answer, n)
            if letter is None:
                return None
            index = LETTERS.index(letter)
            return index < len(choices) and equal(gold, choices[index])
        gold_index = LETTERS.index(gold_letter)
        gold_is_letter = True
    if is_letter_hedge(answer):
        return False
    exact = option_index(answer, choices, equal, exact_only=True) if choices else None
    if exact is not None and not _case_differs_on_letter(answer, choices[exact]):
        return exact == gold_index  # the answer is an option's text, verbatim (even one like `(a) 2, (b) 3`)
    letter = choice_letter(answer, n)
    if letter is None and choices:
        beyond = _option_after_stray_letter(answer, choices, n)
        if beyond is not None:
            return beyond == gold_index
    if letter is not None:
        if choices and letter_contradicted(letter, answer, choices, equal):
            return False
        return LETTERS.index(letter) == gold_index
    if choices:
        answer_index = option_index(answer, choices, equal)
        if answer_index is not None:
            return answer_index == gold_index
    return False if gold_is_letter else None
