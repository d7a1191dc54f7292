"""The batch solve job: read -> prepare -> solve -> score -> write, on Ray Data.

Ray Data streams blocks through the stages: a read task running the dataset adapters (rows the
loader cannot parse become rows carrying an `error`), image preparation on CPU tasks, solving on
an actor pool where each actor is one engine replica (row by row, its slots kept full), scoring on
a CPU actor, and write tasks that put Parquet (or JSONL) part files under the output directory.
The driver holds counts, never rows: its memory does not grow with the problem set. The summary
is computed afterwards from the files written (`qvq_ray.jobs.run_solve_job`), so it reconciles what
is on disk: rows in = solved + errors.

Everything that can be wrong with the request itself (input path, format, images folder, output
directory) is found before Ray starts and raised as JobInputError, so a mistake costs a second,
not a cluster start-up.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TextIO, TypeVar

from qvq_ray.config import QvqConfig

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from qvq_ray.batch.source import ImageTally, ReadPlan
    from qvq_ray.image_files import ImageRoots

T = TypeVar("T")

logger = logging.getLogger(__name__)


class JobInputError(ValueError):
    """A mistake in what the job was asked to do, found before Ray starts: a missing input path, an
    unknown format, a non-empty output directory, an images folder with none of the images. The CLI
    prints it as one line and exits 2."""


class OutputNotEmptyError(JobInputError, FileExistsError):
    """The output directory holds files and `resume` is off (or is a file)."""


# CPU stages (prepare, score, write) take a fraction of a CPU so that on a small machine they fit
# beside the engine actors instead of waiting forever for a whole free CPU.
AUX_CPUS = 0.25


def _input_rows(
    input_path: str, input_format: str | None, limit: int | None, *, images_dir: str | None = None
) -> list[dict[str, Any]]:
    """Input rows of a (small) problem set as a list, by the rules the job's read task applies; a
    path, format or images folder that cannot work raises JobInputError (one bad row never does: it
    becomes an error row). The job itself never holds the rows: see batch/source.py."""
    from qvq_ray.batch.source import iter_input_rows

    options = _loader_options(input_path, input_format, limit, images_dir)
    return _as_job_input_error(lambda: list(iter_input_rows(input_path, input_format, limit, loader_options=options)))


def _loader_options(input_path: str, input_format: str | None, limit: int | None, images_dir: str | None) -> dict[str, Any]:
    if limit is not None and limit < 1:
        raise JobInputError(f"limit must be at least 1, got {limit} (it would solve no problems)")
    return _as_job_input_error(lambda: _images_option(input_path, input_format, images_dir) if images_dir is not None else {})


def _as_job_input_error(work: Callable[[], T]) -> T:
    try:
        return work()
    except JobInputError:
        raise
    except (OSError, ValueError) as exc:  # missing path, unknown format, unreadable file
        raise JobInputError(str(exc)) from exc


def _formats_taking_images_dir() -> list[str]:
    """Formats whose rows name image files relative to an images folder given apart (MathVista)."""
    import inspect

    from qvq_ray.datasets import FORMATS

    return sorted(name for name, load in FORMATS.items() if "images_dir" in inspect.signature(load).parameters)


def _images_option(input_path: str, input_format: str | None, images_dir: str) -> dict[str, Any]:
    """`images_dir=` for the loader, when the folder exists and the format takes one."""
    from qvq_ray.datasets import detect_format

    folder = Path(images_dir).expanduser()
    if not folder.is_dir():
        raise JobInputError(f"images folder not found: {images_dir}")
    name = input_format or detect_format(input_path)
    takes = _formats_taking_images_dir()
    if name not in takes:
        raise JobInputError(
            f"an images folder (--images) is for {', '.join(takes)} problem sets; {name} problem sets find their own images"
        )
    return {"images_dir": str(folder)}


def _judge_images(tally: ImageTally, rows: int, *, images_dir: str | None, hint: str) -> list[str]:
    """The warnings to give about the tallied image paths; a refusal is raised (JobInputError)."""
    from qvq_ray.batch.source import images_verdict, outside_verdict

    warnings = []
    for warning, refusal in (outside_verdict(tally, rows), images_verdict(tally, rows, images_dir=images_dir, hint=hint)):
        if refusal:
            raise JobInputError(refusal)
        if warning:
            warnings.append(warning)
    return warnings


def image_roots_of(
    input_path: str, input_format: str | None, options: dict[str, Any], config: QvqConfig
) -> ImageRoots | None:
    """The folders the job reads image files from (qvq_ray/image_files.py): the problem set's own
    (and the --images folder); None when the user allowed any path (`batch.allow_paths_outside`)."""
    from qvq_ray.datasets import image_roots
    from qvq_ray.image_files import ImageRoots

    if config.batch.allow_paths_outside:
        return None
    return ImageRoots.of(_as_job_input_error(lambda: image_roots(input_path, format=input_format, **options)))


def _images_hint(input_path: str, input_format: str | None, images_dir: str | None) -> str:
    """What to fix when no image is found: the --images folder, or where the problem set puts them."""
    from qvq_ray.datasets import detect_format

    if images_dir:
        return "check --images DIR"
    if (input_format or detect_format(input_path)) in _formats_taking_images_dir():
        return "give the images folder with --images DIR"
    return "put the image files where the problem set names them"


def prepare_images_batch(batch: pa.Table, config_json: str, image_roots: ImageRoots | None) -> pa.Table:
    """Ray Data task UDF (a function so it runs as stateless CPU tasks); `image_roots`: the folders
    image files may be read from (None: anywhere, `batch.allow_paths_outside`)."""
    import asyncio

    from qvq_ray.batch.stages import PrepareImages

    prepared = PrepareImages(config_json, image_roots)(batch)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # a task of its own: no loop in this thread
        return asyncio.run(prepared)
    # Fused into the engine actor (Ray Data fuses a task stage into the actor stage after it when
    # their resources match, e.g. `resources.num_cpus: 0.25` for a remote engine): the actor's loop
    # runs in this thread, where asyncio.run would refuse. Its own loop on a helper thread instead.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="qvq-ray-prepare") as helper:
        return helper.submit(asyncio.run, prepared).result()


def _ensure_ray(address: str | None, num_cpus: int | None, verbose: bool = False) -> bool:
    """Start a local cluster for the run (or join `address`); True if we started it."""
    from qvq_ray.cluster import start_or_join_ray

    return start_or_join_ray(address, num_cpus=num_cpus, verbose=verbose)


def _quiet_ray_data(verbose: bool) -> None:
    """Our progress (bar or lines) replaces Ray Data's progress bars and INFO lines on the console.

    Turning the bars off makes Ray Data warn "Progress bars disabled" once: that warning is ours to
    silence (unless verbose), its real warnings and errors still show."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = verbose
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.INFO if verbose else logging.ERROR)


#: Ray Data runs at most this many rows of one block at once in an async row UDF, a default read
#: from the environment when ray.data is first imported (16 unless set). This job sets it higher
#: before that import, so that a solve block can be `rows_per_batch` rows: fewer, larger blocks
#: keep the driver's per-block bookkeeping small on million-row jobs.
ROWS_PER_TASK_VARIABLE = "RAY_DATA_DEFAULT_ASYNC_ROW_UDF_MAX_CONCURRENCY"
os.environ.setdefault(ROWS_PER_TASK_VARIABLE, "256")


def _rows_per_task() -> int:
    """Rows Ray Data runs at once in one task of an async row UDF: the value its planner read."""
    planner = sys.modules.get("ray.data._internal.planner.plan_udf_map_op")
    value = getattr(planner, "DEFAULT_ASYNC_ROW_UDF_MAX_CONCURRENCY", None)  # set once ray.data is imported
    if not isinstance(value, int):
        value = int(os.environ.get(ROWS_PER_TASK_VARIABLE, "16"))
    return max(1, value)


def solve_concurrency(config: QvqConfig) -> tuple[int, int]:
    """(rows per solve block, solve blocks an engine actor runs at once).

    The actor runs `max_concurrent_solves` solves; the rows it holds beyond that wait for a slot,
    so a finished chain's slot is refilled at once. Ray Data runs at most `_rows_per_task()` rows of
    one block at once, and a block's task ends only when its slowest chain does, holding fewer and
    fewer rows meanwhile: so a block is at most half the slots (and `rows_per_batch`), and enough
    blocks run at once that the rows still unsolved across them cover every slot
    (`batch.rows_in_flight_per_actor`, default 4 x the slots). Measured in
    benchmarks/batch_occupancy.py: blocks of 16 rows for 32 slots keep 0.99x a plain loop's
    occupancy; blocks of 32 rows for 32 slots only 0.92x."""
    batch = config.batch
    rows = batch.rows_in_flight_per_actor or 4 * batch.max_concurrent_solves
    # a block holds at most half the slots: one block on its slowest chain leaves most rows to others
    block = max(1, min(batch.rows_per_batch, _rows_per_task(), batch.max_concurrent_solves // 2))
    return block, max(1, -(-rows // block))


def _blocks_of(ds: ray.data.Dataset, rows: int) -> ray.data.Dataset:
    """`ds` in blocks of `rows` rows (Ray Data's streaming repartition), fused into the task before it.

    Its task would otherwise ask for a whole CPU (it takes no resource arguments), which a small
    machine running an engine actor does not have: the job would wait forever. It gets the
    upstream stage's fraction instead, so the two fuse into one task."""
    ds = ds.repartition(target_num_rows_per_block=rows)
    try:
        ds._logical_plan.dag.ray_remote_args.setdefault("num_cpus", AUX_CPUS)
    except AttributeError:  # another Ray version: it then runs as a task of its own
        logger.warning("cannot set the repartition's CPUs on this Ray version; it asks for a whole CPU")
    return ds


def build_dataset(
    plan: ReadPlan,
    expected_rows: int,
    config: QvqConfig,
    *,
    out_dir: str,
    run_id: str,
    image_roots: ImageRoots | None,
    solved_counter: Any = None,
) -> ray.data.Dataset:
    """The Ray Data plan: read (one streaming task) -> prepare (CPU tasks) -> solve (engine actors,
    row by row) -> score (CPU actor) -> write (part files, on the driver's node). The dataset it
    returns holds one small row per part file written (counts for progress), never the rows.
    `image_roots`: where the prepare tasks may read image files (None: anywhere); `solved_counter`:
    the job's SolvedRows actor, told of every row the engine actors finish (batch/solved_rows.py)."""
    import ray
    from ray.data import ActorPoolStrategy

    from qvq_ray.results.parts import write_part_batch
    from qvq_ray.batch.source import problem_set_datasource
    from qvq_ray.batch.stages import ScoreAgainstGold, SolveProblems

    config_json = config.model_dump_json()
    resources = config.resources
    remote = config.engine.kind == "openai"  # generation happens at the endpoint: no local accelerator
    gpus = 0.0 if remote else (resources.num_gpus if resources.tensor_parallel_size == 1 else float(resources.tensor_parallel_size))
    import ray.data  # noqa: F401  # imported before the rows per task are read off its planner

    solve_block, tasks_per_actor = solve_concurrency(config)
    driver_node = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}  # as Ray pins local:// reads
    # one read task, its blocks as it makes them (no count asked of Ray: it would split them further)
    ds = ray.data.read_datasource(problem_set_datasource(plan, expected_rows), num_cpus=AUX_CPUS, override_num_blocks=1)
    ds = ds.map_batches(
        prepare_images_batch,
        fn_kwargs={"config_json": config_json, "image_roots": image_roots},
        batch_format="pyarrow",
        batch_size=solve_block,
        num_cpus=AUX_CPUS,
    )
    ds = _blocks_of(ds, solve_block)  # what a read task yields is gathered into big blocks: cut them
    ds = ds.map(
        SolveProblems,
        fn_constructor_kwargs={"config_json": config_json, "solved_counter": solved_counter},
        compute=ActorPoolStrategy(
            size=config.batch.num_replicas,
            max_concurrent_calls_per_actor=tasks_per_actor,
            max_tasks_in_flight_per_actor=tasks_per_actor,
        ),
        num_cpus=resources.num_cpus,
        num_gpus=gpus,
        resources=dict(resources.custom) or None,  # e.g. one engine slot per actor on a heterogeneous cluster
    )
    ds = ds.map_batches(
        ScoreAgainstGold,
        fn_constructor_kwargs={"config_json": config_json},
        compute=ActorPoolStrategy(size=1),
        batch_format="pyarrow",
        batch_size=None,  # one solve task's rows: their inferred types are consistent within it
        num_cpus=AUX_CPUS,
    )
    return ds.map_batches(
        write_part_batch,
        fn_kwargs={"out_dir": str(out_dir), "output_format": config.batch.output_format, "run_id": run_id},
        batch_format="pyarrow",
        batch_size=config.batch.rows_per_batch,  # a part file holds rows_per_batch rows (the last fewer)
        num_cpus=AUX_CPUS,
        label_selector=driver_node,  # the output folder is the driver's
    )


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Problems done, verified, errors, rows/s, tokens/s and the ETA, as rows are solved.

    Two sources: the part files written (`add`, the truth, a block at a time) and the engine
    actors' per-row counter (`solved`, batch/solved_rows.py), which moves between part files. It
    shows whichever is further on, never more than the total. On a terminal it is a tqdm bar on
    stderr (redrawn in place); otherwise (a log file, a pipe, a `printer` given) a plain line every
    `every_s` seconds and at the end, so logs stay readable. Thread-safe: the counter is read on
    a thread of its own."""

    def __init__(
        self,
        total: int,
        already: int,
        every_s: float = 5.0,
        printer: Callable[[str], None] | None = None,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        import threading

        from qvq_ray.batch.solved_rows import COUNT_KEYS

        self.total, self.already = total, already
        self.written = dict.fromkeys(COUNT_KEYS, 0)
        self.solved_counts = dict.fromkeys(COUNT_KEYS, 0)
        self._lock = threading.Lock()
        self.clock = clock
        self.started = clock()
        self.every_s, self.last = every_s, float("-inf")  # the first count prints at once
        stream = stream if stream is not None else sys.stderr
        self.bar = None
        if printer is None and _is_terminal(stream):
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=already,
                file=stream,
                unit="problem",
                # Width read once, now: later fd 2 may be the pipe of qvq_ray.stderr_filter.
                dynamic_ncols=False,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, ETA {remaining}, {rate_fmt}{postfix}]",
            )
        self.printer = printer or (lambda line: print(line, file=stream, flush=True))

    def _shown(self) -> dict[str, int]:
        """The counts shown: the part files', unless the per-row counter is further on."""
        return self.solved_counts if self.solved_counts["rows"] > self.written["rows"] else self.written

    @property
    def done(self) -> int:
        return min(self.total, self.already + self._shown()["rows"])

    @property
    def verified(self) -> int:
        return self._shown()["verified"]

    @property
    def errors(self) -> int:
        return self._shown()["errors"]

    @property
    def tokens(self) -> int:
        return self._shown()["completion_tokens"]

    def add(self, rows: int, verified: int, errors: int, completion_tokens: int) -> None:
        """A part file was written with these counts (what the write stage reports)."""
        with self._lock:
            for key, value in zip(self.written, (rows, verified, errors, completion_tokens)):
                self.written[key] += value
            self._show(final=self.already + self.written["rows"] >= self.total)

    def solved(self, counts: dict[str, int]) -> None:
        """The engine actors' per-row counter as it stands (SolvedRows.counts)."""
        with self._lock:
            if counts.get("rows", 0) > self.solved_counts["rows"]:
                self.solved_counts = {key: int(counts.get(key, 0)) for key in self.solved_counts}
                self._show(final=False)

    def _show(self, *, final: bool) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"verified {self.verified}, errors {self.errors}", refresh=False)
            self.bar.n = self.done
            self.bar.refresh()
            return
        now = self.clock()
        if now - self.last >= self.every_s or final:
            self.last = now
            self.printer(self.line())

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None before the first row)."""
        solved = self.done - self.already
        if solved <= 0:
            return None
        return (self.total - self.done) * (self.clock() - self.started) / solved

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        eta = self.eta_s()
        left = "" if self.done >= self.total else f", ETA {_duration(eta)}" if eta is not None else ", ETA ?"
        return (
            f"progress {self.done}/{self.total} done (verified {self.verified}, errors {self.errors}) "
            f"{(self.done - self.already) / elapsed:.2f} rows/s {self.tokens / elapsed:.0f} tokens/s, "
            f"{_duration(elapsed)} elapsed{left}"
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def _counting_solved_rows(progress: Progress, every_s: float = 0.5) -> Iterator[Any]:
    """The job's SolvedRows actor (its handle is yielded, for the engine actors), read every
    `every_s` on a daemon thread into `progress`; ended with the block."""
    import threading

    import ray

    from qvq_ray.batch.solved_rows import SolvedRows

    counter = ray.remote(num_cpus=0)(SolvedRows).remote()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every_s):
            try:
                progress.solved(ray.get(counter.counts.remote(), timeout=every_s * 4))
            except Exception:  # a slow read is no progress to show, never a failed job
                continue

    poller = threading.Thread(target=poll, name="qvq-ray-progress", daemon=True)
    poller.start()
    try:
        yield counter
    finally:
        stop.set()
        poller.join(timeout=every_s * 5)
        ray.kill(counter)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@dataclass(frozen=True)
class JobRun:
    """A finished job, for the layer above to summarize (`qvq_ray.jobs`): where its rows are, how
    many rows the input had, and how long solving took. The job summary and its headline are the
    report's (`qvq_ray.report.summary`), a sibling of this package: neither imports the other."""

    out_dir: Path
    rows_in: int
    seconds: float


def run_pipeline(
    input_path: str,
    out_dir: str,
    config: QvqConfig,
    *,
    limit: int | None = None,
    input_format: str | None = None,
    images_dir: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    resume: bool = False,
    check_images_first: bool = False,
    verbose: bool = False,
    printer: Callable[[str], None] | None = None,
    progress_every_s: float = 5.0,
    warn: Callable[[str], None] | None = None,
) -> JobRun:
    """Solve a problem set into `out_dir`; with `resume`, ids already there are skipped (crash recovery).

    Everything that can be wrong with the request (the input, the format, `images_dir`, a
    non-empty, unwritable or full `out_dir`, a judge cache that is not SQLite, and with
    `check_images_first` a set none of whose image files exist or may be read) raises
    JobInputError before Ray starts. Image files are read only inside the problem set's folders
    unless `config.batch.allow_paths_outside`. `printer` takes the progress lines (default: stderr,
    a bar on a terminal, a line every `progress_every_s` otherwise); `warn` the warnings (default: stderr).
    `verbose` shows Ray's own logs.
    """
    from qvq_ray.results.parts import new_run_id, part_files, written_ids
    from qvq_ray.batch.source import ReadPlan, count_input
    from qvq_ray.judge.cache import check_configured_cache

    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))
    say = printer or (lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputNotEmptyError(f"output path {out} is a file; give a directory")
    if not resume and out.exists() and any(out.iterdir()):
        raise OutputNotEmptyError(f"output directory {out} is not empty; choose a new one or pass --resume")
    _as_job_input_error(lambda: check_configured_cache(config.verifier.judge))
    started = time.perf_counter()
    options = _loader_options(input_path, input_format, limit, images_dir)
    roots = image_roots_of(input_path, input_format, options, config)
    done_ids = written_ids(out, warn=warn) if resume else set()
    count = _as_job_input_error(
        lambda: count_input(
            input_path,
            input_format,
            limit,
            loader_options=options,
            skip_ids=done_ids,
            tally_images=check_images_first,
            image_roots=roots,
        )
    )
    del done_ids  # the read task reads them again where it runs: the driver keeps counts only
    if not count.total:
        raise JobInputError(f"no problems found in {input_path}")
    if resume:
        say(f"resume: {count.total - count.todo} of {count.total} rows already in {out}; solving {count.todo}")
    warnings = []
    if check_images_first and count.todo:
        hint = _images_hint(input_path, input_format, images_dir)
        warnings = _judge_images(count.images, count.todo, images_dir=images_dir, hint=hint)
    if count.todo:
        _check_writable(out, config.batch.min_free_space_mb)  # a refusal stays the one line printed
        for warning in warnings:
            warn(warning)
        plan = ReadPlan(
            input_path,
            input_format,
            limit,
            loader_options=options,
            block_rows=config.batch.rows_per_batch,
            resume_dir=str(out) if resume else None,
        )
        started_ray = _ensure_ray(address, num_cpus, verbose)
        try:
            _quiet_ray_data(verbose)
            progress = Progress(count.total, count.total - count.todo, every_s=progress_every_s, printer=printer)
            try:
                with _console_filter(verbose), _read_blocks_of_at_most(READ_BLOCK_BYTES), _read_ahead_bounded(), \
                        _counting_solved_rows(progress) as counter:
                    dataset = build_dataset(
                        plan, count.todo, config, out_dir=str(out), run_id=new_run_id(), image_roots=roots,
                        solved_counter=counter,
                    )
                    for written in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                        for counts in written.to_pylist():
                            progress.add(**counts)
            finally:
                progress.close()
        finally:
            if started_ray:
                ray_shutdown()
    elif not part_files(out):
        raise JobInputError("nothing to solve and no output found")
    return JobRun(out, rows_in=count.total, seconds=time.perf_counter() - started)


#: Ray Data gathers what a read task yields into blocks of up to DataContext.target_max_block_size
#: (128 MiB) before anything downstream sees them: for a problem set of short text rows that is
#: most of the set. Blocks this small reach the prepare tasks (and the engines) at once.
READ_BLOCK_BYTES = 1 << 20


@contextmanager
def _read_blocks_of_at_most(size: int) -> Iterator[None]:
    from ray.data import DataContext

    context = DataContext.get_current()
    before = context.target_max_block_size
    context.target_max_block_size = size
    try:
        yield
    finally:
        context.target_max_block_size = before


#: How far a stage may run ahead of the next one: its queued output at most this many times the
#: input the next stage's running tasks hold (Ray Data's downstream-capacity backpressure).
READ_AHEAD_RATIO = 2.0


@contextmanager
def _read_ahead_bounded(ratio: float = READ_AHEAD_RATIO) -> Iterator[None]:
    """Stages run at most `ratio` x the next stage's running input ahead of it, not as far as the
    object store allows.

    Reading and preparing are much faster than solving, and Ray Data's byte budget (a share of the
    object store: gigabytes) never stops them: the prepared blocks of the whole input would queue
    in front of the engines. Blocks under 100 KB (Ray's `max_direct_call_object_size`: a solve block
    of 64 text problems is ~17 KB) are held inline in the memory of their owner, the driver, so the
    driver's memory grew with the input (+21 MB of heap at 100,000 rows, +45 MB RSS at 200,000;
    benchmarks/batch_scale.py). Ray Data's downstream-capacity policy bounds each stage's queue by
    the next stage's running input, a bound in rows whatever the block bytes (text or images); it
    only acts once half of the stage's byte budget is used, a threshold set to 0 here."""
    from ray.data import DataContext

    context = DataContext.get_current()
    before = context.downstream_capacity_backpressure_ratio
    context.downstream_capacity_backpressure_ratio = ratio
    policy: Any = None
    try:
        from ray.data._internal.execution.backpressure_policy import downstream_capacity_backpressure_policy as module

        policy = module.DownstreamCapacityBackpressurePolicy
        threshold = policy.OBJECT_STORE_BUDGET_UTIL_THRESHOLD  # env RAY_DATA_DOWNSTREAM_CAPACITY_OBJECT_STORE_BUDGET_UTIL_THRESHOLD
        policy.OBJECT_STORE_BUDGET_UTIL_THRESHOLD = 0.0
    except (ImportError, AttributeError):  # another Ray version: its own backpressure only
        logger.warning("cannot bound how far Ray Data's stages run ahead on this Ray version")
        policy = None
    try:
        yield
    finally:
        context.downstream_capacity_backpressure_ratio = before
        if policy is not None:
            policy.OBJECT_STORE_BUDGET_UTIL_THRESHOLD = threshold


#: Bytes the output check writes (and syncs): enough that a full filesystem or quota says so.
WRITE_PROBE_BYTES = 64 * 1024


def _check_writable(out: Path, min_free_mb: int) -> None:
    """The output folder exists, takes a file, and its filesystem has `min_free_mb` MiB free: found
    before Ray starts, not when the first part file is written (after the cluster and the engines)."""
    import shutil
    import tempfile

    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-", suffix=".tmp") as probe:
            probe.write(b"\0" * WRITE_PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
        free = shutil.disk_usage(out).free
    except OSError as exc:
        raise JobInputError(f"cannot write to output directory {out}: {exc.strerror or exc}") from None
    if free < min_free_mb * 1024 * 1024:
        raise JobInputError(
            f"output directory {out} has {free / 2**20:.1f} MiB free, under batch.min_free_space_mb "
            f"({min_free_mb} MiB); free some space or choose another --out"
        )


def _console_filter(verbose: bool) -> AbstractContextManager[None]:
    """Ray's benign error-level C++ lines kept off the console (see qvq_ray.stderr_filter)."""
    from contextlib import nullcontext

    from qvq_ray.stderr_filter import drop_stderr_lines

    return nullcontext() if verbose else drop_stderr_lines()


def ray_shutdown() -> None:
    import ray

    ray.shutdown()
