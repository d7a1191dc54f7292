"""Problem sets from files: one adapter per native benchmark format, each yielding Problem rows.

`load_problems(path)` tells the format from the path (or takes `format=`) and yields a Problem
per row, or a `LoadError` for a row that cannot be read, so one bad row never stops a job and
every input row still gets exactly one output row. Image bytes are not read here.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterator

from qvq_ray.datasets import mathvision, problems_jsonl
from qvq_ray.datasets.base import LoadError, LoadResult, iter_jsonl
from qvq_ray.problem import Problem

#: Format name -> loader(path) -> iterator of Problem | LoadError.
FORMATS: dict[str, Callable[[Path], Iterator[LoadResult]]] = {
    problems_jsonl.NAME: problems_jsonl.load,
    mathvision.NAME: mathvision.load,
}

_PEEK_LINES = 20


def detect_format(path: str | Path) -> str:
    """Name of the adapter for `path`, told from its layout, suffix and (for JSONL) its first rows."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"problem set not found: {path}")
    if path.is_dir():
        if mathvision.is_dataset_dir(path):
            return mathvision.NAME
        if any((path / name).is_file() for name in problems_jsonl.DEFAULT_FILES):
            return problems_jsonl.NAME
        raise ValueError(
            f"cannot tell the format of directory {path}: expected data/test.jsonl + images/ (MathVision) "
            f"or one of {', '.join(problems_jsonl.DEFAULT_FILES)}"
        )
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for _, row in itertools.islice(iter_jsonl(path), _PEEK_LINES):
            if not isinstance(row, LoadError):
                return mathvision.NAME if mathvision.looks_like(row) else problems_jsonl.NAME
        return problems_jsonl.NAME
    if suffix in problems_jsonl.SUFFIXES:
        return problems_jsonl.NAME
    raise ValueError(
        f"cannot tell the format of {path}: expected a directory or one of {', '.join(problems_jsonl.SUFFIXES)}"
    )


def load_problems(
    path: str | Path, *, format: str | None = None, limit: int | None = None
) -> Iterator[Problem | LoadError]:
    """Problems (or LoadErrors, one per unreadable row) from a problem file or dataset directory.

    `format` forces an adapter (see FORMATS); `limit` caps the rows yielded, errors included.
    A missing path or unknown format raises at once, before iteration starts.
    """
    name = format or detect_format(path)
    if name not in FORMATS:
        raise ValueError(f"unknown problem format {name!r}; known: {', '.join(sorted(FORMATS))}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    rows = FORMATS[name](Path(path))
    return itertools.islice(rows, limit) if limit is not None else rows


__all__ = ["FORMATS", "LoadError", "LoadResult", "detect_format", "load_problems"]
