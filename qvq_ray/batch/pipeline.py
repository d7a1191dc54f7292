"""The batch solve job: read -> prepare -> solve -> score -> write, on Ray Data.

The driver loads the problem set with the dataset adapters (rows the loader cannot parse become
rows carrying an `error`), then Ray Data streams blocks through the stages: image preparation on
CPU tasks, solving on an actor pool where each actor is one engine replica, scoring on a CPU
actor, and Parquet (or JSONL) files under the output directory. The summary is computed from the
files written, so it reconciles what is on disk: rows in = solved + errors.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from qvq_ray.report.summary import JobSummary, summarize_output
from qvq_ray.config import QvqConfig

logger = logging.getLogger(__name__)

# CPU stages (prepare, score, write) take a fraction of a CPU so that on a small machine they fit
# beside the engine actors instead of waiting forever for a whole free CPU.
AUX_CPUS = 0.25


def _input_rows(input_path: str, input_format: str | None, limit: int | None) -> list[dict]:
    from qvq_ray.datasets import LoadError, load_problems
    from qvq_ray.problem import problem_to_row

    rows: list[dict] = []
    seen: set[str] = set()
    for item in load_problems(input_path, format=input_format, limit=limit):
        if isinstance(item, LoadError):
            ref = str(item.ref)  # often the row's id: it keys the output like a solved row's
            row_id = ref if ref not in seen else f"{ref}#dup{len(rows)}"
            seen.add(row_id)
            rows.append(_load_error_row(row_id, f"bad input row: {item.reason}"))
            continue
        if item.id in seen:  # ids key the output (and resume): a second row with the same id is an error row
            rows.append(_load_error_row(f"{item.id}#dup{len(rows)}", f"duplicate id {item.id!r}"))
            continue
        seen.add(item.id)
        row = problem_to_row(item)
        row["error"] = None
        rows.append(row)
    return rows


def _load_error_row(row_id: str, reason: str) -> dict:
    from qvq_ray.arrow_rows import to_row
    from qvq_ray.problem import InputRow

    return to_row(InputRow(id=row_id, question="", error=reason))


def prepare_images_batch(batch, config_json: str):
    """Ray Data task UDF (a function so it runs as stateless CPU tasks)."""
    from qvq_ray.batch.stages import PrepareImages

    import asyncio

    return asyncio.run(PrepareImages(config_json)(batch))


def _ensure_ray(address: str | None, num_cpus: int | None) -> bool:
    """Start a local cluster for the run (or join `address`); True if we started it."""
    from qvq_ray.cluster import start_or_join_ray

    return start_or_join_ray(address, num_cpus=num_cpus)


def build_dataset(rows: list[dict], config: QvqConfig):
    """The Ray Data plan: prepare (CPU tasks) -> solve (engine actors) -> score (CPU actor)."""
    import pyarrow as pa
    import ray
    from ray.data import ActorPoolStrategy

    from qvq_ray.batch.stages import ScoreAgainstGold, SolveProblems
    from qvq_ray.problem import input_schema

    config_json = config.model_dump_json()
    resources = config.resources
    remote = config.engine.kind == "openai"  # generation happens at the endpoint: no local accelerator
    gpus = 0.0 if remote else (resources.num_gpus if resources.tensor_parallel_size == 1 else float(resources.tensor_parallel_size))
    block_rows = config.batch.rows_per_batch
    table = pa.Table.from_pylist(rows, schema=input_schema())
    # One block per batch of rows, built here: a repartition would need a whole CPU of its own.
    ds = ray.data.from_arrow([table.slice(i, block_rows) for i in range(0, len(rows), block_rows)])
    ds = ds.map_batches(
        prepare_images_batch,
        fn_kwargs={"config_json": config_json},
        batch_format="pyarrow",
        batch_size=block_rows,
        num_cpus=AUX_CPUS,
    )
    ds = ds.map_batches(
        SolveProblems,
        fn_constructor_kwargs={"config_json": config_json},
        compute=ActorPoolStrategy(size=config.batch.num_replicas),
        batch_format="pyarrow",
        batch_size=block_rows,
        num_cpus=resources.num_cpus,
        num_gpus=gpus,
    )
    return ds.map_batches(
        ScoreAgainstGold,
        fn_constructor_kwargs={"config_json": config_json},
        compute=ActorPoolStrategy(size=1),
        batch_format="pyarrow",
        batch_size=block_rows,
        num_cpus=AUX_CPUS,
    )


class Progress:
    """Problems done, verified, errors, rows/s and tokens/s, printed as blocks land."""

    def __init__(self, total: int, already: int, every_s: float = 5.0, printer=print):
        self.total, self.done, self.verified, self.errors, self.tokens = total, already, 0, 0, 0
        self.already = already
        self.started = time.perf_counter()
        self.every_s, self.printer, self.last = every_s, printer, 0.0

    def update(self, table) -> None:
        self.done += table.num_rows
        self.verified += sum(1 for v in table.column("verified").to_pylist() if v)
        self.errors += sum(1 for e in table.column("error").to_pylist() if e)
        self.tokens += sum(int(t or 0) for t in table.column("completion_tokens").to_pylist())
        now = time.perf_counter()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            self.printer(self.line())

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        return (
            f"progress {self.done}/{self.total} done (verified {self.verified}, errors {self.errors}) "
            f"{(self.done - self.already) / elapsed:.2f} rows/s {self.tokens / elapsed:.0f} tokens/s"
        )


def run_solve_job(
    input_path: str,
    out_dir: str,
    config: QvqConfig,
    *,
    limit: int | None = None,
    input_format: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    resume: bool = False,
    printer=print,
) -> JobSummary:
    """Solve a problem set; with `resume`, ids already in `out_dir` are skipped (crash recovery)."""
    from qvq_ray.batch.output import PartWriter, part_files, written_ids

    out = Path(out_dir)
    if not resume and out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output directory {out} is not empty; choose a new one or pass --resume")
    started = time.perf_counter()
    rows = _input_rows(input_path, input_format, limit)
    if not rows:
        raise ValueError(f"no problems found in {input_path}")
    done_ids = written_ids(out) if resume else set()
    todo = [row for row in rows if str(row["id"]) not in done_ids]
    if resume:
        printer(f"resume: {len(rows) - len(todo)} of {len(rows)} rows already in {out}; solving {len(todo)}")
    if todo:
        started_ray = _ensure_ray(address, num_cpus)
        try:
            writer = PartWriter(out, config.batch.output_format)
            progress = Progress(len(rows), len(rows) - len(todo), printer=printer)
            for table in build_dataset(todo, config).iter_batches(batch_format="pyarrow", batch_size=None):
                if table.num_rows:
                    writer.write(table)
                    progress.update(table)
        finally:
            if started_ray:
                ray_shutdown()
    elif not part_files(out):
        raise ValueError("nothing to solve and no output found")
    return summarize_output(out, rows_in=len(rows), seconds=time.perf_counter() - started)


def ray_shutdown() -> None:
    import ray

    ray.shutdown()
