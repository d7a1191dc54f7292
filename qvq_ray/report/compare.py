"""`qvq-ray report RUN_A RUN_B`: run B against run A on the problems both runs have.

Rows are matched by id; only ids with gold in both runs are compared, so each pair is one
problem scored twice and the two accuracies differ only by the problems they disagree on. The
significance of a difference is the exact McNemar test on those discordant pairs (B right where A
is wrong, and the reverse): a paired test, far more sensitive than comparing two independent
proportions, and exact for the small counts of a subject slice. Ids in only one run are counted
and left out, never silently mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from qvq_ray.report import stats as st
from qvq_ray.report.blocks import Flip, FlipList, Heading
from qvq_ray.report.problems import ANSWER_CHARS, clip, responses
from qvq_ray.report.tables import Table, pct

MAX_FLIPS = 50  # flipped problems listed per direction


@dataclass(frozen=True)
class Pairing:
    pairs: list[tuple[st.RowView, st.RowView]]  # (A, B), both with gold, in B's order
    only_a: int
    only_b: int
    no_gold: int  # shared ids without gold in one run or both
    duplicates_a: int
    duplicates_b: int


def _by_id(views: list[st.RowView]) -> tuple[dict[str, st.RowView], int]:
    out: dict[str, st.RowView] = {}
    duplicates = 0
    for view in views:
        if view.id in out:
            duplicates += 1  # the first row of an id is the one compared
        else:
            out[view.id] = view
    return out, duplicates


def pair(views_a: list[st.RowView], views_b: list[st.RowView]) -> Pairing:
    a, dup_a = _by_id(views_a)
    b, dup_b = _by_id(views_b)
    shared = [i for i in b if i in a]
    pairs = [(a[i], b[i]) for i in shared if a[i].has_gold and b[i].has_gold]
    return Pairing(pairs, len(set(a) - set(b)), len(set(b) - set(a)), len(shared) - len(pairs), dup_a, dup_b)


@dataclass(frozen=True)
class Paired:
    """Counts over pairs: each run's correct answers and the two kinds of disagreement."""

    n: int
    a_correct: int
    b_correct: int
    b_only: int  # B correct, A not
    a_only: int  # A correct, B not
    a_errors: int
    b_errors: int

    @property
    def delta(self) -> float | None:
        return (self.b_correct - self.a_correct) / self.n if self.n else None

    @property
    def p_value(self) -> float:
        return st.mcnemar_exact(self.b_only, self.a_only)


def paired(pairs: list[tuple[st.RowView, st.RowView]]) -> Paired:
    return Paired(
        n=len(pairs),
        a_correct=sum(a.correct for a, _ in pairs),
        b_correct=sum(b.correct for _, b in pairs),
        b_only=sum(b.correct and not a.correct for a, b in pairs),
        a_only=sum(a.correct and not b.correct for a, b in pairs),
        a_errors=sum(bool(a.error) for a, _ in pairs),
        b_errors=sum(bool(b.error) for _, b in pairs),
    )


def _delta(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} pp"


def _p(value: float) -> str:
    return f"{value:.3g}" if value >= 0.001 else "<0.001"


HEADERS = ["shared", "A accuracy", "B accuracy", "delta (B-A)", "B right, A wrong", "A right, B wrong",
           "McNemar p", "A errors", "B errors"]
NOTE = ("Over ids with gold in both runs; accuracy is the final answer vs gold (error rows count as wrong). "
        "McNemar p: two-sided exact McNemar test on the discordant pairs (binomial, p = 1/2), per row: with many "
        "rows, some fall under 0.05 by chance (no correction for multiple comparisons is made).")


def delta_table(pairs: list[tuple[st.RowView, st.RowView]], key: str, name: str, *, within: str | None = None) -> Table:
    """Per group (of run B's labels) and overall: both accuracies, the delta, the discordant counts, p."""
    groups: dict[str, list[Any]] = {}
    for a, b in pairs:
        groups.setdefault(getattr(b, key), []).append((a, b))
    labels = sorted(groups, key=st._sort_key)
    body = []
    for label, members in [(lbl, groups[lbl]) for lbl in labels] + [("all", pairs)]:
        s = paired(members)
        body.append([label, str(s.n), pct(s.a_correct / s.n if s.n else None), pct(s.b_correct / s.n if s.n else None),
                     _delta(s.delta), str(s.b_only), str(s.a_only), _p(s.p_value), str(s.a_errors), str(s.b_errors)])
    where = f": {within}" if within else ""
    anchor = f"compare-{key}" + (f"-{''.join(c if c.isalnum() else '-' for c in within.lower())}" if within else "")
    return Table(f"B vs A by {name}{where}", [name, *HEADERS], body, note=NOTE, anchor=anchor, total=True)


def _first_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out.setdefault(str(row.get("id")), row)
    return out


def flips(pairs: list[tuple[st.RowView, st.RowView]], rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]],
          limit: int = MAX_FLIPS) -> list[FlipList]:
    """Right in A and wrong in B, then wrong in A and right in B: each problem with both responses."""
    by_a, by_b = _first_rows(rows_a), _first_rows(rows_b)

    def flip(a: st.RowView, b: st.RowView) -> Flip:
        row_a, row_b = by_a[a.id], by_b[b.id]
        first_a, first_b = responses(row_a, 1), responses(row_b, 1)
        return Flip(a.id, b.source, clip(row_b.get("gold"), ANSWER_CHARS), clip(row_a.get("answer") or a.error, ANSWER_CHARS),
                    clip(row_b.get("answer") or b.error, ANSWER_CHARS), first_a[0] if first_a else None,
                    first_b[0] if first_b else None)

    out = []
    kinds: tuple[tuple[str, Callable[[st.RowView, st.RowView], bool]], ...] = (
        ("Right in A, wrong in B", lambda a, b: a.correct and not b.correct),
        ("Wrong in A, right in B", lambda a, b: b.correct and not a.correct),
    )
    for title, wanted in kinds:
        members = [(a, b) for a, b in pairs if wanted(a, b)]
        shown = [flip(a, b) for a, b in members[:limit]]
        note = (f"{len(members)} problem(s)" + (f", the first {limit} listed" if len(members) > limit else "")
                + "; each with the chosen response of both runs (collapsed in report.html).")
        out.append(FlipList(title, shown, len(members), note))
    return out


def differences_table(
    rows_a: list[dict[str, Any]], records_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], records_b: list[dict[str, Any]]
) -> Table:
    """The settings the two runs differ on (prompt preset and hash, sampling, mode from the rows;
    model, engine, policy from each run's _run.json)."""
    from qvq_ray.report.runinfo import RUN_FILE, differences

    body = differences(rows_a, records_a, rows_b, records_b)
    missing = [name for name, records in (("A", records_a), ("B", records_b)) if not records]
    note = "Settings compared: the prompt preset, template hash, sampling and mode the rows record"
    note += (f"; model, engine and policy are not recorded for run {' and '.join(missing)} (no {RUN_FILE})."
             if missing else f", and every setting of each run's {RUN_FILE}.")
    if not body:
        note = "None found. " + note
    return Table("What differs between the runs", ["setting", "A", "B"], body, note=note, anchor="differences",
                 text_columns=(1, 2))


def comparison_blocks(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], name_a: str, name_b: str,
                      records_a: list[dict[str, Any]] | None = None, records_b: list[dict[str, Any]] | None = None,
                      ) -> tuple[list[Any], list[str], Table]:
    """(blocks, intro notes, the overall table) of the comparison: what differs between the runs
    first, then the problems that flipped, then the tables."""

    views_a, views_b = st.views(rows_a), st.views(rows_b)
    p = pair(views_a, views_b)
    mode_a, mode_b = st.job_mode(rows_a) or "self", st.job_mode(rows_b) or "self"
    notes = [f"A = {name_a} ({len(rows_a)} rows, mode {mode_a}); B = {name_b} ({len(rows_b)} rows, mode {mode_b})",
             f"compared: {len(p.pairs)} ids with gold in both runs; only in A: {p.only_a}; only in B: {p.only_b}; "
             f"shared without gold: {p.no_gold}"]
    if p.duplicates_a or p.duplicates_b:
        notes.append(f"duplicate ids (first row kept): A {p.duplicates_a}, B {p.duplicates_b}")
    if mode_a != mode_b or "oracle" in (mode_a, mode_b):
        notes.append("WARNING: an oracle run's final answer was picked with gold (it is pass@k, not accuracy): "
                     f"A is {mode_a}, B is {mode_b}")
    runs = Table("Runs", ["run", "dir", "rows", "ids", "only in this run", "mode"], [
        ["A", name_a, str(len(rows_a)), str(len({v.id for v in views_a})), str(p.only_a), mode_a],
        ["B", name_b, str(len(rows_b)), str(len({v.id for v in views_b})), str(p.only_b), mode_b],
    ], note="Ids only in one run are not compared.", anchor="runs", text_columns=(1,))
    overall = delta_table(p.pairs, "source", "benchmark")
    blocks: list[Any] = [differences_table(rows_a, records_a or [], rows_b, records_b or []),
                    Heading("Problems that flipped"), *flips(p.pairs, rows_a, rows_b),
                    Heading("Scores"), runs, overall, Heading("B vs A by subject, within each benchmark")]
    by_source: dict[str, list[Any]] = {}
    for a, b in p.pairs:
        by_source.setdefault(b.source, []).append((a, b))
    for source in sorted(by_source, key=st._sort_key):
        members = by_source[source]
        if all(b.subject == st.NONE_LABEL for _, b in members):
            continue
        blocks.append(delta_table(members, "subject", "subject", within=source))
    return blocks, notes, overall


def default_comparison_dir(dir_a: str | Path, dir_b: str | Path) -> Path:
    """`RUN_B.vs-<RUN_A name>.report/` beside run B."""
    a, b = Path(dir_a).resolve(), Path(dir_b).resolve()
    if b.parent == b:
        raise ValueError(f"no default report folder for {b}: give --report-dir")
    return b.with_name(f"{b.name}.vs-{a.name}.report")


def write_comparison(dir_a: str | Path, dir_b: str | Path, report_dir: str | Path | None = None) -> tuple[dict[str, Path], Table]:
    """Write the comparison's report.md and report.html; returns their paths and the overall table."""
    import time

    from qvq_ray.report.runinfo import read_run_records
    from qvq_ray.report.summary import _write, check_report_dir, read_output

    a, b = Path(dir_a), Path(dir_b)
    target = check_report_dir([a, b], report_dir if report_dir is not None else default_comparison_dir(a, b))
    rows_a, rows_b = read_output(a).to_pylist(), read_output(b).to_pylist()
    blocks, notes, overall = comparison_blocks(rows_a, rows_b, str(a.resolve()), str(b.resolve()),
                                               read_run_records(a), read_run_records(b))
    title = f"qvq-ray comparison: {b.resolve().name} (B) vs {a.resolve().name} (A)"
    intro = [*notes, f"generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"]
    return _write(target, title, intro, blocks), overall
