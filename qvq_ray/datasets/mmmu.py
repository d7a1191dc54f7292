"""MMMU (mmmu-benchmark.github.io) as the Hugging Face parquet: `<Subject>/<split>-00000-of-00001.parquet`.

Native row -> Problem:
- `id` ("validation_Math_1" = `<split>_<Subject>_<n>`) -> `id`; the subject named in the id (else
  the `<Subject>/` folder of an HF shard) -> `subject`, the split -> meta["split"];
- `question` -> `question`, `<image k>` placeholders kept (the prompt builder puts image k there);
- `options`, a Python-literal list string ("['1', '2', 'Not exist']", "[]" when open), parsed
  with `ast.literal_eval` (literals only) -> `choices`; options may themselves be "<image k>";
- `image_1` .. `image_7`, structs {bytes: PNG, path: name} -> `images` in order, as bytes (the
  name kept beside them); a gap (image_2 null, image_3 set) is a bad row: `<image 3>` would
  point at the wrong picture;
- `answer`: the option letter for multiple choice (`answer_type` "choice"); for open questions a
  value or a literal list of acceptable values ("['24/7', '3.429']"): `answer` is the first and
  meta["answers"] all of them. The test split's hidden gold ("?") becomes no gold;
- `explanation`, `img_type` (parsed list), `topic_difficulty`, `question_type`, `subfield` and any
  unknown column -> meta.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from qvq_ray.datasets.base import (
    id_and_question,
    LoadError,
    answer_alternatives,
    as_text,
    parse_literal_list,
    resolve_image_path,
    validation_message,
)
from qvq_ray.problem import ImageRef, Problem

NAME = "mmmu"
SOURCE = "MMMU"
DEFAULT_SPLIT = "validation"
#: Columns whose presence marks a parquet file as MMMU's.
SIGNATURE = frozenset({"id", "question", "options", "answer", "image_1"})
_IMAGE_COLUMN = re.compile(r"^image_(\d+)$")
_ID = re.compile(r"^(?P<split>dev|validation|test)_(?P<subject>.+)_(?P<n>\d+)$")
_SHARD = re.compile(r"^(dev|validation|test)-\d+-of-\d+\.parquet$")
_HIDDEN_GOLD = {"", "?"}
_MAPPED = {"id", "question", "options", "answer"}


def looks_like(columns: Any) -> bool:
    """True for a parquet schema's column names (or a row) in MMMU's shape."""
    try:
        return SIGNATURE <= set(columns)
    except TypeError:
        return False


def parquet_columns(file: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(file).names)


def dataset_files(path: Path, split: str = DEFAULT_SPLIT) -> list[Path]:
    """The split's parquet shards in a dataset directory: `<Subject>/<split>-*.parquet` or `<split>-*.parquet`."""
    return sorted({*path.glob(f"*/{split}-*.parquet"), *path.glob(f"{split}-*.parquet")})


def is_dataset_dir(path: Path, split: str = DEFAULT_SPLIT) -> bool:
    files = dataset_files(path, split)
    return bool(files) and looks_like(parquet_columns(files[0]))


def load(path: str | Path, *, split: str = DEFAULT_SPLIT) -> Iterator[Problem | LoadError]:
    """Problems (or per-row LoadErrors) of an MMMU parquet file, or every subject's `split` in a directory."""
    path = Path(path)
    if path.is_dir():
        files = dataset_files(path, split)
        if not files:
            found = sorted({f.name.split("-")[0] for f in path.glob("**/*.parquet")})
            raise FileNotFoundError(
                f"no MMMU {split!r} parquet files (<Subject>/{split}-*.parquet) in {path}"
                + (f"; splits present: {', '.join(found)}" if found else "")
            )
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"MMMU file not found: {path}")
    return _rows(files)


def _rows(files: list[Path]) -> Iterator[Problem | LoadError]:
    import pyarrow.parquet as pq

    for file in files:
        base_dir = file.resolve().parent
        # HF layout <Subject>/<split>-00000-of-00001.parquet: the folder names the subject.
        subject_hint = base_dir.name if _SHARD.match(file.name) else None
        index = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=16):  # images make rows big
            for row in batch.to_pylist():
                yield row_to_problem(row, ref=f"{file.name}:row {index}", base_dir=base_dir, subject_hint=subject_hint)
                index += 1


def row_to_problem(row: Any, *, ref: str, base_dir: Path, subject_hint: str | None = None) -> Problem | LoadError:
    """One native MMMU row to a Problem, or a LoadError naming the row."""
    checked = id_and_question(row, ref)
    if isinstance(checked, LoadError):
        return checked
    problem_id, question = checked
    try:
        options = parse_literal_list(row.get("options") or "[]", "'options'")
        images, image_columns = _images(row, base_dir)
        answer, answers = _answer(row.get("answer"))
    except ValueError as e:
        return LoadError(problem_id, str(e))

    meta = {k: v for k, v in row.items() if k not in _MAPPED and k not in image_columns}
    if images:
        meta["image_paths"] = [im.path for im in images]
    if isinstance(meta.get("img_type"), str):
        try:
            meta["img_type"] = parse_literal_list(meta["img_type"], "'img_type'")
        except ValueError:
            pass  # not a list: kept as written
    if answers is not None:
        meta["answers"] = answers
    if answer is None and row.get("answer") is not None:
        meta["answer"] = row.get("answer")  # the hidden gold as written
    m = _ID.match(problem_id)
    if m:
        meta["split"] = m.group("split")
    multiple_choice = row.get("question_type") == "multiple-choice" or (bool(options) and not row.get("question_type"))
    try:
        return Problem.model_validate(dict(
            id=problem_id,
            question=question,
            images=images,
            choices=[as_text(o) for o in options],
            answer=answer,
            answer_type="choice" if multiple_choice else None,
            alternatives=[str(a) for a in answers or [] if str(a) != str(answer)],
            source=SOURCE,
            subject=m.group("subject") if m else subject_hint,
            language="en",
            meta=meta,
        ))
    except ValidationError as e:
        return LoadError(problem_id, validation_message(e))


def _images(row: dict[str, Any], base_dir: Path) -> tuple[list[ImageRef], set[str]]:
    """ImageRefs of image_1, image_2, ... in order, and the names of all image columns."""
    columns = {k: int(m.group(1)) for k in row if (m := _IMAGE_COLUMN.match(k))}
    present = sorted((n, k) for k, n in columns.items() if row[k] is not None)
    refs = []
    for expected, (n, column) in enumerate(present, start=1):
        if n != expected:
            raise ValueError(f"{column} is set but image_{expected} is empty: <image k> tags would point at the wrong picture")
        value = row[column]
        data = value.get("bytes") if isinstance(value, dict) else value
        name = value.get("path") if isinstance(value, dict) else None
        if isinstance(data, (bytes, bytearray)) and data:
            refs.append(ImageRef(bytes=bytes(data), path=name))
        elif isinstance(name, str) and name.strip():
            refs.append(ImageRef(path=resolve_image_path(name, base_dir)))
        else:
            raise ValueError(f"{column} has neither bytes nor a path")
    return refs, set(columns)


def _answer(value: Any) -> tuple[str | None, list[str] | None]:
    """(gold, every acceptable gold when the native answer lists several)."""
    text = as_text(value)
    if text is None or text.strip() in _HIDDEN_GOLD:
        return None, None
    return answer_alternatives(text)
