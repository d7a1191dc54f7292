"""What every dataset adapter shares: the per-row error record and image-path resolution.

A problem file with one bad row must still load: the bad row becomes a `LoadError`, which the
batch job writes as that row's error output, so every input row yields exactly one output row.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from qvq_ray.problem import Problem


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
    prepare stage, running on any worker with any working directory, reads the right file.
    """
    text = value.strip()
    if text.lower().startswith(("data:", "http://", "https://", "file://")) or os.path.isabs(text):
        return text
    return os.path.abspath(os.path.join(base_dir, os.path.expanduser(text)))


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any | LoadError]]:
    """(line number, parsed object or LoadError) for each non-blank line; a bad line never stops the file."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield lineno, LoadError(f"{path.name}:{lineno}", f"invalid JSON on line {lineno}: {e}")


def validation_message(error: ValidationError) -> str:
    """A one-line summary of a pydantic error for a LoadError reason."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in error.errors())


def as_text(value: Any) -> str | None:
    """Gold answers and choices arrive as numbers in some files; Problem stores text."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


__all__ = ["LoadError", "LoadResult", "as_text", "iter_jsonl", "resolve_image_path", "validation_message"]
