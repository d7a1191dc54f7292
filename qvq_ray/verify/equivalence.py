"""Is an answer equivalent to a gold answer? Cheap string rules first, then math-verify.

`answers_equivalent` runs INSIDE a `VerifyPool` worker process: math-verify (sympy underneath)
can hang or chew CPU on hostile input, and the pool's hard kill is what bounds it. That is also
why math-verify's own `signal.alarm` timeouts are switched off here (`parsing_timeout=None`,
`timeout_seconds=None`): they would only fail outside a main thread.

Safety: only math-verify's LaTeX extraction is used. Its plain-expression extraction feeds text
to sympy's `parse_expr`, which is `eval` underneath; untrusted answers must never reach it.

`canonical_form` and `choice_letter` are pure string work, safe anywhere (the solver groups
answers by `canonical_form` in-process).
"""

from __future__ import annotations

import re

# Past this length an answer is not worth a symbolic parse (and is the likeliest to hang one).
MAX_SYMBOLIC_CHARS = 1000
# Gold letters treated as multiple-choice options (MMMU goes up to I; a little slack).
CHOICE_LETTERS = "ABCDEFGHIJ"

_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_FRAC_VARIANT = re.compile(r"\\[dt]frac(?![A-Za-z])")
_SPACES = re.compile(r"\s+")
# Whitespace is dropped unless it separates two word characters (`2 3`, `\pi r` keep theirs).
_DROPPABLE_SPACE = re.compile(r"(?<!\w) | (?!\w)")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
# A lone option letter, as models write it: C, (C), [C], C., C), C: 24, (C) 24, **C**.
_CHOICE = re.compile(r"[(\[]?([A-Za-z])[)\]]?(?:[.:)](?:\s.*)?|\s+.*)?", re.S)
_WORDS = re.compile(r"[A-Za-z][A-Za-z .,'-]*")
_WORD_RUN = re.compile(r"[A-Za-z]{2}")


def canonical_form(answer: str | None) -> str:
    """A normalised string for grouping equal answers (not a proof of equivalence).

    Removes delimiters, `\\text{}` wrappers, spacing and sizing commands, most whitespace and a
    trailing period; writes `\\dfrac` as `\\frac`, plain numbers without padding zeros or thousands
    commas, and a lone option letter (`(c)`, `\\text{(C)}`) as its capital.
    """
    if not answer:
        return ""
    s = answer.strip()
    s = s.replace("$", "")
    for wrapper in ("\\[", "\\]", "\\(", "\\)"):
        s = s.replace(wrapper, "")
    for _ in range(3):  # nested \text{\textbf{...}}; bounded
        s2 = _TEXT_COMMAND.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = _SPACING.sub(" ", s)
    s = _SIZING.sub("", s)
    s = _FRAC_VARIANT.sub(r"\\frac", s)
    s = s.replace("{,}", ",")
    s = _SPACES.sub(" ", s).strip()
    s = _DROPPABLE_SPACE.sub("", s)
    s = s.rstrip("。")
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1]
    letter = choice_letter(s)
    if letter is not None and len(s) <= 6:
        return letter
    return _canonical_number(s) or s


def choice_letter(answer: str | None) -> str | None:
    """The option letter an answer names (`C`, `(C)`, `C.`, `(C) 24`, `\\text{(C)}`), upper-cased, or None."""
    if not answer:
        return None
    s = answer.strip().replace("$", "").strip("*").strip()
    for _ in range(3):
        s2 = _TEXT_COMMAND.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = s.strip()
    m = _CHOICE.fullmatch(s[:200]) if len(s) <= 200 else None
    if m is None:
        return None
    # `x = 2` is no option; a following text after a bare letter needs a separator: `C. 24`, `(C) 24`.
    letter = m.group(1)
    rest = s[m.end(1) :]
    if rest and not (rest[0] in ".:)]" or s[0] in "(["):
        return None
    return letter.upper()


def answers_equivalent(answer: str, gold: str, choices: list[str] | None = None) -> bool:
    """Whether `answer` means `gold`. Runs in a verify worker (it may call math-verify).

    `quick_equivalent` decides what string rules can; the rest goes to math-verify with both
    sides wrapped in `\\boxed{}` so the whole answer is parsed.
    """
    quick = quick_equivalent(answer, gold, choices)
    if quick is not None:
        return quick
    choices = list(choices or [])
    gold_letter = _gold_letter(gold)
    if gold_letter is not None:  # the answer states an option's text, not its letter
        index = CHOICE_LETTERS.index(gold_letter)
        return index < len(choices) and _values_equivalent(answer, choices[index])
    letter = choice_letter(answer)
    if letter is not None and choices:
        index = ord(letter) - ord("A")
        if 0 <= index < len(choices) and _values_equivalent(choices[index], gold):
            return True
    return _values_equivalent(answer, gold)


def quick_equivalent(answer: str | None, gold: str | None, choices: list[str] | None = None) -> bool | None:
    """What string rules alone decide, without sympy: True, False, or None (needs math-verify).

    Safe in-process (bounded string work), so a caller can skip the worker round trip.

    - gold an option letter (A-J): the answer's letter decides; with `choices`, an answer that
      states the gold option's text is left to math-verify;
    - equal canonical forms: True;
    - both plain words (`Paris`, `yes`): compared as text (math-verify reads letters as a product
      of symbols, so anagrams like `Paris`/`pairs` would "match");
    - too long for a symbolic parse (`MAX_SYMBOLIC_CHARS`): False.
    """
    if not answer or not gold:
        return False
    choices = list(choices or [])
    gold_letter = _gold_letter(gold)
    if gold_letter is not None:
        letter = choice_letter(answer)
        if letter is not None:
            return letter == gold_letter
        index = CHOICE_LETTERS.index(gold_letter)
        if index >= len(choices):
            return False
        return _quick_values(answer, choices[index])
    letter = choice_letter(answer)
    if letter is not None and choices and 0 <= ord(letter) - ord("A") < len(choices):
        if _quick_values(choices[ord(letter) - ord("A")], gold) is True:
            return True
        direct = _quick_values(answer, gold)
        return True if direct else None
    return _quick_values(answer, gold)


def _gold_letter(gold: str) -> str | None:
    s = canonical_form(gold)
    return s if len(s) == 1 and s in CHOICE_LETTERS else None


def _quick_values(answer: str, gold: str) -> bool | None:
    a, g = canonical_form(answer), canonical_form(gold)
    if not a or not g:
        return False
    if a == g:
        return True
    if _is_words(a) and _is_words(g):
        return _SPACES.sub(" ", a).casefold() == _SPACES.sub(" ", g).casefold()
    if len(answer) > MAX_SYMBOLIC_CHARS or len(gold) > MAX_SYMBOLIC_CHARS:
        return False
    return None


def _values_equivalent(answer: str, gold: str) -> bool:
    quick = _quick_values(answer, gold)
    if quick is not None:
        return quick
    return _math_verify_equal(_strip_delimiters(answer), _strip_delimiters(gold))


def _is_words(s: str) -> bool:
    """Plain words (no LaTeX, no digits) with a run of 2+ letters: text, not algebra (`no`, `Paris`)."""
    return bool(_WORDS.fullmatch(s)) and bool(_WORD_RUN.search(s))


def _canonical_number(s: str) -> str | None:
    """`024.50` -> `24.5`, `1,000` -> `1000`, `-0` -> `0`; None when `s` is not a plain decimal."""
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _DECIMAL.fullmatch(s):
        return None
    sign = "-" if s.startswith("-") else ""
    s = s.lstrip("+-")
    whole, _, frac = s.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    out = f"{whole}.{frac}" if frac else whole
    return "0" if out == "0" else sign + out


def _strip_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    return s.rstrip(".").strip()


def _wrap(s: str) -> str:
    """Delimit a bare answer so math-verify parses all of it (undelimited LaTeX yields a fragment)."""
    return f"\\boxed{{{s}}}" if _braces_balanced(s) and "$" not in s else f"${s.replace('$', '')}$"


def _braces_balanced(s: str) -> bool:
    depth = 0
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


_MV: tuple | None = None


def _math_verify():
    """Import math-verify on first use (keeps worker start fast) with its signal timeouts off."""
    global _MV
    if _MV is None:
        import math_verify.grader as grader
        import math_verify.parser as parser
        from math_verify import LatexExtractionConfig, parse, verify

        # We disable its timeouts on purpose (the pool kills the process); silence the warning.
        for module in (grader, parser):
            if hasattr(module, "TIMEOUT_WARNING_SHOWN"):
                module.TIMEOUT_WARNING_SHOWN = True
        _MV = (parse, verify, [LatexExtractionConfig(boxed_match_priority=0)])
    return _MV


def _math_verify_equal(answer: str, gold: str) -> bool:
    parse, verify, config = _math_verify()
    gold_parsed = parse(_wrap(gold), config, parsing_timeout=None)
    answer_parsed = parse(_wrap(answer), config, parsing_timeout=None)
    if not gold_parsed or not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))
