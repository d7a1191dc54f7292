"""MathVista (github.com/lupantech/MathVista) in its native forms: `testmini.json` keyed by pid, or the
Hugging Face parquet (`AI4Math/MathVista`, same fields plus `query` and `decoded_image`).

Native record -> Problem:
- `pid` -> `id`; `question` -> `question` (the dataset's own prompt `query`, with its hint and
  lettered choices, goes to meta: our prompt builder lists the choices itself);
- `choices` -> `choices`; `answer` -> `answer` as written. For multiple choice the gold is the
  choice TEXT, not a letter: it stays the text, `answer_type` becomes "choice" (the native
  "text" is kept in meta["answer_type"]) and meta["answer_letter"] records the matching letter
  (None when no choice matches the gold exactly);
- `precision` (decimal places of a float gold) -> meta["precision"] and `tolerance` = half a unit
  in that place (precision 1 -> 0.05, 2 -> 0.005), so every value that rounds to the gold matches;
- `unit` -> `unit`; `answer_type` (integer/float/text/list) -> `answer_type`;
- `metadata.task` -> `subject`, `metadata.language` (english/chinese/persian) -> `language`
  (en/zh/fa); `metadata` whole, `question_type`, `query`, `image` and any unknown field -> meta.

Images: the GitHub repo ships none. A record's `image` ("images/<pid>.jpg") is looked up in the
images folder given by `images_dir=` (or the QVQ_RAY_MATHVISTA_IMAGES environment variable), else
in the `images/` folder beside the JSON file (or beside its `data/` folder, upstream's layout). The
path is only recorded here: a missing file becomes that row's error ("image file not found: ...")
when the prepare stage reads it, so one missing picture never stops a job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import ValidationError

from qvq_ray.datasets.base import (
    LoadError,
    as_text,
    dataset_root,
    first_record,
    precision_tolerance,
    read_json,
    resolve_image_path,
    to_text,
    validation_message,
)
from qvq_ray.problem import ImageRef, Problem

NAME = "mathvista"
SOURCE = "MathVista"
ENV_IMAGES = "QVQ_RAY_MATHVISTA_IMAGES"
DEFAULT_SPLIT = "testmini"
#: Fields whose presence marks a record as MathVista's.
SIGNATURE = frozenset({"pid", "question", "question_type", "answer_type"})
LANGUAGES = {"english": "en", "chinese": "zh", "persian": "fa"}
_MAPPED = {"pid", "question", "choices", "answer", "unit", "decoded_image"}


def looks_like(record: Any) -> bool:
    """True for a parsed record (or a parquet schema's column names) in MathVista's shape."""
    keys = record.keys() if isinstance(record, dict) else record
    try:
        return SIGNATURE <= set(keys)
    except TypeError:
        return False


def candidate_files(path: Path, split: str = DEFAULT_SPLIT) -> list[Path]:
    """Where a dataset directory keeps a split: data/<split>.json (GitHub), <split>.json, or HF parquet shards."""
    return [
        path / "data" / f"{split}.json",
        path / f"{split}.json",
        path / f"annot_{split}.json",
        *sorted((path / "data").glob(f"{split}-*.parquet")),
        *sorted(path.glob(f"{split}-*.parquet")),
    ]


def is_dataset_dir(path: Path, split: str = DEFAULT_SPLIT) -> bool:
    found = [f for f in candidate_files(path, split) if f.is_file()]
    return bool(found) and file_looks_like(found[0])


def file_looks_like(file: Path) -> bool:
    """True for a JSON file whose first record, or a parquet file whose columns, are MathVista's."""
    try:
        if file.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return looks_like(pq.read_schema(file).names)
        return looks_like(first_record(read_json(file)))
    except (ValueError, OSError):
        return False


def load(
    path: str | Path, *, images_dir: str | Path | None = None, split: str = DEFAULT_SPLIT
) -> Iterator[Problem | LoadError]:
    """Problems (or per-row LoadErrors) of a MathVista JSON/parquet file or dataset directory."""
    files = _locate(Path(path), split)
    images = _images_dir(images_dir)
    if files[0].suffix.lower() == ".parquet":
        return _parquet_rows(files, images)
    data = read_json(files[0])
    if not isinstance(data, (dict, list)):
        raise ValueError(f"{files[0]}: expected an object keyed by pid or a list, got {type(data).__name__}")
    return _json_rows(files[0], data, images)


def image_roots(
    path: str | Path, *, images_dir: str | Path | None = None, split: str = DEFAULT_SPLIT
) -> list[Path]:
    """The folders image files may be read from: the images folder given (`images_dir=` or
    QVQ_RAY_MATHVISTA_IMAGES), else the `images/` folder the records' `images/<pid>.jpg` lead into."""
    given = _images_dir(images_dir)
    if given is not None:
        return [given]
    return list(dict.fromkeys(_image_base(file, None)[1] / "images" for file in _locate(Path(path), split)))


def _locate(path: Path, split: str) -> list[Path]:
    if path.is_dir():
        found = [f for f in candidate_files(path, split) if f.is_file()]
        if not found:
            raise FileNotFoundError(f"{path} is not a MathVista dataset: no data/{split}.json or {split}-*.parquet")
        # One form only: the JSON if there is one, else every parquet shard of the split.
        return found[:1] if found[0].suffix == ".json" else [f for f in found if f.suffix == ".parquet"]
    if not path.is_file():
        raise FileNotFoundError(f"MathVista file not found: {path}")
    return [path]


def _images_dir(images_dir: str | Path | None) -> Path | None:
    given = images_dir if images_dir is not None else os.environ.get(ENV_IMAGES) or None
    return Path(given).expanduser().resolve() if given else None


def _image_base(file: Path, images_dir: Path | None) -> tuple[Path | None, Path]:
    """(images folder given by the user or None, the folder `images/<pid>.jpg` is relative to)."""
    beside = file.resolve().parent
    root = beside if (beside / "images").is_dir() else dataset_root(file)
    return images_dir, root


def _json_rows(file: Path, data: dict[str, Any] | list[Any], images_dir: Path | None) -> Iterator[Problem | LoadError]:
    base = _image_base(file, images_dir)
    items = data.items() if isinstance(data, dict) else ((None, r) for r in data)
    for i, (key, record) in enumerate(items):
        ref = f"{file.name}[{key!r}]" if key is not None else f"{file.name}[{i}]"
        yield row_to_problem(record, key=key, ref=ref, image_base=base)


def _parquet_rows(files: list[Path], images_dir: Path | None) -> Iterator[Problem | LoadError]:
    import pyarrow.parquet as pq

    for file in files:
        base = _image_base(file, images_dir)
        index = 0
        for batch in pq.ParquetFile(file).iter_batches(batch_size=64):
            for record in batch.to_pylist():
                yield row_to_problem(record, key=None, ref=f"{file.name}:row {index}", image_base=base)
                index += 1


def row_to_problem(
    record: Any, *, key: str | None, ref: str, image_base: tuple[Path | None, Path]
) -> Problem | LoadError:
    """One native MathVista record to a Problem, or a LoadError naming the row."""
    if not isinstance(record, dict):
        return LoadError(ref, f"expected an object, got {type(record).__name__}")
    pid = record.get("pid", key)
    if pid in (None, ""):
        return LoadError(ref, "missing required field 'pid'")
    problem_id = to_text(pid)
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        return LoadError(problem_id, "missing required field 'question'")
    choices = record.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, (list, tuple)):
        return LoadError(problem_id, f"'choices' must be a list or null, got {type(choices).__name__}")
    choices = [as_text(c) for c in choices]
    if any(c is None for c in choices):
        return LoadError(problem_id, "'choices' holds a null option")
    try:
        images = _images(record, image_base)
    except ValueError as e:
        return LoadError(problem_id, str(e))

    meta = {k: v for k, v in record.items() if k not in _MAPPED}
    if key is not None and as_text(key) != problem_id:
        meta["key"] = key
    answer = as_text(record.get("answer"))
    answer = answer if answer is not None and answer.strip() else None
    answer_type = record.get("answer_type")
    if record.get("question_type") == "multi_choice" or (choices and record.get("question_type") is None):
        meta["answer_letter"] = _letter(answer, choices)
        answer_type = "choice"
    precision = record.get("precision")
    if isinstance(precision, float) and precision.is_integer():  # float64 in the HF parquet
        precision = int(precision)
        meta["precision"] = precision
    metadata = record["metadata"] if isinstance(record.get("metadata"), dict) else {}
    language = metadata.get("language")
    try:
        return Problem.model_validate(dict(
            id=problem_id,
            question=question,
            images=images,
            choices=choices,
            answer=answer,
            answer_type=answer_type,
            unit=as_text(record.get("unit")) or None,
            tolerance=precision_tolerance(precision),
            precision=precision if isinstance(precision, int) else None,
            source=SOURCE,
            subject=metadata.get("task"),
            language=LANGUAGES.get(str(language).lower(), language) if language else None,
            meta=meta,
        ))
    except ValidationError as e:
        return LoadError(problem_id, validation_message(e))


def _images(record: dict[str, Any], image_base: tuple[Path | None, Path]) -> list[ImageRef]:
    decoded = record.get("decoded_image")
    if isinstance(decoded, dict) and decoded.get("bytes"):
        return [ImageRef(bytes=bytes(decoded["bytes"]), path=decoded.get("path") or record.get("image"))]
    if isinstance(decoded, (bytes, bytearray)) and decoded:
        return [ImageRef(bytes=bytes(decoded), path=record.get("image"))]
    image = record.get("image")
    if image in (None, ""):
        return []
    if not isinstance(image, str):
        raise ValueError(f"'image' must be a relative path, got {type(image).__name__}")
    images_dir, root = image_base
    if images_dir is not None:
        # The folder holding the pictures; a dataset root holding images/ works as well.
        inside = images_dir / image
        path = inside if inside.is_file() else images_dir / Path(image).name
        return [ImageRef(path=str(path))]
    return [ImageRef(path=resolve_image_path(image, root))]


def _letter(answer: str | None, choices: list[str]) -> str | None:
    """Letter of the choice the gold text names (exact, then ignoring surrounding spaces)."""
    if answer is None:
        return None
    rules: tuple[Callable[[str], bool], ...] = (lambda c: c == answer, lambda c: c.strip() == answer.strip())
    for same in rules:
        for i, choice in enumerate(choices):
            if same(choice) and i < 26:
                return chr(ord("A") + i)
    return None
