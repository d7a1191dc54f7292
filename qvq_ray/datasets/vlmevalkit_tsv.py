"""VLMEvalKit (github.com/open-compass/VLMEvalKit) benchmark TSVs: `MMMU_DEV_VAL.tsv`, `MathVista_MINI.tsv`, ...

One row per question, tab-separated, written by pandas (fields with tabs, newlines or quotes are
double-quoted). Native columns -> Problem:
- `index` -> `id` (as text);
- `image`: base64 image bytes -> `images`; a Python-literal list string of base64 strings for
  several images; a cell of at most 64 characters is the `index` of the row whose image(s) it
  reuses (VLMEvalKit's rule). Decoded here, so a bad cell is this row's LoadError. Without an
  `image` cell, `image_path` names files under `images/<dataset>/` beside the TSV (VLMEvalKit's
  dump layout);
- `question` -> `question` (a non-empty `hint` is put before it as "Hint: ...", as VLMEvalKit's
  prompt does, and kept in meta["hint"]); `<image k>` placeholders are kept;
- option columns `A`, `B`, ... (empty = absent) -> `choices`, `answer_type` "choice"; without
  them a `choices` column (a list string: MathVista_MINI, MathVision) is read instead;
- `answer` -> `answer` (a literal list of acceptable strings, MMMU's open answers: the first, all of
  them in meta["answers"]); `category` -> `subject`;
- benchmark-specific columns that mean the same as Problem's fields: `answer_type`, `unit`,
  `precision` (-> meta and `tolerance`, as in mathvista.py), `error` (-> `tolerance`, as in
  olympiadbench.py), `language`; OlympiadBench's `final_answer` stands in for an empty `answer`;
- every other column (`l2-category`, `split`, `image_path`, `task`, `skills`, ...) -> meta, as
  written (empty cells left out).
The benchmark (`source`) is told from the file name (MMMU_DEV_VAL.tsv -> "MMMU"); meta["dataset"]
is the file's stem.
"""

from __future__ import annotations

import base64
import binascii
import csv
import sys
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from qvq_ray.datasets.base import (
    LoadError,
    answer_alternatives,
    parse_error_tolerances,
    parse_literal_list,
    precision_tolerance,
    validation_message,
)
from qvq_ray.problem import ImageRef, Problem

NAME = "vlmevalkit"
SUFFIXES = (".tsv",)
#: A cell this short is a reference to another row's image, never an image (VLMEvalKit's threshold).
REFERENCE_MAX_CHARS = 64
#: File-name prefix -> benchmark, longest first so MathVision is not read as MathV...
BENCHMARKS = (
    ("OlympiadBench", "OlympiadBench"),
    ("MathVision", "MathVision"),
    ("MathVista", "MathVista"),
    ("MathVerse", "MathVerse"),
    ("DynaMath", "DynaMath"),
    ("LogicVista", "LogicVista"),
    ("WeMath", "WeMath"),
    ("MMBench", "MMBench"),
    ("MMMU", "MMMU"),
)
_OPTION_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MAPPED = {"index", "image", "question", "hint", "answer", "category", "answer_type", "unit"}


def benchmark_of(file: Path) -> str:
    """The benchmark a TSV holds, from its file name; the stem itself when unknown."""
    stem = file.stem
    for prefix, name in BENCHMARKS:
        if stem.lower().startswith(prefix.lower()):
            return name
    return stem


def load(path: str | Path, *, source: str | None = None) -> Iterator[Problem | LoadError]:
    """Problems (or per-row LoadErrors) of a VLMEvalKit TSV; `source` overrides the name told from the file."""
    file = Path(path)
    if file.is_dir():
        tsvs = sorted(file.glob("*.tsv"))
        if len(tsvs) != 1:
            raise FileNotFoundError(f"expected one .tsv file in {file}, found {len(tsvs)}")
        file = tsvs[0]
    if not file.is_file():
        raise FileNotFoundError(f"VLMEvalKit TSV not found: {file}")
    header, rows = _read(file)
    for required in ("index", "question"):
        if required not in header:
            raise ValueError(f"{file} has no {required!r} column (columns: {', '.join(header)})")
    return _rows(file, header, rows, source or benchmark_of(file))


def _read(file: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, cells) of every row; the whole file, since rows reuse each other's images."""
    _raise_field_limit()
    with open(file, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if not header:
            raise ValueError(f"{file} is empty: no header row")
        rows = []
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as e:  # e.g. a NUL byte: this line only
                rows.append((line, [f"\0csv error: {e}"]))
                continue
            if cells:
                rows.append((line, cells))
    return [h.strip() for h in header], rows


def _raise_field_limit() -> None:
    # A base64 image cell is far over csv's default 128 KiB field limit.
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def _rows(file: Path, header: list[str], rows: list[tuple[int, list[str]]], source: str) -> Iterator[Problem | LoadError]:
    records: list[tuple[str, dict[str, str] | LoadError]] = []
    images_by_index: dict[str, str] = {}
    for line, cells in rows:
        ref = f"{file.name}:{line}"
        if len(cells) == 1 and cells[0].startswith("\0csv error: "):
            records.append((ref, LoadError(ref, f"unreadable TSV line {line}: {cells[0][12:]}")))
        elif len(cells) != len(header):
            records.append((ref, LoadError(ref, f"line {line} has {len(cells)} fields, the header has {len(header)}")))
        else:
            record = dict(zip(header, cells))
            records.append((ref, record))
            index = record["index"].strip()
            if index and index not in images_by_index:
                images_by_index[index] = record.get("image", "")
    # Images other rows point at are decoded once and shared; no other row's bytes are kept here.
    reused = {cell.strip() for cell in images_by_index.values() if 0 < len(cell.strip()) <= REFERENCE_MAX_CHARS}
    decoded: dict[str, list[bytes]] = {}
    for ref, entry in records:
        if isinstance(entry, LoadError):
            yield entry
        else:
            yield row_to_problem(
                entry, ref=ref, file=file, source=source, images_by_index=images_by_index, decoded=decoded, reused=reused
            )


def row_to_problem(
    record: dict[str, str],
    *,
    ref: str,
    file: Path,
    source: str,
    images_by_index: dict[str, str],
    decoded: dict[str, list[bytes]] | None = None,
    reused: set[str] | None = None,
) -> Problem | LoadError:
    """One TSV row to a Problem, or a LoadError naming the row."""
    problem_id = record.get("index", "").strip()
    if not problem_id:
        return LoadError(ref, "missing required field 'index'")
    question = record.get("question", "")
    if not question.strip():
        return LoadError(problem_id, "missing required field 'question'")
    try:
        images = _images(record, problem_id, file, images_by_index, {} if decoded is None else decoded, reused or set())
        choices = _choices(record)
        precision = _number(record.get("precision"), "precision")
        tolerances = parse_error_tolerances(record.get("error") or None)
    except ValueError as e:
        return LoadError(problem_id, str(e))

    meta: dict[str, Any] = {
        k: v for k, v in record.items() if k not in _MAPPED and v != "" and not _is_option_column(k)
    }
    meta["dataset"] = file.stem
    hint = record.get("hint", "")
    if hint.strip():
        meta["hint"] = hint
        question = f"Hint: {hint}\n{question}"
    if precision is not None:
        meta["precision"] = precision
    answer = record.get("answer", "")
    if not answer.strip() and record.get("final_answer", "").strip():
        answer = _final_answer(record["final_answer"])
    answer, answers = answer_alternatives(answer)
    if answers is not None:
        meta["answers"] = answers
    native_type = record.get("answer_type", "") or None
    if choices and native_type:
        meta["answer_type"] = native_type
    if choices and not _has_option_columns(record):
        meta.pop("choices", None)  # read from the `choices` column
    tolerance = [precision_tolerance(precision)] if precision is not None else tolerances
    try:
        return Problem.model_validate(dict(
            id=problem_id,
            question=question,
            images=images,
            choices=choices,
            answer=answer if answer.strip() else None,
            answer_type="choice" if choices else native_type,
            unit=record.get("unit", "") or None,
            tolerance=tolerance,
            precision=int(precision) if precision is not None and float(precision).is_integer() else None,
            alternatives=[a for a in answers or [] if a != answer],
            source=source,
            subject=record.get("category", "") or None,
            language=_language(record),
            meta=meta,
        ))
    except ValidationError as e:
        return LoadError(problem_id, validation_message(e))


def _is_option_column(name: str) -> bool:
    return len(name) == 1 and name in _OPTION_LETTERS


def _has_option_columns(record: dict[str, str]) -> bool:
    return any(_is_option_column(k) and v != "" for k, v in record.items())


def _choices(record: dict[str, str]) -> list[str]:
    """Options from the A, B, ... columns (no gaps allowed: letters must keep their meaning), else `choices`."""
    letters = [k for k in _OPTION_LETTERS if k in record]
    present = [k for k in letters if record[k] != ""]
    if present:
        expected = list(_OPTION_LETTERS[: len(present)])
        if present != expected:
            missing = next(e for e, p in zip(expected, present) if e != p)
            raise ValueError(f"option {missing} is empty but a later option is set: letters would shift")
        return [record[k] for k in present]
    text = record.get("choices", "").strip()
    if text:
        return [str(c) for c in parse_literal_list(text, "'choices'")]
    return []


def _images(
    record: dict[str, str],
    index: str,
    file: Path,
    images_by_index: dict[str, str],
    decoded: dict[str, list[bytes]],
    reused: set[str],
) -> list[ImageRef]:
    cell = record.get("image", "").strip()
    if not cell:
        return _image_paths(record, file)
    source_index = index
    if len(cell) <= REFERENCE_MAX_CHARS:
        source_index = cell
        target = images_by_index.get(cell)
        if target is None:
            raise ValueError(f"image cell {cell!r} reuses the image of row index {cell}, which is not in the file")
        if len(target.strip()) <= REFERENCE_MAX_CHARS:
            raise ValueError(f"image cell {cell!r} reuses row {cell}, whose image is itself a reference or empty")
        cell = target.strip()
    if source_index in decoded:
        images = decoded[source_index]
    else:
        images = _decode_cell(cell, source_index)
        if source_index in reused:
            decoded[source_index] = images
    return [ImageRef(bytes=data) for data in images]


def _decode_cell(cell: str, index: str) -> list[bytes]:
    payloads = [cell]
    if cell.startswith("["):
        payloads = parse_literal_list(cell, f"image list of row {index}")
        if not payloads or not all(isinstance(p, str) for p in payloads):
            raise ValueError(f"image list of row {index} must be a non-empty list of base64 strings")
    out = []
    for k, payload in enumerate(payloads, start=1):
        try:
            out.append(base64.b64decode("".join(payload.split()), validate=True))
        except (binascii.Error, ValueError):
            where = f"image {k} of row {index}" if len(payloads) > 1 else f"image of row {index}"
            raise ValueError(f"{where} is not valid base64") from None
    return out


def _image_paths(record: dict[str, str], file: Path) -> list[ImageRef]:
    """No image cell: the dumped files VLMEvalKit names in `image_path`, under images/<dataset>/."""
    text = record.get("image_path", "").strip()
    if not text:
        return []
    names = parse_literal_list(text, "'image_path'") if text.startswith("[") else [text]
    folder = file.resolve().parent / "images" / file.stem
    return [ImageRef(path=str(folder / str(name))) for name in names]


def _number(value: str | None, name: str) -> float | int | None:
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name!r} is not a number: {value!r}") from None
    return int(number) if number.is_integer() else number


def _final_answer(text: str) -> str:
    """OlympiadBench's `final_answer` cell: a list string of answers joined with ", ", or the text itself."""
    if text.strip().startswith("["):
        try:
            return ", ".join(str(a) for a in parse_literal_list(text, "'final_answer'"))
        except ValueError:
            pass
    return text


def _language(record: dict[str, str]) -> str | None:
    language = record.get("language", "").strip().lower()
    if language in ("english", "en"):
        return "en"
    if language in ("chinese", "zh"):
        return "zh"
    # OlympiadBench's `source`, e.g. "OE_MM_maths_en_COMP".
    parts = record.get("source", "").lower().split("_")
    if "en" in parts:
        return "en"
    if "zh" in parts:
        return "zh"
    return language or None
