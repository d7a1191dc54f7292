"""Plain numbers as written, exactly, and the rules for calling two of them equal.

Pure Python (`fractions.Fraction`), no sympy: safe in-process, so most numeric answers are judged
without a worker round trip. Parsing is bounded: numbers longer than `MAX_NUMBER_CHARS` and
powers of ten beyond `MAX_EXPONENT` are not plain numbers (they go to the guarded sympy path).

Equality of two numbers, in order (first rule that applies decides):

1. an explicit absolute `tolerance` (OlympiadBench's `error`, `--tolerance`): |a - g| <= tolerance;
2. an explicit `precision` (MathVista: decimal places): both rounded half-up to that many places;
3. equal values, or equal within a relative `1e-9` (float noise) when one side is an approximation
   (a decimal printed with more than `NOISE_SIG_DIGITS` significant digits, or a value that is no
   plain number), never an absolute rounding: 1/2004! and 1/2006! differ, however small both are,
   and two integers as written are exact (2309415686 is not 2309415687);
4. a decimal gold is a rounded value: an answer that rounds to it at the gold's last written digit
   matches when the gold has at least `MIN_GOLD_SIG_DIGITS` significant digits (2.47 ~ 2.4712,
   but 0.5 is not 0.54);
5. a decimal answer to an exact gold (an integer, a fraction, a closed form) is an approximation:
   it matches when it is the gold rounded (or truncated) at the answer's last digit and has at
   least `MIN_ANSWER_SIG_DIGITS` significant digits (0.6054 for cos^10(pi/10); 3.14 is not pi).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import cast

MAX_NUMBER_CHARS = 80
MAX_EXPONENT = 400
MIN_GOLD_SIG_DIGITS = 3
MIN_ANSWER_SIG_DIGITS = 4
REL_TOL = 1e-9
NOISE_SIG_DIGITS = 12  # a decimal with more significant digits than this may carry float noise

# thousands separators: `,` `{,}` `\,` and a single (thin) space: `20 000` is 20000, never 20 * 0
_MANTISSA = r"(?P<sign>[+-]?)\s*(?P<int>\d{1,3}(?:(?:,|\{,\}|\\,|[ \u2009\u202f\u00a0]|\\ )\d{3})+(?![\d])|\d+)?(?:\.(?P<frac>\d*))?"
_DECIMAL_RE = re.compile(_MANTISSA + r"$")
# a \times 10^{b}, a \cdot 10^b, a*10^b, aE-b, 10^{b}
_SCI_RE = re.compile(
    _MANTISSA
    + r"\s*(?:(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*(?:\{\s*(?P<exp1>[+-]?\s*\d+)\s*\}|(?P<exp2>[+-]?\d))"
    + r"|[eE](?P<exp3>[+-]?\d+))$"
)
_POW10_RE = re.compile(r"(?P<sign>[+-]?)\s*10\s*\^\s*(?:\{\s*(?P<exp1>[+-]?\s*\d+)\s*\}|(?P<exp2>\d))$")
_FRAC_RE = re.compile(r"(?P<sign>[+-]?)\s*\\frac\s*\{\s*(?P<num>[+-]?\d+)\s*\}\s*\{\s*(?P<den>[+-]?\d+)\s*\}$")
_FRAC_SHORT_RE = re.compile(r"(?P<sign>[+-]?)\s*\\frac\s*(?P<num>\d)(?P<den>\d)$")
_SLASH_RE = re.compile(r"(?P<sign>[+-]?)\s*(?P<num>\d+)\s*/\s*(?P<den>\d+)$")
_BRACED_DECIMAL_COMMA = re.compile(r"(?<=\d)\{,\}(?=\d{1,2}(?!\d)|\d{4,})")
_INF_RE = re.compile(r"(?P<sign>[+-]?)\s*\\infty$")


@dataclass(frozen=True)
class Number:
    """A number as written: its exact value and how precisely it was written."""

    value: Fraction | float  # float only for +-inf
    decimal: bool = False  # written with a decimal point: a rounded value
    ulp: Fraction | None = None  # unit of the last written digit (decimals only)
    sig: int = 0  # significant digits written

    @property
    def infinite(self) -> bool:
        return isinstance(self.value, float)

    @property
    def exact(self) -> Fraction:
        """The value of a finite number (`infinite` is False), typed as the Fraction it then is."""
        return cast(Fraction, self.value)


def parse_number(text: str) -> Number | None:
    """The number `text` writes (`-12`, `0.50`, `1,234`, `7.1\\times10^{35}`, `\\frac{3}{4}`, `3/4`,
    `1e-3`, `\\infty`), or None when it is anything else."""
    s = text.strip()
    if not s or len(s) > MAX_NUMBER_CHARS:
        return None
    s = _BRACED_DECIMAL_COMMA.sub(".", s).replace("{,}", ",")  # `3{,}5` is 3.5, `1{,}000` is 1000
    if s.startswith("{") and s.endswith("}") and s.count("{") == 1:
        s = s[1:-1].strip()
    m = _DECIMAL_RE.match(s)
    if m and (m.group("int") or m.group("frac")):
        return _from_parts(m.group("sign"), m.group("int"), m.group("frac"), 0)
    m = _SCI_RE.match(s)
    if m and (m.group("int") or m.group("frac")):
        exp = m.group("exp1") or m.group("exp2") or m.group("exp3")
        exp_value = int(exp.replace(" ", ""))
        if abs(exp_value) > MAX_EXPONENT:
            return None
        return _from_parts(m.group("sign"), m.group("int"), m.group("frac"), exp_value)
    m = _POW10_RE.match(s)
    if m:
        exp_value = int((m.group("exp1") or m.group("exp2")).replace(" ", ""))
        if abs(exp_value) > MAX_EXPONENT:
            return None
        value = Fraction(10) ** exp_value
        return Number(-value if m.group("sign") == "-" else value, sig=1)
    for pattern in (_FRAC_RE, _FRAC_SHORT_RE, _SLASH_RE):
        m = pattern.match(s)
        if m:
            den = int(m.group("den"))
            if den == 0:
                return None
            value = Fraction(int(m.group("num")), den)
            return Number(-value if m.group("sign") == "-" else value, sig=len(m.group("num").lstrip("+-0")) or 1)
    m = _INF_RE.match(s)
    if m:
        return Number(-math.inf if m.group("sign") == "-" else math.inf)
    return None


def _from_parts(sign: str, int_part: str | None, frac_part: str | None, exp: int) -> Number:
    digits_int = re.sub(r"[^\d]", "", int_part or "")
    frac = frac_part or ""
    is_decimal = frac_part is not None and frac != ""
    mantissa = Fraction(int(digits_int or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
    value = mantissa * (Fraction(10) ** exp)
    if sign == "-":
        value = -value
    all_digits = (digits_int + frac).lstrip("0")
    sig = len(all_digits) if is_decimal else len(digits_int.lstrip("0").rstrip("0")) or 1
    if is_decimal and not digits_int.strip("0"):
        sig = len(frac.lstrip("0")) or 1
    ulp = Fraction(10) ** (exp - len(frac)) if is_decimal else None
    return Number(value, decimal=is_decimal, ulp=ulp, sig=max(sig, 1))


# ---------------------------------------------------------------- tolerances


def parse_tolerance(value: object) -> list[float | None] | None:
    """A tolerance as given: a number, OlympiadBench's `error` string (`"1e-1"`, `",1e-2"`: one per
    answer, empty = none), or a list. Returns one entry per answer (a scalar applies to all), or None."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)] if value >= 0 and math.isfinite(value) else None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        out: list[float | None] = []
        for p in parts:
            if not p:
                out.append(None)
                continue
            try:
                f = float(p)
            except ValueError:
                out.append(None)
                continue
            out.append(f if f >= 0 and math.isfinite(f) else None)
        return out if any(x is not None for x in out) else None
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            t = parse_tolerance(v)
            out.append(t[0] if t else None)
        return out if any(x is not None for x in out) else None
    return None


def tolerance_for(tolerances: list[float | None] | None, index: int) -> float | None:
    """The tolerance of the `index`-th answer: a single entry applies to every answer."""
    if not tolerances:
        return None
    if len(tolerances) == 1:
        return tolerances[0]
    return tolerances[index] if index < len(tolerances) else None


# ---------------------------------------------------------------- comparison


def numbers_equal(
    gold: Number,
    answer: Number,
    *,
    tolerance: float | None = None,
    precision: int | None = None,
    scale: Fraction = Fraction(1),
) -> bool:
    """Whether `answer` matches `gold` under the rules in the module doc.

    `scale` multiplies the answer first (a unit conversion or a percent reading).
    """
    if gold.infinite or answer.infinite:
        return gold.value == answer.value
    g = gold.exact
    a = answer.exact * scale
    if tolerance is not None:
        return abs(a - g) <= Fraction(tolerance) * (1 + Fraction(1, 10**9)) + Fraction(1, 10**15) * abs(g)
    if precision is not None:
        return round_half_up(a, precision) == round_half_up(g, precision)
    return values_close(g, a, gold_written=gold, answer_written=answer if scale == 1 else _scaled(answer, scale))


def values_close(
    g: Fraction, a: Fraction, *, gold_written: Number | None = None, answer_written: Number | None = None
) -> bool:
    """Rules 3-5 of the module doc for exact values `g` (gold) and `a` (answer)."""
    if a == g:
        return True
    # float noise (`0.30000000000000004`) needs a side that is an approximation: one printed with
    # many digits, or not written as a plain number; two integers (or fractions, or short decimals)
    # as written are exact, and 2309415686 is not 2309415687
    noisy = any(w is None or (w.decimal and w.sig > NOISE_SIG_DIGITS) for w in (gold_written, answer_written))
    if noisy and g != 0 and abs(a - g) <= abs(g) * Fraction(REL_TOL):
        return True
    if (
        gold_written is not None
        and gold_written.decimal
        and gold_written.ulp is not None  # always set on a decimal
        and gold_written.sig >= MIN_GOLD_SIG_DIGITS
    ):
        if abs(a - g) <= gold_written.ulp / 2 * (1 + Fraction(1, 10**9)):
            return True
    if (
        answer_written is not None
        and answer_written.decimal
        and answer_written.ulp is not None  # always set on a decimal
        and not (gold_written is not None and gold_written.decimal)
        and answer_written.sig >= MIN_ANSWER_SIG_DIGITS
    ):
        # rounded (|a-g| <= ulp/2) or truncated (a between g and g -+ ulp) at the answer's last digit
        if abs(a - g) <= answer_written.ulp / 2 * (1 + Fraction(1, 10**9)):
            return True
        if abs(a) <= abs(g) and (a >= 0) == (g >= 0) and abs(g - a) < answer_written.ulp:
            return True
    return False


def _scaled(number: Number, scale: Fraction) -> Number:
    ulp = number.ulp * abs(scale) if number.ulp is not None else None
    return Number(number.value * scale, decimal=number.decimal, ulp=ulp, sig=number.sig)


def round_half_up(value: Fraction, places: int) -> Decimal:
    """`value` rounded half-up to `places` decimal places (MathVista's `precision`)."""
    quantum = Decimal(1).scaleb(-places)
    exact = Decimal(value.numerator) / Decimal(value.denominator) if value.denominator != 1 else Decimal(value.numerator)
    return exact.quantize(quantum, rounding=ROUND_HALF_UP)


def number_text(number: Number) -> str:
    """A canonical text for a plain number (grouping answers): `24.5`, `-3/4`, `oo`."""
    if number.infinite:
        return "-oo" if number.value < 0 else "oo"
    v = number.exact
    if v.denominator == 1:
        return str(v.numerator)
    # terminating decimal?
    d = v.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1 and len(str(v.denominator)) <= 30:
        text = format(Decimal(v.numerator) / Decimal(v.denominator), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{v.numerator}/{v.denominator}"
