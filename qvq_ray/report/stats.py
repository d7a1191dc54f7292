"""The numbers behind the report, computed from output rows (no formatting, no plotting).

Output rows become `RowView`s once (mode, benchmark, subject, level and each attempt's outcome
pulled out), and every figure is a small function over a list of them. Accuracy figures are always
computed over rows of one mode: `oracle` rows used gold while solving and are never pooled with
`self` rows.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from qvq_ray.results.metrics import AttemptOutcome, attempt_outcome, problem_metrics
from qvq_ray.verify.spec import has_gold

# meta keys that carry a difficulty level, first match wins (MathVision `level`, OlympiadBench
# `difficulty`, MMMU `topic_difficulty`).
LEVEL_KEYS = ("level", "difficulty", "topic_difficulty")
NONE_LABEL = "(none)"
CORRECT_CLUSTER = "\x00gold"  # rows without recorded clusters: attempts scored correct are equivalent to gold, hence to each other


@dataclass(frozen=True)
class RowView:
    """One output row as the report sees it."""

    id: str
    mode: str
    source: str
    subject: str
    level: str
    has_gold: bool
    correct: bool  # final answer vs gold (False without gold or when unscored)
    not_judged: bool  # gold, an answer, no error, but the comparison could not be judged (timeout)
    pass_at_1: bool
    maj_at_k: bool
    pass_at_k: bool
    verified: bool
    error: str | None
    num_attempts: int
    prompt_tokens: int
    completion_tokens: int
    tokens_saved: int
    latency_s: float
    decided_by: str | None = None  # who decided `correct`: rules, sympy, judge; None without gold or not judged
    issues: tuple[str, ...] = ()
    attempt_issues: tuple[str, ...] = ()
    outcomes: tuple[AttemptOutcome, ...] = field(default=(), repr=False)
    failed_calls: int = 0  # attempts whose engine call failed (kept with their error, never scored)


def _problem(row: dict[str, Any]) -> dict[str, Any]:
    from qvq_ray.problem import stored_problem_dict

    return stored_problem_dict(row.get("problem"))


def _label(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return NONE_LABEL
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _level(problem: dict[str, Any]) -> Any:
    meta = problem.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = {}
    if not isinstance(meta, dict):
        return None
    for key in LEVEL_KEYS:
        if meta.get(key) not in (None, ""):
            return meta[key]
    return None


def _outcomes(attempts: list[dict[str, Any]]) -> tuple[AttemptOutcome, ...]:
    """Each answered attempt's vote, in order (failed engine calls left out): the answer clusters
    the score stage formed (`answer_cluster`), so maj@j at j = k is the row's own maj@k."""
    answered = [a for a in attempts if not a.get("error")]  # a failed engine call is no sample
    if any(_answer(a) is not None and a.get("answer_cluster") is None for a in answered):
        return _outcomes_of_rows_without_clusters(answered)
    return tuple(attempt_outcome(a) for a in answered)


def _answer(attempt: dict[str, Any]) -> str | None:
    return (attempt.get("verdict") or {}).get("answer")


def _outcomes_of_rows_without_clusters(answered: list[dict[str, Any]]) -> tuple[AttemptOutcome, ...]:
    """Rows scored before attempts recorded their cluster: correct attempts share one cluster, the
    others are grouped by canonical form, else by the answer as written. The score stage may have
    merged forms it found equivalent, so such a row's maj@j can differ from its own maj@k."""
    out = []
    for attempt in answered:
        verdict = attempt.get("verdict") or {}
        correct = attempt.get("correct") is True
        answer = verdict.get("answer")
        if answer is None:
            cluster = None
        elif correct:
            cluster = CORRECT_CLUSTER
        else:
            cluster = verdict.get("canonical") if verdict.get("canonical") is not None else answer
        out.append(AttemptOutcome(cluster=cluster, correct=correct))
    return tuple(out)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def job_mode(rows: list[dict[str, Any]]) -> str | None:
    """The one mode of the rows that reached the solver, if there is exactly one."""
    modes = {r.get("mode") for r in rows if (r.get("attempts") or r.get("num_attempts")) and r.get("mode")}
    return modes.pop() if len(modes) == 1 else None


def views(rows: Iterable[dict[str, Any]], *, default_mode: str | None | bool = False) -> list[RowView]:
    """RowViews of output rows (dicts as `Table.to_pylist()` gives them).

    A row that failed before any attempt never saw gold, and error rows are written with the
    default mode; such rows join the job's mode (when the job has one) so that an oracle job's
    error rows count against its pass@k instead of opening a `self` section of their own.
    `default_mode`: that mode when the rows are part of a larger set (read a file at a time).
    """
    rows = list(rows)
    if default_mode is False:  # not given: the job's mode is the mode of these rows
        default_mode = job_mode(rows)
    out = []
    for row in rows:
        attempts = list(row.get("attempts") or [])
        mode = row.get("mode") or "self"
        if not attempts and not row.get("num_attempts") and default_mode:
            mode = default_mode
        problem = _problem(row)
        gold = row.get("gold")
        out.append(
            RowView(
                id=str(row.get("id")),
                mode=mode,
                source=_label(row.get("source") or problem.get("source")),
                subject=_label(problem.get("subject")),
                level=_label(_level(problem)),
                has_gold=has_gold(gold),
                correct=row.get("correct") is True,
                not_judged=gold not in (None, "") and not row.get("error") and row.get("correct") is None,
                pass_at_1=row.get("pass_at_1") is True,
                maj_at_k=row.get("maj_at_k") is True,
                pass_at_k=row.get("pass_at_k") is True,
                verified=bool(row.get("verified")),
                error=row.get("error") or None,
                num_attempts=_int(row.get("num_attempts")) or len(attempts),
                prompt_tokens=_int(row.get("prompt_tokens")),
                completion_tokens=_int(row.get("completion_tokens")),
                tokens_saved=_int(row.get("tokens_saved")),
                latency_s=float(row.get("latency_s") or 0.0),
                decided_by=row.get("decided_by") or None,
                issues=tuple(row.get("issues") or ()),
                attempt_issues=tuple(i for a in attempts for i in ((a.get("verdict") or {}).get("issues") or ())),
                outcomes=_outcomes(attempts),
                failed_calls=sum(1 for a in attempts if a.get("error")),
            )
        )
    return out


def modes(rows: list[RowView]) -> list[str]:
    """Modes present, `self` first."""
    return sorted({r.mode for r in rows}, key=lambda m: (m != "self", m))


# ---------------------------------------------------------------- accuracy


@dataclass(frozen=True)
class Rates:
    """Counts over rows of one mode; shares are over `scored` (rows with gold)."""

    n: int
    scored: int
    correct: int
    pass_at_1: int
    maj_at_k: int
    pass_at_k: int
    not_judged: int = 0  # counted in `scored` and not in `correct`: never a silent 'wrong'

    def share(self, count: int) -> float | None:
        return count / self.scored if self.scored else None


def rates(rows: list[RowView]) -> Rates:
    if len({r.mode for r in rows}) > 1:
        raise ValueError("accuracy over rows of different modes: split oracle and self rows first")
    gold = [r for r in rows if r.has_gold]
    return Rates(
        n=len(rows),
        scored=len(gold),
        correct=sum(r.correct for r in gold),
        pass_at_1=sum(r.pass_at_1 for r in gold),
        maj_at_k=sum(r.maj_at_k for r in gold),
        pass_at_k=sum(r.pass_at_k for r in gold),
        not_judged=sum(r.not_judged for r in gold),
    )


def _sort_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), "")
    except ValueError:
        return (1 if label != NONE_LABEL else 2, 0.0, label)


def grouped(rows: list[RowView], key: str) -> list[tuple[str, list[RowView]]]:
    """Rows grouped by a RowView attribute (source, subject, level), numeric labels in order."""
    groups: dict[str, list[RowView]] = {}
    for row in rows:
        groups.setdefault(getattr(row, key), []).append(row)
    return [(label, groups[label]) for label in sorted(groups, key=_sort_key)]


@dataclass(frozen=True)
class CurvePoint:
    j: int
    pass_at_j: float
    maj_at_j: float


def attempts_curve(rows: list[RowView]) -> list[CurvePoint]:
    """pass@j and maj@j for j = 1..(most attempts) over the scored rows of one mode.

    pass@j: some of the first j attempts is correct; maj@j: the most common answer of the first j
    is correct. A problem that stopped after fewer than j attempts keeps its last value (the
    policy needed no more); a row without attempts counts as wrong.
    """
    if len({r.mode for r in rows}) > 1:
        raise ValueError("a curve over rows of different modes: split oracle and self rows first")
    scored = [r for r in rows if r.has_gold]
    most = max((len(r.outcomes) for r in scored), default=0)
    points = []
    for j in range(1, most + 1):
        passed = maj = 0
        for row in scored:
            _, m, p = problem_metrics(list(row.outcomes[:j]))
            passed += p
            maj += m
        points.append(CurvePoint(j, passed / len(scored), maj / len(scored)))
    return points


# ---------------------------------------------------------------- attempts, tokens, errors


def attempts_distribution(rows: list[RowView]) -> list[tuple[int, int]]:
    """(attempts, problems) for each attempt count seen, ascending."""
    counts = Counter(r.num_attempts for r in rows)
    return sorted(counts.items())


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float | None
    median: float | None
    p90: float | None
    max: float | None


def spread(values: list[float]) -> Spread:
    if not values:
        return Spread(0, None, None, None, None)
    return Spread(len(values), sum(values) / len(values), percentile(values, 50), percentile(values, 90), max(values))


def tokens_per_problem(rows: list[RowView]) -> list[float]:
    """Completion tokens of each problem that reached the engine (rows with attempts)."""
    return [float(r.completion_tokens) for r in rows if r.num_attempts > 0]


def error_reason(message: str) -> str:
    """The stage of an error message: its text before the first ':' ("bad image", "solve failed")."""
    return message.split(":", 1)[0].strip() or message.strip()


# Why an image failed, told from the ImageError texts of qvq_ray/images.py (first match wins).
# "bad image" alone would put a benchmark run without its images folder and a config that
# refuses URLs in one count, and they have different fixes.
IMAGE_KINDS = (
    ("image outside the dataset folder", ("is outside the dataset folder",)),
    ("image file missing", ("image file not found", "image path is not a file")),
    ("image URLs disabled", ("URL images are disabled",)),
    ("image URL fetch failed", ("cannot fetch image", "returned HTTP", "took over", "redirect",
                                "cannot resolve image URL host", "non-public address", "image URL has no host")),
    ("image over limits", ("max_bytes", "max_pixels_decoded", "max_total_pixels_decoded", "too many images",
                           "decompression bomb")),
    ("image decode error", ("not a recognized image", "corrupt", "empty size", "not valid base64",
                            "malformed data URL", "data URL is not an image", "base64-encoded", "is empty")),
    ("image file unreadable", ("cannot read image file",)),
)
# Stage labels as the pipeline writes them (RowStage.failure_label, the loader, the solver).
STAGE_PREFIXES = ("bad image", "solve failed", "score failed", "bad input row")


def error_kind(message: str) -> tuple[str, str]:
    """(stage, reason) of an error message, e.g. ("bad image", "image file missing") or
    ("solve failed", "EngineError"); unknown messages fall back to their text before ':'."""
    text = " ".join(str(message).split())
    stage, _, rest = text.partition(":")
    stage, rest = stage.strip(), rest.strip()
    if text.startswith("engine failed on attempt"):
        return "solve failed", "engine error after some attempts"
    if text.startswith("duplicate id"):
        return "bad input row", "duplicate id"
    if stage not in STAGE_PREFIXES:
        return stage or text, stage or text
    if stage == "bad image":
        for kind, needles in IMAGE_KINDS:
            if any(n in rest for n in needles):
                return stage, kind
        return stage, "other image error"
    if stage in ("solve failed", "score failed"):  # "solve failed: EngineError: boom"
        exc, sep, _ = rest.partition(":")
        return stage, exc.strip() if sep and exc.strip().isidentifier() else "error"
    return stage, "unreadable row"


@dataclass(frozen=True)
class ErrorGroup:
    stage: str
    reason: str
    count: int
    sources: tuple[str, ...]
    example_id: str
    example: str


def error_groups(rows: list[RowView]) -> list[ErrorGroup]:
    """Error rows grouped by (stage, reason), most frequent first, each with its first example."""
    groups: dict[tuple[str, str], list[RowView]] = {}
    for row in rows:
        if row.error:
            groups.setdefault(error_kind(row.error), []).append(row)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [
        ErrorGroup(stage, reason, len(members), tuple(sorted({m.source for m in members}, key=_sort_key)),
                   members[0].id, members[0].error or "")
        for (stage, reason), members in ordered
    ]


def errors_by_source(
    rows: list[RowView],
) -> tuple[list[tuple[str, str]], list[tuple[str, Counter[tuple[str, str]]]]]:
    """The (stage, reason) kinds seen (most frequent first) and, per benchmark, its count of each."""
    kinds = [(g.stage, g.reason) for g in error_groups(rows)]
    out: list[tuple[str, Counter[tuple[str, str]]]] = []
    for label, members in grouped(rows, "source"):
        counts = Counter(error_kind(r.error) for r in members if r.error)
        out.append((label, counts))
    return kinds, out


# ---------------------------------------------------------------- statistics

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion (95% by default); None for n = 0.

    Chosen over the normal ("Wald") interval because benchmark slices are small and accuracies
    near 0 or 1 are common: Wilson stays inside [0, 1] and keeps its coverage there.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} not in [0, {n}]")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for paired outcomes with b and c discordant pairs.

    Under the null each discordant pair is a fair coin: p = 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2),
    capped at 1; 1.0 when there is no discordant pair. Exact integer sums (math.comb), no scipy.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / (1 << n))  # 1 << n: 2**n, typed int


def issue_counts(rows: list[RowView]) -> list[tuple[str, int, int]]:
    """(issue, final answers with it, attempts with it), most frequent first."""
    final = Counter(i for r in rows for i in r.issues)
    attempts = Counter(i for r in rows for i in r.attempt_issues)
    names = set(final) | set(attempts)
    return sorted(((n, final[n], attempts[n]) for n in names), key=lambda t: (-t[2], -t[1], t[0]))
