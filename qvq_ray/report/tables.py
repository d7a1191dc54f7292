"""The report's tables: each a title, a header, rows of already formatted cells, and a note.

Accuracy tables are built per mode. `self` tables have an `accuracy` column (the final answer
against gold); `oracle` tables never do: gold picked their final answer, so it is pass@k and the
tables are titled and labelled so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from qvq_ray.report import stats as st

MODE_NOTES = {
    "self": "gold never read while solving",
    "oracle": "gold used while solving, so the final answer's accuracy is pass@k",
}
GROUPINGS = (("source", "benchmark"), ("subject", "subject"), ("level", "level"))


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""
    anchor: str = ""
    total: bool = False  # the last row is a total over the rows above
    text_columns: tuple[int, ...] = ()  # free-text columns (shown left-aligned, monospace)

    def text(self) -> str:
        """Plain fixed-width text (for the terminal)."""
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row)]

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        out = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        if self.note:
            out.append(self.note)
        return "\n".join(out)


def mode_label(mode: str) -> str:
    return "ORACLE" if mode == "oracle" else mode


def pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def frac(count: int, total: int) -> str:
    return "n/a" if not total else f"{count / total:.1%} ({count}/{total})"


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


# ---------------------------------------------------------------- headline


@dataclass
class HeadlineTotals:
    """One mode's headline figures as sums: rows can be added a part file at a time, so a job of
    any size is headlined without holding its rows."""

    n: int = 0
    errors: int = 0
    verified: int = 0
    scored: int = 0
    correct: int = 0
    pass_at_1: int = 0
    maj_at_k: int = 0
    pass_at_k: int = 0
    not_judged: int = 0
    attempts: int = 0
    tokens: float = 0.0
    answered: int = 0  # rows that reached the engine: tokens per problem is over these

    def add(self, row: st.RowView) -> None:
        self.n += 1
        self.errors += bool(row.error)
        self.verified += bool(row.verified)
        self.attempts += row.num_attempts
        if row.num_attempts > 0:
            self.answered += 1
            self.tokens += row.completion_tokens
        if row.has_gold:
            self.scored += 1
            self.correct += row.correct
            self.pass_at_1 += row.pass_at_1
            self.maj_at_k += row.maj_at_k
            self.pass_at_k += row.pass_at_k
            self.not_judged += row.not_judged

    def merge(self, other: "HeadlineTotals") -> "HeadlineTotals":
        return HeadlineTotals(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def rates(self) -> st.Rates:
        return st.Rates(self.n, self.scored, self.correct, self.pass_at_1, self.maj_at_k, self.pass_at_k, self.not_judged)

    def counts(self) -> list[str]:
        return [str(self.n), str(self.errors), str(self.verified)]

    def usage(self) -> list[str]:
        return [num(self.attempts / self.n if self.n else None, 2), num(self.tokens / self.answered if self.answered else None)]


def headline_totals(rows: list[st.RowView], into: dict[str, HeadlineTotals] | None = None) -> dict[str, HeadlineTotals]:
    """Rows added to per-mode totals (`into`, or new ones)."""
    totals = into if into is not None else {}
    for row in rows:
        totals.setdefault(row.mode, HeadlineTotals()).add(row)
    return totals


def headline(rows: list[st.RowView]) -> Table:
    """One line per mode: counts, accuracy (self only), pass@1 / maj@k / pass@k, attempts, tokens."""
    return headline_of(headline_totals(rows))


def headline_of(totals: dict[str, HeadlineTotals]) -> Table:
    """The headline of per-mode totals. The accuracy column exists only when some rows are not
    oracle rows; an oracle row never fills it."""
    present = sorted(totals, key=lambda m: (m != "self", m))
    with_accuracy = any(m != "oracle" for m in present)
    headers = ["mode", "problems", "errors", "verified", "with gold", "not judged",
               *(["accuracy", "95% CI"] if with_accuracy else []), "pass@1", "maj@k", "pass@k", "attempts/problem", "tokens/problem"]
    body = []
    for mode in present:
        part = totals[mode]
        rates = part.rates()
        if not with_accuracy:
            accuracy = []
        elif mode == "oracle":
            accuracy = ["n/a: oracle", ""]
        else:
            accuracy = [pct(rates.share(rates.correct)), ci(rates.correct, rates.scored)]
        shares = [pct(rates.share(c)) for c in (rates.pass_at_1, rates.maj_at_k, rates.pass_at_k)]
        body.append([mode_label(mode), *part.counts(), str(rates.scored), str(rates.not_judged), *accuracy, *shares, *part.usage()])
    if len(present) > 1:  # totals, with no accuracy figure: modes are never pooled
        everything = HeadlineTotals()
        for mode in present:
            everything = everything.merge(totals[mode])
        body.append(["all", *everything.counts(), *[""] * (5 + 2 * with_accuracy), *everything.usage()])
    notes = [f"{mode_label(m)}: {MODE_NOTES.get(m, 'unknown mode')}" for m in present]
    notes.append("not judged: no one could decide (a comparison that did not finish: timeout, a value too large; "
                 "a judge model that failed, was over budget or answered nothing readable); counted as not correct")
    if with_accuracy:
        notes.append("95% CI: Wilson score interval of the accuracy")
    return Table("Headline", headers, body, note="; ".join(notes) + ".", anchor="headline", total=len(present) > 1)


# ---------------------------------------------------------------- accuracy by group


def ci(successes: int, n: int) -> str:
    """The 95% Wilson interval of successes/n as "[lo%, hi%]"."""
    interval = st.wilson_interval(successes, n)
    return "n/a" if interval is None else f"[{interval[0]:.1%}, {interval[1]:.1%}]"


CI_NOTE = "95% CI: Wilson score interval of the share over rows with gold."


def accuracy_by(rows: list[st.RowView], mode: str, key: str, name: str, *, within: str | None = None) -> Table:
    """pass@1, maj@k and pass@k side by side per group (and accuracy for `self`), with the errors
    of each group and a 95% Wilson interval on its main score (accuracy; pass@k for oracle).

    `within` names the benchmark the rows were taken from: subjects and levels are only ever
    tabled inside one benchmark (MathVision's level 1 is not MathVista's).
    """
    part = [r for r in rows if r.mode == mode]
    oracle = mode == "oracle"
    headers = [name, "n", "errors", "with gold"]
    headers += ["pass@1", "maj@k", "pass@k", "pass@k 95% CI"] if oracle else ["accuracy", "95% CI", "pass@1", "maj@k", "pass@k"]
    body = []
    for label, members in st.grouped(part, key) + [("all", part)]:
        r = st.rates(members)
        cells = [label, str(r.n), str(sum(1 for m in members if m.error)), str(r.scored)]
        if oracle:
            cells += [frac(r.pass_at_1, r.scored), frac(r.maj_at_k, r.scored), frac(r.pass_at_k, r.scored), ci(r.pass_at_k, r.scored)]
        else:
            cells += [frac(r.correct, r.scored), ci(r.correct, r.scored),
                      frac(r.pass_at_1, r.scored), frac(r.maj_at_k, r.scored), frac(r.pass_at_k, r.scored)]
        body.append(cells)
    where = f": {within}" if within else ""
    slug = f"-{_slug(within)}" if within else ""
    if oracle:
        title = f"ORACLE mode: pass@1, maj@k, pass@k by {name}{where}"
        note = "Gold was used while solving: the final answer's score is pass@k, not an accuracy. " + CI_NOTE
    else:
        title = f"Accuracy by {name}{where} ({mode} mode)"
        note = ("accuracy: final answer vs gold. Shares are over rows with gold; error rows count as wrong "
                "(see the errors column and Error reasons). " + CI_NOTE)
    return Table(title, headers, body, note=note, anchor=f"{mode}-by-{key}{slug}", total=True)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "none"


def accuracy_tables(rows: list[st.RowView]) -> list[Table]:
    """Per mode: one table by benchmark, then subject and level tables within each benchmark
    (a grouping no row of that benchmark has a value for is left out)."""
    tables = []
    for mode in st.modes(rows):
        part = [r for r in rows if r.mode == mode]
        tables.append(accuracy_by(part, mode, "source", "benchmark"))
        for source, members in st.grouped(part, "source"):
            for key, name in GROUPINGS[1:]:
                if all(getattr(r, key) == st.NONE_LABEL for r in members):
                    continue
                tables.append(accuracy_by(members, mode, key, name, within=source))
    return tables


def curve_table(rows: list[st.RowView], mode: str) -> Table | None:
    part = [r for r in rows if r.mode == mode]
    points = st.attempts_curve(part)
    if not points:
        return None
    scored = sum(r.has_gold for r in part)
    body = [[str(p.j), pct(p.pass_at_j), pct(p.maj_at_j)] for p in points]
    if mode == "oracle":
        title = "ORACLE mode: pass@j and maj@j vs attempts"
        note = f"Over {scored} rows with gold. Gold stopped the sampling: these are pass@j figures, not accuracy."
    else:
        title = f"pass@j and maj@j vs attempts ({mode} mode)"
        note = (f"Over {scored} rows with gold; pass@j: one of the first j attempts is correct; maj@j: their most "
                "common answer is. A problem that stopped earlier keeps its last value.")
    return Table(title, ["attempts j", "pass@j", "maj@j"], body, note=note, anchor=f"{mode}-curve")


# ---------------------------------------------------------------- attempts, tokens, errors


def attempts_table(rows: list[st.RowView]) -> Table:
    total = len(rows)
    body = [[str(k), str(n), f"{n / total:.1%}"] for k, n in st.attempts_distribution(rows)]
    spread = st.spread([float(r.num_attempts) for r in rows])
    note = f"mean {num(spread.mean, 2)}, median {num(spread.median, 1)}, max {num(spread.max)} attempts per problem."
    failed = [r for r in rows if r.failed_calls]
    if failed:  # kept as attempts with their error: counted here, never scored as wrong answers
        note += (f" {sum(r.failed_calls for r in failed)} engine call(s) failed, on {len(failed)} problem(s);"
                 " they count as attempts but are not scored.")
    return Table("Attempts per problem", ["attempts", "problems", "share"], body, note=note, anchor="attempts")


def tokens_table(rows: list[st.RowView]) -> Table:
    headers = ["benchmark", "problems", "mean", "median", "p90", "max", "saved by cut-off", "latency mean (s)", "latency p90 (s)"]
    body = []
    for label, members in st.grouped(rows, "source") + [("all", rows)]:
        reached = [r for r in members if r.num_attempts > 0]
        tokens = st.spread(st.tokens_per_problem(members))
        latency = st.spread([r.latency_s for r in reached])
        body.append([label, str(tokens.n), num(tokens.mean), num(tokens.median), num(tokens.p90), num(tokens.max),
                     str(sum(r.tokens_saved for r in members)), num(latency.mean, 2), num(latency.p90, 2)])
    note = "Completion tokens over all attempts of each problem that reached the engine."
    return Table("Tokens per problem", headers, body, note=note, anchor="tokens", total=True)


def errors_table(rows: list[st.RowView], example_chars: int = 200) -> Table:
    """Error rows by stage and reason (a missing image file apart from a disabled URL), with the
    benchmarks they come from and one example."""
    body = []
    for group in st.error_groups(rows):
        example = group.example if len(group.example) <= example_chars else group.example[: example_chars - 1] + "…"
        body.append([group.stage, group.reason, str(group.count), ", ".join(group.sources), group.example_id, example])
    errors = sum(1 for r in rows if r.error)
    note = (f"{errors} error rows of {len(rows)}; the stage is the text before the first ':' of the error, "
            "the reason is told from the rest.") if errors else "No error rows."
    return Table("Error reasons", ["stage", "reason", "rows", "benchmarks", "example id", "example"], body, note=note,
                 anchor="errors", text_columns=(0, 1, 3, 4, 5))


def errors_by_benchmark(rows: list[st.RowView]) -> Table:
    """One row per benchmark: its rows, its error rows, and how many of each reason."""
    kinds, per_source = st.errors_by_source(rows)
    headers = ["benchmark", "rows", "errors"] + [f"{stage}: {reason}" for stage, reason in kinds]
    body = []
    sizes = dict((label, len(members)) for label, members in st.grouped(rows, "source"))
    total: Counter[tuple[str, str]] = Counter()
    for label, counts in per_source:
        total.update(counts)
        body.append([label, str(sizes[label]), str(sum(counts.values()))] + [str(counts.get(k, 0)) for k in kinds])
    body.append(["all", str(len(rows)), str(sum(total.values()))] + [str(total.get(k, 0)) for k in kinds])
    note = ("Error rows count as wrong in every accuracy above; a benchmark at 0% with all its rows here "
            "did not run." if kinds else "No error rows.")
    return Table("Errors by benchmark", headers, body, note=note, anchor="errors-by-benchmark", total=True)


DECIDERS = ("rules", "sympy", "judge")


def decided_by_table(rows: list[st.RowView]) -> Table:
    """Per benchmark: who decided each scored final answer (the string rules, sympy, the judge
    model), and how many could not be judged; a judge's decisions are never mixed into the rules'."""
    headers = ["benchmark", "scored", *DECIDERS, "not judged", "judge: correct"]
    body = []
    scored = [r for r in rows if r.has_gold and not r.error]
    for label, members in st.grouped(scored, "source") + [("all", scored)]:
        counts = Counter(r.decided_by for r in members)
        judged_correct = sum(1 for r in members if r.decided_by == "judge" and r.correct)
        body.append([label, str(len(members)), *(str(counts.get(d, 0)) for d in DECIDERS),
                     str(sum(r.not_judged for r in members)), str(judged_correct)])
    note = ("rules: the string rules decided; sympy: a symbolic comparison; judge: the judge model read the answer "
            "(the rules found none) or judged a free-text match (verifier.judge); not judged: no one could decide "
            "(a timeout, a judge that failed, was over budget or answered nothing readable), counted as not correct.")
    return Table("Who decided", headers, body, note=note, anchor="decided-by", total=True)


def issues_table(rows: list[st.RowView]) -> Table:
    body = [[name, str(final), str(attempts)] for name, final, attempts in st.issue_counts(rows)]
    note = "Gold-free checks of the verifier." if body else "No answer issues."
    return Table("Answer issues", ["issue", "final answers", "attempts"], body, note=note, anchor="issues")
