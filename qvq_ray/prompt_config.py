"""`PromptConfig`: how a problem becomes the user message, as data in the config (section `prompt:`).

The answer-format instructions differ between evaluation toolkits (VLMEvalKit, lmms-eval) and
change accuracy by points, so they are configuration, not code: a shipped preset
(`qvq_ray/prompt_presets.py`) chosen by name, with any field overridden in YAML.

Templates are `str.format`-style (`{question}`, literal braces doubled: `\\boxed{{}}`), but they
are never handed to `str.format`: `parse_template` reads them with `string.Formatter.parse`,
allows only the named fields of the template's kind (no attribute or index access, no format
spec or conversion), and rendering inserts each value as plain data. A question holding `{`,
`{0}`, `$x` or `{question}` is text, never re-read as a template.
"""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Fields a user-text part may name.
PART_FIELDS = frozenset({"question", "choices", "instruction", "hint", "unit"})
#: Fields `choice_format` may name, and `unit_format`.
CHOICE_FIELDS = frozenset({"letter", "text"})
UNIT_FIELDS = frozenset({"unit"})
#: Keys of `instructions`: the kinds of answer a problem asks for (`float_<p>` is a float with p decimals).
INSTRUCTION_KEY = re.compile(r"^(choice|integer|float|float_\d{1,2}|list|free)$")
DEFAULT_PRESET = "qvq"

Piece = tuple[str, str | None]  # (literal text, field name or None)


def parse_template(template: str, allowed: frozenset[str], where: str) -> list[Piece]:
    """The template as (literal, field) pieces; ValueError naming `where` for anything but plain named fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone '{' or '}'
        raise ValueError(f"{where}: {exc}; write a literal brace as '{{{{' or '}}}}' (e.g. \\boxed{{{{}}}})") from None
    pieces: list[Piece] = []
    for literal, field, spec, conversion in parsed:
        if field is not None:
            if field not in allowed:
                hint = " (a literal '{}' is written '{{}}')" if field == "" else ""
                raise ValueError(f"{where}: unknown field {{{field}}}{hint}; allowed: {', '.join(sorted(allowed))}")
            if spec or conversion:
                raise ValueError(f"{where}: {{{field}}} takes no format spec or conversion")
        pieces.append((literal, field))
    return pieces


class PromptConfig(BaseModel):
    """The user message of a problem: a shipped preset, each field overridable (None = the preset's).

    The user text is `parts` rendered and joined; the images go where `images` says. The system
    message stays `model.system_prompt`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    preset: str = Field(
        DEFAULT_PRESET,
        description="Shipped prompt (qvq_ray/prompt_presets.py, listed with their sources in README 'Prompts'): "
        "'qvq' (default: the QVQ model card's layout and this project's answer line), 'vlmevalkit-mathvista', "
        "'vlmevalkit-mathvision', 'vlmevalkit-mmmu', 'lmms-eval-mathvista', 'lmms-eval-mathvista-cot', "
        "'lmms-eval-mathvision', 'lmms-eval-mmmu'. Every field below left unset takes the preset's value.",
    )
    parts: list[str] | None = Field(
        None,
        description="The user text, part by part: each a template over {question}, {choices}, {instruction}, "
        "{hint}, {unit} (literal braces doubled, e.g. '\\\\boxed{{}}'). A part whose fields all render empty is "
        "left out (a part naming no field is always kept); the kept parts are joined with `joiner`.",
    )
    joiner: str | None = Field(None, description="Text between two kept parts (not next to an inline image).")
    choice_format: str | None = Field(
        None, description="How one option is written, over {letter} and {text}: '{letter}. {text}' or '({letter}) {text}'."
    )
    choice_joiner: str | None = Field(None, description="Text between two options in {choices}.")
    letter_choices: Literal["list", "omit"] | None = Field(
        None,
        description="Options that are only their letters (MathVision's ['A'..'E'], the real options drawn in the "
        "image): 'list' them like any other, or 'omit' them ({choices} empty; the problem is still multiple choice).",
    )
    strip_choices: bool | None = Field(None, description="Strip spaces around each option's text.")
    instructions: dict[str, str] | None = Field(
        None,
        description="The answer-format instruction ({instruction}) per kind of answer: 'choice' (the problem has "
        "options), 'integer', 'float' (or 'float_1', 'float_2': with that many decimals), 'list', and 'free' (any "
        "other, and the fallback of integer/float/list). Plain text, no fields. Merged over the preset's key by "
        "key; '' drops one.",
    )
    unit_format: str | None = Field(
        None, description="How the problem's unit is written into {unit}, over {unit}: ' (Unit: {unit})'; '' = never."
    )
    images: Literal["inline", "first"] | None = Field(
        None,
        description="'inline': each image where the question names it (<image1>, <image 1>, <image_1>; the tag "
        "removed), images no tag names first; 'first': every image before the text, tags left in the text as written.",
    )
    strip_question: bool | None = Field(None, description="Strip whitespace around the question before inserting it.")
    strip: bool | None = Field(None, description="Strip whitespace at both ends of the finished user text.")

    @field_validator("instructions")
    @classmethod
    def _instruction_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not INSTRUCTION_KEY.match(key):
                raise ValueError(f"instructions: unknown kind {key!r}; use choice, integer, float, float_<decimals>, list or free")
        return value

    @model_validator(mode="after")
    def _resolves(self) -> "PromptConfig":
        """A bad preset name or template is a config error at load time, not a failure per problem."""
        self.resolved()
        return self

    def overrides(self) -> list[str]:
        """Names of the fields this config sets over its preset."""
        return sorted(name for name in type(self).model_fields if name != "preset" and getattr(self, name) is not None)

    def resolved(self) -> "PromptConfig":
        """The preset with this config's fields over it: every field set, every template checked.

        Idempotent (a dropped instruction stays '', so resolving again cannot bring the preset's back).
        """
        from qvq_ray.prompt_presets import PRESETS

        preset = PRESETS.get(self.preset)
        if preset is None:
            raise ValueError(f"unknown prompt preset {self.preset!r}; shipped: {', '.join(sorted(PRESETS))}")
        values = dict(preset.template)
        for name in self.overrides():
            value = getattr(self, name)
            values[name] = {**values.get(name, {}), **value} if name == "instructions" else value
        missing = [name for name in type(self).model_fields if name != "preset" and values.get(name) is None]
        if missing:
            raise ValueError(f"prompt preset {self.preset!r} leaves {missing} unset")
        for i, part in enumerate(values["parts"]):
            parse_template(part, PART_FIELDS, f"prompt.parts[{i}]")
        parse_template(values["choice_format"], CHOICE_FIELDS, "prompt.choice_format")
        parse_template(values["unit_format"], UNIT_FIELDS, "prompt.unit_format")
        return type(self).model_construct(preset=self.preset, **values)
