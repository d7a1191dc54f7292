"""The shape of an answer: several answers, sets, intervals, tuples, matrices, equations, inequalities.

`parse_structure` turns a normalised answer string into a small tree of `Node`s by splitting at
top-level separators and brackets. Pure string work (safe in-process); the leaves (`Scalar`) are
what `equivalence` compares numerically or with sympy. latex2sympy parses the leaves: this module
only decides what the pieces are, so that `(1, 2]` is an interval, `\\{1, 2\\}` an unordered set,
`(2, 1), (3, 1)` two points in any order, and `x = 2` an assignment. Also: `10:30` a clock time
(`clock`), `2:3` and `1:2:3` ratios (`ratio`), `\\{x \\mid x > 2\\}` the condition it states, and a
whole-answer `\\text{5 cm}` what it wraps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from qvq_ray.verify.text import find_command_arg, matching_brace, normalize_unicode, outer_brackets, split_top_level

MAX_ITEMS = 64  # more top-level items than this is not an answer we compare item by item
MAX_DEPTH = 12


@dataclass
class Node:
    kind: str  # several | set | seq | union | matrix | relation | ratio | clock | scalar | text
    items: list["Node"] = field(default_factory=list)
    text: str = ""  # scalar/text: the LaTeX; relation: the operator chain joined
    open: str = ""  # seq: the opening bracket, normalised to ( [ <
    close: str = ""  # seq: the closing bracket ) ] >
    ops: list[str] = field(default_factory=list)  # relation: the operators between items
    rows: int = 0  # matrix
    cols: int = 0

    def __repr__(self) -> str:  # compact, for test failure messages
        if self.kind in ("scalar", "text", "clock"):
            return f"{self.kind}({self.text!r})"
        if self.kind == "relation":
            return f"relation({' '.join(f'{i!r} {o}' for i, o in zip(self.items, self.ops + ['']))})"
        return f"{self.kind}{self.open}{self.items!r}{self.close}"


# ---------------------------------------------------------------- normalisation

_DELIMS = (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)"))
_SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)(?![A-Za-z])\s*\.?")
_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|\\q?quad(?![A-Za-z])|\\(?:hspace|vspace)\*?\{[^{}]*\}|~")
_STYLE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits|mathstrut)(?![A-Za-z])")
_FRAC = re.compile(r"\\[dtc]frac(?![A-Za-z])")
_BINOM = re.compile(r"\\[dt]binom(?![A-Za-z])")
_LEQ = re.compile(r"\\(?:leqslant|leq|le)(?![A-Za-z])")
_GEQ = re.compile(r"\\(?:geqslant|geq|ge)(?![A-Za-z])")
_NEQ = re.compile(r"\\(?:neq|ne)(?![A-Za-z])")
_TEXT_JOINER = re.compile(r"\\(?:text|mathrm|textrm|mbox)\s*\{\s*(and|or|,|;|且|或)\s*\}")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|mbox|textrm|textnormal|boldsymbol|bm|mathsf|mathtt)\s*\{([^{}]*)\}")
_LEADING_WORDS = re.compile(
    r"^(?:the\s+)?(?:final\s+)?(?:answer|result|solution|value)s?\s*(?:is|are|=|:)\s*", re.IGNORECASE
)
_SQRT_PAREN = re.compile(r"\\sqrt\s*\(")
_ARROW = re.compile(r"\\(?:Rightarrow|implies|to|rightarrow|Longrightarrow)(?![A-Za-z])")


@lru_cache(maxsize=4096)
def normalize_answer(text: str) -> str:
    """An answer string cleaned for comparison (cached: option texts and golds recur in every
    comparison of a problem): delimiters, boxes, sizing and spacing commands
    removed, `\\dfrac` as `\\frac`, `\\le`/`\\ge`/`\\ne` spelt one way, text joiners as commas,
    Unicode math as LaTeX, a trailing period dropped."""
    s = normalize_unicode(text).strip()
    for _ in range(4):
        before = s
        for left, right in _DELIMS:
            if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
                s = s[len(left) : len(s) - len(right)].strip()
        s = _unbox(s).strip()
        if s.endswith((".", "。")) and not s.endswith("..") and not re.search(r"\d\.$", s[-2:] if len(s) > 1 else s):
            s = s[:-1].strip()
        if s == before:
            break
    s = s.replace("$", " ")
    s = _STYLE.sub("", s)
    s = _SIZING.sub("", s)
    s = _TEXT_JOINER.sub(lambda m: "," if m.group(1) in (",", ";", "and", "且") else " or ", s)
    s = _SPACING.sub(" ", s)
    s = _FRAC.sub(r"\\frac", s)
    s = _BINOM.sub(r"\\binom", s)
    s = _LEQ.sub(r"\\le ", s)
    s = _GEQ.sub(r"\\ge ", s)
    s = _NEQ.sub(r"\\ne ", s)
    s = s.replace("\\lbrace", "\\{").replace("\\rbrace", "\\}").replace("<=", "\\le ").replace(">=", "\\ge ").replace("!=", "\\ne ")
    s = s.replace("\\varnothing", "\\emptyset").replace("\\{\\}", "\\emptyset").replace("\\{ \\}", "\\emptyset")
    s = s.replace("\\vert", "|").replace("\\lvert", "|").replace("\\rvert", "|").replace("\\mid", "|")
    s = _fix_sqrt_paren(s)
    s = _LEADING_WORDS.sub("", s)
    s = re.sub(r"\s+", " ", s).strip()
    if s.endswith((".", "。")) and not s.endswith(".."):
        s = s[:-1].strip()
    return s


def _unbox(s: str) -> str:
    """`\\boxed{X}` -> X when the box is the whole string (or boxes joined by commas)."""
    for command in ("\\boxed", "\\fbox", "\\framebox"):
        if s.startswith(command):
            spans = find_command_arg(s, command)
            if spans and spans[0][0] == 0 and spans[0][1] == len(s):
                return spans[0][2]
    return s


def _fix_sqrt_paren(s: str) -> str:
    """`4\\sqrt(2)` -> `4\\sqrt{2}` (latex2sympy would read `4\\sqrt` and stop, math-verify #41)."""
    if "\\sqrt" not in s:
        return s
    out = []
    pos = 0
    for m in _SQRT_PAREN.finditer(s):
        if m.start() < pos:
            continue
        depth = 0
        end = None
        for k in range(m.end() - 1, len(s)):
            if s[k] == "(":
                depth += 1
            elif s[k] == ")":
                depth -= 1
                if depth == 0:
                    end = k
                    break
        if end is None:
            continue
        out.append(s[pos : m.start()])
        out.append("\\sqrt{" + s[m.end() : end] + "}")
        pos = end + 1
    out.append(s[pos:])
    return "".join(out)


# ---------------------------------------------------------------- parsing

_SEVERAL_SEPARATORS = (";", ",", " and ", " or ", "\\text{and}", "\\text{or}", " 和 ", "或", "及")
_RELATIONS = ("\\le", "\\ge", "\\ne", "\\approx", "\\in", "\\equiv", "=", "<", ">")
_RELATION_TOKENS = re.compile(r"\\le(?![A-Za-z])|\\ge(?![A-Za-z])|\\ne(?![A-Za-z])|\\approx(?![A-Za-z])|\\in(?![A-Za-z])|\\equiv(?![A-Za-z])|\\sim(?![A-Za-z])|=|<|>")
_MATRIX = re.compile(r"^\\begin\{([pbBvV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.S)
_THOUSANDS = re.compile(r"^\s*-?\d{1,3}(?:,\d{3})+(?:\.\d+)?\s*$")
# Part labels of a multi-part answer: `(1) 20 cm (2) 30 cm`, `① 5 ② 7` (circled numbers arrive as
# `(1)` from `normalize_unicode`), `(a) 3 (b) 5`; never read as factors of what follows.
_PART_LABEL = re.compile(r"(?:^|(?<=[\s,;:]))(?:\(\s*\d{1,2}\s*\)|\(\s*(?:[a-h]|i{1,3}|iv|vi{0,3})\s*\))\s*(?:[:：.]\s*)?(?=\S)")


def parse_structure(text: str, *, normalized: bool = False, depth: int = 0) -> Node:
    """The structure tree of an answer (see the module doc)."""
    s = text if normalized else normalize_answer(text)
    if depth > MAX_DEPTH:
        return Node("scalar", text=s)
    s = s.strip()
    labelled = _split_part_labels(s)
    if labelled is not None:
        if len(labelled) == 1:
            return parse_structure(labelled[0], normalized=True, depth=depth + 1)
        return Node("several", items=[parse_structure(p, normalized=True, depth=depth + 1) for p in labelled])
    # several answers at the top level: `1, 2`, `x=1; y=2`, `3 and 4`
    if not _THOUSANDS.match(s):
        parts = [p.strip() for p in split_top_level(s, _SEVERAL_SEPARATORS)]
        parts = [p for p in parts if p]
        if len(parts) > 1:
            if len(parts) > MAX_ITEMS:
                return Node("scalar", text=s)
            return Node("several", items=[parse_structure(p, normalized=True, depth=depth + 1) for p in parts])
    # relations: `x = 2`, `1 < x \le 3`, `x \in (0, 1)`
    rel = _split_relation(s)
    if rel is not None:
        items, ops = rel
        return Node(
            "relation", items=[parse_structure(p, normalized=True, depth=depth + 1) for p in items], ops=ops, text=s
        )
    if _CLOCK.fullmatch(s):
        return Node("clock", text=s)
    ratio = _ratio_parts(s)
    if ratio is not None:
        return Node("ratio", items=[parse_structure(p, normalized=True, depth=depth + 1) for p in ratio], text=s)
    # unions of intervals / sets
    parts = [p.strip() for p in split_top_level(s, ("\\cup",))]
    if len(parts) > 1 and all(parts):
        return Node("union", items=[parse_structure(p, normalized=True, depth=depth + 1) for p in parts])
    m = _MATRIX.match(s)
    if m and m.group(1) not in ("vmatrix", "Vmatrix"):
        return _matrix(m.group(2), depth)
    outer = outer_brackets(s)
    if outer is None:
        outer = _bracketed_with_unit(s)
    if outer is not None:
        opener, inner, closer = outer
        inner = inner.strip()
        elements = [p.strip() for p in split_top_level(inner, (",", ";"))] if inner else []
        if opener in ("\\{", "\\lbrace"):
            if closer not in ("\\}", "\\rbrace"):
                return Node("scalar", text=s)
            if len(split_top_level(inner, ("|", "\\mid", ":"))) > 1:
                return _set_builder(s, inner, depth)
            return Node("set", items=[parse_structure(p, normalized=True, depth=depth + 1) for p in elements if p])
        if len(elements) >= 2 and all(elements):
            if len(elements) > MAX_ITEMS:
                return Node("scalar", text=s)
            return Node(
                "seq",
                items=[parse_structure(p, normalized=True, depth=depth + 1) for p in elements],
                open={"(": "(", "[": "[", "\\langle": "<"}.get(opener, opener),
                close={")": ")", "]": "]", "\\rangle": ">"}.get(closer, closer),
            )
        if len(elements) == 1 and opener == "(" and closer == ")":
            return parse_structure(inner, normalized=True, depth=depth + 1)
    wrapped = _wrapped_value(s)
    if wrapped is not None:
        return parse_structure(wrapped, normalized=True, depth=depth + 1)
    if _is_text(s):
        return Node("text", text=s)
    return Node("scalar", text=s)


# `10:30`, `9:05:30`, `4:30 PM`, `9 o'clock`: a time of day (hours to 24, minutes and seconds two digits)
_CLOCK = re.compile(
    r"(?:[01]?\d|2[0-4])\s*:\s*[0-5]\d(?:\s*:\s*[0-5]\d)?(?:\s*(?:\\text\{\s*)?(?:[ap]\.?\s*m\.?)\s*\}?)?"
    r"|(?:[01]?\d|2[0-4])\s*o['’]?\s*clock",
    re.IGNORECASE,
)
_CLOCK_PARTS = re.compile(r"(\d{1,2})(?:\s*:\s*(\d{2}))?(?:\s*:\s*(\d{2}))?")
_MERIDIEM = re.compile(r"(?<![A-Za-z])([ap])\.?\s*m(?![A-Za-z])", re.IGNORECASE)
_RATIO_SEPARATORS = (":", "\\colon", "∶")


def clock_time(text: str) -> tuple[int, str | None]:
    """(seconds into the day, `a`/`p` or None) of a `clock` node's text: `4:30 PM` -> (59400, 'p')."""
    m = _CLOCK_PARTS.match(text.strip())
    assert m is not None, text  # a `clock` node's text matched _CLOCK_PARTS when it was read
    hours, minutes, seconds = (int(g or 0) for g in m.group(1, 2, 3))
    found = _MERIDIEM.search(text, m.end())
    meridiem = found.group(1).lower() if found else None
    if meridiem is not None:
        hours = hours % 12 + (12 if meridiem == "p" else 0)
    return hours * 3600 + minutes * 60 + seconds, meridiem


def _ratio_parts(s: str) -> list[str] | None:
    """The parts of `2:3`, `1 : 2 : 3`, `AB:BC`, `2\\sqrt{3} \\colon 1` (a ratio, compared by
    proportion, never read as a division chain); None when there is no top-level colon or a part
    is empty or words (`Answer: 5` is no ratio)."""
    if ":" not in s and "\\colon" not in s and "∶" not in s:
        return None
    parts = [p.strip() for p in split_top_level(s, _RATIO_SEPARATORS)]
    if len(parts) < 2 or len(parts) > MAX_ITEMS or not all(parts) or any(_is_text(p) for p in parts):
        return None
    return parts


# `\{x \mid x > 2\}`: one variable (a letter, maybe subscripted, or a Greek letter) before the bar
_BUILDER_VARIABLE = re.compile(r"\s*(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]\}?)?\s*(?:\\in\s*\\mathbb\{?[RZNQ]\}?)?\s*")


def _set_builder(s: str, inner: str, depth: int) -> Node:
    """`\\{x \\mid x > 2\\}` is the set its condition states: the condition's structure (an
    inequality, an interval membership) when the variable is one name and the condition a
    relation; otherwise the text as written."""
    parts = split_top_level(inner, ("|", "\\mid", ":"))
    if len(parts) != 2 or not _BUILDER_VARIABLE.fullmatch(parts[0]):
        return Node("text", text=s)
    condition = parse_structure(parts[1].strip(), normalized=True, depth=depth + 1)
    if condition.kind == "relation" or condition.kind == "several" and all(i.kind == "relation" for i in condition.items):
        return condition
    return Node("text", text=s)


def _wrapped_value(s: str) -> str | None:
    """What a whole-answer `\\text{...}` wraps when it holds a value or a list (`\\text{5 cm}`,
    `\\text{A, C}`, `\\text{1 and 2}`): compared as that; None for words alone (text)."""
    m = _TEXT_WRAP.fullmatch(s)
    if m is None:
        return None
    inner = m.group(1).strip()
    if not inner or not (re.search(r"\d", inner) or re.search(r",|;| and | or ", inner)):
        return None
    return inner


def _split_part_labels(s: str) -> list[str] | None:
    """The parts of `(1) 20 cm (2) 30 cm` (labels dropped), or None when the answer has no labels.
    Letter labels count only as a run of two or more starting with `(a)`; a lone `(1)` is a value."""
    labels = list(_PART_LABEL.finditer(s))
    if not labels or labels[0].start() != 0:
        return None
    if not labels[0].group().strip().startswith(("(1", "( 1")) and len(labels) < 2:
        return None
    if re.match(r"\(\s*[a-h]", labels[0].group()) and not labels[0].group().lstrip("( ").startswith("a"):
        return None
    parts = []
    for k, m in enumerate(labels):
        end = labels[k + 1].start() if k + 1 < len(labels) else len(s)
        part = s[m.end() : end].strip().strip(",;").strip()
        if part:
            parts.append(part)
    return parts or None


def _bracketed_with_unit(s: str) -> tuple[str, str, str] | None:
    """`[1, 3] m`, `(2, 3)\\mathrm{~s}`: a tuple or interval followed by one unit, given to each
    element (`[1 m, 3 m]`); None when the text is not that."""
    end = max(s.rfind(")"), s.rfind("]"), s.rfind("\\rangle"))
    if end <= 0:
        return None
    close_len = len("\\rangle") if s.startswith("\\rangle", end) else 1
    head, tail = s[: end + close_len].strip(), s[end + close_len :].strip()
    if not tail or re.search(r"[=<>,;]", tail):
        return None
    outer = outer_brackets(head)
    if outer is None or outer[0] in ("\\{", "\\lbrace"):
        return None
    from qvq_ray.verify.units import parse_unit_tokens

    if parse_unit_tokens(tail) is None:
        return None
    opener, inner, closer = outer
    elements = [p.strip() for p in split_top_level(inner, (",", ";"))]
    if len(elements) < 2 or not all(elements):
        return None
    return opener, ", ".join(f"{e} {tail}" for e in elements), closer


def _split_relation(s: str) -> tuple[list[str], list[str]] | None:
    """Items and operators of a top-level relation chain, or None (no relation at the top level)."""
    positions = _top_level_relation_positions(s)
    if not positions:
        return None
    items, ops = [], []
    start = 0
    for pos, op in positions:
        items.append(s[start:pos].strip())
        ops.append(op)
        start = pos + len(op)
    items.append(s[start:].strip())
    if any(not item for item in items):
        return None
    ops = [_OP_NAMES.get(op, op) for op in ops]
    return items, ops


_OP_NAMES = {"\\le": "<=", "\\ge": ">=", "\\ne": "!=", "\\approx": "~", "\\sim": "~", "\\equiv": "=", "\\in": "in"}


def _top_level_relation_positions(s: str) -> list[tuple[int, str]]:
    out = []
    depth = 0
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
        elif c == "\\" and i + 1 < n and s[i + 1] in "{}":
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        elif depth == 0 and c in "\\=<>":
            m = _RELATION_TOKENS.match(s, i)
            if m:
                out.append((i, m.group()))
                i = m.end()
                continue
        if c == "\\":
            i += 1
            while i < n and s[i].isalpha():
                i += 1
            continue
        i += 1
    # `(1, 2]` style intervals have unbalanced depth inside; a negative depth means mismatched
    return out if depth == 0 else []


def _matrix(body: str, depth: int) -> Node:
    rows = [r.strip() for r in re.split(r"\\\\", body) if r.strip() and r.strip() != "\\hline"]
    cells = [[c.strip() for c in row.split("&")] for row in rows]
    if not cells or any(len(r) != len(cells[0]) for r in cells):
        return Node("scalar", text="\\begin{matrix}" + body + "\\end{matrix}")
    flat = [parse_structure(c, normalized=True, depth=depth + 1) for row in cells for c in row]
    return Node("matrix", items=flat, rows=len(cells), cols=len(cells[0]))


_WORDS = re.compile(r"[^\W\d_][^\W\d_ .,'’\-]*(?:[ .,'’\-]+[^\W\d_][^\W\d_ .,'’\-]*)*", re.UNICODE)


def _is_text(s: str) -> bool:
    """Plain words with a run of 2+ letters (`Paris`, `no solution`, `不存在`), or `\\text{...}` only."""
    inner = s
    m = _TEXT_WRAP.fullmatch(s)
    if m:
        inner = m.group(1).strip()
        if inner and not any(ch.isdigit() for ch in inner) and not inner.isupper():
            return len(inner) >= 2
    if not _WORDS.fullmatch(inner):
        return False
    letters = [ch for ch in inner if ch.isalpha()]
    if any(ord(ch) > 0x2E80 for ch in letters):
        return True
    # `xy`, `AB`, `abc` may be algebra or a segment name: only real words count as text
    return bool(re.search(r"[A-Za-z]{2}", inner)) and (" " in inner or len(inner) >= 4 or inner.lower() in _SHORT_WORDS)


_SHORT_WORDS = {"yes", "no", "odd", "even", "none", "true", "and", "or", "up", "down", "left", "right", "red", "all", "one", "two", "six", "ten", "max", "min"}


def text_value(s: str) -> str:
    """The comparable form of a text answer: wrappers removed, case and spacing folded."""
    for _ in range(3):
        s2 = _TEXT_WRAP.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = re.sub(r"[\s.,'’\-]+", " ", s).strip().casefold()
    return s


def expand_plus_minus(text: str) -> list[str] | None:
    """`a \\pm b` -> [`a + b`, `a - b`] (one `\\pm`/`\\mp` only), else None."""
    count = text.count("\\pm") + text.count("\\mp")
    if count != 1:
        return None
    if "\\pm" in text:
        return [text.replace("\\pm", "+", 1), text.replace("\\pm", "-", 1)]
    return [text.replace("\\mp", "-", 1), text.replace("\\mp", "+", 1)]


