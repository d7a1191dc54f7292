"""What every dataset adapter shares: the per-row error record and image-path resolution.

A problem file with one bad row must still load: the bad row becomes a `LoadError`, which the
batch job writes as that row's error output, so every input row yields exactly one output row.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from qvq_ray.problem import Problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadError:
    """A row that could not become a Problem: its id if known, else `file:line N`, and why."""

    ref: str
    reason: str

    @property
    def id(self) -> str:
        """The id the error row is written under."""
        return self.ref


LoadResult = Problem | LoadError


def resolve_image_path(value: str, base_dir: Path) -> str:
    """Absolute path for a relative image path; data URLs, URLs and absolute paths are kept as they are.

    Paths are made absolute at load time (relative to the problem file or dataset root) so the
    prepare stage, running on any worker with any working directory, reads the right file. Nothing
    is checked or read here: whether a path may be read (inside the dataset's folders, see
    `input_folders` and qvq_ray/image_files.py) is decided where it is opened. A leading `~` is
    a folder name, as in any path a file names, never the home of whoever runs the job.
    """
    text = value.strip()
    if text.lower().startswith(("data:", "http://", "https://", "file://")) or os.path.isabs(text):
        return text
    return os.path.abspath(os.path.join(base_dir, text))


def input_folders(path: Path) -> list[Path]:
    """The folders a problem set's relative image paths may lead into: the input folder itself, or
    the folder holding the input file (that of the link and that of its target, if it is a link)."""
    if path.is_dir():
        return [path.resolve()]
    return list(dict.fromkeys([path.absolute().parent.resolve(), path.resolve().parent]))


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any | LoadError]]:
    """(line number, parsed object or LoadError) for each non-blank line; a bad line never stops the file."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw)
            except RecursionError:  # nested deeper than the parser's stack: this line only
                yield lineno, LoadError(f"{path.name}:{lineno}", f"invalid JSON on line {lineno}: nested too deeply")
            except ValueError as e:  # JSONDecodeError, bad UTF-8, an integer over Python's digit limit
                yield lineno, LoadError(f"{path.name}:{lineno}", f"invalid JSON on line {lineno}: {e}")


def validation_message(error: ValidationError) -> str:
    """A one-line summary of a pydantic error for a LoadError reason (the one formatter's, for rows)."""
    from qvq_ray.console import validation_line

    return validation_line(error, whole="row")


def as_text(value: Any) -> str | None:
    """Gold answers and choices arrive as numbers in some files; Problem stores text."""
    if value is None:
        return None
    return to_text(value)


def to_text(value: object) -> str:
    """`as_text` of a value that is not None."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def parse_literal_list(value: Any, what: str) -> list[Any]:
    """A list written as a Python literal ("['1', '2']": MMMU options, VLMEvalKit image lists).

    Parsed with `ast.literal_eval` (literals only, never `eval`); anything else is a ValueError
    naming `what`, which the adapter turns into that row's LoadError.
    """
    if isinstance(value, (list, tuple)):
        return list(value)
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a list written as text, got {type(value).__name__}")
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError(f"{what} is not a list literal: {_short(text)}")
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"{what} is not a valid Python-literal list ({type(e).__name__}): {_short(text)}") from None
    if not isinstance(parsed, list):
        raise ValueError(f"{what} is not a list: {_short(text)}")
    return parsed


def answer_alternatives(text: str) -> tuple[str, list[str] | None]:
    """(gold, every acceptable gold) for a gold that lists alternatives as a literal list of strings.

    MMMU's open answers: "['24/7', '3.429']" -> ("24/7", ["24/7", "3.429"]). Anything else, a
    list of numbers ("[2014, 2016]" is one list-valued answer) or bracketed math ("[0, 1)"), is
    the gold as written.
    """
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            values = parse_literal_list(stripped, "'answer'")
        except ValueError:
            return text, None
        if values and all(isinstance(v, str) for v in values):
            return values[0], [str(v) for v in values]
    return text, None


def read_json(file: Path) -> Any:
    """A whole JSON document; a broken one raises ValueError (it has no readable rows to keep)."""
    try:
        return json.loads(file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file} is not valid JSON (one broken document has no readable rows): {e}") from None


def first_record(data: Any) -> Any:
    """The first row of a JSON problem file: a list's first item or an id-keyed object's first value."""
    if isinstance(data, list):
        return data[0] if data else None
    if isinstance(data, dict):
        return next(iter(data.values()), None)
    return None


def dataset_root(file: Path) -> Path:
    """The folder a file's relative image paths start from: above `data/` (upstream layouts), else its own."""
    parent = file.resolve().parent
    return parent.parent if parent.name == "data" else parent


def precision_tolerance(precision: Any) -> float | None:
    """Absolute tolerance of an answer given to `precision` decimal places: half a unit in the last place.

    MathVista's float golds (precision 1 -> 0.05, 2 -> 0.005): every value that rounds to the gold
    is within it. Non-integral or negative precisions give None.
    """
    if precision is None or isinstance(precision, bool):
        return None
    try:
        places = float(precision)
    except (TypeError, ValueError):
        return None
    if places != places or not places.is_integer() or not 0 <= places <= 20:
        return None
    return float(Decimal(5).scaleb(-int(places) - 1))


def parse_error_tolerances(error: Any) -> list[float | None] | None:
    """OlympiadBench's `error`: one absolute tolerance per answer, comma-separated ("1e-1", ",1e-2").

    Empty parts are None (no tolerance for that answer); None when the field is absent or holds
    no number at all. Raises ValueError for a part that is not a number.
    """
    if error is None:
        return None
    if isinstance(error, (int, float)) and not isinstance(error, bool):
        return [float(error)]
    if not isinstance(error, str):
        raise ValueError(f"'error' must be text or a number, got {type(error).__name__}")
    out: list[float | None] = []
    for part in error.split(","):
        part = part.strip()
        if not part:
            out.append(None)
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"'error' tolerance {part!r} is not a number (in {error!r})") from None
        if not (value >= 0 and value != float("inf")):
            raise ValueError(f"'error' tolerance {part!r} must be a finite number >= 0")
        out.append(value)
    return out if any(v is not None for v in out) else None


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def has_cjk(text: str) -> bool:
    """True when `text` holds Chinese characters."""
    return bool(_CJK.search(text))


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


__all__ = [
    "LoadError",
    "LoadResult",
    "answer_alternatives",
    "as_text",
    "dataset_root",
    "first_record",
    "has_cjk",
    "input_folders",
    "iter_jsonl",
    "parse_error_tolerances",
    "parse_literal_list",
    "precision_tolerance",
    "read_json",
    "resolve_image_path",
    "to_text",
    "validation_message",
]


def id_and_question(row: Any, ref: str) -> tuple[str, str] | LoadError:
    """The two fields every benchmark row must have, or the LoadError saying which is missing."""
    if not isinstance(row, dict):
        return LoadError(ref, f"expected an object, got {type(row).__name__}")
    if row.get("id") is None or not to_text(row["id"]).strip():
        return LoadError(ref, "missing required field 'id'")
    problem_id = to_text(row["id"])
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        return LoadError(problem_id, "missing required field 'question'")
    return problem_id, question


_GOLD_WRAPPERS = re.compile(r"^[\s$]+|[\s$]+$|\\boxed\{\s*\}|\\\[|\\\]|\\\(|\\\)")


def unusable_gold(answer: str) -> str | None:
    """Why a gold answer can never be matched (None when it can): empty once its math delimiters
    are removed (`$$`), or braces that do not balance (a gold cut off mid-expression). Such a gold
    must become "no gold" with a load warning, not a gold that marks every response wrong."""
    from qvq_ray.verify.text import braces_balanced

    if not _GOLD_WRAPPERS.sub("", answer).strip():
        return "empty gold answer"
    if not braces_balanced(answer):
        return f"gold answer with unbalanced braces: {_short(answer)}"
    return None


#: Two numbers with only spaces between them, before a root (`2 3\sqrt{2}`): as math that is a
#: product sympy reads as something degenerate; the verifier compares such a gold as text.
_JUXTAPOSED_BEFORE_ROOT = re.compile(r"(?<![\d.])\d+(?:\.\d+)?\s+\d+(?:\.\d+)?\s*\\sqrt")


def doubtful_gold(answer: str) -> str | None:
    """Why a gold is kept but cannot be read as math (None when it can): digits juxtaposed before a
    root. It stays the gold (compared as text), with a load warning, so a reader can fix the data."""
    if _JUXTAPOSED_BEFORE_ROOT.search(answer):
        return f"gold answer with digits juxtaposed before a root (compared as text): {_short(answer)}"
    return None


def checked_gold(answers: list[str], problem_id: str, meta: dict[str, Any]) -> str | None:
    """The gold of a problem (its answers joined by ", "), or None with a load warning naming the
    problem when one of them is unusable (`unusable_gold`); the reason goes to meta["gold_warning"].
    A doubtful one (`doubtful_gold`) is kept, with the same warning."""
    for answer in answers:
        reason = unusable_gold(answer)
        if reason is not None:
            logger.warning("%s: %s: loaded without a gold answer", problem_id, reason)
            meta["gold_warning"] = reason
            return None
    for answer in answers:
        if (reason := doubtful_gold(answer)) is not None:
            logger.warning("%s: %s", problem_id, reason)
            meta["gold_warning"] = reason
    return ", ".join(answers)
