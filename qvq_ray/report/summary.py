"""The job summary and the report, computed from the files a job wrote (what is on disk is what is reported).

`summarize_output` gives the summary the solve command prints; `write_report` writes report.md,
report.html (self-contained) and the plots' PNG files into `DIR.report/` beside the output directory
(never among its part files); `headline_table` is the report's headline as
text. The numbers come from report.stats, the tables from report.tables, the plots from
report.plots, and report.render turns them into Markdown and HTML.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pydantic import BaseModel, Field

from qvq_ray.results.metrics import DECIDED_ORDER, decided_counts

if TYPE_CHECKING:
    import pyarrow as pa

    from qvq_ray.report.stats import RowView
    from qvq_ray.report.tables import Table


class JobSummary(BaseModel):
    rows_in: int = Field(..., description="Input rows, unreadable ones included.")
    rows_out: int = Field(..., description="Output rows written; equals rows_in when nothing was lost.")
    solved: int = Field(..., description="Rows with a solution (no error).")
    verified: int = Field(..., description="Solutions whose final answer passed the gold-free checks.")
    errors: int = Field(..., description="Rows that failed, each with its reason.")
    with_gold: int = Field(..., description="Rows that have a gold answer.")
    correct: int = Field(..., description="Rows whose final answer matches gold.")
    not_judged: int = Field(
        0, description="Gold rows whose comparison could not be judged (timeout): neither correct nor wrong."
    )
    accuracy: float | None = Field(
        None, description="correct / with_gold of the final answer. In oracle mode gold picked it: it is pass@k."
    )
    pass_at_1: float | None = Field(None, description="Share of gold rows whose first attempt is correct.")
    maj_at_k: float | None = Field(None, description="Share of gold rows whose majority answer is correct.")
    pass_at_k: float | None = Field(None, description="Share of gold rows with some correct attempt.")
    decided_by: dict[str, int] = Field(
        default_factory=dict,
        description="Scored rows by who decided `correct`: rules, sympy, judge (the judge model), 'not judged'.",
    )
    mode: str = Field("self", description="Policy mode: 'self' (gold never read while solving) or 'oracle'.")
    attempts: int = 0
    completion_tokens: int = 0
    tokens_saved: int = Field(0, description="Tokens the loop cut-off saved.")
    duplicates: int = Field(0, description="Output rows whose id appears more than once (0 when all is well).")
    seconds: float = 0.0
    headline: str = Field("", exclude=True, description="The report's headline table of the same pass (not in the JSON).")

    def lines(self) -> list[str]:
        def share(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1%}"

        if self.accuracy is None:
            acc = "n/a (no gold)"
        else:
            acc = f"{self.accuracy:.1%} ({self.correct}/{self.with_gold})"
            if self.not_judged:
                acc += f", {self.not_judged} not judged"
        label = "accuracy  " if "oracle" not in self.mode else "pass@k    "
        note = "gold never read while solving" if "oracle" not in self.mode else "ORACLE: gold used while solving"
        return [
            f"rows       {self.rows_out} written / {self.rows_in} in",
            f"solved     {self.solved}",
            f"verified   {self.verified}",
            f"errors     {self.errors}",
            f"{label} {acc}  [mode={self.mode}: {note}]",
            f"metrics    pass@1 {share(self.pass_at_1)}  maj@k {share(self.maj_at_k)}  pass@k {share(self.pass_at_k)}",
            f"decided    " + ("  ".join(f"{k} {v}" for k, v in self.decided_by.items()) or "n/a (no gold)"),
            f"attempts   {self.attempts}  tokens {self.completion_tokens}  saved by loop cut-off {self.tokens_saved}",
            f"time       {self.seconds:.1f} s",
        ]


def read_output(out_dir: str | Path, columns: list[str] | None = None) -> pa.Table:
    """All rows a job wrote, as one Arrow table (Parquet or JSONL); `columns`: only those (the
    ones a file lacks, from an older writer, come back null)."""
    import pyarrow as pa

    tables = list(iter_output_tables(out_dir, columns))
    if not tables:
        raise FileNotFoundError(f"no output files in {Path(out_dir)}")
    return pa.concat_tables(tables, promote_options="default")


def iter_output_tables(out_dir: str | Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The part files' rows one file at a time (what a job of any size can be read back with)."""
    import pyarrow as pa

    from qvq_ray.results.parts import part_files

    for path in part_files(Path(out_dir)):
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            present = set(pq.read_schema(path).names)
            table = pq.read_table(path, columns=[c for c in columns if c in present] if columns else None)
        else:
            import pyarrow.json as pj

            table = pj.read_json(str(path))
            if columns:
                table = table.select([c for c in columns if c in table.column_names])
        for name in columns or []:
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows))
        yield _problem_as_struct(table)


def _problem_as_struct(table: pa.Table) -> pa.Table:
    """Part files of older versions hold `problem` as JSON text: read it as this version's struct,
    so that one output folder (a run resumed across versions) reads as one table."""
    import pyarrow as pa

    from qvq_ray.arrow_rows import arrow_type, to_row
    from qvq_ray.problem import StoredProblem, stored_problem_dict

    if "problem" not in table.column_names or not pa.types.is_string(table.schema.field("problem").type):
        return table

    def stored(text: str | None) -> dict[str, Any] | None:
        data = stored_problem_dict(text)
        try:
            return to_row(StoredProblem.model_validate(data)) if data else None
        except ValueError:
            return None

    values = pa.array([stored(t) for t in table.column("problem").to_pylist()], type=arrow_type(StoredProblem))
    return table.set_column(table.column_names.index("problem"), "problem", values)


#: What the job summary and the headline read: no texts, attempts or prompts (a million-row job's
#: summary reads a few columns, never the chains of thought).
LIGHT_COLUMNS = [
    "id", "source", "gold", "correct", "decided_by", "pass_at_1", "maj_at_k", "pass_at_k", "verified",
    "error", "mode", "num_attempts", "prompt_tokens", "completion_tokens", "tokens_saved", "latency_s", "issues",
]


def summarize_output(out_dir: str | Path, *, rows_in: int, seconds: float) -> JobSummary:
    """The summary of what is on disk (one pass: `scan_output`), its headline attached."""
    return scan_output(out_dir).summary(rows_in=rows_in, seconds=seconds)


class OutputScan:
    """One pass over a job's output folder, a part file at a time and only the light columns: the
    per-mode headline totals, the raw counts the job summary adds to them, and a 64-bit hash per
    id for duplicates. Its memory is 8 bytes a row plus counters, whatever the size of the job.

    Why hashes: the ids themselves, kept as Arrow strings a part file at a time, cost ~160 bytes a
    row (32 MB at 200,000 rows) in the process that just ran the job. Two distinct ids share a hash
    with probability about rows**2 / 2**65 (3e-8 at a million rows); such a pair would be counted
    as one duplicate, never as a lost row."""

    def __init__(self) -> None:
        from collections import Counter

        self.totals: dict[str, Any] = {}  # mode -> report.tables.HeadlineTotals
        self.unsolved: dict[str, Any] = {}  # rows without attempts, by their own mode: they join the job's
        self.raw_modes: set[str] = set()
        self.decided: Counter[str] = Counter()
        self.completion_tokens = 0
        self.tokens_saved = 0
        self.id_hashes: list[Any] = []  # one numpy int64 array per part file

    def add(self, table: pa.Table) -> None:
        import numpy as np

        from qvq_ray.report import stats as report_stats, tables as report_tables

        rows = table.to_pylist()
        self.id_hashes.append(np.fromiter((hash(str(row["id"])) for row in rows), dtype=np.int64, count=len(rows)))
        for view, row in zip(report_stats.views(rows, default_mode=None), rows):
            report_tables.headline_totals([view], into=self.totals if row.get("num_attempts") else self.unsolved)
            self.completion_tokens += int(row.get("completion_tokens") or 0)
            self.tokens_saved += int(row.get("tokens_saved") or 0)
            if row.get("mode"):
                self.raw_modes.add(row["mode"])
            if view.has_gold and not view.error:
                self.decided.update(decided_counts([row]))

    def by_mode(self) -> dict[str, Any]:
        """Headline totals per mode; rows that never reached the engine joined to the job's mode, as
        in `stats.views` over all rows."""
        totals = dict(self.totals)
        job_mode = next(iter(totals)) if len(totals) == 1 else None
        for mode, part in self.unsolved.items():
            into = job_mode or mode
            totals[into] = totals[into].merge(part) if into in totals else part
        return totals

    def headline(self) -> str:
        from qvq_ray.report import tables as report_tables

        return report_tables.headline_of(self.by_mode()).text()

    def summary(self, *, rows_in: int, seconds: float) -> JobSummary:
        import numpy as np

        from qvq_ray.report.tables import HeadlineTotals

        every = HeadlineTotals()
        for part in self.by_mode().values():
            every = every.merge(part)
        distinct = int(np.unique(np.concatenate(self.id_hashes)).size) if self.id_hashes else 0

        def rate(count: int) -> float | None:
            return count / every.scored if every.scored else None

        return JobSummary(
            rows_in=rows_in,
            rows_out=every.n,
            solved=every.n - every.errors,
            verified=every.verified,
            errors=every.errors,
            with_gold=every.scored,
            correct=every.correct,
            not_judged=every.not_judged,
            accuracy=rate(every.correct),
            decided_by={k: self.decided[k] for k in DECIDED_ORDER if self.decided.get(k)},
            pass_at_1=rate(every.pass_at_1),
            maj_at_k=rate(every.maj_at_k),
            pass_at_k=rate(every.pass_at_k),
            mode=",".join(sorted(self.raw_modes)) or "self",
            attempts=every.attempts,
            completion_tokens=self.completion_tokens,
            tokens_saved=self.tokens_saved,
            duplicates=every.n - distinct,
            seconds=seconds,
            headline=self.headline(),
        )


def scan_output(out_dir: str | Path) -> OutputScan:
    scan = OutputScan()
    for table in iter_output_tables(out_dir, LIGHT_COLUMNS):
        scan.add(table)
    return scan


def _pylist(rows: Any) -> list[dict[str, Any]]:
    return rows.to_pylist() if hasattr(rows, "to_pylist") else list(rows)


def output_headline(out_dir: str | Path) -> str:
    """The headline of a job's output folder, read once, one part file at a time and only its light
    columns (the same table as `headline_table`, without holding the rows)."""
    return scan_output(out_dir).headline()


def headline_table(rows: Any) -> str:
    """The report's headline as fixed-width text: one line per mode (oracle labelled pass@k); for
    rescored outputs, the rescore headline (no solving figures)."""
    from qvq_ray.report import rescored, stats as report_stats, tables as report_tables

    rows = _pylist(rows)
    views = report_stats.views(rows)
    return (rescored.headline(views) if rescored.is_rescored(rows) else report_tables.headline(views)).text()


def _can_plot(notes: list[str]) -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        notes.append(f"plots left out: {exc} (pip install matplotlib)")
        return False
    return True


def run_table(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> Table:
    """The report's first block: model, engine, prompt preset and template hash, sampling, policy."""
    from qvq_ray.report.runinfo import run_facts
    from qvq_ray.report.tables import Table

    return Table("Run", ["setting", "value", "recorded in"], [list(f) for f in run_facts(rows, records)],
                 anchor="run", text_columns=(1, 2))


def report_blocks(rows: Any, *, plots: bool = True, records: list[dict[str, Any]] | None = None) -> tuple[list[Any], list[str]]:
    """The report's blocks in order, and notes for its introduction. `records`: the run record's
    invocations (runinfo.read_run_records), for the run table."""
    from qvq_ray.report import plots as rp
    from qvq_ray.report import rescored
    from qvq_ray.report import stats as st
    from qvq_ray.report import tables as tb
    from qvq_ray.report.blocks import Heading

    rows = _pylist(rows)
    records = records or []
    views = st.views(rows)
    if rescored.is_rescored(rows, records):
        views = rescored.relabel(views)  # not "self": nothing was solved here
        notes = ["rescored outputs: the responses come from another tool (see 'outputs from'); only their scoring "
                 "happened here, so no solving figures (attempts, tokens, latency) are shown"]
        blocks: list[Any] = [run_table(rows, records), rescored.headline(views), rescored.agreement_table(rows),
                        rescored.disagreements_table(rows), Heading("Scores by benchmark, subject and level")]
        return blocks + tb.accuracy_tables(views) + _answer_blocks(views), notes
    present = st.modes(views)
    notes = ["modes: " + "; ".join(f"{tb.mode_label(m)} ({tb.MODE_NOTES.get(m, 'unknown mode')})" for m in present)]
    draw = plots and _can_plot(notes)

    blocks = [run_table(rows, records), tb.headline(views), Heading("Scores by benchmark, subject and level")]
    blocks += tb.accuracy_tables(views)
    blocks.append(Heading("Scores vs attempts"))
    for mode in present:  # one table and one plot per mode: oracle and self curves are never pooled
        curve = tb.curve_table(views, mode)
        if curve is not None:
            blocks.append(curve)
            points = st.attempts_curve([v for v in views if v.mode == mode])
            if len(points) < 2:  # one attempt each: the curve is a single dot
                curve.note += " No plot: every problem had one attempt, so the curve is a single point (pass@1 = maj@1)."
            elif draw:
                blocks.append(rp.accuracy_vs_attempts(points, mode))
    tokens_table = tb.tokens_table(views)
    blocks += [Heading("Attempts and tokens"), tb.attempts_table(views), tokens_table]
    tokens = st.tokens_per_problem(views)
    if draw and len(set(tokens)) > 1:
        blocks.append(rp.tokens_histogram(tokens))
    elif draw and tokens:
        tokens_table.note += f" No histogram: every problem used the same number of tokens ({tokens[0]:,.0f})."
    return blocks + _answer_blocks(views), notes


def _answer_blocks(views: list[RowView]) -> list[Any]:
    from qvq_ray.report import tables as tb
    from qvq_ray.report.blocks import Heading

    return [Heading("Answer issues and errors"), tb.errors_by_benchmark(views), tb.errors_table(views),
            tb.issues_table(views), tb.decided_by_table(views)]


# ---------------------------------------------------------------- where the report goes

REPORT_SUFFIX = ".report"


def default_report_dir(out_dir: str | Path) -> Path:
    """`DIR.report/` beside the output directory (as rescore's `OUT.disagreements.md`).

    Never inside DIR: `pandas.read_parquet(DIR)` and `pyarrow.dataset.dataset(DIR)` read every file
    under DIR (subfolders included) as data and fail on a PNG.
    """
    out = Path(out_dir).resolve()
    if out.parent == out:
        raise ValueError(f"no default report folder for {out}: give --report-dir")
    return out.with_name(out.name + REPORT_SUFFIX)


def check_report_dir(out_dir: str | Path | list[str | Path], report_dir: str | Path) -> Path:
    """`report_dir` resolved, refused (ValueError) where Parquet readers of an output directory would read it.

    A folder inside DIR is allowed only under a name starting with '_' or '.', which pyarrow
    (hence pandas), Spark and Hive skip when they read a directory; the tests read DIR back with
    pandas and pyarrow after writing such a report.
    """
    target = Path(report_dir).resolve()
    for data_dir in ([Path(d).resolve() for d in out_dir] if isinstance(out_dir, (list, tuple)) else [Path(out_dir).resolve()]):
        if target == data_dir:
            raise ValueError(f"report folder {target} is the output directory itself: report files would sit among the part files")
        if data_dir in target.parents:
            first = target.relative_to(data_dir).parts[0]
            if not first.startswith(("_", ".")):
                raise ValueError(
                    f"report folder {target} is inside the output directory {data_dir}, where Parquet readers "
                    f"(pandas.read_parquet, pyarrow.dataset) would read it as data; put it outside, or name "
                    f"the folder inside '_{first}'"
                )
    return target


def _write(target: Path, title: str, intro: list[str], blocks: list[Any]) -> dict[str, Path]:
    from qvq_ray.report.plots import Plot
    from qvq_ray.report.render import render_html, render_markdown

    target.mkdir(parents=True, exist_ok=True)
    written = {}
    for block in blocks:
        if isinstance(block, Plot):
            path = target / block.filename
            path.write_bytes(block.png)
            written[block.filename] = path
    for name, text in (("report.md", render_markdown(title, intro, blocks)), ("report.html", render_html(title, intro, blocks))):
        path = target / name
        path.write_text(text, encoding="utf-8")
        written[name] = path
    return written


def write_report(
    out_dir: str | Path,
    report_dir: str | Path | None = None,
    *,
    plots: bool = True,
    problems: str | Path | None = None,
    problems_format: str | None = None,
    max_problems: int | None = None,
    allow_paths_outside: bool = False,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html and the plot PNGs (default folder: `DIR.report/` beside DIR);
    returns their paths by file name.

    `problems`: the problem set the run solved, read only for the thumbnails of the per-problem
    view (image files inside its own folder, unless `allow_paths_outside`); its unreadable rows
    are skipped and `warn` is told how many. `max_problems` bounds that view (failures first).
    """
    from qvq_ray.report import problems as rp

    from qvq_ray.report import rescored
    from qvq_ray.report.runinfo import read_run_records

    out = Path(out_dir)
    target = check_report_dir(out, report_dir if report_dir is not None else default_report_dir(out))
    rows = read_output(out).to_pylist()
    records = read_run_records(out)
    blocks, notes = report_blocks(rows, plots=plots, records=records)
    views = _views(rows)
    if rescored.is_rescored(rows, records):
        views = rescored.relabel(views)
    limit = rp.DEFAULT_LIMIT if max_problems is None else max_problems
    thumbnails = None
    if problems is not None and limit > 0:
        shown = {view.id for _, view in rp.pick(rows, views, limit)}
        thumbnails = rp.thumbnails_from_problems(
            problems, shown, format=problems_format, allow_paths_outside=allow_paths_outside, warn=warn
        )
    if limit > 0:
        from qvq_ray.report.blocks import Heading

        hint = "" if problems is not None else "thumbnails need the problem set: qvq-ray report DIR --problems INPUT"
        blocks += [Heading("Problems"), rp.problem_list(rows, limit, thumbnails, hint, views)]
    title = f"qvq-ray report: {out.resolve().name}"
    intro = [f"output: {out.resolve()} ({len(rows)} rows)", *notes,
             f"generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"]
    return _write(target, title, intro, blocks)


def _views(rows: list[dict[str, Any]]) -> list[RowView]:
    from qvq_ray.report import stats as st

    return st.views(rows)
