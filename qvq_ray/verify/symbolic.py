"""The sympy side of verification. Runs ONLY inside a `VerifyPool` worker process.

LaTeX is parsed by latex2sympy2_extended (math-verify's parser, ANTLR: no `eval`, no
`parse_expr`, no `sympify` of text). Every value is guarded before sympy evaluates it:
`guard` estimates the magnitude of each power, factorial and binomial from the unevaluated tree
with float/log arithmetic and refuses exact evaluation past `MAX_EXACT_DIGITS` digits
(`9^{9^{9^{9}}}`, `(10^7)!`); such values are compared by their estimated magnitudes only
(`10^{10^{10^{10}}}` is not `10^{10}`) and are otherwise undecidable (`Undecidable`).

Soft deadlines (`soft_deadline`, `SIGALRM` in the worker's main thread) stop Python-level sympy
work early so a worker can still answer; C-level work that no signal interrupts is what the
pool's hard kill and the worker's memory limit are for.
"""

from __future__ import annotations

import cmath
import contextlib
import math
import re
import signal
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from functools import lru_cache
from types import FrameType

import sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig, NormalizationConfig, latex2sympy
from sympy.core.function import AppliedUndef

from qvq_ray.verify.numbers import Number, REL_TOL, round_half_up, values_close

MAX_EXACT_DIGITS = 20000  # exact values with more digits are never computed (2004! has 5751)
MAX_LEAF_CHARS = 1000
MAX_NODES = 4000
EVALF_DIGITS = 30
PROBE_VALUES = (0.8471, 1.3173, 2.1691, 0.5931, 1.7749, 2.6513, 0.3779, 1.1213)


class SoftTimeout(BaseException):
    """A soft deadline passed (BaseException: sympy's `except Exception` must not swallow it)."""


class Undecidable(Exception):
    """The comparison cannot be decided safely (e.g. two astronomically large values)."""


class ParseError(ValueError):
    """latex2sympy could not read the text."""


@contextlib.contextmanager
def soft_deadline(seconds: float | None) -> Iterator[None]:
    """Raise `SoftTimeout` in this (main) thread after `seconds`; a no-op off the main thread."""
    if seconds is None or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise SoftTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, _ = signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay:
            signal.setitimer(signal.ITIMER_REAL, old_delay)


# ---------------------------------------------------------------- parsing

_NORMALIZATION = NormalizationConfig(
    basic_latex=True, units=False, malformed_operators=True, nits=False, boxed="none", equations=False
)
# Symbols keep their case: `R` is not `r`.
_CONVERSION = ConversionConfig(interpret_as_mixed_fractions=True, lowercase_symbols=False)
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mathit|mbox|textrm|textnormal|boldsymbol|bm|mathsf)\s*\{([^{}]*)\}")
_E_NOTATION = re.compile(r"(?<![A-Za-z\\])(\d+(?:\.\d+)?)\s*[eE]\s*([+-]?\d+)(?![\d.])")
_PROSE_POWER = re.compile(r"\^\s*(\d{2,})")
_SUBSCRIPT = re.compile(
    r"(?<!\\lim)(?<!\\sum)(?<!\\prod)(?<!\\int)(?<!\\oint)(?<!\\log)(?<!\\max)(?<!\\min)(?<!\\sup)(?<!\\inf)"
    r"(?<!\\bigcup)(?<!\\bigcap)_\{([^{}]*\\[A-Za-z]+[^{}]*)\}"
)
_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![A-Za-z])")
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*\^\s*(?:\{\s*\\circ\s*\}|\\circ)")
_STAR = re.compile(r"\^\s*(?:\{\s*(?:\*|\\ast)\s*\}|\*|\\ast)")
_E_SUBSCRIPT = re.compile(r"(?<![A-Za-z\\])e_")
_COMPLEX = re.compile(r"\\mathbb\{C\}|\\i\b|(?<![A-Za-z\\])i(?![A-Za-z])|\\text\{i\}|\\mathrm\{i\}|\\imath\b")


_SPACED_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:(?: |\\,|\\ |\{,\})\d{3})+(?![\d])")
_UPPER_I = re.compile(r"(?<![A-Za-z\\])I(?![A-Za-z])")
# Positive numbers joined by sums, products, quotients, roots and powers: never 0 (a parse that
# says 0, e.g. of digits juxtaposed before a root, read the text wrongly).
_POSITIVE_ONLY = re.compile(r"(?:[\d\s.{}()+*/^]|\\(?:sqrt|frac|cdot|times|pi)(?![A-Za-z]))+")
# Two numbers side by side (`2 3`, `(1) 20`) are two things, never a sum or a product.
_JUXTAPOSED = re.compile(r"(?:^|[^_^\d.])\d+\s+\d(?!\d*\s*/)|\(\s*\d+\s*\)\s*\d")
# Parentheses right after a number or `)`: a product. latex2sympy reads `2(16)` as 18, `(8)(6)` as
# 14 and `2(7/3)` as 2 + 7/3 (sums, mixed numbers), so the product is made explicit (`2 \cdot (16)`);
# `\log_2(8)` and `f(3)` are left as they are.
_PAREN_PRODUCT = re.compile(r"(?:(?<=\d)(?<![_^]\d)|(?<=\)))\s*(?=(?:\\left\s*)?\()")


def leaf_latex(text: str) -> str:
    """A leaf as latex2sympy should see it: text wrappers unwrapped, `1.5e3` and `2^10` made LaTeX."""
    s = text.strip()
    for _ in range(3):
        s2 = _TEXT_WRAP.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = s.replace("**", "^")
    s = _STAR.sub(lambda m: "^{\\prime}", s)  # d^* : a marker like a prime, not a power
    s = _E_SUBSCRIPT.sub(lambda m: "\\varepsilon_", s)  # e_1 is a name (latex2sympy reads e as Euler's number)
    s = _E_NOTATION.sub(r"\1\\times 10^{\2}", s)
    if _TRIG.search(s):  # `\sin 30^\circ`: degrees as radians inside trigonometric functions
        s = _DEGREES.sub(lambda m: "(" + m.group(1) + " \\cdot \\frac{\\pi}{180})", s)
    s = _PROSE_POWER.sub(r"^{\1}", s)
    s = _SPACED_THOUSANDS.sub(lambda m: re.sub(r"\D", "", m.group()), s)  # `20 000` is 20000
    s = _PAREN_PRODUCT.sub(r" \\cdot ", s)  # `2(16)` is 32, `(8)(6)` is 48, `2(7/3)` is 14/3
    s = _UPPER_I.sub(r"\\iota", s)  # `I`, `I_0`: a current or an index, not the imaginary unit
    s = re.sub(r"_\{\s*([A-Za-z0-9])\s*\}", r"_\1", s)
    # subscripts are labels: `R_{\odot}`, `I_{\max}` -> plain letters latex2sympy reads as a name
    s = _SUBSCRIPT.sub(lambda m: "_{" + re.sub(r"\\([A-Za-z]+)", r"\1", m.group(1)) + "}", s)
    return s


@lru_cache(maxsize=2048)
def parse_leaf(text: str) -> sympy.Basic:
    """The sympy expression of one leaf (no top-level commas: structures are split before)."""
    if len(text) > MAX_LEAF_CHARS:
        raise ParseError("too long")
    s = leaf_latex(text)
    if not s:
        raise ParseError("empty")
    if s.count("{") != s.count("}"):
        raise ParseError("unbalanced braces")
    if re.search(r"\\(?:cdots|ldots|dots|vdots)(?![A-Za-z])|\.\.\.", s):
        raise ParseError("ellipsis")
    if _JUXTAPOSED.search(s):
        raise ParseError("juxtaposed numbers")
    try:
        expr = latex2sympy(
            s,
            is_real=not bool(_COMPLEX.search(s)),
            convert_degrees=False,
            normalization_config=_NORMALIZATION,
            conversion_config=_CONVERSION,
        )
    except SoftTimeout:
        raise
    except RecursionError as exc:
        raise ParseError("too deeply nested") from exc
    except Exception as exc:  # noqa: BLE001 - ANTLR and conversion errors alike
        raise ParseError(str(exc)[:200]) from exc
    if isinstance(expr, (list, tuple)) or not isinstance(expr, (sympy.Basic, sympy.MatrixBase)):
        raise ParseError("not an expression")
    if _POSITIVE_ONLY.fullmatch(s) and re.search(r"[1-9]", s) and not is_huge(expr) and expr.is_zero:
        raise ParseError("degenerate: positive numbers read as 0")  # compared as text instead
    if expr.has(sympy.EulerGamma):  # `\gamma`, `\Gamma`: an angle or a ratio, not Euler's constant
        name = "Gamma" if "\\Gamma" in s and "\\gamma" not in s else "gamma"
        expr = expr.subs(sympy.EulerGamma, sympy.Symbol(name, real=True))
    return expr


def parses(text: str) -> bool:
    try:
        parse_leaf(text)
        return True
    except ParseError:
        return False


# ---------------------------------------------------------------- guard


def _int_value(p: int) -> float:
    """`_num_value` of an integer."""
    if p.bit_length() > 1000:
        return math.copysign(math.inf, p)
    return float(p)


def _num_value(e: sympy.Basic) -> float | None:
    """A float estimate of a numeric expression's signed value (inf when too large), None if unknown."""
    try:
        if e.is_Integer:
            return _int_value(int(e))
        if e.is_Rational:
            return _int_value(int(e.p)) / _int_value(int(e.q)) if e.q.bit_length() < 1000 else 0.0
        if e.is_Float:
            f = float(e)
            return f
        if e.is_NumberSymbol or e in (sympy.pi, sympy.E):
            return float(e)
    except (OverflowError, ValueError, TypeError):
        return None
    lm = _log10(e)
    if lm is None:
        return None
    sign = _sign(e)
    if sign is None:
        return None
    if lm == -math.inf or sign == 0:
        return 0.0
    if lm > 300:
        return math.copysign(math.inf, sign)
    return sign * float(10.0**lm)


def _sign(e: sympy.Basic) -> int | None:
    if e.is_Number:
        if e.is_zero:
            return 0
        return 1 if bool(e.is_positive) else -1
    if e.is_NumberSymbol:
        return 1
    if isinstance(e, sympy.Pow):
        sb = _sign(e.base)
        if sb is None:
            return None
        if sb >= 0:
            return sb
        x = _num_value(e.exp)
        if x is not None and x == int(x) and abs(x) < 1e15:
            return 1 if int(x) % 2 == 0 else -1
        return None
    if isinstance(e, sympy.Mul):
        s = 1
        for a in e.args:
            sa = _sign(a)
            if sa is None:
                return None
            s *= sa
        return s
    if isinstance(e, sympy.Add):
        signs = {_sign(a) for a in e.args}
        if None in signs:
            return None
        signs.discard(0)
        if len(signs) == 1:
            return signs.pop()
        return None
    if isinstance(e, (sympy.factorial, sympy.gamma)):
        return 1
    return None


def _int_log10(p: int) -> float:
    """`_log10` of an integer."""
    p = abs(p)
    if p == 0:
        return -math.inf
    bits = p.bit_length()
    return math.log10(p) if bits < 1000 else bits * math.log10(2)


def _log10(e: sympy.Basic) -> float | None:
    """log10|e| estimated from the unevaluated tree (inf when astronomically large), None if unknown."""
    if e.free_symbols:
        return None
    if e.is_Integer:
        return _int_log10(int(e))
    if e.is_Rational:
        return _int_log10(int(e.p)) - _int_log10(int(e.q))
    if e.is_Float:
        return math.log10(abs(float(e))) if e != 0 else -math.inf
    if e.is_NumberSymbol:
        return math.log10(float(e))
    if isinstance(e, sympy.Pow):
        lb = _log10(e.base)
        x = _num_value(e.exp)
        if lb is None or x is None:
            return None
        if lb == -math.inf:
            return -math.inf if x > 0 else math.inf
        if math.isinf(x):
            if lb == 0:
                return 0.0
            return math.inf if (x > 0) == (lb > 0) else -math.inf
        return lb * x
    if isinstance(e, sympy.Mul):
        total = 0.0
        for a in e.args:
            la = _log10(a)
            if la is None:
                return None
            total += la
        return total
    if isinstance(e, sympy.Add):
        logs = [la for a in e.args if (la := _log10(a)) is not None]
        if len(logs) != len(e.args):
            return None
        return max(logs) + math.log10(len(logs))
    if isinstance(e, sympy.factorial):
        n = _num_value(e.args[0])
        if n is None:
            return None
        if math.isinf(n):
            return math.inf
        if n < 0:
            return None
        return math.lgamma(n + 1) / math.log(10)
    if isinstance(e, sympy.binomial):
        n = _num_value(e.args[0])
        if n is None:
            return None
        return math.inf if math.isinf(n) else (n * math.log10(2) if n > 0 else 0.0)
    if isinstance(e, sympy.exp):
        x = _num_value(e.args[0])
        return None if x is None else x * math.log10(math.e)
    # other functions of numbers: bounded by their arguments for our purposes
    if not e.args:
        return 0.0  # max(max([0.0]), 0.0)
    logs = [la for a in e.args if (la := _log10(a)) is not None]
    if len(logs) != len(e.args):
        return None
    return max(max(logs), 0.0)


def is_huge(e: sympy.Basic) -> bool:
    """Whether exact evaluation of some part of `e` would exceed `MAX_EXACT_DIGITS` digits."""
    count = 0
    for node in sympy.preorder_traversal(e):
        count += 1
        if count > MAX_NODES:
            return True
        if isinstance(node, (sympy.Pow, sympy.factorial, sympy.binomial, sympy.exp, sympy.gamma)):
            if node.free_symbols:
                if isinstance(node, sympy.Pow) and not node.exp.free_symbols:
                    x = _num_value(node.exp)
                    if x is None or abs(x) > 1000:
                        return True
                continue
            lm = _log10(node)
            if lm is None or lm == -math.inf:  # unknown, or exactly zero (`0^2`)
                continue
            if abs(lm) > MAX_EXACT_DIGITS:
                return True
            if isinstance(node, sympy.Pow):
                x = _num_value(node.exp)
                if x is None or abs(x) > 1e6:
                    return True
        elif isinstance(node, sympy.Integer) and int(node).bit_length() > MAX_EXACT_DIGITS * 3.33:
            return True
    return False


def compare_huge(g: sympy.Basic, a: sympy.Basic) -> bool:
    """Two values at least one of which is astronomically large: decided by magnitude or structure."""
    if g == a:
        return True
    lg, la = _log10(g), _log10(a)
    if lg is None or la is None:
        raise Undecidable("astronomically large symbolic expression")
    if math.isinf(lg) and math.isinf(la):
        raise Undecidable("both astronomically large")
    if math.isinf(lg) != math.isinf(la):
        return False
    if abs(lg - la) > 1e-6 * max(1.0, abs(lg), abs(la)):
        return False
    raise Undecidable("magnitudes agree")


# ---------------------------------------------------------------- values


def numeric_value(e: sympy.Basic) -> tuple[Fraction | None, tuple[Fraction, Fraction]] | None:
    """(exact Fraction or None, (re, im) as Fractions of a 30-digit approximation) of a closed
    expression, or None when it is not a number. Fractions, not floats: 1/2004! does not underflow."""
    if is_huge(e):
        raise Undecidable("astronomically large")
    if isinstance(e, sympy.MatrixBase):
        return None
    try:
        done = e.doit() if e.args else e
    except SoftTimeout:
        raise
    except Exception:  # noqa: BLE001
        done = e
    if getattr(done, "is_Rational", False):
        exact = Fraction(int(done.p), int(done.q))
        return exact, (exact, Fraction(0))
    if done in (sympy.oo, -sympy.oo, sympy.zoo):
        return None
    approx = _approx(done)
    if approx is None:
        return None
    return None, approx


def _approx(e: sympy.Basic) -> tuple[Fraction, Fraction] | None:
    try:
        v = e.evalf(EVALF_DIGITS)
    except SoftTimeout:
        raise
    except Exception:  # noqa: BLE001
        return None
    if not v.is_number or v.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan):
        return None
    try:
        re_, im_ = v.as_real_imag()
        return _to_fraction(re_), _to_fraction(im_)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return None


def _to_fraction(x: sympy.Basic) -> Fraction:
    if x == 0:
        return Fraction(0)
    if getattr(x, "is_Rational", False):
        return Fraction(int(x.p), int(x.q))
    return Fraction(str(sympy.Float(x, EVALF_DIGITS)))


def evaluate_closed(latex: str) -> complex | None:
    """The value of a closed numeric LaTeX expression (claims), or None (not closed, huge, unreadable)."""
    e = parse_leaf(latex)
    if getattr(e, "free_symbols", None):
        return None
    if isinstance(e, sympy.MatrixBase) or is_huge(e):
        return None
    out = numeric_value(e)
    if out is None:
        return None
    _, (re_, im_) = out
    try:
        value = complex(float(re_), float(im_))
    except OverflowError:
        return None
    if cmath.isnan(value) or cmath.isinf(value):
        return None
    return value


def scalars_equal(
    gold_text: str,
    answer_text: str,
    *,
    gold_number: Number | None = None,
    answer_number: Number | None = None,
    tolerance: float | None = None,
    precision: int | None = None,
    answer_scale: sympy.Basic | None = None,
    radians_of_gold_degrees: bool = False,
) -> bool:
    """Whether two leaves are equal: numerically when closed, by probing when symbolic."""
    g = parse_leaf(gold_text)
    a = parse_leaf(answer_text)
    if isinstance(g, sympy.MatrixBase) or isinstance(a, sympy.MatrixBase):
        return _matrices_equal(g, a)
    if radians_of_gold_degrees:
        g = g * sympy.pi / 180
    if answer_scale is not None and answer_scale != 1:
        a = a * answer_scale
    if is_huge(g) or is_huge(a):
        return compare_huge(g, a)
    g_syms, a_syms = _names(g), _names(a)
    if not g_syms and not a_syms:
        return _closed_equal(g, a, gold_number, answer_number, tolerance, precision)
    if g_syms != a_syms:
        return False
    return expressions_equal(g, a)


def _names(e: sympy.Basic) -> set[str]:
    names = {str(s) for s in e.free_symbols}
    names |= {str(f.func) for f in e.atoms(AppliedUndef)}
    return names


def _closed_equal(
    g: sympy.Basic,
    a: sympy.Basic,
    gold_number: Number | None,
    answer_number: Number | None,
    tolerance: float | None,
    precision: int | None,
) -> bool:
    if (g in (sympy.oo, -sympy.oo)) or (a in (sympy.oo, -sympy.oo)):
        return bool(g == a)  # sympy's == is structural: a bool already
    gv, av = numeric_value(g), numeric_value(a)
    if gv is None or av is None:
        return bool(g == a)
    g_exact, (g_re, g_im) = gv
    a_exact, (a_re, a_im) = av
    if g_im != 0 or a_im != 0:
        if tolerance is not None:
            return abs(complex(float(a_re - g_re), float(a_im - g_im))) <= tolerance * (1 + 1e-9)
        scale = max(abs(g_re) + abs(g_im), abs(a_re) + abs(a_im))
        return abs(a_re - g_re) + abs(a_im - g_im) <= scale * Fraction(1, 10**20)
    if tolerance is not None:
        return abs(a_re - g_re) <= Fraction(tolerance) * (1 + Fraction(1, 10**9)) + abs(g_re) * Fraction(1, 10**15)
    if precision is not None:
        return round_half_up(a_re, precision) == round_half_up(g_re, precision)
    if g_exact is not None and a_exact is not None:
        return g_exact == a_exact
    # one side irrational (a 30-digit approximation): equal within 1e-20 relative, or by written digits
    if g_re == a_re or (g_re != 0 and abs(a_re - g_re) <= abs(g_re) * Fraction(1, 10**20)):
        return True
    if (gold_number is not None and gold_number.decimal) or (answer_number is not None and answer_number.decimal):
        return values_close(g_re, a_re, gold_written=gold_number, answer_written=answer_number)
    return False


def expressions_equal(g: sympy.Basic, a: sympy.Basic) -> bool:
    """Symbolic expressions with the same free symbols: equal at every probe point, or simplify."""
    if g == a:
        return True
    symbols = _symbols_of(g, a)
    verdict = _probe(lambda seed: (_at(g, seed, symbols), _at(a, seed, symbols)))
    if verdict is not None:
        return verdict
    try:
        return bool(sympy.simplify(g - a) == 0)
    except SoftTimeout:
        raise
    except Exception:  # noqa: BLE001
        return False


def _probe(values_at: Callable[[int], tuple[complex | None, complex | None]]) -> bool | None:
    """True if all decided probe points agree, False at the first disagreement, None if none decided."""
    agreed = 0
    for k in range(4):
        subs_seed = k
        x, y = values_at(subs_seed)
        if x is None or y is None:
            continue
        if cmath.isnan(x) or cmath.isnan(y):
            continue
        if not _complex_close_probe(x, y):
            return False
        agreed += 1
    return True if agreed >= 2 else None


def _complex_close_probe(x: complex, y: complex) -> bool:
    scale = max(abs(x), abs(y))
    if scale == 0:
        return True
    return abs(x - y) <= 1e-10 * scale


def _symbols_of(*exprs: sympy.Basic) -> list[sympy.Symbol]:
    syms: set[sympy.Symbol] = set()
    for e in exprs:
        syms |= e.free_symbols
    return sorted(syms, key=str)


def _subs_for(symbols: list[sympy.Symbol], seed: int) -> dict[sympy.Symbol, sympy.Float]:
    """Probe values by symbol NAME (a symbol may exist twice with different assumptions)."""
    names = sorted({str(s) for s in symbols})
    value = {name: PROBE_VALUES[(i * 3 + seed) % len(PROBE_VALUES)] + 0.1 * seed for i, name in enumerate(names)}
    return {s: sympy.Float(value[str(s)]) for s in symbols}


def _at(e: sympy.Basic, seed: int, symbols: list[sympy.Symbol] | None = None) -> complex | None:
    symbols = symbols if symbols is not None else _symbols_of(e)
    subs = _subs_for(symbols, seed)
    try:
        v = e.evalf(20, subs=subs)
        if not v.is_number:
            return None
        re_, im_ = v.as_real_imag()
        return complex(float(re_), float(im_))
    except SoftTimeout:
        raise
    except Exception:  # noqa: BLE001
        return None


def equations_equal(g_lhs: str, g_rhs: str, a_lhs: str, a_rhs: str) -> bool:
    """`gl = gr` and `al = ar` describe the same equation: (gl - gr) / (al - ar) is a nonzero constant.

    An equation with no unknown left in it (`1 = 3`, `x = x + 2`) states no relation between
    unknowns, only a truth value, and two false (or two true) statements are not the same answer:
    such equations are compared side by side, in either order (a gold may itself be false)."""
    sides = [parse_leaf(t) for t in (g_lhs, g_rhs, a_lhs, a_rhs)]
    G, A = sides[0] - sides[1], sides[2] - sides[3]
    if not _names(G) or not _names(A):
        gl, gr, al, ar = sides
        return _same_side(gl, al) and _same_side(gr, ar) or _same_side(gl, ar) and _same_side(gr, al)
    return _proportional(G, A, sign=0)


def _same_side(x: sympy.Basic, y: sympy.Basic) -> bool:
    """Two sides of equations: equal values, or equal expressions in the same unknowns."""
    if is_huge(x) or is_huge(y):
        return compare_huge(x, y)
    if _names(x) != _names(y):
        return False
    return expressions_equal(x, y) if _names(x) else _closed_equal(x, y, None, None, None, None)


def inequalities_equal(g_lhs: str, g_op: str, g_rhs: str, a_lhs: str, a_op: str, a_rhs: str) -> bool:
    """`gl op gr` and `al op' ar` are the same inequality (same or flipped direction)."""
    G = parse_leaf(g_lhs) - parse_leaf(g_rhs)
    A = parse_leaf(a_lhs) - parse_leaf(a_rhs)
    g_dir = 1 if g_op in (">", ">=") else -1
    a_dir = 1 if a_op in (">", ">=") else -1
    if (g_op in ("<=", ">=")) != (a_op in ("<=", ">=")):
        return False
    return _proportional(G, A, sign=g_dir * a_dir)


def _proportional(G: sympy.Basic, A: sympy.Basic, *, sign: int) -> bool:
    if is_huge(G) or is_huge(A):
        raise Undecidable("astronomically large")
    if _names(G) != _names(A):
        return False
    symbols = _symbols_of(G, A)
    ratios = []
    for seed in range(4):
        x, y = _at(G, seed, symbols), _at(A, seed, symbols)
        if x is None or y is None or y == 0 or cmath.isnan(x) or cmath.isnan(y):
            continue
        ratios.append(x / y)
    if len(ratios) < 2:
        try:
            q = sympy.simplify(G / A)
            return bool(q.is_number and q != 0 and (sign == 0 or (sign * q) > 0))
        except SoftTimeout:
            raise
        except Exception:  # noqa: BLE001
            return False
    r0 = ratios[0]
    if abs(r0) < 1e-300:
        return False
    if not all(abs(r - r0) <= 1e-9 * abs(r0) for r in ratios[1:]):
        return False
    if sign != 0 and (abs(r0.imag) > 1e-12 or r0.real * sign <= 0):
        return False
    return True


def names_equal(a: str, b: str) -> bool:
    """Two left-hand sides name the same thing (`a_n` / `a_{n}`, `\\Phi(x,y)` / `\\Phi (x, y)`)."""
    try:
        x, y = parse_leaf(a), parse_leaf(b)
    except ParseError:
        return False
    return x == y or str(x) == str(y)


def _matrices_equal(g: sympy.Basic, a: sympy.Basic) -> bool:
    if not (isinstance(g, sympy.MatrixBase) and isinstance(a, sympy.MatrixBase)):
        return False
    if g.shape != a.shape:
        return False
    for x, y in zip(g, a):
        if is_huge(x) or is_huge(y):
            if not compare_huge(x, y):
                return False
            continue
        if _names(x) or _names(y):
            if _names(x) != _names(y) or not expressions_equal(x, y):
                return False
        elif not _closed_equal(x, y, None, None, None, None):
            return False
    return True
