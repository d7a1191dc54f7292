"""The calculation check: closed numeric claims in a chain of thought, and whether they hold.

`find_claims(text)` (pure string work, in-process) finds claims like `97-73=24`,
`3 \\times 4 = 12`, `\\frac{1}{2}+\\frac{1}{3}=\\frac{5}{6}`, `2^{10} = 1024`, `\\sqrt{2} \\approx 1.414`:
both sides made of numbers and arithmetic only (digits, `+ - * / ^ !`, `\\times \\cdot \\div \\frac
\\sqrt \\pi %`), no unknowns. It is deliberately conservative, because a false alarm would make the
solver throw away a good answer:

- an operand glued to anything else (`x_1 = 3`, `2x = 4`, `f(3) = 5`, `1,000 = ...`), or preceded
  by an operator word (`3 times 4 = 12`, `7 mod 3 = 1`, `half of 24 = 12`) or a function
  (`\\sin 30 = 0.5`) is part of a larger expression: no claim;
- a pair with no operator on either side (`3 = 3`) is no claim;
- chains `a = b = c` give the pairs (a, b) and (b, c); `&=` lines in `align` continue a chain.

`holds_fast(lhs, op, rhs)` decides, in-process, the claims whose sides are plain arithmetic
(`arithmetic.evaluate`: exact fractions, `\\sqrt`, `\\pi`; most real claims), so a response whose
claims are all of that kind needs no worker for them. `check_claims(claims)` runs the rest in a
verify worker: each side is parsed by latex2sympy and evaluated under the same guards as
equivalence (no huge powers or factorials are ever expanded). A claim
is false when the sides differ by more than what its written digits allow: exact for integers
and fractions; for a side written as a decimal (`= 0.333`, `\\approx 1.41`) one unit of its last
digit; decimals inside an expression propagate their rounding (`0.333 \\times 3 = 1` holds).
`\\approx` with an integer (`\\approx 33`) allows one unit too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from qvq_ray.verify.text import normalize_unicode

if TYPE_CHECKING:
    from qvq_ray.verify.numbers import Number

MAX_OPERAND_CHARS = 120
MAX_SCAN_CHARS = 400_000

_ALLOWED_COMMANDS = {"times", "cdot", "div", "frac", "dfrac", "tfrac", "sqrt", "left", "right", "pi", "%", "circ"}
_FUNCTION_LIKE = {
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "lg", "exp", "arcsin", "arccos", "arctan", "sinh",
    "cosh", "tanh", "max", "min", "gcd", "lcm", "det", "binom", "angle", "overline", "vec", "hat", "bar",
    "mod", "pmod", "bmod", "text", "mathrm", "operatorname", "lfloor", "lceil", "sum", "prod", "int", "lim",
}
_OPERATOR_WORDS = {
    "times", "twice", "of", "mod", "modulo", "plus", "minus", "over", "divided", "by", "multiplied", "squared",
    "cubed", "half", "double", "triple", "thrice", "percent", "per", "root", "log", "ln", "sin", "cos", "tan",
    "exp", "sqrt", "power", "into", "step", "case", "equation", "line", "row",
    "column", "page", "figure", "part", "option", "choice", "number", "no", "problem", "question",
}
_RELATION = re.compile(r"\\approx(?![A-Za-z])|(?<![<>!=:\\])=(?![=>])")
_PROSE_POW = re.compile(r"(?<=[\d)])\s*\*\*\s*(?=[\d(])")
_MARKDOWN_BOLD = re.compile(r"\*\*")
_DECIMAL_LITERAL = re.compile(r"(?<![\d.])\d+\.\d+")
_BINARY_START = ("*", "/", "^", "\\times", "\\cdot", "\\div", "!", ")", "}")


@dataclass(frozen=True)
class Claim:
    """`lhs op rhs` as written in the response (op is `=` or `~` for approximately)."""

    lhs: str
    op: str
    rhs: str

    @property
    def text(self) -> str:
        return f"{self.lhs} {'=' if self.op == '=' else '≈'} {self.rhs}"


def find_claims(text: str, *, limit: int = 64) -> list[Claim]:
    """Closed numeric claims in `text`, in order, without duplicates, at most `limit`."""
    if not text or limit <= 0:
        return []
    s = normalize_unicode(text[:MAX_SCAN_CHARS])
    s = s.replace("\\%", "%").replace("{,}", "")
    s = _MARKDOWN_BOLD.sub(" ", _PROSE_POW.sub("^", s))  # `2**10` is a power, other `**` is bold
    claims: list[Claim] = []
    seen: set[tuple[str, str, str]] = set()
    prev_right: tuple[int, int, str] | None = None  # (start, end, text) of the last right operand
    for m in _RELATION.finditer(s):
        op = "~" if m.group().startswith("\\approx") else "="
        left = _left_operand(s, m.start(), prev_right)
        right = _right_operand(s, m.end())
        prev_right = right
        if left is None or right is None:
            continue
        lhs, rhs = left[2], right[2]
        if not (_has_operator(lhs) or _has_operator(rhs)):
            continue
        key = (lhs, op, rhs)
        if key in seen:
            continue
        seen.add(key)
        claims.append(Claim(lhs, op, rhs))
        if len(claims) >= limit:
            break
    return claims


# ---------------------------------------------------------------- operand scanning

_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|\s+|.", re.S)


def _tokens(window: str) -> list[str]:
    return _TOKEN.findall(window)


def _allowed(tok: str) -> bool:
    if tok.isspace():
        return True
    if tok.startswith("\\"):
        return tok[1:] in _ALLOWED_COMMANDS
    return tok.isdigit() or tok in "+-*/^(){}.!%"


def _left_operand(s: str, pos: int, prev_right: tuple[int, int, str] | None) -> tuple[int, int, str] | None:
    # `&=` continuing an align chain: the previous right operand is this left operand
    k = pos
    while k > 0 and s[k - 1] in " \t\n&":
        k -= 1
    if prev_right is not None and s[k - 2 : k] == "\\\\":
        j = k - 2
        while j > 0 and s[j - 1] in " \t\n":
            j -= 1
        if j == prev_right[1]:
            return prev_right
    start_window = max(0, pos - MAX_OPERAND_CHARS - 40)
    tokens = _tokens(s[start_window:pos])
    i = len(tokens)
    while i > 0 and _allowed(tokens[i - 1]) and not (i < len(tokens) and "\n" in tokens[i - 1]):
        i -= 1  # nor does it start before one (`2.\n3 + 4 = 7`)
    while i < len(tokens) and tokens[i] == ".":  # `Thinking... 97 - 73 = 24`: the dots are prose
        i += 1
    operand_tokens = tokens[i:]
    raw = "".join(operand_tokens)
    text = raw.strip()
    if not text or len(text) > MAX_OPERAND_CHARS or not any(c.isdigit() for c in text):
        return None
    if text.startswith(_BINARY_START) or text.endswith(("+", "-", "*", "/", "^", "\\times", "\\cdot", "\\div", "(", "{")):
        return None
    while text[:1] in "({" and not _balanced(text):
        text = text[1:].lstrip()
    if not text or text.startswith(_BINARY_START):
        return None
    before = tokens[:i]
    trimmed = len("".join(operand_tokens).strip()) != len(text)
    # what precedes the operand must be a boundary, not more of an expression
    if before:
        last = before[-1]
        glued = not raw[:1].isspace() and not trimmed
        if glued and not (last in ",;:$[(\n" or last in ("\\[", "\\(", "\\]", "\\)", "&")):
            return None
        if last.startswith("\\") and last[1:] in _FUNCTION_LIKE:
            return None
        if last == "," and glued and i >= 2 and before[-2].isdigit():
            return None  # 1,000
        word = _previous_word(before)
        if word is not None and word.casefold() in _OPERATOR_WORDS:
            return None
        if text[0] in "+-" and glued and (last.isalnum() or last in ")}"):
            return None
        if before[-1] in ("_", "^"):
            return None
    if not _balanced(text):
        return None
    return (pos - len(raw), pos, text)


def _previous_word(before: list[str]) -> str | None:
    j = len(before) - 1
    while j >= 0 and before[j].isspace():
        j -= 1
    if j < 0:
        return None
    if before[j].startswith("\\") and before[j][1:].isalpha():
        return before[j][1:]
    letters = []
    while j >= 0 and len(before[j]) == 1 and before[j].isalpha():
        letters.append(before[j])
        j -= 1
    return "".join(reversed(letters)) or None


def _right_operand(s: str, pos: int) -> tuple[int, int, str] | None:
    window = s[pos : pos + MAX_OPERAND_CHARS + 40]
    tokens = _tokens(window)
    i = 0
    while i < len(tokens) and _allowed(tokens[i]) and not (i and "\n" in tokens[i]):
        i += 1  # an operand ends at a line break (`= 10\n4. Next step`: the 4 is a list number)
    raw = "".join(tokens[:i])
    after = tokens[i:]
    text = raw.strip()
    # a sentence period / comma after the number is punctuation, not a decimal point
    while text.endswith((".", ",")) and not text.endswith(".."):
        text = text[:-1].rstrip()
    while text[-1:] in ")}" and not _balanced(text):
        text = text[:-1].rstrip()
    if not text or len(text) > MAX_OPERAND_CHARS or not any(c.isdigit() for c in text):
        return None
    if text.startswith(_BINARY_START) or text.endswith(("+", "-", "*", "/", "^", "\\times", "\\cdot", "\\div", "(", "{")):
        return None
    if after and len(text) == len(raw.strip()):
        nxt = after[0]
        glued = not raw[-1:].isspace() if raw else True
        if glued and (nxt.isalnum() or nxt in ("_", "'", "[") or (nxt == "," and len(after) > 1 and after[1].isdigit())):
            return None
        if nxt.startswith("\\") and nxt[1:] in _FUNCTION_LIKE - {"text", "mathrm"} and glued:
            return None
        word = _next_word(after)
        if word is not None and word.casefold() in {"times", "squared", "cubed", "mod", "modulo", "percent", "factorial", "of", "divided", "plus", "minus", "over"}:
            return None
    if not _balanced(text):
        return None
    return (pos + (len(raw) - len(raw.lstrip())), pos + len(raw.rstrip()), text)


def _next_word(after: list[str]) -> str | None:
    j = 0
    while j < len(after) and after[j].isspace():
        j += 1
    letters = []
    while j < len(after) and len(after[j]) == 1 and after[j].isalpha():
        letters.append(after[j])
        j += 1
    return "".join(letters) or None


def _balanced(text: str) -> bool:
    depth_b = depth_p = 0
    for c in text:
        if c == "{":
            depth_b += 1
        elif c == "}":
            depth_b -= 1
        elif c == "(":
            depth_p += 1
        elif c == ")":
            depth_p -= 1
        if depth_b < 0 or depth_p < 0:
            return False
    return depth_b == 0 and depth_p == 0


_OPERATOR = re.compile(r"[+*/^!%]|(?<=[\d})\s])-|\\(?:times|cdot|div|frac|sqrt)")


def _has_operator(text: str) -> bool:
    return bool(_OPERATOR.search(text.lstrip("-+ ")))


# ---------------------------------------------------------------- checking (worker side)


def claim_latex(side: str) -> str:
    """A claim side as LaTeX latex2sympy reads: prose powers `2^10` braced, `%` escaped, degrees dropped."""
    s = side.replace("**", "^")
    s = re.sub(r"\^\s*(\d+)", r"^{\1}", s)
    s = re.sub(r"\^\s*\\circ|\^\s*\{\\circ\}", "", s)
    s = s.replace("%", "\\%")
    s = s.replace("{,}", "")
    return s


def decimal_slack(side: str) -> tuple[float, float]:
    """(relative error budget of decimal literals inside, one unit of a bare decimal's last digit)."""
    rel = 0.0
    for m in _DECIMAL_LITERAL.finditer(side):
        lit = m.group()
        value = float(lit)
        if value:
            ulp = 10.0 ** -(len(lit) - lit.index(".") - 1)
            rel += ulp / abs(value)
    return rel, 0.0


def holds_fast(lhs: str, op: str, rhs: str) -> bool | None:
    """Whether a claim holds, decided in-process when plain arithmetic reads both sides
    (`arithmetic.evaluate`: exact fractions, no sympy); None when it needs the sympy path."""
    from qvq_ray.verify.arithmetic import evaluate
    from qvq_ray.verify.numbers import parse_number

    left = evaluate(claim_latex(lhs))
    if left is None:
        return None
    right = evaluate(claim_latex(rhs))
    if right is None:
        return None
    try:
        return _holds(complex(float(left)), complex(float(right)), lhs, op, rhs, parse_number)
    except OverflowError:
        return None


def check_claims(claims: list[tuple[str, str, str]], deadline_s: float | None = None) -> dict[str, Any]:
    """Evaluate claims (lhs, op, rhs) in a worker. Returns {"false": [claim texts], "unchecked": n}.
    Claims plain arithmetic decides (`holds_fast`) never reach sympy."""
    import time

    from qvq_ray.verify.numbers import parse_number
    from qvq_ray.verify.symbolic import SoftTimeout, evaluate_closed, soft_deadline

    start = time.monotonic()
    false: list[str] = []
    unchecked = 0
    for lhs, op, rhs in claims:
        fast = holds_fast(lhs, op, rhs)
        if fast is not None:
            if not fast:
                false.append(Claim(lhs, op, rhs).text)
            continue
        remaining = None if deadline_s is None else deadline_s - (time.monotonic() - start)
        if remaining is not None and remaining <= 0.05:
            unchecked += 1
            continue
        try:
            with soft_deadline(min(1.0, remaining) if remaining is not None else 1.0):
                left = evaluate_closed(claim_latex(lhs))
                right = evaluate_closed(claim_latex(rhs))
        except SoftTimeout:
            unchecked += 1
            continue
        except Exception:  # noqa: BLE001 - not a claim we can read: no alarm
            unchecked += 1
            continue
        if left is None or right is None:
            unchecked += 1
            continue
        if not _holds(left, right, lhs, op, rhs, parse_number):
            false.append(Claim(lhs, op, rhs).text)
    return {"false": false, "unchecked": unchecked}


def _holds(
    left: complex, right: complex, lhs: str, op: str, rhs: str, parse_number: Callable[[str], Number | None]
) -> bool:
    """Whether a claim holds within what its written digits allow (see the module doc)."""
    diff = abs(left - right)
    scale = max(abs(left), abs(right))
    if diff == 0 or diff <= 1e-12 * scale:
        return True
    rel_budget = 0.0
    for side, value, other in ((lhs, left, right), (rhs, right, left)):
        number = parse_number(side)
        if number is not None and not number.infinite and abs(other.imag) < 1e-12:
            ulp = float(number.ulp) if number.decimal and number.ulp is not None else (1.0 if op == "~" else 0.0)
            if ulp:
                written, exact = float(number.value), other.real
                trailing = "..." in side or "\\ldots" in side or "\\cdots" in side
                slack = ulp if op == "~" or trailing else ulp / 2
                if abs(exact - written) <= slack * (1 + 1e-9):
                    return True  # rounded at the last written digit (any way for \approx)
                if abs(written) <= abs(exact) and (written >= 0) == (exact >= 0) and abs(exact - written) < ulp:
                    return True  # truncated at the last written digit
                continue
        rel_budget += decimal_slack(side)[0]
    return diff <= rel_budget * scale * 1.5
