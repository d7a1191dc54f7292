"""Re-score result files of other tools (and our own) with this verifier: `qvq-ray rescore`.

Readers, one per result format, yield `ResultRecord`s (an id, the response, the tool's own verdict
when the file has one, or why the record could not be read):
- `mathvision`: MATH-V outputs JSONL, `{id, response, correct?}` per line;
- `mathvista`: MathVista output JSON, `{pid: {response, true_false?, ...}}` (or a list of records);
- `vlmevalkit`: VLMEvalKit prediction TSV/XLSX with `index` and `prediction` columns (`hit` when judged);
- `parquet`: our own output (a file or a `qvq-ray solve` directory): `id` and the chosen attempt's
  text, else `answer`; our earlier `correct` is the "tool" verdict.

`rescore` joins the records to a benchmark's problems (`qvq_ray.datasets.load_problems`), checks
every response with the verifier's process pool (hard per-check timeouts) and writes the rows of
`qvq-ray solve`, plus a `tool_correct` column. With a judge model (`verifier.judge` of the config)
the cases the rules leave undecided (no answer found, a free-text gold called different) go to the
judge, many at once, and each row says who decided it (`decided_by`); the summary counts them and
the judge's agreement with the tool's verdicts on the cases it decided. Nothing is dropped and one id gets one row: a
result whose id is not in the benchmark, an unreadable record, an id given twice with different
responses, and a problem with no result each become an error row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from qvq_ray.config import QvqConfig, VerifierConfig
    from qvq_ray.problem import Problem
    from qvq_ray.verify.checker import AnswerChecker
    from qvq_ray.verify.verdict import Verdict
    from qvq_ray.verify.verifier import Verifier

RESULT_FORMATS = ("mathvision", "mathvista", "vlmevalkit", "parquet")


@dataclass
class ResultRecord:
    id: str
    response: str | None = None
    tool_correct: bool | None = None
    error: str | None = None


@dataclass
class RescoreSummary:
    results_format: str | None = None  # the format the results were read as (given, or told from the path)
    rows: int = 0
    results: int = 0
    problems: int = 0
    scored: int = 0
    judged: int = 0
    correct: int = 0
    not_judged: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    with_tool_verdict: int = 0
    agree: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    disagreements_file: str | None = None
    decided_by: dict[str, int] = field(default_factory=dict)
    judge_decided_with_tool: int = 0
    judge_agree: int = 0
    judge_stats: str | None = None
    seconds: float = 0.0

    def lines(self) -> list[str]:
        def share(n: int, d: int) -> str:
            return f"{n}/{d} ({100 * n / d:.1f}%)" if d else f"{n}/0"

        out = [
            f"rows       {self.rows}  (results read {self.results}, problems {self.problems})",
            f"scored     {self.scored}  judged {self.judged}  correct {share(self.correct, self.judged)}  not judged {self.not_judged}",
            f"errors     {sum(self.errors.values())}" + "".join(f"  {k}: {v}" for k, v in sorted(self.errors.items())),
        ]
        if self.with_tool_verdict:
            out.append(
                f"tool       agreement {share(self.agree, self.with_tool_verdict)}  disagreements {len(self.disagreements)}"
            )
        if self.decided_by:
            out.append("decided by " + "  ".join(f"{k} {v}" for k, v in sorted(self.decided_by.items())))
        if self.judge_stats is not None:
            out.append(f"judge      {self.judge_stats}")
            if self.judge_decided_with_tool:
                out.append(f"judge      agreement with the tool on the cases it decided "
                           f"{share(self.judge_agree, self.judge_decided_with_tool)}")
        out.append(f"time       {self.seconds:.1f} s")
        return out


# ---------------------------------------------------------------- readers


def _as_bool(value: Any) -> bool | None:
    """A tool's verdict as a bool: True/False, 1/0, 'True'/'false'/'yes'/'1'; anything else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "1.0"):
            return True
        if text in ("false", "0", "no", "0.0"):
            return False
    return None


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from a spreadsheet cell
        return None
    return value if isinstance(value, str) else str(value)


def _record(ref: str, data: Any, *, id_keys: tuple[str, ...], response_keys: tuple[str, ...], verdict_keys: tuple[str, ...], fallback_id: str | None = None) -> ResultRecord:
    if not isinstance(data, dict):
        return ResultRecord(id=fallback_id or ref, error=f"{ref}: not an object")
    rid = next((_as_text(data[k]) for k in id_keys if _as_text(data.get(k)) not in (None, "")), None) or fallback_id
    if rid is None:
        return ResultRecord(id=ref, error=f"{ref}: no id ({'/'.join(id_keys)})")
    tool = next((_as_bool(data[k]) for k in verdict_keys if k in data and _as_bool(data[k]) is not None), None)
    response = next((_as_text(data[k]) for k in response_keys if _as_text(data.get(k)) is not None), None)
    if response is None:
        return ResultRecord(id=rid.strip(), tool_correct=tool, error=f"{ref}: no response ({'/'.join(response_keys)})")
    return ResultRecord(id=rid.strip(), response=response, tool_correct=tool)


def read_mathvision(path: Path) -> Iterator[ResultRecord]:
    """MATH-V outputs JSONL: `{id, response, correct}` per line (official label `correct`)."""
    from qvq_ray.datasets.base import LoadError, iter_jsonl

    for number, data in iter_jsonl(path):
        ref = f"{path.name}:line {number}"
        if isinstance(data, LoadError):
            yield ResultRecord(id=ref, error=f"{ref}: unreadable JSON: {data.reason}")
            continue
        yield _record(ref, data, id_keys=("id", "pid", "index"), response_keys=("response", "prediction"),
                      verdict_keys=("correct", "true_false", "hit"))


def read_mathvista(path: Path) -> Iterator[ResultRecord]:
    """MathVista output JSON: `{pid: {response, true_false, ...}}` (official label `true_false`), or a list."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        data = json.load(handle)
    items = data.items() if isinstance(data, dict) else ((None, v) for v in data) if isinstance(data, list) else None
    if items is None:
        raise ValueError(f"{path}: expected a JSON object keyed by pid, or a list of records")
    for position, (key, record) in enumerate(items, 1):
        ref = f"{path.name}:{key if key is not None else f'record {position}'}"
        yield _record(ref, record, id_keys=("pid", "id", "index"), response_keys=("response", "prediction"),
                      verdict_keys=("true_false", "correct", "hit"), fallback_id=key)


def read_vlmevalkit(path: Path) -> Iterator[ResultRecord]:
    """VLMEvalKit prediction TSV/XLSX: `index`, `prediction` (and `hit`, 0/1, in judged files)."""
    if path.suffix.lower() in (".xlsx", ".xls"):
        try:
            import openpyxl  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"{path}: reading .xlsx needs openpyxl (pip install openpyxl), or give the .tsv") from exc
        import pandas as pd

        rows = pd.read_excel(path, dtype=object).to_dict("records")
    else:
        import csv
        import sys

        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    for number, row in enumerate(rows, 2):
        ref = f"{path.name}:row {number}"
        yield _record(ref, row, id_keys=("index", "id"), response_keys=("prediction", "response"),
                      verdict_keys=("hit", "correct", "true_false"))


def read_parquet(path: Path) -> Iterator[ResultRecord]:
    """Our own output: `id` with the chosen attempt's text (else the last answered attempt's, else `answer`)."""
    import pyarrow.parquet as pq

    from qvq_ray.results.parts import part_files

    files = [p for p in part_files(path) if p.suffix == ".parquet"] if path.is_dir() else [path]
    for file in files:
        for number, row in enumerate(pq.read_table(file).to_pylist(), 1):
            ref = f"{file.name}:row {number}"
            attempts = row.get("attempts") or []
            chosen = row.get("chosen_attempt")
            text = None
            answered = [a for a in attempts if a and not a.get("error")]  # a failed engine call has no text
            if answered:
                pick = attempts[chosen] if isinstance(chosen, int) and 0 <= chosen < len(attempts) else answered[-1]
                text = (pick or {}).get("text")
            if text is None:
                text = row.get("answer")
            yield _record(ref, {"id": row.get("id"), "response": text, "correct": row.get("correct")},
                          id_keys=("id",), response_keys=("response",), verdict_keys=("correct",))


READERS = {"mathvision": read_mathvision, "mathvista": read_mathvista, "vlmevalkit": read_vlmevalkit, "parquet": read_parquet}


def detect_result_format(path: Path) -> str:
    if path.is_dir():
        return "parquet"
    suffix = path.suffix.lower()
    formats = {".jsonl": "mathvision", ".json": "mathvista", ".tsv": "vlmevalkit", ".xlsx": "vlmevalkit",
               ".xls": "vlmevalkit", ".parquet": "parquet"}
    if suffix not in formats:
        raise ValueError(f"cannot tell the result format of {path}: give --results-format ({', '.join(RESULT_FORMATS)})")
    return formats[suffix]


def read_results(path: str | Path, format: str | None = None) -> list[ResultRecord]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"results not found: {path}")
    name = format or detect_result_format(path)
    if name not in READERS:
        raise ValueError(f"unknown result format {name!r}; known: {', '.join(RESULT_FORMATS)}")
    return list(READERS[name](path))


# ---------------------------------------------------------------- join, verify, write


async def _judge_all(
    checker: "AnswerChecker", pending: list[tuple[Problem, ResultRecord]], verdicts: list[Verdict], concurrency: int
) -> list[Verdict]:
    """The judge's part of every verdict (only the undecided ones make calls), `concurrency` at once."""
    import asyncio

    gate = asyncio.Semaphore(concurrency)

    async def one(item: tuple[Problem, ResultRecord], verdict: Verdict) -> Verdict:
        problem, record = item
        async with gate:
            return await checker.judge_verdict(verdict, record.response or "", problem.spec, gold=problem.answer,
                                               question=problem.question or "", problem_key=problem.id)

    return list(await asyncio.gather(*(one(item, verdict) for item, verdict in zip(pending, verdicts))))


def _scored_row(problem: Problem, record: ResultRecord, verdict: Verdict) -> dict[str, Any]:
    from qvq_ray.results.metrics import SCORE_COLUMNS
    from qvq_ray.config import SamplingConfig
    from qvq_ray.problem import Attempt, Solution, solution_to_row

    attempt = Attempt(text=record.response or "", sampling=SamplingConfig(), verdict=verdict)
    solution = Solution(id=problem.id, answer=verdict.answer, verdict=verdict, chosen_attempt=0, attempts=[attempt])
    row = solution_to_row(solution, problem)
    row["attempts"][0]["correct"] = verdict.correct
    row["attempts"][0]["decided_by"] = verdict.decided_by
    # one attempt: every score is its verdict
    return {**row, **dict.fromkeys(SCORE_COLUMNS, verdict.correct), "decided_by": verdict.decided_by}


def _run_judge(
    verifier: "Verifier",
    config: "QvqConfig",
    pending: list[tuple[Problem, ResultRecord]],
    verdicts: list[Verdict],
    summary: RescoreSummary,
) -> list[Verdict]:
    """The judge over the rules' verdicts (its engine built here and closed after)."""
    import asyncio

    from qvq_ray.judge.checker import judging_checker

    async def run() -> tuple[list[Verdict], str]:
        checker = judging_checker(verifier, config)
        judge, judge_config = checker.judge, config.verifier.judge
        if judge is None or judge_config is None:  # never: rescore runs the judge only with verifier.judge set
            raise RuntimeError("no judge in the config")
        try:
            engine = judge_config.engine
            if engine is not None:  # a wrong URL or model name is one clear error, not a row of failures each
                from qvq_ray.engines.base import EngineError

                try:
                    await judge.check_health()
                except EngineError as exc:
                    raise ValueError(f"judge endpoint: {exc} (check --judge-url / --judge-model, or verifier.judge.engine)") from None
            concurrency = engine.max_concurrency if engine is not None else config.engine.max_batch_size
            return await _judge_all(checker, pending, verdicts, max(1, concurrency)), judge.stats_line()
        finally:
            await judge.close()

    judged, stats = asyncio.run(run())
    summary.judge_stats = stats
    return judged


def disagreements_path(out_dir: str | Path) -> Path:
    """`DIR.disagreements.md` beside DIR (never among DIR's part files)."""
    out = Path(out_dir)
    return out.with_name(out.name + ".disagreements.md")


def disagreement_table(rows: list[dict[str, Any]], limit: int | None = None) -> str:
    def cell(value: Any, width: int = 60) -> str:
        text = "" if value is None else str(value).replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["| id | gold | our answer | ours | tool's |", "|---|---|---|---|---|"]
    for row in rows[:limit] if limit else rows:
        lines.append(f"| {cell(row['id'])} | {cell(row['gold'])} | {cell(row['answer'])} | "
                     f"{row['correct']} | {row['tool_correct']} |")
    return "\n".join(lines)


def rescore_verifier_config(config: QvqConfig | None, *, workers: int | None, timeout_s: float | None) -> VerifierConfig:
    """The verifier settings rescore runs with: the config's whole `verifier` section (the
    defaults without a config), `workers` and `timeout_s` over it when given."""
    from qvq_ray.config import VerifierConfig

    base = config.verifier if config is not None else VerifierConfig()
    overrides = {k: v for k, v in (("workers", workers), ("timeout_s", timeout_s)) if v is not None}
    return VerifierConfig.model_validate({**base.model_dump(), **overrides}) if overrides else base  # validated: --workers 0 is an error


def rescore(
    results: str | Path,
    problems: str | Path,
    out_dir: str | Path,
    *,
    problems_format: str | None = None,
    results_format: str | None = None,
    workers: int | None = None,
    timeout_s: float | None = None,
    rows_per_part: int = 10_000,
    config: Any = None,
) -> RescoreSummary:
    """Verify every result against its problem's gold and write solve-style rows (+ `tool_correct`) to out_dir.

    `config`: a `QvqConfig` whose whole `verifier` section applies (so that re-scoring a run with
    its own config scores it as that run did), its `judge` (when set) judging what the rules leave
    undecided, on its endpoint or on the config's engine built here. `workers` and `timeout_s`,
    when given, override the config's (or the defaults')."""
    import time

    import pyarrow as pa

    from qvq_ray.results.metrics import decided_counts
    from qvq_ray.results.parts import PartWriter, part_files
    from qvq_ray.datasets import LoadError, load_problems
    from qvq_ray.problem import error_row, solution_schema
    from qvq_ray.verify import Verifier

    start = time.monotonic()
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or part_files(out)):
        raise FileExistsError(f"{out} already holds output files: give a new or empty --out")
    records = read_results(results, results_format)
    results_format = results_format or detect_result_format(Path(results))  # as read_results told it
    loaded = list(load_problems(problems, format=problems_format))
    summary = RescoreSummary(results_format=results_format, results=len(records), problems=len(loaded))

    by_id: dict[str, list[ResultRecord]] = {}
    for record in records:
        by_id.setdefault(record.id, []).append(record)

    rows: dict[str, dict[str, Any]] = {}  # id -> row, in benchmark order then result order
    pending: list[tuple[Problem, ResultRecord]] = []

    def error(kind: str, rid: str, reason: str, problem: Problem | None = None, tool: bool | None = None) -> None:
        summary.errors[kind] = summary.errors.get(kind, 0) + 1
        rows[rid] = {**error_row(rid, reason, problem), "tool_correct": tool}

    for item in loaded:
        if item.id in rows:
            continue  # the loader's own duplicate: the first problem keeps the id
        found = by_id.get(item.id, [])
        tool = next((r.tool_correct for r in found if r.tool_correct is not None), None)
        if isinstance(item, LoadError):
            error("problem unreadable", item.id, f"problem unreadable: {item.reason}", tool=tool)
            continue
        usable = [r for r in found if r.error is None]
        if not found:
            error("no result", item.id, "no result for this problem", item)
        elif not usable:
            error("unreadable result", item.id, found[0].error or "unreadable result", item, tool)
        elif len({r.response for r in usable}) > 1:
            error("duplicate id", item.id, f"duplicate result id: {len(usable)} different responses", item, tool)
        else:
            rows[item.id] = {}  # placeholder keeps the order; filled after verification
            pending.append((item, usable[0]))
    for rid, found in by_id.items():
        if rid in rows:
            continue
        tool = next((r.tool_correct for r in found if r.tool_correct is not None), None)
        reasons = [r.error for r in found if r.error]
        if reasons:
            error("unreadable result", rid, reasons[0], None, tool)
        else:
            error("not in benchmark", rid, "result id not in the benchmark", None, tool)

    if pending:
        verifier_config = rescore_verifier_config(config, workers=workers, timeout_s=timeout_s)
        with Verifier(verifier_config) as verifier:
            verdicts = verifier.check_many([(r.response or "", p.answer, p.spec) for p, r in pending],
                                           questions=[p.question for p, _ in pending])
            if config is not None and config.verifier.judge is not None:
                verdicts = _run_judge(verifier, config, pending, verdicts, summary)
        for (problem, record), verdict in zip(pending, verdicts):
            rows[problem.id] = {**_scored_row(problem, record, verdict), "tool_correct": record.tool_correct}

    schema = solution_schema().append(pa.field("tool_correct", pa.bool_()))
    ordered = list(rows.values())
    writer = PartWriter(out, "parquet")
    for begin in range(0, len(ordered), rows_per_part):
        writer.write(pa.Table.from_pylist(ordered[begin : begin + rows_per_part], schema=schema))
    if not ordered:
        writer.write(schema.empty_table())

    summary.rows = len(ordered)
    summary.scored = len(pending)
    summary.decided_by = decided_counts(r for r in ordered if not r.get("error") and r.get("gold") not in (None, ""))
    for row in ordered:
        if row.get("error"):
            continue
        if row.get("correct") is None:
            summary.not_judged += row.get("gold") not in (None, "")
            continue
        summary.judged += 1
        summary.correct += row["correct"] is True
        if row.get("decided_by") == "judge" and row.get("tool_correct") is not None:
            summary.judge_decided_with_tool += 1
            summary.judge_agree += row["tool_correct"] == row["correct"]
        if row.get("tool_correct") is not None:
            summary.with_tool_verdict += 1
            if row["tool_correct"] == row["correct"]:
                summary.agree += 1
            else:
                summary.disagreements.append(row)
    if summary.with_tool_verdict:
        target = disagreements_path(out)
        target.write_text(
            f"# Disagreements with the tool's own verdicts\n\nresults: {Path(results).resolve()}\n"
            f"problems: {Path(problems).resolve()}\n\n{summary.with_tool_verdict} judged rows with a tool verdict, "
            f"{summary.agree} agree, {len(summary.disagreements)} disagree.\n\n{disagreement_table(summary.disagreements)}\n",
            encoding="utf-8",
        )
        summary.disagreements_file = str(target)
    summary.seconds = time.monotonic() - start
    return summary
