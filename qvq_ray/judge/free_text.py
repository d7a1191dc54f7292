"""Which golds are free text: the only golds whose equivalence a judge model is asked about.

A sentence, a name, a phrase (`滤液E是硫酸亚铁溶液`) can only be compared literally by the string
rules, so a differently worded answer may still mean the same; a number, an expression, a
multiple-choice letter or a quantity with its unit never goes to the judge (sympy's verdict stands).
Pure string work: no model, no engine.
"""

from __future__ import annotations

import re

from qvq_ray.verify.spec import AnswerSpec

_FREE_TEXT_TYPES = {"text", "free_text", "free-text", "open", "string", "sentence"}
_WORD = re.compile(r"[A-Za-z]{2,}")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
# Unit words that make `6 yards` or `3 km/h` a quantity, not free text.
_UNIT_WORDS = {
    "cm", "mm", "km", "kg", "mg", "ml", "mph", "kmh", "hz", "khz", "mhz", "pa", "kpa", "mol", "ev", "kev", "mev",
    "yard", "yards", "feet", "foot", "ft", "inch", "inches", "meter", "meters", "metre", "metres", "mile", "miles",
    "gram", "grams", "second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "year", "years",
    "degree", "degrees", "deg", "rad", "radians", "newton", "newtons", "joule", "joules", "watt", "watts", "volt",
    "volts", "ohm", "ohms", "units", "unit", "sq", "square", "cubic", "per", "dollars", "cents", "percent", "pi",
    "lb", "lbs", "oz", "kw", "mw", "kj", "min", "sec", "hr",
}
_CJK_UNITS = set("米秒牛焦千克克瓦伏安欧度分时个元角")


def is_free_text(gold: str | None, spec: AnswerSpec | None = None) -> bool:
    """Whether a gold is free text the string rules can only compare literally (so a judge may say
    whether a differently worded answer means the same): a sentence, a name, a phrase. Not a
    multiple-choice gold, a number, an expression, or a quantity with its unit."""
    if gold is None or not str(gold).strip():
        return False
    spec = spec or AnswerSpec()
    if spec.choices:
        return False
    if (spec.answer_type or "").strip().lower() in _FREE_TEXT_TYPES:
        return True
    text = _LATEX_COMMAND.sub(" ", str(gold))
    words = [w for w in _WORD.findall(text) if w.lower() not in _UNIT_WORDS]
    cjk = [c for c in _CJK.findall(text) if c not in _CJK_UNITS]
    has_digit = any(ch.isdigit() for ch in text)
    return len(words) >= 2 or len(cjk) >= 2 or (len(words) == 1 and not has_digit and len(words[0]) >= 3)
