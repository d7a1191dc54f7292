"""Is an answer equivalent to a gold answer? One comparer, run in two modes.

`Comparer(options, use_sympy=False)` is pure string and `fractions` work, safe in-process: it
decides letters, option texts, text answers, plain numbers (with tolerances, percentages, degrees,
equal units) and every structure made of those; where a leaf needs sympy it raises `NeedsSympy`.
`Comparer(options, use_sympy=True)` is the same comparison inside a `VerifyPool` worker, with
sympy (through `symbolic`) for expressions, unit conversion and equations.

The order of a comparison:

1. multiple choice (`choices.compare_choice`): letters and option texts, when the gold names an
   option or choices are given;
2. equal canonical forms;
3. the structures of both (`structures.parse_structure`) compared node by node: several answers
   and sets unordered (OlympiadBench `is_multiple_answer`; each gold answer keeps its own
   tolerance; `E / B` lists two answers where the gold has two, never when both are numbers),
   tuples/points/intervals ordered with their brackets, unions of intervals unordered,
   matrices by shape and entries, equations (`x=2` matches `2` for gold `x=2`, `y=2` does not
   match `x=2`; `x^2+y^2=1` matches `1-x^2-y^2=0`; `G+J = 6`, names only on the left, states the
   value 6), inequalities (`x > 2` matches `(2, \\infty)`),
   `\\pm` expanded, text case-folded;
4. leaves (`Leaf`): value and trailing unit/percent/degree split off; plain numbers by the rules in
   `numbers`, everything else by `symbolic.scalars_equal`.

Safety: `answers_equivalent` runs INSIDE a worker process. Only latex2sympy parses LaTeX (math-verify's
plain-expression extraction feeds text to `parse_expr`, which is `eval` underneath, and is never used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

from qvq_ray.verify.arithmetic import evaluate
from qvq_ray.verify.choices import choice_letter, compare_choice, option_index, LETTERS
from qvq_ray.verify.numbers import Number, number_text, numbers_equal, parse_number, parse_tolerance, tolerance_for
from qvq_ray.verify.structures import Node, clock_time, expand_plus_minus, normalize_answer, parse_structure, text_value
from qvq_ray.verify.text import braces_balanced, nesting_depth, split_top_level
from qvq_ray.verify.units import Quantity, parse_unit_tokens, prefixed_apart, split_quantity

# Past this length an answer is not worth a symbolic parse (and is the likeliest to hang one).
MAX_SYMBOLIC_CHARS = 1000
MAX_NESTING = 60
# Gold letters treated as multiple-choice options without choices (MMMU goes up to I; a little slack).


_DECIMAL_COMMA = re.compile(r"-?\d+,(?:\d{1,2}|\d{4,})(?:\s*[^\d,;\s][^,;]*)?")
# a unit list, one per answer: `,kg`, `m，s` (full-width comma), `m、s`
_UNIT_LIST = re.compile(r"[,，、]")


class NeedsSympy(Exception):
    """The in-process comparer met a leaf only sympy can judge."""


class Ctx(NamedTuple):
    """What applies to one gold answer: its tolerance and its unit (OlympiadBench gives one per answer)."""

    tolerance: float | None = None
    unit: str | None = None


@dataclass
class Options:
    """What the problem says about its answer (all optional)."""

    choices: list[str] = field(default_factory=list)
    unit: str | None = None
    tolerance: list[float | None] | None = None
    precision: int | None = None
    answer_type: str | None = None
    missing_unit: str = "reject"  # or "assume_gold"

    @classmethod
    def build(cls, options: dict[str, Any] | None = None, choices: list[str] | None = None) -> "Options":
        o = dict(options or {})
        precision = o.get("precision")
        try:
            precision = int(precision) if precision is not None and precision != "" else None
        except (TypeError, ValueError):
            precision = None
        unit = o.get("unit")
        unit = str(unit).strip() if unit not in (None, "") else None
        return cls(
            choices=[str(c) for c in (choices if choices is not None else o.get("choices")) or []],
            unit=unit,
            tolerance=parse_tolerance(o.get("tolerance")),
            precision=precision,
            answer_type=(str(o["answer_type"]) if o.get("answer_type") else None),
            missing_unit=o.get("missing_unit") or "reject",
        )

    def ctx(self, index: int) -> Ctx:
        """The tolerance and unit of the `index`-th gold answer (`unit=",kg"`: none, then kg)."""
        unit = self.unit
        if unit and _UNIT_LIST.search(unit):
            units = [u.strip() or None for u in _UNIT_LIST.split(unit)]
            unit = units[index] if index < len(units) else None
        return Ctx(tolerance_for(self.tolerance, index), unit)

    def as_dict(self) -> dict[str, Any]:
        return {
            "choices": list(self.choices),
            "unit": self.unit,
            "tolerance": self.tolerance,
            "precision": self.precision,
            "answer_type": self.answer_type,
            "missing_unit": self.missing_unit,
        }


# ---------------------------------------------------------------- public entry points


def answers_equivalent(
    answer: str, gold: str, choices: list[str] | None = None, options: dict[str, Any] | None = None
) -> bool:
    """Whether `answer` means `gold`. Runs in a verify worker (it may call sympy).

    Raises `symbolic.Undecidable` when a value is too large to judge safely.
    """
    return Comparer(Options.build(options, choices), use_sympy=True).equal(answer, gold)


def quick_equivalent(
    answer: str | None, gold: str | None, choices: list[str] | None = None, options: dict[str, Any] | None = None
) -> bool | None:
    """What the in-process comparer decides without sympy: True, False, or None (needs a worker)."""
    if not answer or not gold:
        return False
    try:
        return Comparer(Options.build(options, choices), use_sympy=False).equal(answer, gold)
    except NeedsSympy:
        return None


def canonical_form(answer: str | None, choices: list[str] | None = None) -> str:
    """A normalised string for grouping equal answers (not a proof of equivalence).

    Delimiters, boxes, `\\text{}` wrappers, spacing and sizing commands and most whitespace
    removed; `\\dfrac` as `\\frac`; plain numbers in one form (`024.50` -> `24.5`, `1{,}000` ->
    `1000`, `\\frac{1}{2}` -> `0.5`); an option letter (`(c)`, `\\text{(C)}`, or the text of an
    option when `choices` are given) as its capital letter; text answers case-folded.
    """
    if not answer:
        return ""
    if len(answer) > 4 * MAX_SYMBOLIC_CHARS:
        return re.sub(r"\s+", "", answer)[: 4 * MAX_SYMBOLIC_CHARS]
    s = normalize_answer(answer)
    n = len(choices) if choices else None
    letter = choice_letter(s, n)
    if letter is not None and len(s) <= 12:
        return letter
    if choices:
        index = option_index(s, list(choices), lambda a, b: False, exact_only=True)
        if index is not None:
            return LETTERS[index]
        if letter is not None:
            return letter
    number = parse_number(s)
    if number is not None:
        return number_text(number)
    node = parse_structure(s, normalized=True)
    if node.kind == "text":
        return text_value(node.text)
    return _compact(s)


def _compact(s: str) -> str:
    s = re.sub(r"\s+", " ", s).strip()
    return re.sub(r"(?<!\w) | (?!\w)", "", s)


# ---------------------------------------------------------------- the comparer


class Comparer:
    def __init__(self, options: Options, *, use_sympy: bool) -> None:
        self.options = options
        self.use_sympy = use_sympy
        self._unit_cache: dict[str, Any] = {}

    # -- top level

    def equal(self, answer: str | None, gold: str | None) -> bool:
        if not answer or not gold or not str(answer).strip() or not str(gold).strip():
            return False
        answer, gold = str(answer), str(gold)
        a, g = normalize_answer(answer), normalize_answer(gold)
        if not a or not g:
            return False
        if len(a) > MAX_SYMBOLIC_CHARS or len(g) > MAX_SYMBOLIC_CHARS or nesting_depth(a) > MAX_NESTING:
            return _compact(a) == _compact(g)
        verdict = compare_choice(a, g, self.options.choices, self._option_equal)
        if verdict is not None:
            return verdict
        if _compact(a) == _compact(g) and not self.options.tolerance and self.options.precision is None:
            return True
        a = self._decimal_comma(a, g)
        g = self._decimal_comma(g, a)
        g_node = parse_structure(g, normalized=True)
        a_node = parse_structure(a, normalized=True)
        return self.top_equal(g_node, a_node)

    def _decimal_comma(self, text: str, other: str) -> str:
        """`1000,99` is 1000.99 where nothing else can be meant: the other side is one number, the
        answer type is not a list, and the comma is not followed by exactly three digits (`7,425`).
        Either side: a gold written in a decimal-comma locale (`3,5`) is as much a number as an
        answer written so."""
        m = _DECIMAL_COMMA.fullmatch(text)
        if m is None or (self.options.answer_type or "").lower() in ("list", "tuple", "interval"):
            return text
        if parse_number(split_quantity(other).value) is None:
            return text
        return text.replace(",", ".", 1)

    def _option_equal(self, option: str, answer: str) -> bool:
        """An option's text against an answer (or the gold), as values, without choices."""
        # a bare number names the option that writes it with a unit (`4` for `4 cm`)
        sub = Comparer(Options(unit=self.options.unit, missing_unit="assume_gold"), use_sympy=self.use_sympy)
        return sub.equal(answer, option)

    def top_equal(self, g: Node, a: Node) -> bool:
        g, a = _expand_pm(g), _expand_pm(a)
        g, a = _untuple(g, a), _untuple(a, g)
        if {g.kind, a.kind} == {"several", "union"}:  # `x < 1 or x > 2` against a union of intervals
            return self._unions(g, a, self.options.ctx(0))
        if {g.kind, a.kind} == {"several", "seq"}:  # `x=1, y=2` against the point `(1, 2)`
            return self._seq_vs_several(g, a, self.options.ctx(0))
        if g.kind in ("several", "set") or a.kind in ("several", "set"):
            return self._collections(g, a, per_answer=True)
        return self.node_equal(g, a, self.options.ctx(0))

    # -- nodes

    def node_equal(self, g: Node, a: Node, tol: Ctx) -> bool:
        g, a = _expand_pm(g), _expand_pm(a)
        g, a = _untuple(g, a), _untuple(a, g)
        gk, ak = g.kind, a.kind
        if gk == "seq" and ak == "several" or gk == "several" and ak == "seq":
            return self._seq_vs_several(g, a, tol)
        if {gk, ak} == {"several", "union"}:
            return self._unions(g, a, tol)
        if gk in ("several", "set") or ak in ("several", "set"):
            return self._collections(g, a, tol=tol)
        if gk == "relation" or ak == "relation":
            return self._relations(g, a, tol)
        if gk == ak == "clock":  # two times of day: 10:30 is not 10:45 (nor, as a ratio, 20:60)
            return _same_time(g.text, a.text)
        if gk == "clock" or ak == "clock":  # `5:19` against `\\frac{5}{19}`: a ratio after all
            g_ratio, a_ratio = _clock_as_ratio(g), _clock_as_ratio(a)
            return g_ratio is not None and a_ratio is not None and self._ratios(g_ratio, a_ratio, tol)
        if gk == "ratio" or ak == "ratio":
            return self._ratios(g, a, tol)
        if gk == "union" or ak == "union":
            return self._unions(g, a, tol)
        if gk == "matrix" or ak == "matrix":
            return self._matrices(g, a, tol)
        if gk == "seq" or ak == "seq":
            return self._seqs(g, a, tol)
        if gk == "text" or ak == "text":
            return text_value(g.text) == text_value(a.text)
        return self.leaf_equal(g.text, a.text, tol)

    def _collections(self, g: Node, a: Node, *, tol: Ctx = Ctx(), per_answer: bool = False) -> bool:
        if g.kind == "set" and a.kind == "seq" or g.kind == "seq" and a.kind == "set":
            return False
        g_items = _items(g)
        a_items = _items(a)
        if g.kind == "several" and len(a_items) == 1 and len(g_items) > 1:
            pair = _slash_list(a_items[0], len(g_items))
            if pair is not None:  # `E / B` for the two answers `E, B`
                a_items = pair
        if g.kind == "set" or a.kind == "set":
            g_items, a_items = _dedupe(g_items), _dedupe(a_items)
        if len(g_items) != len(a_items):
            return False
        n = len(g_items)
        cache: dict[tuple[int, int], bool] = {}

        def eq(i: int, j: int) -> bool:
            key = (i, j)
            if key not in cache:
                t = self.options.ctx(i) if per_answer else tol
                cache[key] = self.node_equal(g_items[i], a_items[j], t)
            return cache[key]

        # Kuhn's augmenting paths: a perfect matching between gold and answer items
        owner = [-1] * n  # answer j -> gold i

        def augment(i: int, seen: list[bool]) -> bool:
            for j in range(n):
                if seen[j]:
                    continue
                if not eq(i, j):
                    continue
                seen[j] = True
                if owner[j] < 0 or augment(owner[j], seen):
                    owner[j] = i
                    return True
            return False

        if _named_in_order(g_items, a_items):  # `m=2, n=3` answered `2, 3`: the values in the gold's order
            return all(eq(i, i) for i in range(n))
        # try the same position first: most answers list items in the gold's order
        for i in range(n):
            if owner[i] < 0 and eq(i, i):
                owner[i] = i
        for i in range(n):
            if i in owner:
                continue
            if not augment(i, [False] * n):
                return False
        return True

    def _seq_vs_several(self, g: Node, a: Node, tol: Ctx) -> bool:
        seq, several = (g, a) if g.kind == "seq" else (a, g)
        ordered_ok = seq.open == "(" and seq.close == ")" or seq.open == "[" and seq.close == "]" and len(seq.items) > 2
        if (self.options.answer_type or "").lower() in ("list", "tuple"):
            ordered_ok = True
        if not ordered_ok or len(seq.items) != len(several.items):
            return False
        if g.kind == "seq":
            return all(self.node_equal(x, y, tol) for x, y in zip(g.items, a.items))
        # gold lists several answers (any order), the answer wrote them as a tuple
        return self._collections(g, Node("several", items=a.items), tol=tol)

    def _seqs(self, g: Node, a: Node, tol: Ctx) -> bool:
        if g.kind != "seq" or a.kind != "seq":
            # an interval against an inequality / membership
            gi, ai = self._as_intervals(g), self._as_intervals(a)
            if gi is not None and ai is not None:
                return self._interval_lists(gi, ai, tol)
            return False
        if len(g.items) != len(a.items):
            return False
        if len(g.items) == 2 or (self.options.answer_type or "").lower() == "interval":
            if _bracket(g.open) != _bracket(a.open) or _bracket(g.close) != _bracket(a.close):
                return False
        return all(self.node_equal(x, y, tol) for x, y in zip(g.items, a.items))

    def _unions(self, g: Node, a: Node, tol: Ctx) -> bool:
        gi, ai = self._as_intervals(g), self._as_intervals(a)
        if gi is None or ai is None:
            if g.kind == "union" and a.kind == "union":
                return self._collections(Node("several", items=g.items), Node("several", items=a.items), tol=tol)
            return False
        return self._interval_lists(gi, ai, tol)

    def _interval_lists(self, gi: list[Node], ai: list[Node], tol: Ctx) -> bool:
        return self._collections(Node("several", items=gi), Node("several", items=ai), tol=tol)

    def _as_intervals(self, node: Node) -> list[Node] | None:
        """A union / interval / inequality / membership as a list of interval `seq` nodes."""
        if node.kind == "seq" and len(node.items) == 2 and node.open in "([" and node.close in ")]":
            return [node]
        if node.kind == "relation":
            if node.ops == ["in"] and _is_name(node.items[0]):
                return self._as_intervals(node.items[1])
            return _inequality_interval(node)
        if node.kind in ("union", "several"):
            out = []
            for item in node.items:
                part = self._as_intervals(item)
                if part is None:
                    return None
                out.extend(part)
            return out
        return None

    def _matrices(self, g: Node, a: Node, tol: Ctx) -> bool:
        if g.kind == "matrix" and a.kind == "matrix":
            if (g.rows, g.cols) != (a.rows, a.cols):
                return False
            return all(self.node_equal(x, y, tol) for x, y in zip(g.items, a.items))
        matrix, other = (g, a) if g.kind == "matrix" else (a, g)
        cells = _matrix_cells(other, matrix.rows, matrix.cols)
        if cells is not None:
            pairs = zip(matrix.items, cells) if matrix is g else zip(cells, matrix.items)
            return all(self.node_equal(x, y, tol) for x, y in pairs)
        if other.kind == "scalar" and self.use_sympy:
            return self.leaf_equal(_matrix_latex(g) if g.kind == "matrix" else g.text, _matrix_latex(a) if a.kind == "matrix" else a.text, tol)
        return False

    def _relations(self, g: Node, a: Node, tol: Ctx) -> bool:
        g_rel, a_rel = g.kind == "relation", a.kind == "relation"
        if g_rel and a_rel:
            g_eq, a_eq = _equation_like(g), _equation_like(a)
            if g_eq and a_eq:
                g_assign, a_assign = _is_assignment(g), _is_assignment(a)
                if g_assign and a_assign:
                    return self._names_equal(g.items[0].text, a.items[0].text) and self.node_equal(g.items[-1], a.items[-1], tol)
                g_tuple, a_tuple = _tuple_assignment(g), _tuple_assignment(a)
                if g_tuple and a_tuple:
                    return self._tuple_assignments(g_tuple, a_tuple, tol)
                if len(g.items) == 2 and len(a.items) == 2 and all(i.kind == "scalar" for i in g.items + a.items):
                    if g.items[0].text == a.items[0].text:
                        if self.node_equal(g.items[1], a.items[1], tol):
                            return True
                    if all(parse_number(i.text) is not None for i in g.items + a.items):
                        return self._sides_equal(g, a, tol)  # `1 = 2` is not `1 = 3`: sides, never truth values
                    self._need_sympy()
                    from qvq_ray.verify import symbolic

                    return symbolic.equations_equal(
                        _leaf_text(g.items[0]), _leaf_text(g.items[1]), _leaf_text(a.items[0]), _leaf_text(a.items[1])
                    )
                return False
            if g.ops == ["in"] or a.ops == ["in"]:
                if g.ops == a.ops == ["in"]:
                    return self._names_equal(g.items[0].text, a.items[0].text) and self.node_equal(g.items[1], a.items[1], tol)
                gi, ai = self._as_intervals(g), self._as_intervals(a)
                return gi is not None and ai is not None and self._interval_lists(gi, ai, tol)
            if _inequality_like(g) and _inequality_like(a):
                gi, ai = _inequality_interval(g), _inequality_interval(a)
                if gi is not None and ai is not None:
                    return _same_variable(g, a) and self._interval_lists(gi, ai, tol)
                if len(g.items) == 2 and len(a.items) == 2 and all(i.kind == "scalar" for i in g.items + a.items):
                    self._need_sympy()
                    from qvq_ray.verify import symbolic

                    return symbolic.inequalities_equal(
                        _leaf_text(g.items[0]), g.ops[0], _leaf_text(g.items[1]), _leaf_text(a.items[0]), a.ops[0], _leaf_text(a.items[1])
                    )
                return False
            return False
        if g_rel:
            if _is_assignment(g) or _is_membership(g) or _value_statement(g):
                return self.node_equal(g.items[-1], a, tol)
            gi, ai = self._as_intervals(g), self._as_intervals(a)
            return gi is not None and ai is not None and self._interval_lists(gi, ai, tol)
        # the answer is a relation, the gold is not
        if _is_assignment(a) or _is_membership(a) or (_equation_like(a) and _is_closed(a.items[0])) or _value_statement(a):
            return self.node_equal(g, a.items[-1], tol)
        gi, ai = self._as_intervals(g), self._as_intervals(a)
        return gi is not None and ai is not None and self._interval_lists(gi, ai, tol)

    def _sides_equal(self, g: Node, a: Node, tol: Ctx) -> bool:
        """Two equations of numbers are the same when their sides are, in either order."""
        (gl, gr), (al, ar) = g.items, a.items
        same = self.node_equal(gl, al, tol) and self.node_equal(gr, ar, tol)
        return same or self.node_equal(gl, ar, tol) and self.node_equal(gr, al, tol)

    def _tuple_assignments(self, g: tuple[list[Node], Node], a: tuple[list[Node], Node], tol: Ctx) -> bool:
        """`(x, y) = (1, 2)` against `(y, x) = (2, 1)`: by name when both name the same unknowns,
        else the values in order (another choice of letters is notation)."""
        (g_names, g_values), (a_names, a_values) = g, a
        g_keys, a_keys = [_name_key(n.text) for n in g_names], [_name_key(n.text) for n in a_names]
        if sorted(g_keys) == sorted(a_keys) and len(set(g_keys)) == len(g_keys):
            by_name = dict(zip(a_keys, a_values.items))
            return all(self.node_equal(v, by_name[k], tol) for k, v in zip(g_keys, g_values.items))
        return self.node_equal(g_values, a_values, tol)

    def _ratios(self, g: Node, a: Node, tol: Ctx) -> bool:
        """Ratios are equal when proportional (`1:2` is `2:4`, `1:\\sqrt{3}` is `\\sqrt{3}:3`); a
        two-part ratio against one value is its quotient (`3:4` is `0.75`)."""
        if g.kind == a.kind == "ratio":
            if len(g.items) != len(a.items) or any(i.kind != "scalar" for i in g.items + a.items):
                return False
            exact = _proportional_numbers([i.text for i in g.items], [i.text for i in a.items])
            if exact is not None:
                return exact
            g0, a0 = g.items[0].text, a.items[0].text
            return all(self.leaf_equal(_quotient(x.text, g0), _quotient(y.text, a0), tol) for x, y in zip(g.items[1:], a.items[1:]))
        ratio, other = (g, a) if g.kind == "ratio" else (a, g)
        if len(ratio.items) != 2 or other.kind != "scalar" or any(i.kind != "scalar" for i in ratio.items):
            return False
        quotient = _quotient(ratio.items[0].text, ratio.items[1].text)
        return self.leaf_equal(quotient, other.text, tol) if ratio is g else self.leaf_equal(other.text, quotient, tol)

    def _names_equal(self, x: str, y: str) -> bool:
        if _name_key(x) == _name_key(y):
            return True
        if not self.use_sympy:
            return False
        from qvq_ray.verify import symbolic

        return symbolic.names_equal(x, y)

    def _need_sympy(self) -> None:
        if not self.use_sympy:
            raise NeedsSympy()

    # -- leaves

    def leaf_equal(self, g_text: str, a_text: str, ctx: Ctx) -> bool:
        tol = ctx.tolerance
        if g_text == a_text and tol is None and self.options.precision is None:
            return True
        gq, aq = split_quantity(g_text), split_quantity(a_text)
        if not braces_balanced(gq.value) or not braces_balanced(aq.value):
            return _compact(g_text) == _compact(a_text)
        problem_unit = self._problem_unit(ctx.unit)
        if prefixed_apart(gq.label or (ctx.unit if not problem_unit else None), aq.label):
            return False  # `5 kpc` is not `5 pc`, though neither is a unit we convert
        scale = Fraction(1)
        # units (see `units`: what a missing unit means)
        g_unit = gq.unit or problem_unit
        a_unit = aq.unit
        if gq.unit and not aq.unit and not problem_unit:
            if self.options.missing_unit != "assume_gold":
                return False
            a_unit = gq.unit
        if a_unit and g_unit and a_unit != g_unit:
            ratio = self._unit_ratio(a_unit, g_unit)
            if ratio is None:
                return False
            scale = ratio
        gn, an = _plain_value(gq.value), _plain_value(aq.value)
        for factor, mode in self._readings(gq, aq):
            total = scale * factor
            if gn is not None and an is not None and mode == "plain":
                if numbers_equal(gn, an, tolerance=tol, precision=self.options.precision, scale=total):
                    return True
                continue
            self._need_sympy()
            import sympy

            from qvq_ray.verify import symbolic

            sym_scale = sympy.Rational(total.numerator, total.denominator)
            if mode == "answer_degrees":
                sym_scale = sym_scale * sympy.pi / 180
            try:
                if symbolic.scalars_equal(
                    gq.value,
                    aq.value,
                    gold_number=gn,
                    answer_number=an,
                    tolerance=tol,
                    precision=self.options.precision,
                    answer_scale=None if sym_scale == 1 else sym_scale,
                    radians_of_gold_degrees=mode == "gold_degrees",
                ):
                    return True
            except symbolic.ParseError:
                return False  # unreadable as math and not equal as text
        return False

    def _readings(self, gq: Quantity, aq: Quantity) -> list[tuple[Fraction, str]]:
        """How to read % and degree signs present on one side only, as (answer factor, mode).

        `60%` against `0.6` (ratio) or `60` (the other side left the sign out, for whole numbers
        or a problem unit of %); `30°` against `30`, or against `\\frac{\\pi}{6}` (radians).
        """
        if gq.percent == aq.percent:
            factors = [Fraction(1)]
        elif aq.percent:
            factors = [Fraction(1, 100)] + ([Fraction(1)] if self._label_reading_ok(gq.value) else [])
        else:
            factors = [Fraction(100)] + ([Fraction(1)] if self._label_reading_ok(aq.value) else [])
        modes = ["plain"]
        if gq.degree and not aq.degree and "\\pi" in aq.value:
            modes.append("gold_degrees")
        if aq.degree and not gq.degree and "\\pi" in gq.value:
            modes.append("answer_degrees")
        return [(f, m) for f in factors for m in modes]

    def _label_reading_ok(self, value: str) -> bool:
        number = parse_number(value)
        unit = (self.options.unit or "").replace("\\", "").replace("$", "").strip()
        if unit in ("%", "percent"):
            return True
        return number is not None and not number.infinite and number.exact.denominator == 1 and abs(number.exact) > 1

    def _problem_unit(self, unit: str | None) -> str | None:
        if not unit:
            return None
        text = normalize_answer(unit).strip()
        text = re.sub(r"^\^?\s*\{?\s*\\circ\s*\}?$", "", text)
        if not text or text in ("%", "\\%"):
            return None
        tokens = parse_unit_tokens(text)
        if tokens is None:
            return None
        return " ".join(t if p == 1 else f"{t}^{{{p}}}" for t, p in tokens)

    def _unit_ratio(self, answer_unit: str, gold_unit: str) -> Fraction | None:
        """answer-unit / gold-unit, None when the dimensions differ."""
        self._need_sympy()
        from qvq_ray.verify.units import unit_scale

        a_scale, a_dims = unit_scale(answer_unit)
        g_scale, g_dims = unit_scale(gold_unit)
        if a_dims != g_dims:
            return None
        ratio = a_scale / g_scale
        return Fraction(int(ratio.p), int(ratio.q))


# ---------------------------------------------------------------- helpers


def _plain_value(text: str) -> Number | None:
    """The number a leaf writes, or the exact value of its school arithmetic (`\\frac{3}{4}+1`,
    `2^{3}`, `\\sqrt{16}`, `(2+3) \\cdot 4`), read in-process (`arithmetic.evaluate`): the same
    value the worker's sympy computes, without the round trip. Irrational values (`\\pi`,
    `\\sqrt{2}`) are left to sympy, whose 30 digits the rules for approximations expect."""
    number = parse_number(text)
    if number is not None or not text or text.isalpha():
        return number
    value = evaluate(text)
    return Number(value) if isinstance(value, Fraction) else None


def _items(node: Node) -> list[Node]:
    if node.kind in ("several", "set"):
        out: list[Node] = []
        for item in node.items:
            item = _expand_pm(item)
            out.extend(item.items if item.kind == "several" else [item])
        return out
    return [node]


def _dedupe(items: list[Node]) -> list[Node]:
    seen = set()
    out = []
    for item in items:
        key = repr(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _expand_pm(node: Node) -> Node:
    """A scalar (or an assignment's right side) with one `\\pm` becomes two answers."""
    if node.kind == "scalar":
        variants = expand_plus_minus(node.text)
        if variants:
            return Node("several", items=[Node("scalar", text=v) for v in variants])
    if node.kind == "relation" and _is_assignment(node) and node.items[-1].kind == "scalar":
        variants = expand_plus_minus(node.items[-1].text)
        if variants:
            lhs = node.items[0]
            return Node(
                "several",
                items=[Node("relation", items=[lhs, Node("scalar", text=v)], ops=["="], text="") for v in variants],
            )
    return node


def _bracket(b: str) -> str:
    return "(" if b in ("(", "<") else ")" if b in (")", ">") else b


_NAME_ATOM = (
    r"(?:[A-Za-z]|\\(?:alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|xi|"
    r"pi|rho|sigma|tau|upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Pi|Sigma|Phi|Psi|Omega|hbar|ell)"
    r"|\\(?:angle|triangle|overline|vec|bar|hat|tilde|overrightarrow|mathrm|text|mathbf|operatorname)\s*\{?[^{}=]{0,20}\}?)"
    r"(?:\s*_\s*(?:\{[^{}]{0,30}\}|[A-Za-z0-9])|\s*\^\s*(?:\{\\prime\}|\\prime|\{\s*\*\s*\})|')*"
)
_NAME = re.compile(rf"\s*{_NAME_ATOM}(?:\s*{_NAME_ATOM}){{0,3}}\s*(?:\([^()]{{0,60}}\))?\s*")


def _is_name(node: Node) -> bool:
    """`x`, `a_n`, `\\angle ABC`, `f(x)`, `\\text{area}`: what a left side names (a text node too)."""
    return node.kind in ("scalar", "text") and bool(_NAME.fullmatch(node.text)) and not re.fullmatch(r"\s*\d.*", node.text)


def _equation_like(node: Node) -> bool:
    return node.kind == "relation" and all(op in ("=", "~") for op in node.ops)


def _inequality_like(node: Node) -> bool:
    return node.kind == "relation" and all(op in ("<", "<=", ">", ">=") for op in node.ops)


def _is_assignment(node: Node) -> bool:
    """`x = 2`, `\\angle A = 30^\\circ`, `AB:BC = 2:1`: a name (or a ratio of names) set to a value."""
    if not _equation_like(node):
        return False
    lhs = node.items[0]
    return _is_name(lhs) or lhs.kind == "ratio" and all(_is_name(i) for i in lhs.items)


def _value_statement(node: Node) -> bool:
    """`G+J = 6`, `AB + CD = 10`, `x y = 3`: an equation whose left side combines names only (no
    number) and whose right side is a closed value: it states the value of what was asked
    (MATH-V 1848, "what is the value of G+J?"). `x + 1 = 6` (a number on the left) is an equation
    to solve, not a value."""
    if not _equation_like(node) or len(node.items) < 2 or node.items[0].kind != "scalar" or not _is_closed(node.items[-1]):
        return False
    lhs = node.items[0].text
    if re.search(r"\d", lhs):
        return False
    terms = [t for t in re.split(r"\s*(?:[-+*/]|\\cdot|\\times)\s*", lhs.strip()) if t.strip()]
    return len(terms) >= 1 and all(_is_name(Node("scalar", text=t)) for t in terms)


# `X / Y` with spaces around the slash: a list of answers where the gold has as many (`E / B` for
# OlympiadBench's two answers `E, B`); never split when every part is a number (`3 / 5` is a ratio).
_SPACED_SLASH = re.compile(r"\s+/\s+")


def _slash_list(node: Node, n: int) -> list[Node] | None:
    if node.kind != "scalar" or not _SPACED_SLASH.search(node.text):
        return None
    parts = [p.strip() for p in split_top_level(node.text, ("/",))]
    if len(parts) != n or not all(parts) or len(_SPACED_SLASH.findall(node.text)) != n - 1:
        return None
    if all(parse_number(split_quantity(p).value) is not None for p in parts):
        return None
    return [parse_structure(p, normalized=True) for p in parts]


def _tuple_assignment(node: Node) -> tuple[list[Node], Node] | None:
    """(names, values) of `(a, b) = (1, 2)`: a tuple of names set equal to a tuple as long; else None."""
    if not _equation_like(node) or len(node.items) != 2:
        return None
    names, values = node.items
    if names.kind != "seq" or values.kind != "seq" or len(names.items) != len(values.items):
        return None
    return (names.items, values) if all(_is_name(n) for n in names.items) else None


def _untuple(node: Node, other: Node) -> Node:
    """`(a, b) = (1, 2)` as what the other side can be compared with: its values `(1, 2)`, or the
    assignments `a = 1, b = 2` when the other side lists assignments; kept when both are such."""
    found = _tuple_assignment(node)
    if found is None or _tuple_assignment(other) is not None:
        return node
    names, values = found
    if other.kind == "several" and all(_is_assignment(i) for i in other.items):
        return Node("several", items=[Node("relation", items=[n, v], ops=["="], text="") for n, v in zip(names, values.items)])
    return values


def _named_in_order(g_items: list[Node], a_items: list[Node]) -> bool:
    """Gold items that name distinct unknowns (`m=2, n=3`) answered with bare values: the values
    come in the gold's order (the question's), not matched in any order."""
    if len(g_items) < 2 or not all(_is_assignment(i) for i in g_items) or any(i.kind == "relation" for i in a_items):
        return False
    return len({_name_key(i.items[0].text) for i in g_items}) == len(g_items)


def _same_time(x: str, y: str) -> bool:
    """Two clock times: equal times of day; where one side gives no AM/PM, on a 12-hour dial."""
    (tx, mx), (ty, my) = clock_time(x), clock_time(y)
    if (mx is None) != (my is None):
        return tx % (12 * 3600) == ty % (12 * 3600)
    return tx == ty


def _clock_as_ratio(node: Node) -> Node | None:
    """A `clock` node that can be read as a ratio (`5:19`) as one, other nodes as they are; None for
    a time no ratio writes (`4:30 PM`, `9 o'clock`, `9:05:30`)."""
    if node.kind != "clock":
        return node
    m = re.fullmatch(r"\s*(\d{1,2})\s*:\s*(\d{2})\s*", node.text)
    if m is None:
        return None
    return Node("ratio", items=[Node("scalar", text=m.group(1)), Node("scalar", text=m.group(2))], text=node.text)


def _proportional_numbers(gs: list[str], as_: list[str]) -> bool | None:
    """Whether two ratios of plain numbers are proportional (exact: cross products, zeros where the
    other has zeros); None when a part is no plain number."""
    g_values, a_values = [parse_number(x) for x in gs], [parse_number(x) for x in as_]
    g_numbers = [v for v in g_values if v is not None and not v.infinite]
    a_numbers = [v for v in a_values if v is not None and not v.infinite]
    if len(g_numbers) != len(g_values) or len(a_numbers) != len(a_values):
        return None
    g, a = [v.exact for v in g_numbers], [v.exact for v in a_numbers]
    if any((x == 0) != (y == 0) for x, y in zip(g, a)):
        return False
    k = next((i for i, x in enumerate(g) if x != 0), None)
    return k is None or all(g[i] * a[k] == a[i] * g[k] for i in range(len(g)))


def _quotient(numerator: str, denominator: str) -> str:
    return f"\\frac{{{numerator}}}{{{denominator}}}"


def _matrix_cells(node: Node, rows: int, cols: int) -> list[Node] | None:
    """The cells of a matrix written as a list: `[[1, 2], [3, 4]]` row by row, or a vector's
    `(1, 2)`; None when the shape differs."""
    if node.kind != "seq":
        return None
    if min(rows, cols) == 1 and len(node.items) == rows * cols and all(i.kind != "seq" for i in node.items):
        return node.items
    if len(node.items) != rows or not all(r.kind == "seq" and len(r.items) == cols for r in node.items):
        return None
    return [cell for row in node.items for cell in row.items]


def _is_membership(node: Node) -> bool:
    return node.kind == "relation" and node.ops == ["in"] and _is_name(node.items[0])


def _is_closed(node: Node) -> bool:
    """No letters outside LaTeX commands: `2+3`, `\\frac{1}{2}`."""
    if node.kind != "scalar":
        return False
    stripped = re.sub(r"\\[A-Za-z]+", "", node.text)
    return not re.search(r"[A-Za-z]", stripped)


def _name_key(s: str) -> str:
    s = re.sub(r"\\(?:mathrm|text|mathit|mathbf|operatorname)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"_\{\s*([A-Za-z0-9])\s*\}", r"_\1", s)
    s = re.sub(r"\s+", "", s)
    return s.casefold()


def _leaf_text(node: Node) -> str:
    return node.text


def _same_variable(g: Node, a: Node) -> bool:
    gv, av = _inequality_variable(g), _inequality_variable(a)
    return gv is None or av is None or _name_key(gv) == _name_key(av)


def _inequality_variable(node: Node) -> str | None:
    names = [i.text for i in node.items if _is_name(i)]
    return names[0] if len(names) == 1 else None


def _inequality_interval(node: Node) -> list[Node] | None:
    """`x > 2` -> [(2, \\infty)], `1 < x \\le 3` -> [(1, 3]], `3 \\ge x` -> [(-\\infty, 3]]; else None."""
    if not _inequality_like(node):
        return None
    items, ops = node.items, node.ops
    if any(i.kind != "scalar" for i in items):
        return None
    name_positions = [k for k, i in enumerate(items) if _is_name(i)]
    if len(name_positions) != 1:
        return None
    k = name_positions[0]
    if len(items) == 2:
        op = ops[0]
        if k == 1:  # c < x  ->  x > c
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
        bound = items[1 - k]
        if op in (">", ">="):
            return [_interval(bound.text, "\\infty", op == ">=", False)]
        return [_interval("-\\infty", bound.text, False, op == "<=")]
    if len(items) == 3 and k == 1:
        if all(op in ("<", "<=") for op in ops):
            return [_interval(items[0].text, items[2].text, ops[0] == "<=", ops[1] == "<=")]
        if all(op in (">", ">=") for op in ops):
            return [_interval(items[2].text, items[0].text, ops[1] == ">=", ops[0] == ">=")]
    return None


def _interval(lo: str, hi: str, lo_closed: bool, hi_closed: bool) -> Node:
    return Node(
        "seq",
        items=[Node("scalar", text=lo), Node("scalar", text=hi)],
        open="[" if lo_closed else "(",
        close="]" if hi_closed else ")",
    )


def _matrix_latex(node: Node) -> str:
    rows = []
    for r in range(node.rows):
        rows.append(" & ".join(item.text for item in node.items[r * node.cols : (r + 1) * node.cols]))
    return "\\begin{pmatrix}" + " \\\\ ".join(rows) + "\\end{pmatrix}"


# ---------------------------------------------------------------- gold-free parse check


def answer_parses(answer: str | None, options: Options | None = None, *, use_sympy: bool) -> bool:
    """Whether an answer is something we can read: an option, text, a number, a structure of
    those, or LaTeX latex2sympy parses. Without sympy, raises `NeedsSympy` for leaves only sympy
    can check (`unparseable` is a gold-free issue: the solver re-samples on it)."""
    if not answer:
        return False
    a = normalize_answer(answer)
    if not a or len(a) > MAX_SYMBOLIC_CHARS or nesting_depth(a) > MAX_NESTING or not braces_balanced(a):
        return False
    n = len(options.choices) if options and options.choices else None
    if choice_letter(a, n) is not None:
        return True
    return _node_parses(parse_structure(a, normalized=True), use_sympy)


def _node_parses(node: Node, use_sympy: bool) -> bool:
    if node.kind == "text":
        return True
    if node.kind == "scalar":
        q = split_quantity(node.text)
        if not q.value.strip():
            return False
        if _plain_value(q.value) is not None or _is_name(Node("scalar", text=q.value)) and len(q.value) <= 2:
            return True
        variants = expand_plus_minus(q.value) or [q.value]
        if not use_sympy:
            raise NeedsSympy()
        from qvq_ray.verify import symbolic

        return all(symbolic.parses(v) for v in variants)
    if node.kind in ("several", "set", "seq", "union", "matrix", "relation"):
        if not node.items:
            return node.kind == "set"
        return all(_node_parses(item, use_sympy) for item in node.items)
    return False
