"""MATH-Vision (MATH-V, github.com/mathllm/MATH-V) in its native layout: `data/<split>.jsonl` + `images/`.

Native row: `id`, `question` (with `<image1>`... tags, kept: the prompt places the image there),
`options` (`[]` when free-form; often just ["A".."E"] with the real options drawn in the
image), `answer` (the option letter for multiple choice), `solution`, `level`, `subject`,
`image` (one composite picture per problem, relative to the dataset root).
`level`, `solution` and any field this adapter does not know go to `meta`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from qvq_ray.datasets.base import LoadError, as_text, id_and_question, iter_jsonl, resolve_image_path, validation_message
from qvq_ray.problem import ImageRef, Problem

NAME = "mathvision"
SOURCE = "MathVision"
#: Fields whose presence marks a JSONL row as MATH-V's.
SIGNATURE = frozenset({"options", "level", "image"})
_MAPPED = {"id", "question", "options", "answer", "subject", "image"}


def looks_like(row: Any) -> bool:
    """True for a parsed row in MATH-V's native shape."""
    return isinstance(row, dict) and SIGNATURE <= row.keys() and "question" in row


def is_dataset_dir(path: Path, split: str = "test") -> bool:
    return (path / "data" / f"{split}.jsonl").is_file() and (path / "images").is_dir()


def locate(path: Path, split: str = "test") -> tuple[Path, Path]:
    """(jsonl file, dataset root) for a dataset directory or one of its `data/*.jsonl` files."""
    if path.is_dir():
        file = path / "data" / f"{split}.jsonl"
        if not file.is_file():
            raise FileNotFoundError(f"{path} is not a MATH-V dataset: no data/{split}.jsonl")
        return file, path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"MATH-V file not found: {path}")
    parent = path.resolve().parent
    # Upstream layout: image paths ("images/1.jpg") are relative to the folder above data/.
    root = parent.parent if parent.name == "data" and (parent.parent / "images").is_dir() else parent
    return path, root


def image_roots(path: str | Path, *, split: str = "test") -> list[Path]:
    """The folder image paths may lead into: the dataset root (`images/` lives there)."""
    return [locate(Path(path), split)[1]]


def load(path: str | Path, *, split: str = "test") -> Iterator[Problem | LoadError]:
    """Problems (or per-row LoadErrors) of a MATH-V dataset directory or JSONL file."""
    file, root = locate(Path(path), split)
    return _rows(file, root)


def _rows(file: Path, root: Path) -> Iterator[Problem | LoadError]:
    for lineno, row in iter_jsonl(file):
        yield row if isinstance(row, LoadError) else row_to_problem(row, root=root, ref=f"{file.name}:{lineno}")


def row_to_problem(row: Any, *, root: Path, ref: str) -> Problem | LoadError:
    """One native MATH-V row to a Problem, or a LoadError naming the row."""
    checked = id_and_question(row, ref)
    if isinstance(checked, LoadError):
        return checked
    problem_id, question = checked
    options = row.get("options") or []
    if not isinstance(options, list):
        return LoadError(problem_id, f"'options' must be a list, got {type(options).__name__}")
    image = row.get("image")
    if image is not None and not isinstance(image, str):
        return LoadError(problem_id, f"'image' must be a relative path, got {type(image).__name__}")
    meta = {k: v for k, v in row.items() if k not in _MAPPED}
    try:
        return Problem.model_validate(dict(
            id=problem_id,
            question=question,
            images=[ImageRef(path=resolve_image_path(image, root))] if image else [],
            choices=[as_text(o) for o in options],
            answer=as_text(row.get("answer")),
            answer_type="choice" if options else None,
            source=SOURCE,
            subject=row.get("subject"),
            language="en",
            meta=meta,
        ))
    except ValidationError as e:
        return LoadError(problem_id, validation_message(e))
