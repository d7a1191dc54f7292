"""Ray Data stages of the batch job: prepare (CPU) -> solve (engine actors) -> score (CPU).

Prepare and score take and return Arrow tables with a fixed schema (derived from the records in
qvq_ray/problem.py). Solve is a row-level async UDF: Ray Data runs many rows of a block at once on
the actor's event loop, and several blocks per actor, so a slot freed by a finished chain of
thought is refilled from the next rows at once, never held until the slowest chain of a block
ends (pipeline.py sets the numbers). `RowStage` owns the error-row rule for all three: a bad row
becomes an error row carrying its reason and skips the later stages' work, while the rest of its
block goes on. Every input row yields exactly one output row.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from qvq_ray.config import QvqConfig
from qvq_ray.problem import (
    Problem,
    error_row,
    input_schema,
    problem_from_row,
    solution_schema,
    solution_to_row,
)
from qvq_ray.verify.spec import AnswerSpec

if TYPE_CHECKING:
    import pyarrow as pa

    from qvq_ray.image_files import ImageRoots

logger = logging.getLogger(__name__)


def prepared_schema() -> pa.Schema:
    import pyarrow as pa

    return input_schema().append(pa.field("prepared_images", pa.list_(pa.binary())))


def _problem_of(row: dict[str, Any]) -> Problem:
    return problem_from_row({k: v for k, v in row.items() if k not in ("error", "prepared_images")})


class RowStage:
    """A Ray Data stage over Arrow batches that owns the error-row rule, for every stage alike.

    One output row per input row, in order. A row that already failed (`is_error_row`) is not
    worked on: it is carried into this stage's output schema unchanged (`carry`). An exception
    while working on a row makes that row an error row whose reason starts with the stage's
    `failure_label` ("bad image: OSError: ..."); the rest of the block goes on.
    """

    failure_label = "failed"

    def __init__(self, config_json: str):
        self.config = QvqConfig.model_validate_json(config_json)

    def output_schema(self) -> pa.Schema:
        raise NotImplementedError

    def is_error_row(self, row: dict[str, Any]) -> bool:
        return bool(row.get("error"))

    def carry(self, row: dict[str, Any]) -> dict[str, Any]:
        """An error row in this stage's output form (the same row where the schema does not change)."""
        return row

    async def process(self, row: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def _one(self, row: dict[str, Any]) -> dict[str, Any]:
        if self.is_error_row(row):
            return self.carry(row)
        try:
            return await self.process(row)
        except Exception as exc:
            reason = f"{self.failure_label}: {type(exc).__name__}: {exc}"
            logger.warning("%s for %s", reason, row.get("id"))
            return self.carry({**row, "error": reason})

    async def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        rows = await asyncio.gather(*(self._one(row) for row in batch.to_pylist()))
        return pa.Table.from_pylist(list(rows), schema=self.output_schema())


class PrepareImages(RowStage):
    """CPU stage: read, validate and resize each row's images so engines get ready-to-use bytes.

    Image files are read only inside `image_roots` (the problem set's folders, from the driver; a
    path outside is that row's error, the file never opened); None reads any regular file, the
    user's explicit `batch.allow_paths_outside`."""

    failure_label = "bad image"

    def __init__(self, config_json: str, image_roots: "ImageRoots | None"):
        super().__init__(config_json)
        self.image_roots = image_roots

    def output_schema(self) -> pa.Schema:
        return prepared_schema()

    def carry(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "prepared_images": []}

    async def process(self, row: dict[str, Any]) -> dict[str, Any]:
        from qvq_ray.images import prepare_problem_images

        problem = _problem_of(row)
        prepared = prepare_problem_images(
            problem.images, self.config.model, limits=self.config.images, roots=self.image_roots
        )
        # the original bytes are not needed past this point; keep rows light
        images = [{"bytes": None, "path": im.get("path")} for im in row.get("images") or []]
        return {**row, "images": images, "prepared_images": prepared}


class SolveProblems(RowStage):
    """Engine actor: one engine replica running many solves at once on its own event loop.

    Called per row (Ray Data's async row UDF); `batch.max_concurrent_solves` solves run at once
    whatever the number of rows Ray Data hands in, the rest wait for a slot."""

    failure_label = "solve failed"

    def __init__(self, config_json: str, solved_counter: Any = None):
        from qvq_ray.batch.solved_rows import SolvedTally
        from qvq_ray.engines import build_engine
        from qvq_ray.judge.checker import judging_checker
        from qvq_ray.solver import Solver
        from qvq_ray.verify import Verifier

        super().__init__(config_json)
        # each finished row told to the job's counter: the driver's progress moves per row
        self.tally = SolvedTally(solved_counter) if solved_counter is not None else None
        self.engine = build_engine(self.config)
        self.verifier = Verifier(self.config.verifier)
        # with verifier.judge, a JudgingChecker whose judge calls go to this actor's engine (or its endpoint)
        self.checker = judging_checker(self.verifier, self.config, self.engine)
        self.solver = Solver.from_config(self.engine, self.checker, self.config)
        self._limit: asyncio.Semaphore | None = None

    def output_schema(self) -> pa.Schema:
        return solution_schema()

    def carry(self, row: dict[str, Any]) -> dict[str, Any]:
        """An input row that failed becomes its output error row (with whatever of the problem is readable)."""
        try:
            problem = _problem_of(row)
        except Exception:
            problem = None
        return error_row(str(row.get("id") or "?"), row["error"], problem, mode=self.config.policy.mode)

    async def __call__(self, row: dict[str, Any]) -> dict[str, Any]:  # a row, not a batch
        out = await self._one(dict(row))
        if self.tally is not None:
            self.tally.add(out)
        return out

    async def process(self, row: dict[str, Any]) -> dict[str, Any]:
        problem = _problem_of(row)
        if self._limit is None:
            self._limit = asyncio.Semaphore(self.config.batch.max_concurrent_solves)
        async with self._limit:
            solution = await self.solver.solve(problem, image_bytes=list(row.get("prepared_images") or []))
        row = solution_to_row(solution, problem)
        if self.checker.judge is not None:  # the judge scores here, on this engine, outside the solve slots
            from qvq_ray.batch.scoring import score_row

            row = await score_row(row, self.checker, problem=problem)
        return row


class ScoreAgainstGold(RowStage):
    """CPU stage after solving: the final answer and every attempt against gold.

    Fills `correct` (final answer), each attempt's `correct`, and the problem's pass@1 / maj@k /
    pass@k. A comparison that could not be judged (timeout, a value too large) leaves `correct`
    None: not judged, which the report shows as such, never as wrong. Without gold everything
    stays None. Answers are grouped for maj@k the way the solver votes.
    """

    failure_label = "score failed"

    def __init__(self, config_json: str):
        from qvq_ray.verify import Verifier

        super().__init__(config_json)
        self.verifier = Verifier(self.config.verifier)

    def output_schema(self) -> pa.Schema:
        return solution_schema()

    def is_error_row(self, row: dict[str, Any]) -> bool:
        from qvq_ray.results.metrics import is_scored

        # a partial solve is still scored; a row the solve actor scored (with its judge) is passed on
        return (bool(row.get("error")) and not row.get("attempts")) or is_scored(row)

    def carry(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row that never got an answer is wrong against gold; a scoring failure on a solved row
        stays not judged (None), never "wrong"."""
        from qvq_ray.results.metrics import score_unanswered

        return score_unanswered(row)

    async def process(self, row: dict[str, Any]) -> dict[str, Any]:
        from qvq_ray.batch.scoring import score_row

        return await score_row(row, self.verifier)
