"""OlympiadBench (github.com/OpenBMB/OlympiadBench) as its JSON lists: `data/<Category>.json`.

Native record (release v1; v2's extra fields are read the same way) -> Problem:
- `id` -> `id` (unique across the files); `question` -> `question`, with each markdown figure
  `![alt](url)` replaced by an `<image_k>` tag (a caption-like alt text, "图甲", kept before it) and the URL -> `images[k-1]`
  as `ImageRef(path=url)`. URLs are fetched by the prepare stage only when URL fetching is allowed
  (ImageLimits.allow_urls); otherwise that row becomes an error row saying "URL images are
  disabled". The question as written is kept in meta["question_markdown"]. v2's `context` is
  put before the question (and kept in meta);
- `final_answer` (a list of LaTeX strings) -> `answer`, joined with ", " when it has several, the
  list in meta["final_answer"]. Theorem-proving items ("证明题", `answer_type`
  Need_human_evaluate, `support_auto_scoring` false) have no gold to match: `answer` is None;
- `unit` -> `unit` when one unit applies to every answer; per-answer units (",kg") stay in
  meta["unit"] with the split list in meta["units"];
- `error` (absolute tolerance, one per answer: "1e-1", ",1e-2") -> `tolerance` when it is a single
  number (applying to every answer), the raw string in meta["error"], the parsed per-answer list
  in meta["tolerances"];
- `answer_type` ("Numerical", "Expression", ..., "Numerical,Numerical" per answer) -> `answer_type`;
- `classification` / file name -> `subject` ("Math" or "Physics") and `language` ("zh" for the
  Chinese and Gaokao files, "en" for the English ones; v2's `language` field wins);
- `subfield`, `solution`, `is_multiple_answer`, `label`, `source` (the competition, e.g.
  "OPhO/2020"), `support_auto_scoring`, `classification` and unknown fields -> meta.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from qvq_ray.datasets.base import (
    checked_gold,
    id_and_question,
    LoadError,
    as_text,
    first_record,
    has_cjk,
    parse_error_tolerances,
    read_json,
    resolve_image_path,
    validation_message,
)
from qvq_ray.problem import ImageRef, Problem

NAME = "olympiadbench"
SOURCE = "OlympiadBench"
#: Fields whose presence marks a record as OlympiadBench's.
SIGNATURE = frozenset({"question", "final_answer", "is_multiple_answer"})
#: `![alt](url "title")`: a markdown image; group 1 the alt text, group 2 the URL.
MARKDOWN_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"\n]*\")?\s*\)")
_NO_GOLD_TYPES = {"need_human_evaluate"}
#: Alt texts that say nothing ("![Image](...)" in the Gaokao files): dropped, not put before the tag.
_BARE_ALTS = {"image", "img", "picture", "figure"}
_MAPPED = {"id", "question", "final_answer", "unit", "error", "answer_type"}


def looks_like(record: Any) -> bool:
    return isinstance(record, dict) and SIGNATURE <= record.keys()


def dataset_files(path: Path) -> list[Path]:
    """The JSON files of a dataset directory (`data/*.json`, else `*.json`) whose records look like ours."""
    for folder in (path / "data", path):
        files = [f for f in sorted(folder.glob("*.json")) if _file_looks_like(f)]
        if files:
            return files
    return []


def _file_looks_like(file: Path) -> bool:
    try:
        data = read_json(file)
    except (ValueError, OSError):
        return False
    return isinstance(data, list) and looks_like(first_record(data))


def is_dataset_dir(path: Path) -> bool:
    return bool(dataset_files(path))


def load(path: str | Path) -> Iterator[Problem | LoadError]:
    """Problems (or per-row LoadErrors) of an OlympiadBench JSON file or every such file in a directory."""
    path = Path(path)
    if path.is_dir():
        files = dataset_files(path)
        if not files:
            raise FileNotFoundError(f"{path} is not an OlympiadBench dataset: no data/*.json lists of problems")
        documents = [(f, read_json(f)) for f in files]
    elif path.is_file():
        documents = [(path, read_json(path))]
    else:
        raise FileNotFoundError(f"OlympiadBench file not found: {path}")
    for file, data in documents:
        if not isinstance(data, list):
            raise ValueError(f"{file}: expected a list of problems, got {type(data).__name__}")
    return _rows(documents)


def _rows(documents: list[tuple[Path, list[Any]]]) -> Iterator[Problem | LoadError]:
    for file, data in documents:
        base_dir = file.resolve().parent
        for i, record in enumerate(data):
            yield row_to_problem(record, ref=f"{file.name}[{i}]", base_dir=base_dir, category=file.stem)


def row_to_problem(record: Any, *, ref: str, base_dir: Path, category: str | None = None) -> Problem | LoadError:
    """One native OlympiadBench record to a Problem, or a LoadError naming the row."""
    checked = id_and_question(record, ref)
    if isinstance(checked, LoadError):
        return checked
    problem_id, question = checked
    final_answer = record.get("final_answer")
    if isinstance(final_answer, str):
        final_answer = [final_answer]
    if final_answer is None:
        final_answer = []
    if not isinstance(final_answer, list) or not all(isinstance(a, (str, int, float)) for a in final_answer):
        return LoadError(problem_id, "'final_answer' must be a list of strings")
    final_answer = [as_text(a) for a in final_answer]
    try:
        tolerances = parse_error_tolerances(record.get("error"))
    except ValueError as e:
        return LoadError(problem_id, str(e))

    meta = {k: v for k, v in record.items() if k not in _MAPPED}
    meta["final_answer"] = final_answer
    meta["error"] = record.get("error")
    if tolerances is not None:
        meta["tolerances"] = tolerances
    text, images = _figures(question, base_dir)
    if text != question:
        meta["question_markdown"] = question
    context = record.get("context")
    if isinstance(context, str) and context.strip():
        context_text, context_images = _figures(context, base_dir, first=len(images) + 1)
        text, images = f"{context_text}\n\n{text}", images + context_images
    unit, units = _unit(record.get("unit"))
    if units is not None:
        meta["unit"] = record.get("unit")
        meta["units"] = units
    answer_type = record.get("answer_type")
    no_gold = (
        not final_answer
        or record.get("support_auto_scoring") is False
        or str(answer_type or "").strip().lower() in _NO_GOLD_TYPES
    )
    classification = str(record.get("classification") or category or "")
    try:
        return Problem.model_validate(dict(
            id=problem_id,
            question=text,
            images=images,
            answer=None if no_gold else checked_gold(final_answer, problem_id, meta),
            answer_type=answer_type,
            unit=unit if units is None else ",".join(u or "" for u in units),
            tolerance=tolerances,
            source=SOURCE,
            subject=_subject(record, classification),
            language=_language(record, classification, question),
            meta=meta,
        ))
    except ValidationError as e:
        return LoadError(problem_id, validation_message(e))


def _figures(text: str, base_dir: Path, first: int = 1) -> tuple[str, list[ImageRef]]:
    """Markdown figures -> `<image_k>` tags (one per distinct URL, numbered from `first`) and their refs."""
    numbers: dict[str, int] = {}
    refs: list[ImageRef] = []

    def tag(m: re.Match[str]) -> str:
        alt, url = m.group(1).strip(), m.group(2)
        if url not in numbers:
            numbers[url] = first + len(refs)
            refs.append(ImageRef(path=resolve_image_path(url, base_dir)))
        placeholder = f"<image_{numbers[url]}>"
        return f"{alt} {placeholder}" if alt and alt.lower() not in _BARE_ALTS else placeholder

    return MARKDOWN_IMAGE.sub(tag, text), refs


def _unit(value: Any) -> tuple[str | None, list[str] | None]:
    """(the unit every answer shares, or None; the per-answer list when they differ)."""
    text = as_text(value)
    if text is None or not text.strip():
        return None, None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1 or len(set(parts)) == 1:
        return parts[0] or None, None
    return None, parts


def _subject(record: dict[str, Any], classification: str) -> str | None:
    subject = record.get("subject")
    if isinstance(subject, str) and subject.strip():
        return subject
    lowered = classification.lower()
    if "physics" in lowered:
        return "Physics"
    if "math" in lowered:
        return "Math"
    return None


def _language(record: dict[str, Any], classification: str, question: str) -> str:
    language = str(record.get("language") or "").lower()
    if language in ("english", "en"):
        return "en"
    if language in ("chinese", "zh"):
        return "zh"
    lowered = classification.lower()
    if lowered.startswith("english"):
        return "en"
    if lowered.startswith(("chinese", "gaokao")):
        return "zh"
    return "zh" if has_cjk(question) else "en"
