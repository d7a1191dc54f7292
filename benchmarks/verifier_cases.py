"""Generated verifier cases from the shared golds: perturbed WRONG values, and golds written with units.

Two targets of issue 11, measured by `benchmarks/verifier.py` (and asserted by
tests/test_verify_generated.py):

- **0 wrong values accepted from the parsing causes.** `perturbed_cases` takes every free-form gold
  of the shared data (MATH-V test 3,040 problems, MathVista testmini 1,000, the OlympiadBench
  sample) and writes WRONG values the way parsing goes astray: one digit changed by one (at the
  leading digit when the problem has a tolerance, so the change exceeds it), one symbol's case
  swapped (`2\\pi r` -> `2\\pi R`, `\\gamma` -> `\\Gamma`), `i` written `I`, the unit given another
  prefix (`m/s` -> `km/s`), an integer written with a space as thousands separator and a digit
  changed (`34 427` for 34426) or scaled by a thousand (`20 000` for 20), juxtaposed parts that
  add or multiply up to the gold (`(1) 20` for 21, `2 3` for 6 and 5), plus fixed constant
  confusions (`\\gamma` for 0.5772..., `I` for `i`, `E` for `e`), and the fixed wrong values of
  issue 21 (`FIXED_WRONG`): a unit prefix (`5 mrad` for 5 rad, `12 km` for 12 m, `3 kpc` for 3 pc),
  false equations (`1 = 2` for the gold `1 = 3`), clock times, ratios, `name = value` tuples,
  matrices, decimal commas and temperatures. Deterministic: one `random.Random(SEED)` drives every
  choice.
- **OlympiadBench gold-with-unit >= 99%.** `unit_cases` writes each OlympiadBench gold back with
  its unit as a model would: plain (`13.1 m/s`), `\\mathrm{m/s}`, `\\text{ m/s}`, OlympiadBench's
  own `\\mathrm{~m} / \\mathrm{s}`, after a thin space `\\,\\mathrm{m/s}`, compound `\\mathrm{m \\cdot s^{-1}}`
  and `~\\mathrm{m\\,s^{-1}}`, unit words (`meters per
  second`) for English problems and Chinese unit names (`米/秒`) for Chinese ones; a per-answer
  unit (`,kg`) goes on its answer only. A gold without a unit is written as it is.

Each case: {"family", "source", "id", "gold", "answer", "spec"}; the answer goes in a QVQ-style
`\\boxed{}` and is checked against the gold under the problem's own `AnswerSpec`.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.shared_data import shared_data  # noqa: E402

SEED = 11

# ---------------------------------------------------------------- golds


def gold_problems() -> list[tuple[str, object]]:
    """(source, Problem) of every gold the shared data holds, through our loaders: MATH-V test
    (model_outputs/mathvision/test.jsonl), MathVista testmini (the problems inside
    model_outputs/mathvista/output_claude.json), OlympiadBench (olympiadbench/data); a source
    that is absent is left out (the reason printed)."""
    from qvq_ray.datasets import load_problems, mathvision, mathvista
    from qvq_ray.problem import Problem

    out: list[tuple[str, object]] = []
    root = shared_data("model_outputs")
    if root is not None:
        test = root / "mathvision" / "test.jsonl"
        for line in test.read_text(encoding="utf-8").splitlines() if test.is_file() else []:
            row = json.loads(line)
            out.append(("mathvision", mathvision.row_to_problem(row, root=root / "mathvision", ref=row["id"])))
        vista = root / "mathvista" / "output_claude.json"
        if vista.is_file():
            for pid, row in json.loads(vista.read_text(encoding="utf-8")).items():
                out.append(("mathvista", mathvista.row_to_problem(row, key=pid, ref=pid, image_base=(None, vista.parent))))
    olympiad = shared_data("olympiadbench")
    if olympiad is not None:
        out.extend(("olympiadbench", p) for p in load_problems(olympiad))
    return [(source, p) for source, p in out if isinstance(p, Problem) and p.answer]


def _bare(gold: str) -> str:
    return gold.replace("$", "").strip()


# ---------------------------------------------------------------- perturbed wrong values

_DIGIT = re.compile(r"\d")
_SUBSCRIPT_SPAN = re.compile(r"_\{[^{}]*\}|_[A-Za-z0-9]")
_COMMAND_SPAN = re.compile(r"\\[A-Za-z]+|\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}|\\operatorname\{[^{}]*\}")
_GREEK_CASE = {
    "\\gamma": "\\Gamma", "\\Gamma": "\\gamma", "\\omega": "\\Omega", "\\Omega": "\\omega", "\\phi": "\\Phi",
    "\\Phi": "\\phi", "\\theta": "\\Theta", "\\Theta": "\\theta", "\\lambda": "\\Lambda", "\\delta": "\\Delta",
    "\\Delta": "\\delta", "\\sigma": "\\Sigma", "\\psi": "\\Psi", "\\pi": "\\Pi",
}
_PREFIXED = {"m": "km", "s": "ms", "g": "kg", "kg": "g", "J": "kJ", "N": "kN", "Hz": "kHz", "K": "mK", "W": "kW",
             "V": "mV", "A": "mA", "cm": "mm", "mm": "cm", "km": "m", "Pa": "kPa", "C": "mC", "T": "mT", "rad": "mrad"}
# Fixed confusions of constants and symbols: (gold, wrong answer)
CONSTANTS = [
    ("0.5772156649", "\\gamma"),
    ("\\gamma", "0.5772156649"),
    ("\\gamma", "\\Gamma"),
    ("i", "I"),
    ("-1", "I^{2}"),
    ("3+4i", "3+4I"),
    ("e", "E"),
    ("2.718281828", "E"),
    ("e^{2}", "E^{2}"),
    ("\\pi r^{2}", "\\pi R^{2}"),
    ("2 \\pi R", "2 \\pi r"),
    ("0", "20 000"),
    ("20", "20 000"),
    ("21 \\mathrm{~cm}", "(1) 20 \\mathrm{~cm}"),
    ("E / B", "B / E"),
]


# Fixed wrong values (issue 21): (family, gold, wrong answer, AnswerSpec keywords). A prefix is part
# of the quantity; an equation is compared by its sides, never by its truth value; a clock time is
# a time; ratios, tuples, matrices are values.
FIXED_WRONG = [
    ("unit_prefix", "5", "5 \\mathrm{mrad}", {"unit": "rad"}),
    ("unit_prefix", "5", "5 \\mathrm{krad}", {"unit": "rad"}),
    ("unit_prefix", "2.5 \\mathrm{rad}", "2.5 \\mathrm{mrad}", {}),
    ("unit_prefix", "0.3", "0.3 \\mathrm{~mrad}", {"unit": "\\mathrm{rad}"}),
    ("unit_prefix", "7 \\mathrm{rad/s}", "7 \\mathrm{mrad/s}", {}),
    ("unit_prefix", "12", "12 \\mathrm{km}", {"unit": "m"}),
    ("unit_prefix", "12 \\mathrm{~m}", "12 \\mathrm{~km}", {}),
    ("unit_prefix", "3 pc", "3 kpc", {}),
    ("unit_prefix", "3", "3 kpc", {"unit": "pc"}),
    ("unit_prefix", "1000", "1000 \\frac{\\mathrm{g}}{\\mathrm{m}^{3}}", {"unit": "\\frac{\\mathrm{kg}}{\\mathrm{m}^{3}}"}),
    ("unit_prefix", "60", "60 米/时", {"unit": "千米/时"}),
    ("unit_prefix", "5千克", "5克", {}),
    ("false_equation", "1 = 3", "1 = 2", {}),
    ("false_equation", "2 = 2", "3 = 3", {}),
    ("false_equation", "0 = 1", "1 = 2", {}),
    ("false_equation", "\\sqrt{2} = 1", "\\sqrt{3} = 1", {}),
    ("false_equation", "x + 1 = x + 3", "y + 1 = y + 2", {}),
    ("false_equation", "x = x + 1", "x = x + 2", {}),
    ("clock", "10:30", "10:45", {}),
    ("clock", "6:00", "3:00", {}),
    ("clock", "12:00", "1:00", {}),
    ("clock", "4:30 PM", "4:30 AM", {}),
    ("ratio", "1:2", "2:1", {}),
    ("ratio", "1:2:3", "1:2:4", {}),
    ("tuple", "(a,b)=(1,2)", "(2,1)", {}),
    ("tuple", "(x, y) = (3, -1)", "x = -1, y = 3", {}),
    ("tuple", "m=2, n=3", "3, 2", {}),
    ("matrix", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "[[1,2],[4,3]]", {}),
    ("decimal_comma", "3,5", "3.6", {}),
    ("temperature", "25^{\\circ} \\mathrm{C}", "25 \\mathrm{K}", {}),
    ("temperature", "25", "26 ^{\\circ}C", {"unit": "^{\\circ} \\mathrm{C}"}),
]


def perturbed_cases(problems: list[tuple[str, object]] | None = None, seed: int = SEED) -> list[dict]:
    """Wrong values for every free-form gold (see the module doc), deterministic for a seed."""
    from qvq_ray.verify.spec import AnswerSpec

    problems = gold_problems() if problems is None else problems
    rng = random.Random(seed)
    cases: list[dict] = []
    for source, p in problems:
        if p.spec.choices:
            continue  # multiple choice: the answer names an option, there is no value to perturb
        gold = p.answer
        bare = _bare(gold)
        for family, answer in _perturbations(bare, p, rng):
            if answer and _squash(answer) != _squash(bare):
                cases.append({"family": family, "source": source, "id": str(p.id), "gold": gold, "answer": answer, "spec": p.spec})
    for gold, answer in CONSTANTS:
        cases.append({"family": "constant", "source": "fixed", "id": gold, "gold": gold, "answer": answer, "spec": AnswerSpec()})
    for family, gold, answer, spec in FIXED_WRONG:
        cases.append({"family": family, "source": "fixed", "id": gold, "gold": gold, "answer": answer, "spec": AnswerSpec(**spec)})
    return cases


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _perturbations(bare: str, p, rng: random.Random) -> list[tuple[str, str]]:
    from qvq_ray.verify.numbers import parse_number
    from qvq_ray.verify.units import split_quantity

    out: list[tuple[str, str]] = []
    has_tolerance = any(t for t in (p.spec.tolerance or []))
    if _is_words(bare):
        return out
    digit = _change_digit(bare, rng, leading=has_tolerance or p.spec.precision is not None)
    if digit:
        out.append(("digit", digit))
    case = _swap_case(bare, rng)
    if case:
        out.append(("case", case))
    if re.search(r"(?<![A-Za-z\\])i(?![A-Za-z])", bare):
        out.append(("imaginary_I", re.sub(r"(?<![A-Za-z\\])i(?![A-Za-z])", "I", bare)))
    prefixed = _change_prefix(bare, p.spec.unit)
    if prefixed:
        out.append(("unit_prefix", prefixed))
    q = split_quantity(bare)
    number = parse_number(q.value)
    if number is not None and not number.infinite and number.value.denominator == 1 and not number.decimal:
        n = int(number.value)
        unit = f" {q.unit}" if q.unit else ""
        if abs(n) >= 1000:
            spaced = _spaced(abs(n))
            positions = [k for k, c in enumerate(spaced) if c.isdigit()]
            k = positions[0] if has_tolerance else rng.choice(positions)
            changed = spaced[:k] + str((int(spaced[k]) + 1) % 10 or 1) + spaced[k + 1 :]
            out.append(("spaced_thousands", ("-" if n < 0 else "") + changed + unit))
        scaled = "20 000" if n == 0 else f"{n} 000"
        out.append(("spaced_thousands", scaled + unit))
        if n >= 2 and not any(t and t >= 1 for t in (p.spec.tolerance or [])):  # else n - 1 is within it
            out.append(("juxtaposed", f"(1) {n - 1}{unit}"))
            factor = next((a for a in range(2, int(n**0.5) + 1) if n % a == 0), None) if n < 10**6 else None
            out.append(("juxtaposed", f"{factor} {n // factor}{unit}" if factor else f"{n - 1} 1{unit}"))
    return out


def _is_words(s: str) -> bool:
    """A text answer (`Yes`, `quarter past`): no value to perturb."""
    return bool(re.fullmatch(r"[A-Za-z][A-Za-z .,'-]*", s)) and len(re.findall(r"[A-Za-z]", s)) >= 2 and " " in s or s.lower() in ("yes", "no", "true", "false")


def _protected(s: str, *, commands: bool = True) -> list[tuple[int, int]]:
    """Spans a perturbation must not touch: subscripts and the names before `=` (`F_n = 387`,
    `, M =`), and (with `commands`) LaTeX commands and text."""
    spans = [m.span() for m in _SUBSCRIPT_SPAN.finditer(s)]
    if commands:
        spans += [m.span() for m in _COMMAND_SPAN.finditer(s)]
    lhs = re.match(r"\s*([^=<>]{1,40}?)\s*=(?!=)", s)
    if lhs and not re.search(r"\d", lhs.group(1)):
        spans.append((0, lhs.end()))
    for m in re.finditer(r",\s*([A-Za-z\\][^=,]{0,30}?)\s*=", s):
        spans.append(m.span())
    return spans


def _inside(k: int, spans: list[tuple[int, int]]) -> bool:
    return any(a <= k < b for a, b in spans)


def _change_digit(s: str, rng: random.Random, *, leading: bool) -> str | None:
    """One digit changed by one, outside names and exponents (`1^{2}` -> `1^{3}` would be no change);
    the leading digit of the first number when the problem allows a tolerance or a precision (the
    change must exceed it)."""
    spans = _protected(s)
    spans += [m.span() for m in re.finditer(r"10\s*\^\s*\{[^{}]*\}|\^\s*\{[^{}]*\}|\^\s*\d", s)]  # exponents
    positions = [m.start() for m in _DIGIT.finditer(s) if not _inside(m.start(), spans)]
    if not positions:
        return None
    if leading:
        firsts = [k for k in positions if k == 0 or not (s[k - 1].isdigit() or s[k - 1] == ".")]
        k = firsts[0] if firsts else positions[0]
        while k + 1 < len(s) and s[k] == "0" and s[k + 1] in "0.":  # 0.0320: the first nonzero digit
            k += 1
            while k < len(s) and s[k] in ".0":
                k += 1
        if k >= len(s) or not s[k].isdigit():
            return None
    else:
        k = rng.choice(positions)
    d = int(s[k])
    lead = k == 0 or not s[k - 1].isdigit()
    new = d - 1 if d == 9 or (rng.random() < 0.5 and not (lead and d == 1 and k + 1 < len(s) and s[k + 1].isdigit())) else d + 1
    new = max(new, 0) if d != 0 else 1
    if new == d:
        new = d + 1
    return s[:k] + str(new) + s[k + 1 :]


def _swap_case(s: str, rng: random.Random) -> str | None:
    """One letter symbol (or Greek letter) in another case, outside names, commands and units."""
    from qvq_ray.verify.units import split_quantity

    q = split_quantity(s)
    value = q.value if q.unit and s.startswith(q.value) else s
    tail = s[len(value) :]
    spans = _protected(value)
    names = _protected(value, commands=False)
    greek = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\\[A-Za-z]+", value) if m.group() in _GREEK_CASE and not _inside(m.start(), names)]
    letters = [m.start() for m in re.finditer(r"(?<![\\A-Za-z])[A-Za-z](?![A-Za-z])", value) if not _inside(m.start(), spans)]
    options = [("letter", k) for k in letters] + [("greek", g) for g in greek]
    if not options:
        return None
    kind, where = rng.choice(options)
    if kind == "letter":
        k = where
        return value[:k] + value[k].swapcase() + value[k + 1 :] + tail
    a, b, name = where
    return value[:a] + _GREEK_CASE[name] + value[b:] + tail


def _change_prefix(s: str, unit: str | None) -> str | None:
    """The value with its unit (its own, or the problem's) given another SI prefix; None without one."""
    from qvq_ray.verify.units import parse_unit_tokens, split_quantity

    q = split_quantity(s)
    if q.unit and s.startswith(q.value):
        value, unit_text = q.value, q.unit
    elif unit and "," not in unit and not re.search(r"[\u4e00-\u9fff%]", unit):
        value, unit_text = s, unit
    else:
        return None
    tokens = parse_unit_tokens(unit_text)
    if not tokens or tokens[0][0] not in _PREFIXED:
        return None
    first, power = tokens[0]
    rest = tokens[1:]
    unit = _unit_text([(_PREFIXED[first], power)] + rest)
    return f"{value} \\mathrm{{{unit}}}"


def _unit_text(tokens: list[tuple[str, int]]) -> str:
    return " \\cdot ".join(t if p == 1 else f"{t}^{{{p}}}" for t, p in tokens)


def _spaced(n: int) -> str:
    return f"{n:,}".replace(",", " ")


# ---------------------------------------------------------------- golds written with their units

_WORDS = {"m": "meters", "s": "seconds", "kg": "kilograms", "g": "grams", "N": "newtons", "J": "joules",
          "W": "watts", "V": "volts", "A": "amperes", "Hz": "hertz", "K": "kelvin", "Pa": "pascals",
          "C": "coulombs", "T": "tesla", "\\Omega": "ohms", "km": "kilometers", "cm": "centimeters", "h": "hours"}
_CJK = {"m": "米", "s": "秒", "kg": "千克", "g": "克", "N": "牛", "J": "焦", "W": "瓦", "V": "伏", "A": "安",
        "Hz": "赫兹", "K": "开尔文", "Pa": "帕", "C": "库仑", "T": "特斯拉", "\\Omega": "欧", "km": "千米",
        "cm": "厘米", "h": "小时"}


def unit_cases(problems: list[tuple[str, object]] | None = None) -> list[dict]:
    """Every OlympiadBench gold written back with its unit in each spelling (see the module doc)."""
    problems = gold_problems() if problems is None else problems
    cases: list[dict] = []
    for source, p in problems:
        if source != "olympiadbench":
            continue
        parts = [_bare(a) for a in p.meta.get("final_answer") or [p.answer]]
        if len(parts) == 1 and "," in parts[0] and p.meta.get("is_multiple_answer"):
            parts = [x.strip() for x in parts[0].split(",")]
        units = _part_units(p.spec.unit, len(parts))
        split = [_value_and_unit(part, unit) for part, unit in zip(parts, units)]
        if not any(u for _, u in split):
            cases.append({"family": "no_unit", "source": source, "id": str(p.id), "gold": p.answer, "answer": ", ".join(parts), "spec": p.spec})
            continue
        seen: set[str] = set()
        for style in ("plain", "mathrm", "text", "thin_space", "olympiad", "compound", "compound_spaced", "words", "cjk"):
            if style == "words" and p.language == "zh" or style == "cjk" and p.language != "zh":
                continue
            written = [_with_unit(v, u, style) if u else v for v, u in split]
            if any(w is None for w in written):
                continue
            answer = ", ".join(written)
            if answer in seen:
                continue
            seen.add(answer)
            cases.append({"family": style, "source": source, "id": str(p.id), "gold": p.answer, "answer": answer, "spec": p.spec})
    return cases


def _part_units(unit: str | None, n: int) -> list[str | None]:
    if not unit:
        return [None] * n
    if "," in unit:
        units = [u.strip() or None for u in unit.split(",")]
        return (units + [None] * n)[:n]
    return [unit.strip()] * n


def _value_and_unit(part: str, unit: str | None) -> tuple[str, str | None]:
    """(value, unit): the problem's unit, or the unit the gold writes itself (`5 m/s`)."""
    from qvq_ray.verify.units import parse_unit_tokens, split_quantity

    if unit:
        return part, unit
    q = split_quantity(part)
    if q.unit and part.startswith(q.value) and parse_unit_tokens(q.unit):
        return q.value.strip(), part[len(q.value) :].strip()
    return part, None


def _with_unit(value: str, unit: str, style: str) -> str | None:
    from qvq_ray.verify.units import parse_unit_tokens

    if unit.strip() in ("%", "\\%"):
        return {"plain": f"{value}\\%", "mathrm": f"{value} \\%", "text": f"{value} \\text{{ percent}}",
                "words": f"{value} percent", "cjk": f"{value}\\%"}.get(style)
    tokens = parse_unit_tokens(unit)
    if not tokens:  # a unit we do not convert (千斤, 万): written as it is
        return {"plain": f"{value} {unit}", "text": f"{value} \\text{{{unit}}}", "cjk": f"{value}{unit}"}.get(style)
    num = [(t, p) for t, p in tokens if p > 0]
    den = [(t, -p) for t, p in tokens if p < 0]
    simple = _fraction_text(num, den)
    if style == "plain":
        return f"{value} {simple}"
    if style == "mathrm":
        return f"{value} \\mathrm{{{simple}}}"
    if style == "text":
        return f"{value} \\text{{ {simple}}}"
    if style == "olympiad":
        atoms = lambda ts: " \\cdot ".join(f"\\mathrm{{~{t}}}" + (f"^{{{p}}}" if p != 1 else "") for t, p in ts)  # noqa: E731
        return f"{value} {atoms(num)}" + (f" / {atoms(den)}" if den else "")
    if style == "thin_space":
        return f"{value}\\,\\mathrm{{{simple}}}"
    if style in ("compound", "compound_spaced"):
        if not den and len(num) == 1:
            return None  # the same as `mathrm`
        if style == "compound_spaced":  # `\mathrm{m\,s^{-1}}`
            spaced = "\\,".join(t if p == 1 else f"{t}^{{{p}}}" for t, p in tokens)
            return f"{value}~\\mathrm{{{spaced}}}"
        return f"{value} \\mathrm{{{_unit_text(tokens)}}}"
    names = _WORDS if style == "words" else _CJK
    if any(t not in names or abs(p) != 1 for t, p in tokens):
        return None
    if style == "words":
        text = " ".join(names[t] for t, _ in num) + "".join(f" per {names[t][:-1] if names[t].endswith('s') else names[t]}" for t, _ in den)
        return f"{value} \\text{{ {text}}}"
    return f"{value} " + "".join(names[t] for t, _ in num) + "".join(f"/{names[t]}" for t, _ in den)


def _fraction_text(num: list[tuple[str, int]], den: list[tuple[str, int]]) -> str:
    top = " ".join(t if p == 1 else f"{t}^{{{p}}}" for t, p in num) or "1"
    if not den:
        return top
    bottom = " ".join(t if p == 1 else f"{t}^{{{p}}}" for t, p in den)
    return f"{top}/{bottom}" if len(den) == 1 else f"{top}/({bottom})"


def summary_examples(cases: list[dict], accepted: list[bool], limit: int = 10) -> list[str]:
    """`family source#id: answer vs gold` for the first accepted cases (what a reader needs to judge)."""
    out = []
    for case, ok in zip(cases, accepted):
        if ok and len(out) < limit:
            out.append(f"{case['family']} {case['source']}#{case['id']}: {case['answer']!r} vs gold {case['gold']!r}")
    return out


if __name__ == "__main__":  # a look at what is generated
    problems = gold_problems()
    for case in perturbed_cases(problems)[:: max(1, len(problems) // 40)]:
        print(case["family"], case["source"], case["id"], repr(case["gold"]), "->", repr(case["answer"]))
    for case in unit_cases(problems):
        print(case["family"], case["id"], repr(case["gold"]), "->", repr(case["answer"]))
