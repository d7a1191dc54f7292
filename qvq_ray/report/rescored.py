"""The report of `qvq-ray rescore` output: another tool's responses, scored here.

Nothing was solved, so the solving tables (attempts, tokens, latency, pass@j curves) say nothing
and are left out, and the headline does not call the mode `self` ("gold never read while
solving" is a claim about a solve this project did not run). What it has instead: where the
outputs came from (the run record) and how this verifier's verdicts agree with the tool's own
(`tool_correct`, the file's own judgement, where it had one).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from qvq_ray.report import stats as st
from qvq_ray.report.tables import HeadlineTotals, Table, ci, frac, pct

TOOL_COLUMN = "tool_correct"
MODE = "rescored"  # the label of rescored rows in the accuracy tables, where a solve says its mode
MAX_DISAGREEMENTS = 50
CELL_CHARS = 80


def is_rescored(rows: list[dict[str, Any]], records: list[dict[str, Any]] | None = None) -> bool:
    """Rows written by `qvq-ray rescore` (its `tool_correct` column, or its run record)."""
    if records and records[-1].get("kind") == "rescore":
        return True
    return bool(rows) and TOOL_COLUMN in rows[0]


def relabel(views: list[st.RowView]) -> list[st.RowView]:
    """The views under MODE: their rows say `self`, a claim about a solve that did not happen here."""
    return [replace(v, mode=MODE) for v in views]


def headline(views: list[st.RowView]) -> Table:
    """Problems, errors, gold, accuracy of the rescored responses: no attempts or tokens."""
    totals = HeadlineTotals()
    for view in views:
        totals.add(view)
    rates = totals.rates()
    body = [[str(totals.n), str(totals.errors), str(totals.verified), str(rates.scored), str(rates.not_judged),
             pct(rates.share(rates.correct)), ci(rates.correct, rates.scored)]]
    note = ("Another tool's responses, scored here against gold (one response per problem): this verifier's verdicts, "
            "not the tool's. Error rows (no result, unreadable, not in the benchmark) count as not correct; "
            "95% CI: Wilson score interval of the accuracy.")
    return Table("Headline (rescored outputs)", ["problems", "errors", "verified", "with gold", "not judged",
                                                 "accuracy", "95% CI"], body, note=note, anchor="headline")


def _judged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows both sides judged: no error, gold, our verdict and the tool's."""
    return [r for r in rows if not r.get("error") and r.get("gold") not in (None, "")
            and r.get("correct") is not None and r.get(TOOL_COLUMN) is not None]


def agreement_table(rows: list[dict[str, Any]]) -> Table:
    """Our verdicts against the tool's, as a 2x2 count, with the share that agree."""
    judged = _judged(rows)
    both_right = sum(r["correct"] and r[TOOL_COLUMN] for r in judged)
    both_wrong = sum(not r["correct"] and not r[TOOL_COLUMN] for r in judged)
    ours_only = sum(r["correct"] and not r[TOOL_COLUMN] for r in judged)
    tools_only = sum(not r["correct"] and r[TOOL_COLUMN] for r in judged)
    no_tool = sum(1 for r in rows if not r.get("error") and r.get(TOOL_COLUMN) is None)
    body = [["both correct", str(both_right)], ["both wrong", str(both_wrong)],
            ["ours correct, tool's wrong", str(ours_only)], ["ours wrong, tool's correct", str(tools_only)],
            ["agree", frac(both_right + both_wrong, len(judged))]]
    note = (f"Over {len(judged)} rows with gold that both this verifier and the tool judged. "
            f"{no_tool} scored row(s) had no verdict of the tool's in its file.")
    return Table("Agreement with the tool's own verdicts", ["verdicts", "rows"], body, note=note, anchor="agreement")


def _cell(value: Any) -> str:
    text = "" if value is None else " ".join(str(value).split())
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def disagreements_table(rows: list[dict[str, Any]], limit: int = MAX_DISAGREEMENTS) -> Table:
    """The rows where the two verdicts differ (the first `limit`): id, gold, our answer, both verdicts."""
    differ = [r for r in _judged(rows) if r["correct"] != r[TOOL_COLUMN]]
    body = [[_cell(r.get("id")), _cell(r.get("gold")), _cell(r.get("answer")), "correct" if r["correct"] else "wrong",
             "correct" if r[TOOL_COLUMN] else "wrong", _cell(r.get("decided_by"))] for r in differ[:limit]]
    shown = f"the first {limit} of {len(differ)}" if len(differ) > limit else f"all {len(differ)}"
    note = (f"{shown.capitalize()}; each problem's response is in the per-problem view of report.html."
            if differ else "None: the two agree on every row both judged.")
    return Table("Where the verdicts differ", ["id", "gold", "our answer", "ours", "tool's", "decided by"], body,
                 note=note, anchor="disagreements", text_columns=(0, 1, 2))
