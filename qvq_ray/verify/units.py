"""Physical units: split `0.5 kg` into value and unit, and convert units with `sympy.physics.units`.

Splitting (`split_quantity`) and recognising unit names are pure string work (safe in-process).
Conversion (`unit_scale`) builds the unit from an allowlist of `sympy.physics.units` attributes
(never `sympify` of text) and runs only in a verify worker.

What a missing unit means (the rule `equivalence` applies):

- the problem names a unit (`unit="m"`, OlympiadBench's and MathVista's `unit` field): the gold is
  in that unit and a bare number in the answer is read in it; an answer with a unit is converted;
- the gold writes its own unit (`0.64 N`) and the answer has none: not equal (the OlympiadBench
  judge's rule: `0.64` is not `0.64N`); `VerifierConfig.missing_unit="assume_gold"` reads the bare
  number in the gold's unit instead;
- the answer has a unit and the gold has none (and the problem names none): the numbers are
  compared as written;
- both have units: converted to SI; different dimensions are not equal (500 g is not 500 kg,
  0.5 kg is 500 g, 1 m is not 1 s).

Words that are not units we know (`5 apples`, `3 元`) are labels: ignored on either side.
A single lower-case letter glued to a number (`5m`, `3s`) is algebra, not a unit; with a space,
`\\,`, `\\text{}` or `\\mathrm{}` it is a unit (`5 m`, `3\\,\\mathrm{s}`); upper-case ones (`0.64N`) are units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from qvq_ray.verify.text import matching_brace

if TYPE_CHECKING:
    import sympy

# unit token -> sympy.physics.units attribute (an allowlist: nothing else is ever looked up)
_UNITS: dict[str, str] = {
    "m": "meter", "meter": "meter", "meters": "meter", "metre": "meter", "metres": "meter",
    "g": "gram", "gram": "gram", "grams": "gram", "gramme": "gram",
    "kg": "kilogram", "kilogram": "kilogram", "kilograms": "kilogram",
    "s": "second", "sec": "second", "secs": "second", "second": "second", "seconds": "second",
    "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour",
    "d": "day", "day": "day", "days": "day",
    "yr": "year", "year": "year", "years": "year",
    "N": "newton", "newton": "newton", "newtons": "newton",
    "J": "joule", "joule": "joule", "joules": "joule",
    "W": "watt", "watt": "watt", "watts": "watt",
    "V": "volt", "volt": "volt", "volts": "volt",
    "A": "ampere", "amp": "ampere", "amps": "ampere", "ampere": "ampere", "amperes": "ampere",
    "\\Omega": "ohm", "ohm": "ohm", "ohms": "ohm",
    "C": "coulomb", "coulomb": "coulomb", "coulombs": "coulomb",
    "F": "farad", "farad": "farad", "farads": "farad",
    "T": "tesla", "tesla": "tesla",
    "Hz": "hertz", "hertz": "hertz",
    "Pa": "pascal", "pascal": "pascal", "pascals": "pascal",
    "eV": "electronvolt", "electronvolt": "electronvolt",
    "L": "liter", "l": "liter", "liter": "liter", "liters": "liter", "litre": "liter", "litres": "liter",
    "mol": "mole", "mole": "mole", "moles": "mole",
    "K": "kelvin", "kelvin": "kelvin",
    "H": "henry", "henry": "henry",
    "Wb": "weber", "weber": "weber",
    "S": "siemens", "siemens": "siemens",
    "Bq": "becquerel",
    "atm": "atmosphere", "bar": "bar", "mmHg": "mmHg", "torr": "mmHg", "Torr": "mmHg",
    "rad": "radian", "radian": "radian", "radians": "radian", "sr": "steradian",
    "tonne": "tonne", "tonnes": "tonne", "nmi": "nautical_mile",
    "degC": "celsius", "degF": "fahrenheit",
    "cd": "candela", "lx": "lux",
    "ly": "lightyear", "AU": "astronomical_unit", "au": "astronomical_unit",
    "ft": "foot", "foot": "foot", "feet": "foot", "in": "inch", "inch": "inch", "inches": "inch",
    "mi": "mile", "mile": "mile", "miles": "mile", "lb": "pound", "lbs": "pound",
    "u": "atomic_mass_unit", "amu": "atomic_mass_unit", "Da": "atomic_mass_unit",
    "\\AA": "angstrom", "\\mathring{A}": "angstrom", "angstrom": "angstrom",
    "c": "speed_of_light",
    "cc": "milliliter", "yd": "yard", "yard": "yard", "yards": "yard",
    "centimeter": "centimeter", "centimeters": "centimeter", "centimetre": "centimeter", "centimetres": "centimeter",
    "millimeter": "millimeter", "millimeters": "millimeter", "millimetre": "millimeter", "millimetres": "millimeter",
    "kilometer": "kilometer", "kilometers": "kilometer", "kilometre": "kilometer", "kilometres": "kilometer",
    "milligram": "milligram", "milligrams": "milligram", "milliliter": "milliliter", "milliliters": "milliliter",
    "millilitre": "milliliter", "millilitres": "milliliter", "ms": "millisecond",
}
# Unit names in words or Chinese -> the tokens above (applied to a unit text before tokenising)
_CJK_UNITS = (
    ("平方千米", "km^{2}"), ("平方公里", "km^{2}"), ("平方厘米", "cm^{2}"), ("平方毫米", "mm^{2}"), ("平方米", "m^{2}"),
    ("立方厘米", "cm^{3}"), ("立方米", "m^{3}"), ("千米", "km"), ("公里", "km"), ("厘米", "cm"), ("毫米", "mm"),
    ("纳米", "nm"), ("微米", "\\mu m"), ("米", "m"), ("千克", "kg"), ("公斤", "kg"), ("毫克", "mg"), ("克", "g"),
    ("小时", "h"), ("分钟", "min"), ("毫秒", "ms"), ("秒", "s"), ("牛顿", "N"), ("牛", "N"), ("千焦", "kJ"),
    ("焦耳", "J"), ("焦", "J"), ("千瓦", "kW"), ("瓦特", "W"), ("瓦", "W"), ("伏特", "V"), ("伏", "V"),
    ("毫安", "mA"), ("安培", "A"), ("安", "A"), ("欧姆", "\\Omega"), ("欧", "\\Omega"), ("库仑", "C"),
    ("特斯拉", "T"), ("赫兹", "Hz"), ("帕斯卡", "Pa"), ("千帕", "kPa"), ("帕", "Pa"), ("毫升", "mL"), ("升", "L"),
    ("摩尔", "mol"), ("开尔文", "K"), ("电子伏特", "eV"), ("电子伏", "eV"), ("每", "/"),
    ("海里", "nmi"), ("吨", "tonne"), ("时", "h"), ("天", "day"), ("年", "yr"),
)
_CJK_UNIT_RE = re.compile("|".join(re.escape(k) for k, _ in _CJK_UNITS))
_CJK_UNIT_MAP = dict(_CJK_UNITS)
_UNIT_WORDS = (
    (re.compile(r"\b(?:square|sq\.?)\s+([A-Za-z]+)\b"), r"\1^{2}"),
    (re.compile(r"\b(?:cubic|cu\.?)\s+([A-Za-z]+)\b"), r"\1^{3}"),
    (re.compile(r"\b([A-Za-z]+)\s+squared\b"), r"\1^{2}"),
    (re.compile(r"\b([A-Za-z]+)\s+cubed\b"), r"\1^{3}"),
    (re.compile(r"\s+per\s+"), "/"),
)


def unit_words(text: str) -> str:
    """`square meters` -> `meters^{2}`, `cubic cm` -> `cm^{3}`, `km per hour` -> `km/hour`, `米/秒` -> `m/s`."""
    s = text
    if not s.isascii():
        s = _CJK_UNIT_RE.sub(lambda m: " " + _CJK_UNIT_MAP[m.group()] + " ", s).strip()
        s = re.sub(r"\s*/\s*", "/", s)
    for pattern, repl in _UNIT_WORDS:
        s = pattern.sub(repl, s)
    return s


_PHRASE_TOKEN = re.compile(r"\s*(?:[A-Za-z\u4e00-\u9fff]+|\\mu\s*[A-Za-z]+|\\Omega|/|\^\s*\{?-?\d\}?|\.)")


def unit_phrase(rest: str) -> str | None:
    """The unit right after a number in prose (`meters.`, `square meters that ...`, `km/h`, `米/秒`),
    the longest run of up to 4 tokens that reads as a unit; None when the next word is no unit."""
    tokens: list[str] = []
    pos = 0
    while len(tokens) < 6:
        m = _PHRASE_TOKEN.match(rest, pos)
        if not m or m.end() == pos:
            break
        tok = m.group()
        if tok.strip() == ".":
            break
        tokens.append(tok)
        pos = m.end()
    for k in range(len(tokens), 0, -1):
        phrase = "".join(tokens[:k]).strip()
        if phrase and phrase[-1] != "/" and parse_unit_tokens(phrase) is not None:
            return phrase
    return None
# units that take SI prefixes (km, mg, \mu s, kN, MeV, mL, ...)
_PREFIXABLE = {"m", "g", "s", "N", "J", "W", "V", "A", "\\Omega", "C", "F", "T", "Hz", "Pa", "eV", "L", "l", "mol", "K", "H", "Wb", "S", "Bq", "bar", "rad", "sr"}
# temperatures on a shifted scale: compared in their own unit only, never converted to kelvin
_AFFINE = {"celsius", "fahrenheit"}
_PREFIXES = {
    "Y": "yotta", "Z": "zetta", "E": "exa", "P": "peta", "T": "tera", "G": "giga", "M": "mega", "k": "kilo",
    "h": "hecto", "da": "deca", "d": "deci", "c": "centi", "m": "milli", "\\mu": "micro", "u": "micro",
    "n": "nano", "p": "pico", "f": "femto", "a": "atto",
}
# extra non-SI units given as (factor, base unit attribute)
_SCALED = {"cal": (4184, "joule", 1000), "kcal": (4184, "joule", 1), "kWh": (3600000, "joule", 1), "Wh": (3600, "joule", 1)}

_PERCENT_TAIL = re.compile(r"\s*(?:\\%|%|\\text\{\s*\\?%\s*\}|\s(?:percent|per\s?cent)\b\.?)\s*$")
_DEGREE_TAIL = re.compile(
    r"\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|\{\}\^\{\\circ\}|\\text\{\s*(?:degrees?|deg|°)\s*\}|\s(?:degrees?|deg)\b\.?)\s*$"
)
_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![A-Za-z])")
# `^{\circ} \mathrm{C}`, `^\circ C`, `°C`, `℃`, `degrees Celsius`, `摄氏度` -> the token degC (F: degF)
_TEMPERATURE = re.compile(
    r"(?:\^\s*\{?\s*\\circ\s*\}?|\\degree|°)\s*(?:\\(?:mathrm|text|rm)\s*)?\{?\s*([CF])\s*\}?(?![A-Za-z])"
    r"|(℃)|(℉)|(?:degrees?\s+)?(Celsius|Fahrenheit)\b|(摄氏度)",
    re.IGNORECASE,
)
_TEMPERATURE_TAIL = re.compile(r"\s*(?:" + _TEMPERATURE.pattern + r")\s*$", re.IGNORECASE)
_WRAPPERS = re.compile(r"\\(?:text|mathrm|mbox|rm|textrm|operatorname|mathit|textnormal|unit)\s*")
_SPACES = re.compile(r"\\[,;:! ]|~|\\q?quad(?![A-Za-z])")


@dataclass(frozen=True)
class Quantity:
    """A scalar answer split into its value and what trails it."""

    value: str  # LaTeX of the value (the whole text when nothing trails)
    unit: str | None = None  # a unit expression we know (`kg`, `m/s^2`, `\mu F`)
    label: str | None = None  # trailing words that are not a unit we know (`apples`)
    percent: bool = False
    degree: bool = False


def split_quantity(text: str) -> Quantity:
    """Split trailing %, degree signs, units or labels off a scalar answer."""
    s = text.strip()
    percent = degree = False
    m = _PERCENT_TAIL.search(s)
    if m and m.start() > 0:
        s, percent = s[: m.start()].strip(), True
    m = _DEGREE_TAIL.search(s)
    if m and m.start() > 0 and not _TRIG.search(s):  # `\\sin 30^\\circ`: degrees inside a function
        s, degree = s[: m.start()].strip(), True
    if percent or degree:
        return Quantity(s, percent=percent, degree=degree)
    m = _TEMPERATURE_TAIL.search(s)
    if m and m.start() > 0:
        return Quantity(s[: m.start()].strip(), unit=_temperature_token(m))
    value, tail, separated = _split_value_tail(s)
    if tail is None:
        return Quantity(s)
    unit_tokens = parse_unit_tokens(tail)
    if unit_tokens is not None:
        if not separated and tail.isascii() and _algebra_tail(tail, unit_tokens):
            return Quantity(s)  # `5m`, `3s`, `2\\frac{h}{m}`: algebra (`5米` is 5 m)
        return Quantity(value, unit=_tokens_text(unit_tokens))
    label = _label(tail)
    if label is not None and (separated or not tail.isascii()):
        return Quantity(value, label=label)
    return Quantity(s)


def _is_lone_lower(token: str) -> bool:
    return len(token) == 1 and token.islower()


def _algebra_tail(tail: str, tokens: list[tuple[str, int]]) -> bool:
    """Letters glued to a number that are algebra, not a unit: one lower-case letter (`5m`), or a
    `\\frac` of letters (`2\\frac{h}{m}`) not wrapped in `\\mathrm`/`\\text`."""
    if len(tokens) == 1 and tokens[0][1] == 1 and _is_lone_lower(tokens[0][0]):
        return True
    return tail.startswith("\\frac") and not re.search(r"\\(?:mathrm|text|rm)\b", tail)


def _temperature_token(m: re.Match[str]) -> str:
    """degC or degF for a `_TEMPERATURE` match."""
    letter, celsius, fahrenheit, word, chinese = m.group(1, 2, 3, 4, 5)
    if fahrenheit or (letter or "").upper() == "F" or (word or "").lower() == "fahrenheit":
        return "degF"
    return "degC"


def _fraction_unit(text: str) -> str:
    """`\\frac{\\mathrm{kg}}{\\mathrm{m}^{3}}` -> `(\\mathrm{kg})/(\\mathrm{m}^{3})`, for the unit
    parser (a whole-text `\\frac` only); anything else unchanged."""
    m = re.match(r"\s*\\[dt]?frac\s*\{", text)
    if m is None:
        return text
    num_end = matching_brace(text, m.end() - 1)
    if num_end is None or num_end + 1 >= len(text) or text[num_end + 1] != "{":
        return text
    den_end = matching_brace(text, num_end + 1)
    if den_end is None or text[den_end + 1 :].strip():
        return text
    numerator = text[m.end() : num_end].strip()
    return ("(" + numerator + ")" if numerator != "1" else "") + "/(" + text[num_end + 2 : den_end] + ")"


_VALUE_END = re.compile(r"[\d}).]|\\pi(?![A-Za-z])|\\infty(?![A-Za-z])")


def _split_value_tail(s: str) -> tuple[str, str | None, bool]:
    """(value, tail, separated): the longest numeric-looking prefix and what trails it."""
    # the value: digits, operators, braces and a few commands, but no bare letters
    i, n = 0, len(s)
    last_value_end = -1
    while i < n:
        c = s[i]
        if c == "\\":
            j = i + 1
            while j < n and s[j].isalpha():
                j += 1
            name = s[i + 1 : j]
            if name in ("frac", "dfrac", "tfrac", "sqrt", "times", "cdot", "pi", "infty", "left", "right"):
                if name in ("pi", "infty"):
                    last_value_end = j
                i = j
                continue
            if name in ("text", "mathrm", "mbox", "rm", "textrm", "operatorname", "mathit", "textnormal", "unit", "mu", "Omega", "AA", "mathring") or not name:
                break
            if name == "" and j < n and s[j] in ",;:! ":
                break
            return s, None, False
        if c.isalpha():
            break
        if c.isdigit() or c in ")}":
            last_value_end = i + 1
        elif c in "~":
            break
        i += 1
    if last_value_end <= 0 or i >= n:
        return s, None, False
    value = s[:last_value_end].strip()
    if not value or not (any(ch.isdigit() for ch in value) or "\\infty" in value) or not _balanced(value):
        return s, None, False
    tail = s[last_value_end:]
    separated = bool(re.match(r"\s|\\[,;:! ]|~|\\(?:text|mathrm|mbox|rm|textrm|unit)", tail))
    tail = tail.strip()
    if not tail:
        return s, None, False
    return value, tail, separated


def _balanced(s: str) -> bool:
    return s.count("{") == s.count("}") and s.count("(") == s.count(")")


_UNIT_TOKEN = re.compile(r"(\\mu\s*|\\Omega|\\AA|\\mathring\{A\})?([A-Za-z]*)(?:\s*\^\s*(?:\{\s*([+-]?\d+)\s*\}|([+-]?\d)))?")


def parse_unit_tokens(text: str) -> list[tuple[str, int]] | None:
    """A unit expression as [(token, power)], e.g. `m/s^2` -> [(m, 1), (s, -2)]; None if not one.

    Accepts products (space, `\\cdot`, `*`, `.`), one or more `/`, powers `^2` / `^{-1}`,
    and `\\text{}` / `\\mathrm{}` wrappers around any part.
    """
    s = _TEMPERATURE.sub(lambda m: " " + _temperature_token(m) + " ", _fraction_unit(text))
    s = unit_words(_unwrap(s))
    if not s or len(s) > 60:
        return None
    s = s.replace("\\cdot", " ").replace("*", " ").replace("\\times", " ")
    s = re.sub(r"(?<=[A-Za-z])\.(?=[A-Za-z\\])", " ", s)  # N.m
    s = s.strip().rstrip(".").strip()
    if not s:
        return None
    groups = s.split("/")
    tokens: list[tuple[str, int]] = []
    for gi, group in enumerate(groups):
        group = group.strip()
        if group.startswith("(") and group.endswith(")"):
            group = group[1:-1].strip()
        if not group and gi == 0 and len(groups) > 1:
            continue  # `/(s)`: a unit over one (`\\frac{1}{\\mathrm{s}}`)
        if not group:
            return None
        sign = 1 if gi == 0 else -1
        pos = 0
        while pos < len(group):
            if group[pos] == " ":
                pos += 1
                continue
            m = _UNIT_TOKEN.match(group, pos)
            if not m or m.end() == pos:
                return None
            prefix, letters = (m.group(1) or "").strip(), m.group(2)
            name = prefix + letters if prefix not in ("\\Omega", "\\AA", "\\mathring{A}") else prefix + letters
            power = int(m.group(3) or m.group(4) or 1)
            if not known_unit(name):
                return None
            tokens.append((name, sign * power))
            pos = m.end()
    return tokens or None


def _unwrap(text: str) -> str:
    s = _SPACES.sub(" ", text)
    s = _WRAPPERS.sub("", s)
    # drop braces that only grouped text: {m}/{s} -> m/s (exponent braces kept by the token regex)
    out: list[str] = []
    depth_exp = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c == "{":
            if out and out[-1] == "^":
                depth_exp += 1
                out.append(c)
            elif s.startswith("\\mathring", i - 9 if i >= 9 else 0) and i >= 9:
                out.append(c)
            else:
                out.append("")
        elif c == "}":
            if depth_exp:
                depth_exp -= 1
                out.append(c)
            else:
                out.append("")
        else:
            out.append(c)
        i += 1
    return "".join(out).strip()


def known_unit(token: str) -> bool:
    return _resolve(token) is not None


@lru_cache(maxsize=512)
def _resolve(token: str) -> tuple[str | None, str, int, int] | None:
    """(prefix attribute or None, unit attribute, numerator, denominator) for a unit token."""
    if token in _UNITS:
        return None, _UNITS[token], 1, 1
    if token in _SCALED:
        num, attr, den = _SCALED[token]
        return None, attr, num, den
    for prefix, name in sorted(_PREFIXES.items(), key=lambda kv: -len(kv[0])):
        if token.startswith(prefix) and token[len(prefix) :] in _PREFIXABLE:
            return name, _UNITS[token[len(prefix) :]], 1, 1
    return None


def _resolve_known(token: str) -> tuple[str | None, str, int, int]:
    """`_resolve` of a token `parse_unit_tokens` returned (a known unit)."""
    found = _resolve(token)
    if found is None:
        raise ValueError(f"not a unit: {token!r}")
    return found


def prefixed_apart(x: str | None, y: str | None) -> bool:
    """Whether two unit texts differ by an SI prefix only (`kpc` and `pc`, `mrad` and `rad`): a
    prefix is part of the quantity, even on a unit we do not convert (then read as a label)."""
    if not x or not y:
        return False
    x, y = _unwrap(x).replace(" ", ""), _unwrap(y).replace(" ", "")
    if x == y or not x.isascii() or not y.isascii():
        return False
    short, long = sorted((x, y), key=len)
    return long.endswith(short) and long[: len(long) - len(short)] in _PREFIXES


def _tokens_text(tokens: list[tuple[str, int]]) -> str:
    return " ".join(t if p == 1 else f"{t}^{{{p}}}" for t, p in tokens)


def _label(tail: str) -> str | None:
    s = _unwrap(tail).strip().rstrip(".").strip()
    if not s or len(s) > 40:
        return None
    if not s.isascii():
        return s.casefold() if re.fullmatch(r"[^\W\d_][^\d=<>+*/^_{}\\$]*", s) else None
    # a word (`apples`, `square units`), never a lone variable (`2 \pi R`)
    if re.fullmatch(r"[A-Za-z]{3,}(?:\s+[A-Za-z]{2,}){0,3}", s):
        return s.casefold()
    return None


# ---------------------------------------------------------------- sympy side (workers only)

_BASE = None


def unit_scale(unit_text: str) -> tuple[sympy.Expr, tuple[tuple[str, int], ...]]:
    """(SI scale factor as a sympy number, dimension key) of a unit text from `split_quantity`."""
    return _unit_scale_cached(unit_text)


@lru_cache(maxsize=256)
def _unit_scale_cached(unit_text: str) -> tuple[sympy.Expr, tuple[tuple[str, int], ...]]:
    import sympy
    import sympy.physics.units as u
    from sympy.physics.units import convert_to

    global _BASE
    if _BASE is None:
        _BASE = [u.meter, u.kilogram, u.second, u.ampere, u.kelvin, u.mole, u.candela]
    tokens = parse_unit_tokens(unit_text)
    if tokens is None:
        raise ValueError(f"not a unit: {unit_text!r}")
    if any(_resolve_known(token)[1] in _AFFINE for token, _ in tokens):
        return sympy.Integer(1), tuple(sorted(tokens))  # °C converts to nothing but itself
    expr = sympy.Integer(1)
    for token, power in tokens:
        prefix, attr, num, den = _resolve_known(token)
        unit = getattr(u, attr)
        if prefix is not None:
            unit = getattr(u, prefix).scale_factor * unit
        expr = expr * (sympy.Rational(num, den) * unit) ** power
    si = convert_to(expr, _BASE)
    scale, dims = sympy.Integer(1), []
    for factor in sympy.Mul.make_args(si):
        base, exp = factor.as_base_exp()
        if isinstance(base, u.Quantity):
            dims.append((str(base), int(exp)))
        else:
            scale = scale * factor
    if scale.is_Float:
        scale = sympy.Rational(str(scale))
    return scale, tuple(sorted(dims))
