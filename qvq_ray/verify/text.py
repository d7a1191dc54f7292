"""String helpers shared by extraction, normalisation and the structure parser.

Pure, bounded string work (no sympy, no regex with nested quantifiers), safe on any thread and on
any input size: every function is a linear scan or a fixed number of linear passes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# Invisible characters a response (or a hostile gold) may hide inside an answer: soft hyphen,
# zero-width space/joiners, bidi marks and overrides, word joiner and invisible operators, BOM.
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")

# Unicode math written by models (and copied into golds) -> the LaTeX latex2sympy reads.
# Applied before NFKC, which would turn `x²` into `x2`.
_UNICODE_MATH = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",  # en dash (models write −3 with it)
    "\u00d7": "\\times ",
    "\u22c5": "\\cdot ",
    "\u00b7": "\\cdot ",
    "\u2219": "\\cdot ",
    "\u00f7": "\\div ",
    "\u2264": "\\le ",
    "\u2265": "\\ge ",
    "\u2260": "\\ne ",
    "\u2248": "\\approx ",
    "\u221e": "\\infty ",
    "\u03c0": "\\pi ",
    "\u221a": "\\sqrt",
    "\u00b0": "^\\circ",
    "\u2218": "^\\circ",
    "\u222a": "\\cup ",
    "\u2229": "\\cap ",
    "\u2208": "\\in ",
    "\u00b1": "\\pm ",
    "\u2213": "\\mp ",
    "\u00b2": "^2",
    "\u00b3": "^3",
    "\u00b9": "^1",
    "\u2070": "^0",
    "\u2074": "^4",
    "\u207b\u00b9": "^{-1}",
    "\u207b\u00b2": "^{-2}",
    "\u00bd": "\\frac{1}{2}",
    "\u00bc": "\\frac{1}{4}",
    "\u00be": "\\frac{3}{4}",
    "\u2153": "\\frac{1}{3}",
    "\u2154": "\\frac{2}{3}",
    "\u03a9": "\\Omega ",
    "\u2126": "\\Omega ",
    "\u00b5": "\\mu ",
    "\u03bc": "\\mu ",
    "\uff0c": ",",  # fullwidth comma (NFKC would do it, but before our splitting)
    "\uff1b": ";",
    "\u3001": ",",  # ideographic comma
    "\u2009": " ",  # thin space (a thousands separator: `20 000`)
    "\u202f": " ",
}
# circled numbers label the parts of an answer (`①5 ②7`); NFKC would turn them into digits
_UNICODE_MATH.update({chr(0x2460 + k): f" ({k + 1}) " for k in range(20)})
_UNICODE_MATH_RE = re.compile("|".join(re.escape(k) for k in sorted(_UNICODE_MATH, key=len, reverse=True)))


def strip_invisible(text: str) -> str:
    """Remove zero-width and bidi-control characters."""
    return _INVISIBLE.sub("", text)


def normalize_unicode(text: str) -> str:
    """Invisible characters removed, Unicode math written as LaTeX, then NFKC (fullwidth -> ASCII)."""
    text = strip_invisible(text)
    text = _UNICODE_MATH_RE.sub(lambda m: _UNICODE_MATH[m.group()], text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text


# ---------------------------------------------------------------- braces and brackets


def _brace_depths(text: str, start: int = 0) -> Iterator[tuple[int, int]]:
    """(index, depth after it) of every unescaped `{` / `}` from `start` (`\\x` skips `x`)."""
    depth = 0
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
            yield i, depth
        elif c == "}":
            depth -= 1
            yield i, depth
        i += 1


def matching_brace(text: str, start: int) -> int | None:
    """Index of the `}` closing the `{` at `start` (escaped braces skipped), or None."""
    return next((i for i, depth in _brace_depths(text, start) if depth == 0), None)


def braces_balanced(text: str) -> bool:
    depth = 0
    for _, depth in _brace_depths(text):
        if depth < 0:
            return False
    return depth == 0


def nesting_depth(text: str) -> int:
    """Deepest nesting of (), [] and {} (escaped braces count): a cheap guard before parsing."""
    depth = best = 0
    for c in text:
        if c in "([{":
            depth += 1
            if depth > best:
                best = depth
        elif c in ")]}":
            depth = max(0, depth - 1)
    return best


# Openers/closers at the structure level. `\{` `\}` are set braces; `(`/`[` pair with `)`/`]`
# in any combination (half-open intervals); `\langle` `\rangle` are vectors.
_OPEN_TOKENS = ("\\{", "\\langle", "\\lbrace", "{", "(", "[")
_CLOSE_TOKENS = ("\\}", "\\rangle", "\\rbrace", "}", ")", "]")


def _token_at(text: str, i: int, tokens: tuple[str, ...]) -> str | None:
    for tok in tokens:
        if text.startswith(tok, i):
            if tok[0] == "\\" and tok[-1].isalpha():
                end = i + len(tok)
                if end < len(text) and text[end].isalpha():
                    continue  # `\langlex` is some other command
            return tok
    return None


def split_top_level(text: str, separators: tuple[str, ...]) -> list[str]:
    """Split at separators outside any brackets/braces. Separators are literal strings.

    Word separators (`and`, `or`) only split on word boundaries, command separators (`\\cup`)
    only on whole commands. Unbalanced text is returned whole.
    """
    parts: list[str] = []
    depth = 0
    start = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if depth == 0:
            sep = next((s for s in separators if text.startswith(s, i) and _separator_ok(text, i, s)), None)
            if sep is not None:
                parts.append(text[start:i])
                i += len(sep)
                start = i
                continue
        if c in "\\{([":
            opener = _token_at(text, i, _OPEN_TOKENS)
            if opener is not None:
                depth += 1
                i += len(opener)
                continue
        if c in "\\})]":
            closer = _token_at(text, i, _CLOSE_TOKENS)
            if closer is not None:
                depth -= 1
                if depth < 0:
                    return [text]
                i += len(closer)
                continue
        if c == "\\":
            i += 1
            if i < n and text[i].isalpha():
                while i < n and text[i].isalpha():
                    i += 1
            else:
                i += 1
            continue
        i += 1
    if depth != 0:
        return [text]
    parts.append(text[start:])
    return parts


def _separator_ok(text: str, i: int, sep: str) -> bool:
    if sep[0].isalpha() or sep[-1].isalpha():
        before = text[i - 1] if i > 0 else " "
        after = text[i + len(sep)] if i + len(sep) < len(text) else " "
        if sep[0].isalpha() and (before.isalnum() or before == "\\"):
            return False
        if sep[-1].isalpha() and after.isalnum():
            return False
    if sep.startswith("\\") and sep[-1].isalpha():
        end = i + len(sep)
        if end < len(text) and text[end].isalpha():
            return False
    return True


def outer_brackets(text: str) -> tuple[str, str, str] | None:
    """(opener, inner, closer) when the whole text is one bracketed group, e.g. `(1, 2]`."""
    opener = _token_at(text, 0, _OPEN_TOKENS)
    if opener is None or opener == "{":
        return None
    depth = 0
    i, n = 0, len(text)
    while i < n:
        tok = _token_at(text, i, _OPEN_TOKENS) if text[i] in "\\{([" else None
        if tok is not None:
            depth += 1
            i += len(tok)
            continue
        tok = _token_at(text, i, _CLOSE_TOKENS) if text[i] in "\\})]" else None
        if tok is not None:
            depth -= 1
            i += len(tok)
            if depth == 0:
                if i == n:
                    return opener, text[len(opener) : n - len(tok)], tok
                return None
            continue
        if text[i] == "\\":
            i += 2
            continue
        i += 1
    return None


def find_command_arg(text: str, command: str) -> list[tuple[int, int, str]]:
    """All `\\command{arg}` occurrences as (start, end, arg); unbalanced ones are skipped."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        i = text.find(command, pos)
        if i < 0:
            return out
        j = i + len(command)
        if j < len(text) and text[j].isalpha():
            pos = j
            continue
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            k = matching_brace(text, j)
            if k is not None:
                out.append((i, k + 1, text[j + 1 : k]))
                pos = k + 1
                continue
        pos = j
