"""The value of a simple closed claim side, in-process (no sympy, no worker).

Most numeric claims in a chain of thought are school arithmetic (`97-73`, `3 \\times 4.5`,
`\\frac{1}{2}+\\frac{1}{3}`, `2^{10}`, `\\sqrt{3^2+4^2}`, `2\\pi`). Sending each to a verify worker
cost a process round trip and an ANTLR parse per side (tens of milliseconds), which made the
calculation check the largest part of a check's time. `evaluate(side)` reads this small grammar:

    sum     := product (('+' | '-') product)*
    product := unary (('*' | '/' | \\times | \\cdot | \\div) unary | implicit)*
    implicit:= a factor followed by `(`, `\\sqrt` or `\\pi` multiplies it (`\\frac{1}{2}(5)(5)`, `2\\sqrt{2}`),
               except after a `/` in the same product (`170 / 2\\pi`: which is meant is unclear)
    unary   := ('+' | '-') unary | power
    power   := postfix ('^' exponent)?      exponent: a digit, or {sum} that is a small integer
    postfix := atom ('!' | '\\%')*
    atom    := number | (sum) | {sum} | \\left( sum \\right) | \\frac{sum}{sum} | \\sqrt{sum} | \\pi

Values are exact fractions; `\\pi` and the square root of a non-square make a value approximate
(a float, which is what the sympy path turns its 30-digit values into as well). An approximate
result that is small next to the values it was computed from (`\\sqrt{8} - 2\\sqrt{2}`) could be
float cancellation, so it is not decided here. Everything else returns None and goes to the sympy
path unchanged: letters, other commands, juxtaposed numbers (`2 3`) and a number before `\\frac`
(`1\\frac{1}{2}`, a mixed number?), a power of a power, a division by zero, too large a value.

The fast path reads `2(16)` as 32 and `(8)(6)` as 48; latex2sympy reads them as 18 and 14, which
`symbolic.leaf_latex` corrects before parsing (`tests/test_verify_arithmetic.py` compares the two
on every claim of the development set). Bounded: at most `MAX_TOKENS` tokens, integer exponents up
to `MAX_EXPONENT`, factorials up to `MAX_FACTORIAL`, exact values up to `MAX_BITS` bits.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

MAX_TOKENS = 200
MAX_EXPONENT = 64
MAX_FACTORIAL = 100
MAX_BITS = 4096
CANCELLATION = 1e-9  # an approximate result this small next to its parts is left to sympy

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d+)?|\.\d+)|(?P<cmd>\\[A-Za-z]+|\\%)|(?P<op>[-+*/^(){}!]))")
_MUL = {"*", "\\times", "\\cdot"}
_DIV = {"/", "\\div"}
_COMMANDS = _MUL | _DIV | {"\\frac", "\\sqrt", "\\pi", "\\%"}
_IMPLICIT = {"(", "\\sqrt", "\\pi"}

Value = Fraction | float


class _Unsupported(Exception):
    """Outside the grammar: the caller falls back to sympy."""


def evaluate(side: str) -> Value | None:
    """The value of a claim side in the grammar above (a Fraction when exact, a float when not),
    or None (outside it, too large, or an approximate value lost to cancellation)."""
    tokens = _tokenize(side)
    if tokens is None:
        return None
    parser = _Parser(tokens)
    try:
        value = parser.sum()
    except (_Unsupported, ZeroDivisionError, OverflowError, ValueError):
        return None
    if parser.pos != len(tokens):
        return None
    if isinstance(value, float) and abs(value) <= CANCELLATION * parser.magnitude:
        return None
    return value


def _tokenize(side: str) -> list[str] | None:
    s = side.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    tokens: list[str] = []
    pos, n = 0, len(s)
    while pos < n:
        m = _TOKEN.match(s, pos)
        if m is None:
            if not s[pos:].strip():
                break
            return None
        tok = m.group("num") or m.group("cmd") or m.group("op")
        if m.group("cmd") and tok not in _COMMANDS:
            return None
        tokens.append(tok)
        if len(tokens) > MAX_TOKENS:
            return None
        pos = m.end()
    return tokens or None


class _Parser:
    __slots__ = ("tokens", "pos", "magnitude")

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.magnitude = 0.0  # the largest |value| met on the way (for the cancellation test)

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, expected: str) -> None:
        if self._peek() != expected:
            raise _Unsupported(expected)
        self.pos += 1

    def _seen(self, value: Value) -> Value:
        """Every intermediate value passes here: bounded, finite, and its size remembered."""
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _Unsupported("not finite")
        elif value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
            raise _Unsupported("too large")
        size = abs(float(value))
        if size > self.magnitude:
            self.magnitude = size
        return value

    def sum(self) -> Value:
        value = self.product()
        while self._peek() in ("+", "-"):
            op = self.tokens[self.pos]
            self.pos += 1
            right = self.product()
            value = self._seen(value + right if op == "+" else value - right)
        return value

    def product(self) -> Value:
        value = self.unary()
        divided = False
        while True:
            tok = self._peek()
            if tok in _MUL:
                self.pos += 1
                value = value * self.unary()
            elif tok in _DIV:
                self.pos += 1
                value = value / self.unary()  # ZeroDivisionError: no fast verdict
                divided = True
            elif tok in _IMPLICIT:
                if divided:  # `170 / 2\pi`: 170/(2 pi) or (170/2) pi? Not for the fast path
                    raise _Unsupported("implicit product after a division")
                value = value * self.power()  # `2(3)`, `2\sqrt{2}`, `3\pi`: a product
            elif tok is not None and tok not in ("+", "-", ")", "}"):
                raise _Unsupported("juxtaposition")  # `2\frac{1}{2}` (a mixed number?), `2 3`
            else:
                return value
            self._seen(value)

    def unary(self) -> Value:
        tok = self._peek()
        if tok in ("+", "-"):
            self.pos += 1
            value = self.unary()
            return -value if tok == "-" else value
        return self.power()

    def power(self) -> Value:
        base = self.postfix()
        if self._peek() != "^":
            return base
        self.pos += 1
        tok = self._peek()
        if tok == "{":
            self.pos += 1
            exponent = self.sum()
            self._take("}")
        elif tok is not None and tok.isdigit() and len(tok) == 1:
            self.pos += 1  # `2^3`; `2^10` is braced by `calculation.claim_latex` before it gets here
            exponent = Fraction(int(tok))
        else:
            raise _Unsupported("exponent")
        if self._peek() == "^":
            raise _Unsupported("power of a power")
        if isinstance(exponent, float) or exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
            raise _Unsupported("exponent")
        if base == 0 and exponent < 0:
            raise ZeroDivisionError
        return self._seen(base ** int(exponent))

    def postfix(self) -> Value:
        value = self.atom()
        while self._peek() in ("!", "\\%"):
            if self.tokens[self.pos] == "!":
                if isinstance(value, float) or value.denominator != 1 or not 0 <= value <= MAX_FACTORIAL:
                    raise _Unsupported("factorial")
                value = Fraction(math.factorial(int(value)))
            else:
                value = value / 100
            self.pos += 1
            self._seen(value)
        return value

    def atom(self) -> Value:
        tok = self._peek()
        if tok is None:
            raise _Unsupported("end")
        self.pos += 1
        if tok[0].isdigit() or tok[0] == ".":
            return self._seen(Fraction(tok))
        if tok in ("(", "{"):
            value = self.sum()
            self._take(")" if tok == "(" else "}")
            return value
        if tok == "\\frac":
            self._take("{")
            num = self.sum()
            self._take("}")
            self._take("{")
            den = self.sum()
            self._take("}")
            return self._seen(num / den)
        if tok == "\\sqrt":
            self._take("{")
            radicand = self.sum()
            self._take("}")
            return self._seen(_sqrt(radicand))
        if tok == "\\pi":
            return self._seen(math.pi)
        raise _Unsupported(tok)


def _sqrt(value: Value) -> Value:
    """Exact for the square of a fraction (`\\sqrt{4^2+3^2}` = 5), else a float."""
    if value < 0:
        raise _Unsupported("square root of a negative")
    if isinstance(value, Fraction):
        num, den = math.isqrt(value.numerator), math.isqrt(value.denominator)
        if num * num == value.numerator and den * den == value.denominator:
            return Fraction(num, den)
    return math.sqrt(value)
