"""Where the benchmarks find the shared benchmark samples (MATH-V, MathVista, MMMU, OlympiadBench).

They are not in the repository: `$QVQ_RAY_SHARED_DATA`, else `../shared/data` beside it (the same
rule as the tests' `shared_data` in tests/conftest.py). A benchmark part that needs a sample that
is absent says why and is left out; the benchmark still exits 0.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "QVQ_RAY_SHARED_DATA"


def shared_data_root() -> Path:
    configured = os.environ.get(ENV)
    return Path(configured) if configured else ROOT.parent / "shared" / "data"


def shared_data(relative: str = "") -> Path | None:
    """`<shared data>/<relative>`, or None after printing (to stderr) why that part is skipped."""
    path = shared_data_root() / relative
    if path.exists():
        return path
    print(
        f"skipped: {relative or 'shared data'} not found at {path}: the shared benchmark samples are read "
        f"from ../shared/data beside the repository (or ${ENV})",
        file=sys.stderr,
    )
    return None
