"""Gold-free health checks of a response: repetition loops and language mixing.

Both target QVQ's documented failures (model card: "recursive reasoning loops", "language mixing
and code-switching"). Pure string work, linear in the response, safe in-process on any thread.

`repetition_loop(text)`: the tail of the response is a cycle: either the last characters are one
block repeated (any period up to `MAX_PERIOD`, the repeated span at least `MIN_LOOP_CHARS` and at
least `MIN_REPEATS` copies; found with the prefix function of the reversed tail, O(n)), or the
tail's lines keep coming back (a line of `MIN_LINE_CHARS`+ seen `MIN_LINE_REPEATS` times among the
last `TAIL_LINES` lines: loops whose numbers drift still repeat their sentences). A response that
leaves a loop and then answers is not flagged: the check looks at the tail.

`language_mixing(text)`: the prose switches script. Math (`$...$`, `\\[...\\]`, `\\(...\\)`, LaTeX
commands), code spans and quoted text are removed first; then the letters are counted per script
(Latin, CJK, Cyrillic, Arabic, Hebrew, Devanagari, Thai, Hangul, Kana). The response mixes when a
second script has a real share of the prose: for a CJK minority, runs of 2+ characters totalling
at least `MIN_FOREIGN_CJK` characters over 2+ runs; for a Latin minority inside CJK prose, runs of
3+ consecutive words (single terms like `AB`, `cm`, `sin` are normal in Chinese math); for other
scripts, 2+ words. Greek letters are math, never counted.
"""

from __future__ import annotations

import re

TAIL_CHARS = 6000
MAX_PERIOD = 1500
MIN_LOOP_CHARS = 300
MIN_REPEATS = 3
TAIL_LINES = 40
MIN_LINE_CHARS = 24
MIN_LINE_REPEATS = 4

MIN_FOREIGN_CJK = 8
MIN_FOREIGN_LATIN_WORDS = 6
MIN_FOREIGN_OTHER_WORDS = 2

_WS = re.compile(r"\s+")


def repetition_loop(text: str) -> bool:
    """Whether the response ends in a repetition loop (see the module doc)."""
    if not text or len(text) < MIN_LOOP_CHARS:
        return False
    tail = _WS.sub(" ", text[-TAIL_CHARS:]).rstrip()
    if periodic_suffix(tail):
        return True
    return _lines_repeat(text[-TAIL_CHARS:])


def periodic_suffix(
    tail: str, *, min_chars: int = MIN_LOOP_CHARS, repeats: int = MIN_REPEATS, max_period: int = MAX_PERIOD
) -> bool:
    """A suffix of length L >= min_chars with period p <= L / repeats and p <= max_period.

    Also the solver's streaming loop cut-off (`LoopDetector` below), with its own thresholds.
    """
    r = tail[::-1]
    n = len(r)
    pi = [0] * n
    k = 0
    for i in range(1, n):
        c = r[i]
        while k and r[k] != c:
            k = pi[k - 1]
        if r[k] == c:
            k += 1
        pi[i] = k
        length = i + 1
        if length >= min_chars:
            period = length - k
            if period <= max_period and period * repeats <= length:
                return True
    return False


def _lines_repeat(tail: str) -> bool:
    lines = [_WS.sub(" ", line).strip() for line in tail.splitlines()]
    lines = [line for line in lines if line][-TAIL_LINES:]
    counts: dict[str, int] = {}
    for line in lines:
        if len(line) < MIN_LINE_CHARS:
            continue
        counts[line] = counts.get(line, 0) + 1
        if counts[line] >= MIN_LINE_REPEATS:
            return True
    return False


# ---------------------------------------------------------------- language mixing

_MATH = re.compile(
    r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{(\w+\*?)\}.*?\\end\{\1\}|```.*?```|`[^`]*`",
    re.S,
)
_QUOTED = re.compile(r"“[^”]{0,200}”|\"[^\"\n]{0,200}\"|「[^」]{0,200}」|『[^』]{0,200}』|《[^》]{0,200}》|‘[^’]{0,200}’")
_COMMAND = re.compile(r"\\[A-Za-z]+\*?(?:\{[^{}]{0,100}\})?")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}(?:'[a-z]+)?")

_SCRIPTS = (
    ("cjk", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x3040, 0x30FF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF))),
    ("cyrillic", ((0x0400, 0x04FF),)),
    ("arabic", ((0x0600, 0x06FF), (0x0750, 0x077F))),
    ("hebrew", ((0x0590, 0x05FF),)),
    ("devanagari", ((0x0900, 0x097F),)),
    ("thai", ((0x0E00, 0x0E7F),)),
)


def _script(ch: str) -> str | None:
    o = ord(ch)
    if o < 0x80:
        return "latin" if ch.isalpha() else None
    if 0x00C0 <= o <= 0x024F:
        return "latin"
    for name, ranges in _SCRIPTS:
        for lo, hi in ranges:
            if lo <= o <= hi:
                return name
    return None


def prose(text: str) -> str:
    """The response without math, code, LaTeX commands and quoted text."""
    s = _MATH.sub(" ", text)
    s = _QUOTED.sub(" ", s)
    s = _COMMAND.sub(" ", s)
    return s


# Any character of a script other than Latin: without one, there is only one script to mix.
_OTHER_SCRIPT = re.compile(
    "[" + "".join(f"{chr(lo)}-{chr(hi)}" for _, ranges in _SCRIPTS for lo, hi in ranges) + "]"
)


def language_mixing(text: str) -> bool:
    """Whether the prose switches script (see the module doc)."""
    if not text or not _OTHER_SCRIPT.search(text):
        return False  # Latin only (most responses): nothing to scan character by character
    s = prose(text)
    runs: dict[str, list[int]] = {}  # script -> run lengths (chars for CJK, words otherwise)
    current = None
    length = 0
    words_in_run = 0
    in_word = False
    for ch in s:
        script = _script(ch)
        if script is None:
            # spaces and punctuation keep a Latin word run going; digits and others are neutral
            if current is not None and current != "cjk" and ch in " -'’":
                in_word = False
                continue
            if current is not None and ch.isdigit():
                continue
            if current is not None:
                _close_run(runs, current, length, words_in_run)
                current, length, words_in_run, in_word = None, 0, 0, False
            continue
        if script != current:
            if current is not None:
                _close_run(runs, current, length, words_in_run)
            current, length, words_in_run, in_word = script, 0, 0, False
        length += 1
        if not in_word:
            words_in_run += 1
            in_word = True
    if current is not None:
        _close_run(runs, current, length, words_in_run)
    totals = {k: sum(v) for k, v in runs.items()}
    if len(totals) < 2:
        return False
    main = max(totals, key=totals.__getitem__)
    for script, lengths in runs.items():
        if script == main:
            continue
        if script == "cjk":
            big = [n for n in lengths if n >= 2]
            if len(big) >= 2 and sum(big) >= MIN_FOREIGN_CJK:
                return True
        elif script == "latin":
            # word counts of Latin runs inside CJK prose: a sentence, not a term
            sentences = [n for n in lengths if n >= 3]
            if sentences and sum(sentences) >= MIN_FOREIGN_LATIN_WORDS:
                return True
        else:
            if sum(n for n in lengths if n >= 1) >= MIN_FOREIGN_OTHER_WORDS and max(lengths) >= 1 and len(lengths) >= 1:
                if sum(lengths) >= MIN_FOREIGN_OTHER_WORDS:
                    return True
    return False


def _close_run(runs: dict[str, list[int]], script: str, length: int, words: int) -> None:
    if script == "cjk":
        runs.setdefault(script, []).append(length)
    elif script == "latin":
        # a Latin run counts its words of 2+ letters only
        runs.setdefault(script, []).append(words if length >= 2 else 0)
    else:
        runs.setdefault(script, []).append(words)


# ---------------------------------------------------------------- while streaming

# QVQ's known failure is a recursive loop that never reaches an answer and runs to max_tokens.
# Stopping it once the tail is the same cycle repeated saves those tokens for a fresh sample: the
# test is `periodic_suffix` above, run on a bounded tail every few dozen characters.
class LoopDetector:
    """Feed streamed text; `feed` returns True once the tail is one cycle repeated `repeats` times.

    A cycle is any period up to `max_period` characters; the repeated span must cover at least
    `min_chars` characters, so short legitimate repetitions ("1, 1, 1") never trigger.
    """

    def __init__(self, *, min_chars: int = 200, repeats: int = 4, max_period: int = 1000, check_every: int = 32):
        self.min_chars = min_chars
        self.repeats = repeats
        self.max_period = max_period
        self.check_every = check_every
        self._tail = ""
        self._since_check = 0
        self.looping = False

    def feed(self, delta: str) -> bool:
        if self.looping:
            return True
        self._tail = (self._tail + delta)[-(self.max_period * self.repeats + 1) :]
        self._since_check += len(delta)
        if self._since_check < self.check_every:
            return False
        self._since_check = 0
        self.looping = periodic_suffix(
            self._tail, min_chars=self.min_chars, repeats=self.repeats, max_period=self.max_period
        )
        return self.looping
