"""Problem sets from files: one adapter per native benchmark format, each yielding Problem rows.

`load_problems(path)` tells the format from the path (or takes `format=`) and yields a Problem
per row, or a `LoadError` for a row that cannot be read, so one bad row never stops a job and
every input row still gets exactly one output row. Image files and URLs are not read here (the
prepare stage reads them, so a missing one is that row's error); images embedded in the file
(MMMU parquet, VLMEvalKit base64) come as bytes.

Formats (FORMATS keys) and how a path is recognised:
- `problems`: our own rows (JSONL/JSON/Parquet with Problem's fields; `problems.*` in a directory);
- `mathvision`: MATH-V, `data/test.jsonl` + `images/`, or a JSONL whose rows have options/level/image;
- `mathvista`: MathVista, `data/testmini.json` (or HF `testmini-*.parquet`), or a JSON/parquet file
  whose records have pid/question_type/answer_type;
- `mmmu`: MMMU HF parquet, `<Subject>/validation-*.parquet`, or a parquet file with image_1/options;
- `olympiadbench`: OlympiadBench JSON lists, `data/*.json`, or a JSON list with final_answer;
- `vlmevalkit`: a VLMEvalKit `.tsv`.
Adapters take options as keywords, passed through `load_problems(..., **options)`: mathvista
`images_dir=`/`split=`, mmmu `split=`, vlmevalkit `source=`, mathvision `split=`.

May import the records (`qvq_ray.problem`), `qvq_ray.verify` (AnswerSpec, text rules),
`qvq_ray.config` and the floor; never an engine, the solver or a front end.
tests/test_import_layers.py holds it to that.
"""

from __future__ import annotations

import inspect
import itertools
from pathlib import Path
from typing import Any, Callable, Iterator

from qvq_ray.datasets import mathvision, mathvista, mmmu, olympiadbench, problems_jsonl, vlmevalkit_tsv
from qvq_ray.datasets.base import LoadError, LoadResult, first_record, input_folders, iter_jsonl, read_json
from qvq_ray.problem import Problem

#: Format name -> loader(path, **options) -> iterator of Problem | LoadError.
FORMATS: dict[str, Callable[..., Iterator[LoadResult]]] = {
    problems_jsonl.NAME: problems_jsonl.load,
    mathvision.NAME: mathvision.load,
    mathvista.NAME: mathvista.load,
    mmmu.NAME: mmmu.load,
    olympiadbench.NAME: olympiadbench.load,
    vlmevalkit_tsv.NAME: vlmevalkit_tsv.load,
}

#: Format name -> image_roots(path, **options) for the formats whose images live elsewhere than
#: beside the input (the others: `input_folders`).
IMAGE_ROOTS: dict[str, Callable[..., list[Path]]] = {
    mathvision.NAME: mathvision.image_roots,
    mathvista.NAME: mathvista.image_roots,
}

_PEEK_LINES = 20


def detect_format(path: str | Path) -> str:
    """Name of the adapter for `path`, told from its layout, suffix and (for JSONL) its first rows."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"problem set not found: {path}")
    if path.is_dir():
        return _detect_dir(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for _, row in itertools.islice(iter_jsonl(path), _PEEK_LINES):
            if not isinstance(row, LoadError):
                return mathvision.NAME if mathvision.looks_like(row) else problems_jsonl.NAME
        return problems_jsonl.NAME
    if suffix == ".json":
        try:
            data = read_json(path)
        except ValueError:
            return problems_jsonl.NAME  # its loader says what is wrong with the file
        record = first_record(data)
        if mathvista.looks_like(record):
            return mathvista.NAME
        if isinstance(data, list) and olympiadbench.looks_like(record):
            return olympiadbench.NAME
        return problems_jsonl.NAME
    if suffix == ".parquet":
        columns = mmmu.parquet_columns(path)
        if mmmu.looks_like(columns):
            return mmmu.NAME
        if mathvista.looks_like(columns):
            return mathvista.NAME
        return problems_jsonl.NAME
    if suffix in vlmevalkit_tsv.SUFFIXES:
        return vlmevalkit_tsv.NAME
    raise ValueError(
        f"cannot tell the format of {path}: expected a directory or one of "
        f"{', '.join(problems_jsonl.SUFFIXES + vlmevalkit_tsv.SUFFIXES)}"
    )


def _detect_dir(path: Path) -> str:
    if mathvision.is_dataset_dir(path):
        return mathvision.NAME
    if any((path / name).is_file() for name in problems_jsonl.DEFAULT_FILES):
        return problems_jsonl.NAME
    if mathvista.is_dataset_dir(path):
        return mathvista.NAME
    if mmmu.is_dataset_dir(path):
        return mmmu.NAME
    if olympiadbench.is_dataset_dir(path):
        return olympiadbench.NAME
    if len(list(path.glob("*.tsv"))) == 1:
        return vlmevalkit_tsv.NAME
    raise ValueError(
        f"cannot tell the format of directory {path}: expected data/test.jsonl + images/ (MathVision), "
        f"data/testmini.json (MathVista), <Subject>/validation-*.parquet (MMMU), data/*.json lists "
        f"(OlympiadBench), one .tsv (VLMEvalKit) or one of {', '.join(problems_jsonl.DEFAULT_FILES)}"
    )


def load_problems(
    path: str | Path, *, format: str | None = None, limit: int | None = None, **options: Any
) -> Iterator[Problem | LoadError]:
    """Problems (or LoadErrors, one per unreadable row) from a problem file or dataset directory.

    `format` forces an adapter (see FORMATS); `limit` caps the rows yielded, errors included;
    `options` go to the adapter (e.g. `images_dir=` for MathVista). A missing path, an unknown
    format or an option the adapter does not take raises at once, before iteration starts.
    """
    name = format or detect_format(path)
    if name not in FORMATS:
        raise ValueError(f"unknown problem format {name!r}; known: {', '.join(sorted(FORMATS))}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    loader = FORMATS[name]
    accepted = [p.name for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"format {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    rows = loader(Path(path), **options)
    return itertools.islice(rows, limit) if limit is not None else rows


def image_roots(path: str | Path, *, format: str | None = None, **options: Any) -> list[Path]:
    """The folders the image files of the problem set at `path` may be read from: the dataset's own
    folder (MathVision's root, MathVista's images folder or the one given, the folder of any other
    input). A problem file is a stranger's: the paths it names are read only inside these
    (qvq_ray/image_files.py). `options` are `load_problems`'s."""
    name = format or detect_format(path)
    special = IMAGE_ROOTS.get(name)
    if special is None:
        return input_folders(Path(path))
    accepted = {p.name for p in inspect.signature(special).parameters.values() if p.kind is p.KEYWORD_ONLY}
    return special(Path(path), **{k: v for k, v in options.items() if k in accepted})


__all__ = ["FORMATS", "IMAGE_ROOTS", "LoadError", "LoadResult", "detect_format", "image_roots", "load_problems"]
