"""The batch solve job: read -> prepare -> solve -> score -> write, on Ray Data.

The driver loads the problem set with the dataset adapters (rows the loader cannot parse become
rows carrying an `error`), then Ray Data streams blocks through the stages: image preparation on
CPU tasks, solving on an actor pool where each actor is one engine replica, scoring on a CPU
actor, and Parquet (or JSONL) files under the output directory. The summary is computed from the
files written, so it reconciles what is on disk: rows in = solved + errors.

Everything that can be wrong with the request itself (input path, format, images folder, output
directory) is found before Ray starts and raised as JobInputError, so a mistake costs a second,
not a cluster start-up.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

from qvq_ray.report.summary import JobSummary, summarize_output
from qvq_ray.config import QvqConfig

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
) -> list[dict]:
    """Input rows of the problem set; a path, format or images folder that cannot work raises
    JobInputError (one bad row never does: it becomes an error row)."""
    try:
        return _load_rows(input_path, input_format, limit, images_dir)
    except JobInputError:
        raise
    except (OSError, ValueError) as exc:  # missing path, unknown format, unreadable file
        raise JobInputError(str(exc)) from exc


def _load_rows(input_path: str, input_format: str | None, limit: int | None, images_dir: str | None) -> list[dict]:
    from qvq_ray.datasets import LoadError, load_problems
    from qvq_ray.problem import problem_to_row

    if limit is not None and limit < 1:
        raise JobInputError(f"limit must be at least 1, got {limit} (it would solve no problems)")
    options = _images_option(input_path, input_format, images_dir) if images_dir is not None else {}
    rows: list[dict] = []
    seen: set[str] = set()
    for item in load_problems(input_path, format=input_format, limit=limit, **options):
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


def _formats_taking_images_dir() -> list[str]:
    """Formats whose rows name image files relative to an images folder given apart (MathVista)."""
    import inspect

    from qvq_ray.datasets import FORMATS

    return sorted(name for name, load in FORMATS.items() if "images_dir" in inspect.signature(load).parameters)


def _images_option(input_path: str, input_format: str | None, images_dir: str) -> dict:
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


def local_image_paths(row: dict) -> list[str]:
    """The image files a row names on this machine (not embedded bytes, data URLs or URLs)."""
    paths = []
    for image in row.get("images") or []:
        text = (image.get("path") or "").strip() if not image.get("bytes") else ""
        if text.lower().startswith("file://"):
            text = text[len("file://") :]
        if text and os.path.isabs(text):  # loaders make every relative path absolute
            paths.append(text)
    return paths


def missing_images(rows: list[dict]) -> tuple[int, list[str]]:
    """(problems that name image files, the files missing for them: one per problem missing any)."""
    naming, missing = 0, []
    for row in rows:
        paths = local_image_paths(row)
        if paths:
            naming += 1
            gone = [p for p in paths if not os.path.isfile(p)]
            if gone:
                missing.append(gone[0])
    return naming, missing


def check_images(rows: list[dict], warn: Callable[[str], None], *, images_dir: str | None = None, hint: str = "") -> None:
    """Before Ray starts: refuse a job none of whose image files exist (JobInputError); warn when
    only some are missing (those rows become error rows, as they would anyway). `hint` ends the
    refusal: what to fix."""
    naming, missing = missing_images(rows)
    if not missing:
        return
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in missing])
    except ValueError:
        folder = None
    where = f" under {images_dir or folder}" if images_dir or folder else ""
    message = f"{len(missing):,} of {len(rows):,} problems reference images not found{where} (e.g. {missing[0]})"
    if len(missing) < naming:
        warn(f"{message}; those problems become error rows")
        return
    raise JobInputError(f"{message}; {hint}" if hint else message)


def _images_hint(input_path: str, input_format: str | None, images_dir: str | None) -> str:
    """What to fix when no image is found: the --images folder, or where the problem set puts them."""
    from qvq_ray.datasets import detect_format

    if images_dir:
        return "check --images DIR"
    if (input_format or detect_format(input_path)) in _formats_taking_images_dir():
        return "give the images folder with --images DIR"
    return "put the image files where the problem set names them"


def _load_error_row(row_id: str, reason: str) -> dict:
    from qvq_ray.arrow_rows import to_row
    from qvq_ray.problem import InputRow

    return to_row(InputRow(id=row_id, question="", error=reason))


def prepare_images_batch(batch, config_json: str):
    """Ray Data task UDF (a function so it runs as stateless CPU tasks)."""
    from qvq_ray.batch.stages import PrepareImages

    import asyncio

    return asyncio.run(PrepareImages(config_json)(batch))


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


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Problems done, verified, errors, rows/s, tokens/s and the ETA, as blocks land.

    On a terminal it is a tqdm bar on stderr (redrawn in place); otherwise (a log file, a pipe, a
    `printer` given) a plain line every `every_s` seconds and at the end, so logs stay readable."""

    def __init__(
        self,
        total: int,
        already: int,
        every_s: float = 5.0,
        printer: Callable[[str], None] | None = None,
        *,
        stream=None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.total, self.done, self.verified, self.errors, self.tokens = total, already, 0, 0, 0
        self.already = already
        self.clock = clock
        self.started = clock()
        self.every_s, self.last = every_s, float("-inf")  # the first block prints at once
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

    def update(self, table) -> None:
        rows = table.num_rows
        self.done += rows
        self.verified += sum(1 for v in table.column("verified").to_pylist() if v)
        self.errors += sum(1 for e in table.column("error").to_pylist() if e)
        self.tokens += sum(int(t or 0) for t in table.column("completion_tokens").to_pylist())
        if self.bar is not None:
            self.bar.set_postfix_str(f"verified {self.verified}, errors {self.errors}", refresh=False)
            self.bar.update(rows)
            return
        now = self.clock()
        if now - self.last >= self.every_s or self.done >= self.total:
            self.last = now
            self.printer(self.line())

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None before the first block)."""
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


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def run_solve_job(
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
    warn: Callable[[str], None] | None = None,
) -> JobSummary:
    """Solve a problem set; with `resume`, ids already in `out_dir` are skipped (crash recovery).

    Everything that can be wrong with the request (the input, the format, `images_dir`, a
    non-empty `out_dir`, and with `check_images_first` a set none of whose image files exist) raises
    JobInputError before Ray starts. `printer` takes the progress lines (default: stderr, a bar on a
    terminal); `warn` the warnings (default: stderr). `verbose` shows Ray's own logs.
    """
    from qvq_ray.batch.output import PartWriter, part_files, written_ids

    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))
    say = printer or (lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputNotEmptyError(f"output path {out} is a file; give a directory")
    if not resume and out.exists() and any(out.iterdir()):
        raise OutputNotEmptyError(f"output directory {out} is not empty; choose a new one or pass --resume")
    started = time.perf_counter()
    rows = _input_rows(input_path, input_format, limit, images_dir=images_dir)
    if not rows:
        raise JobInputError(f"no problems found in {input_path}")
    done_ids = written_ids(out) if resume else set()
    todo = [row for row in rows if str(row["id"]) not in done_ids]
    if resume:
        say(f"resume: {len(rows) - len(todo)} of {len(rows)} rows already in {out}; solving {len(todo)}")
    if check_images_first and todo:
        check_images(todo, warn, images_dir=images_dir, hint=_images_hint(input_path, input_format, images_dir))
    if todo:
        started_ray = _ensure_ray(address, num_cpus, verbose)
        try:
            _quiet_ray_data(verbose)
            writer = PartWriter(out, config.batch.output_format)
            progress = Progress(len(rows), len(rows) - len(todo), printer=printer)
            try:
                with _console_filter(verbose):
                    for table in build_dataset(todo, config).iter_batches(batch_format="pyarrow", batch_size=None):
                        if table.num_rows:
                            writer.write(table)
                            progress.update(table)
            finally:
                progress.close()
        finally:
            if started_ray:
                ray_shutdown()
    elif not part_files(out):
        raise JobInputError("nothing to solve and no output found")
    return summarize_output(out, rows_in=len(rows), seconds=time.perf_counter() - started)


def _console_filter(verbose: bool):
    """Ray's benign error-level C++ lines kept off the console (see qvq_ray.stderr_filter)."""
    from contextlib import nullcontext

    from qvq_ray.stderr_filter import drop_stderr_lines

    return nullcontext() if verbose else drop_stderr_lines()


def ray_shutdown() -> None:
    import ray

    ray.shutdown()
