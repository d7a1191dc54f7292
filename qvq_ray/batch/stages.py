"""Ray Data stages of the batch job: prepare (CPU) -> solve (engine actors) -> score (CPU).

Each stage takes and returns Arrow tables with a fixed schema and handles rows one by one inside
a try/except: a bad row becomes an error row carrying its reason and skips the later stages' work,
while the rest of its block goes on. Every input row yields exactly one output row.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from qvq_ray.config import QvqConfig
from qvq_ray.problem import (
    Problem,
    error_row,
    problem_from_row,
    problem_schema,
    solution_schema,
    solution_to_row,
)

logger = logging.getLogger(__name__)


def input_schema():
    """Problem rows as read, plus `error` for rows the loader could not parse."""
    import pyarrow as pa

    return problem_schema().append(pa.field("error", pa.string()))


def prepared_schema():
    import pyarrow as pa

    return input_schema().append(pa.field("prepared_images", pa.list_(pa.binary())))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _error_from_input(row: dict[str, Any], reason: str, mode: str) -> dict[str, Any]:
    try:
        problem = problem_from_row({k: v for k, v in row.items() if k not in ("error", "prepared_images")})
    except Exception:
        problem = None
    return error_row(str(row.get("id") or "?"), reason, problem, mode=mode)


class PrepareImages:
    """CPU stage: read, validate and resize each row's images so engines get ready-to-use bytes."""

    def __init__(self, config_json: str):
        self.config = QvqConfig.model_validate_json(config_json)

    def __call__(self, batch):
        import pyarrow as pa

        from qvq_ray.images import prepare_problem_images

        rows = batch.to_pylist()
        for row in rows:
            row["prepared_images"] = []
            if row.get("error"):
                continue
            try:
                problem = problem_from_row({k: v for k, v in row.items() if k not in ("error", "prepared_images")})
                row["prepared_images"] = prepare_problem_images(problem.images, self.config.model, limits=self.config.images)
                # the original bytes are not needed past this point; keep rows light
                row["images"] = [{"bytes": None, "path": im.get("path")} for im in row.get("images") or []]
            except Exception as exc:
                row["error"] = f"bad image: {_reason(exc)}"
        return pa.Table.from_pylist(rows, schema=prepared_schema())


class SolveProblems:
    """Engine actor: one engine replica running many solves at once on its own event loop."""

    def __init__(self, config_json: str):
        from qvq_ray.engines import build_engine
        from qvq_ray.solver import Solver
        from qvq_ray.verify import Verifier

        self.config = QvqConfig.model_validate_json(config_json)
        self.engine = build_engine(self.config)
        self.verifier = Verifier(self.config.verifier)
        self.solver = Solver.from_config(self.engine, self.verifier, self.config)
        self._limit: asyncio.Semaphore | None = None

    async def _solve_row(self, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("error"):
            return _error_from_input(row, row["error"], self.config.policy.mode)
        problem: Problem | None = None
        try:
            problem = problem_from_row({k: v for k, v in row.items() if k not in ("error", "prepared_images")})
            if self._limit is None:
                self._limit = asyncio.Semaphore(self.config.batch.max_concurrent_solves)
            async with self._limit:
                solution = await self.solver.solve(problem, image_bytes=list(row.get("prepared_images") or []))
            return solution_to_row(solution, problem)
        except Exception as exc:
            logger.warning("solve failed for %s: %s", row.get("id"), exc)
            return error_row(str(row.get("id")), f"solve failed: {_reason(exc)}", problem, mode=self.config.policy.mode)

    async def __call__(self, batch):
        import pyarrow as pa

        rows = await asyncio.gather(*(self._solve_row(row) for row in batch.to_pylist()))
        return pa.Table.from_pylist(list(rows), schema=solution_schema())


def _verifier_problem_fields(problem_json: str | None) -> dict[str, Any]:
    """choices, unit, tolerance, answer_type, precision of the row's `problem` column, for the verifier."""
    if not problem_json:
        return {}
    try:
        data = json.loads(problem_json)
    except ValueError:
        return {}
    from qvq_ray.verify.verifier import problem_fields

    fields = problem_fields(data)
    return {k: fields[k] for k in ("choices", "unit", "tolerance", "answer_type", "precision") if fields[k] is not None}


class ScoreAgainstGold:
    """CPU stage after solving: the final answer and every attempt against gold.

    Fills `correct` (final answer; None without gold), each attempt's `correct`, and the problem's
    pass@1 / maj@k / pass@k. Answers are grouped for maj@k the way the solver votes: equal canonical
    forms, else the verifier's equivalence.
    """

    def __init__(self, config_json: str):
        from qvq_ray.verify import Verifier

        self.config = QvqConfig.model_validate_json(config_json)
        self.verifier = Verifier(self.config.verifier)

    async def _matches_gold(
        self, answer: str | None, gold: str, cache: dict[str, bool], problem: dict[str, Any] | None = None
    ) -> bool:
        if answer is None:
            return False
        if answer not in cache:
            cache[answer] = bool(await self.verifier.equivalent(answer, gold, **(problem or {})))
        return cache[answer]

    async def _score(self, row: dict[str, Any]) -> dict[str, Any]:
        from qvq_ray.batch.metrics import AttemptOutcome, problem_metrics
        from qvq_ray.verify.voting import AnswerClusters

        gold = row.get("gold")
        if gold in (None, ""):
            return row  # nothing to score against: correct and the metrics stay None
        if row.get("error") and not row.get("attempts"):
            row.update(correct=False, pass_at_1=False, maj_at_k=False, pass_at_k=False)
            return row
        try:
            cache: dict[str, bool] = {}
            clusters = AnswerClusters()  # as the solver votes: maj@k counts the same clusters
            outcomes = []
            problem = _verifier_problem_fields(row.get("problem"))
            for index, attempt in enumerate(row.get("attempts") or []):
                verdict = attempt.get("verdict") or {}
                answer = verdict.get("answer")
                attempt["correct"] = await self._matches_gold(answer, gold, cache, problem)
                key = None
                if answer is not None:
                    cluster = await clusters.ajoin(index, answer, verdict.get("canonical"), self.verifier.equivalent)
                    key = str(cluster.members[0])
                outcomes.append(AttemptOutcome(cluster=key, correct=attempt["correct"]))
            row["pass_at_1"], row["maj_at_k"], row["pass_at_k"] = problem_metrics(outcomes)
            row["correct"] = False if row.get("error") else await self._matches_gold(row.get("answer"), gold, cache, problem)
        except Exception as exc:  # a verifier failure must not lose the row
            row["correct"] = None
            row["issues"] = list(row.get("issues") or []) + ["timeout" if "Timeout" in type(exc).__name__ else "unparseable"]
        return row

    async def __call__(self, batch):
        import pyarrow as pa

        rows = await asyncio.gather(*(self._score(row) for row in batch.to_pylist()))
        return pa.Table.from_pylist(list(rows), schema=solution_schema())
