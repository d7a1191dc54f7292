"""Our own problem files: JSONL, JSON or Parquet rows with Problem's fields.

Rows are written by hand or by other tools, so the reader is lenient where intent is clear and
strict where it is not:
- `images` is a list of relative paths, data URLs, URLs, `{"path": ...}`, `{"bytes": ...}` (base64
  text in JSON, binary in Parquet); a single `image` field is read as a one-image list;
- numeric ids, answers and choices become text; `meta` may be an object or a JSON string (the
  Arrow row form written by `problem_to_row`); fields Problem does not know go to `meta`;
- a row without `id` or `question`, or with a value of the wrong type, becomes a LoadError.
Image bytes are never read here: paths become absolute and the prepare stage reads them.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from qvq_ray.datasets.base import LoadError, as_text, iter_jsonl, resolve_image_path, to_text, validation_message
from qvq_ray.problem import ImageRef, Problem
from qvq_ray.verify.spec import AnswerSpec

NAME = "problems"
SUFFIXES = (".jsonl", ".json", ".parquet")
#: File names looked for when a directory is given.
DEFAULT_FILES = tuple(f"problems{suffix}" for suffix in SUFFIXES)

# Problem's fields, and its answer spec's written flat (`choices`, `unit`, ... as problem files write them).
_FIELDS = set(Problem.model_fields) | set(AnswerSpec.model_fields)


def find_file(path: Path) -> Path:
    """The problem file itself, or `problems.jsonl|.json|.parquet` inside a directory."""
    if path.is_dir():
        for name in DEFAULT_FILES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"no {', '.join(DEFAULT_FILES)} in directory {path}")
    if not path.exists():
        raise FileNotFoundError(f"problem file not found: {path}")
    return path


def load(path: str | Path) -> Iterator[Problem | LoadError]:
    """Problems (or per-row LoadErrors) from a JSONL, JSON or Parquet file, or a directory holding one."""
    file = find_file(Path(path))
    base_dir = file.parent.resolve()
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        return _load_parquet(file, base_dir)
    if suffix == ".json":
        return _load_json(file, base_dir)
    return _load_jsonl(file, base_dir)


def _load_jsonl(file: Path, base_dir: Path) -> Iterator[Problem | LoadError]:
    for lineno, row in iter_jsonl(file):
        yield row if isinstance(row, LoadError) else row_to_problem(row, base_dir=base_dir, ref=f"{file.name}:{lineno}")


def _load_json(file: Path, base_dir: Path) -> Iterator[Problem | LoadError]:
    """A list of rows, `{"problems": [...]}`, or an object keyed by id (MathVista style)."""
    try:
        data = json.loads(file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file} is not valid JSON (one broken document has no readable rows): {e}") from None
    if isinstance(data, dict) and isinstance(data.get("problems"), list):
        data = data["problems"]
    if isinstance(data, list):
        for i, row in enumerate(data):
            yield row_to_problem(row, base_dir=base_dir, ref=f"{file.name}[{i}]")
    elif isinstance(data, dict):
        for key, row in data.items():
            if isinstance(row, dict) and "id" not in row:
                row = {"id": key, **row}
            yield row_to_problem(row, base_dir=base_dir, ref=f"{file.name}[{key!r}]")
    else:
        raise ValueError(f"{file}: expected a list of problems or an object keyed by id, got {type(data).__name__}")


def _load_parquet(file: Path, base_dir: Path) -> Iterator[Problem | LoadError]:
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(file).iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield row_to_problem(row, base_dir=base_dir, ref=f"{file.name}:row {index}")
            index += 1


def row_to_problem(row: Any, *, base_dir: Path, ref: str) -> Problem | LoadError:
    """One row to a Problem; anything wrong with it becomes a LoadError naming the row."""
    if not isinstance(row, dict):
        return LoadError(ref, f"expected an object, got {type(row).__name__}")
    problem_id = row.get("id")
    if problem_id is None or (isinstance(problem_id, str) and not problem_id.strip()):
        return LoadError(ref, "missing required field 'id'")
    problem_id = to_text(problem_id)
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        reason = "missing required field 'question'" if question is None else "'question' must be non-empty text"
        return LoadError(problem_id, reason)

    data = {k: v for k, v in row.items() if k in _FIELDS}
    extra = {k: v for k, v in row.items() if k not in _FIELDS}
    if "images" not in row and "image" in row:
        data["images"] = extra.pop("image")
    try:
        data["images"] = parse_images(data.get("images"), base_dir)
        meta = _parse_meta(data.get("meta"))
    except ValueError as e:
        return LoadError(problem_id, str(e))
    data["meta"] = {**extra, **meta}
    data["id"] = problem_id
    data["answer"] = as_text(data.get("answer"))
    choices = data.get("choices")
    if isinstance(choices, (list, tuple)):
        data["choices"] = [as_text(c) for c in choices]
    elif choices is None:
        data.pop("choices", None)
    try:
        return Problem(**data)
    except ValidationError as e:
        return LoadError(problem_id, validation_message(e))


def parse_images(value: Any, base_dir: Path) -> list[ImageRef]:
    """ImageRefs from a path, a list of paths/dicts/bytes, or None; relative paths made absolute."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"'images' must be a list, got {type(value).__name__}")
    refs = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            refs.append(ImageRef(path=resolve_image_path(item, base_dir)))
        elif isinstance(item, (bytes, bytearray)):
            refs.append(ImageRef(bytes=bytes(item)))
        elif isinstance(item, dict):
            unknown = set(item) - {"bytes", "path"}
            if unknown:
                raise ValueError(f"images[{i}] has unknown keys {sorted(unknown)}; expected 'path' or 'bytes'")
            data, path = item.get("bytes"), item.get("path")
            if isinstance(data, str):
                data = _b64(data, i)
            if data is not None:
                # Bytes win; a path beside them is only a name (Hugging Face Image feature), kept as is.
                refs.append(ImageRef(bytes=bytes(data), path=path))
            elif isinstance(path, str) and path.strip():
                refs.append(ImageRef(path=resolve_image_path(path, base_dir)))
            else:
                raise ValueError(f"images[{i}] has neither 'bytes' nor 'path'")
        else:
            raise ValueError(f"images[{i}] must be a path, an object or bytes, got {type(item).__name__}")
    return refs


def _b64(text: str, i: int) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"images[{i}].bytes is text but not valid base64") from None


def _parse_meta(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"'meta' is text but not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"'meta' must be an object, got {type(value).__name__}")
    return value
