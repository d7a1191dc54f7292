"""The batch job's input, read by Ray Data: a problem set streamed in blocks, never held whole.

A problem set is one file or folder in a native format (our loaders in `qvq_ray.datasets` parse
it row by row), so it is read by one Ray Data read task that runs the loader and yields Arrow
blocks of `block_rows` rows as it goes. Ray Data's streaming executor back-pressures that task,
so at any moment only the blocks between the reader and the writer exist, wherever the problem
set's size. The task runs on the driver's node (`supports_distributed_reads = False`), where the
input path is known to exist.

The same row rules hold everywhere rows are made (`iter_input_rows`): a row the loader cannot
parse becomes an error row with its reason, a repeated id becomes an error row under a fresh id,
and with resume the ids already written are skipped. The driver makes one cheap pass first
(`count_input`): the total for progress, and the checks that must fail before Ray starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import pyarrow as pa
    from ray.data import DataContext
    from ray.data.datasource import Datasource, ReadTask

    from qvq_ray.image_files import ImageRoots


def load_error_row(row_id: str, reason: str) -> dict[str, Any]:
    from qvq_ray.arrow_rows import to_row
    from qvq_ray.problem import InputRow

    return to_row(InputRow(id=row_id, question="", error=reason))


def _fresh_id(base: str, position: int, seen: set[str]) -> str:
    """An id for a repeated or unreadable row that no other row has (a real id may look generated)."""
    candidate = f"{base}#dup{position}"
    while candidate in seen:
        candidate += "'"
    return candidate


def iter_input_rows(
    input_path: str,
    input_format: str | None,
    limit: int | None,
    *,
    loader_options: dict[str, Any] | None = None,
    skip_ids: set[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Input rows (InputRow's row form): one per loaded record, errors included.

    Ids are unique over the whole set; `skip_ids` (resume) are counted as seen but not yielded.
    A row whose id an earlier row took becomes an error row under a generated id (`x#dup5`). Those
    rows come last, named once every id of the file is known: a real id that looks generated (a
    row `x#dup5` further down) keeps its id and is solved, and the generated name steps aside. The
    names depend on the file alone, so the driver's pass, the read task and a resumed run agree."""
    from qvq_ray.datasets import LoadError, load_problems
    from qvq_ray.problem import problem_to_row

    seen: set[str] = set()
    skip = skip_ids or set()
    repeated: list[tuple[str, int, str]] = []  # (id, position, reason): small, and only for repeats
    for position, item in enumerate(load_problems(input_path, format=input_format, limit=limit, **(loader_options or {}))):
        if isinstance(item, LoadError):
            row_id = str(item.ref)  # often the row's id: it keys the output like a solved row's
            reason = f"bad input row: {item.reason}"
        else:
            row_id, reason = item.id, None
        if row_id in seen:  # ids key the output (and resume): a second row with the same id is an error row
            repeated.append((row_id, position, reason or f"duplicate id {row_id!r}"))
            continue
        seen.add(row_id)
        if row_id in skip:
            continue
        if reason is not None:
            yield load_error_row(row_id, reason)
        elif not isinstance(item, LoadError):  # always: only a LoadError has a reason
            row = problem_to_row(item)
            row["error"] = None
            yield row
    for base, position, reason in repeated:
        row_id = _fresh_id(base, position, seen)
        seen.add(row_id)
        if row_id not in skip:
            yield load_error_row(row_id, reason)


def _blocks(rows: Iterator[dict[str, Any]], block_rows: int) -> Iterator[pa.Table]:
    """Arrow tables of `block_rows` rows (the last one shorter) in the input schema."""
    import pyarrow as pa

    from qvq_ray.problem import input_schema

    schema = input_schema()
    block: list[dict[str, Any]] = []
    for row in rows:
        block.append(row)
        if len(block) >= block_rows:
            yield pa.Table.from_pylist(block, schema=schema)
            block = []
    if block:
        yield pa.Table.from_pylist(block, schema=schema)


@dataclass
class ReadPlan:
    """What the read task needs: plain values, shipped to the task (no rows)."""

    input_path: str
    input_format: str | None
    limit: int | None
    loader_options: dict[str, Any] = field(default_factory=dict)
    block_rows: int = 16
    resume_dir: str | None = None  # skip the ids already written there

    def blocks(self) -> Iterator[pa.Table]:
        skip: set[str] = set()
        if self.resume_dir:
            from qvq_ray.results.parts import written_ids

            skip = written_ids(self.resume_dir, quarantine=False)
        rows = iter_input_rows(
            self.input_path, self.input_format, self.limit, loader_options=self.loader_options, skip_ids=skip
        )
        yield from _blocks(rows, self.block_rows)


def problem_set_datasource(plan: ReadPlan, expected_rows: int) -> Datasource:
    """A Ray Data datasource of one streaming read task over `plan` (built lazily: ray.data imports late)."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class ProblemSetDatasource(Datasource):  # type: ignore[misc]  # Ray is not analysed: Datasource is Any
        """One read task on the driver's node that streams the loader's rows as blocks."""

        def get_name(self) -> str:
            return "ReadProblems"

        @property
        def supports_distributed_reads(self) -> bool:
            return False  # the input path is the driver's

        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: DataContext | None = None
        ) -> list[ReadTask]:
            metadata = BlockMetadata(num_rows=expected_rows, size_bytes=None, input_files=None, exec_stats=None)
            return [ReadTask(plan.blocks, metadata, per_task_row_limit=per_task_row_limit)]

    return ProblemSetDatasource()


# ------------------------------------------------------------ the driver's pass


def local_image_paths(row: dict[str, Any]) -> list[str]:
    """The image files a row names on this machine (not embedded bytes, data URLs or URLs)."""
    paths = []
    for image in row.get("images") or []:
        text = (image.get("path") or "").strip() if not image.get("bytes") else ""
        if text.lower().startswith("file://"):
            text = text[len("file://") :]
        if text and os.path.isabs(text):  # loaders make every relative path absolute
            paths.append(text)
    return paths


@dataclass
class ImageTally:
    """Problems naming image files; how many name one outside the dataset's folders (`roots`; such a
    path is only resolved, never opened or stat'ed), and how many of the others miss one (the first
    such file of each kept as the example)."""

    roots: "ImageRoots | None" = None  # None: any path may be read
    naming: int = 0
    missing: int = 0
    first_missing: list[str] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)
    outside: int = 0
    first_outside: list[str] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        paths = local_image_paths(row)
        if not paths:
            return
        self.naming += 1
        if self.roots is not None:
            refused = [p for p in paths if not self.roots.contains(p)]
            if refused:
                self.outside += 1
                if not self.first_outside:
                    self.first_outside.append(refused[0])
                return
        gone = [p for p in paths if not os.path.isfile(p)]
        if gone:
            self.missing += 1
            if not self.first_missing:
                self.first_missing.append(gone[0])
            if len(self.folders) < 64:  # enough to name a common folder, bounded
                self.folders.add(os.path.dirname(gone[0]))


@dataclass
class InputCount:
    """The driver's pass over the problem set: counts only, no rows kept."""

    total: int = 0
    todo: int = 0
    images: ImageTally = field(default_factory=ImageTally)


def count_input(
    input_path: str,
    input_format: str | None,
    limit: int | None,
    *,
    loader_options: dict[str, Any] | None = None,
    skip_ids: set[str] | None = None,
    tally_images: bool = False,
    image_roots: "ImageRoots | None" = None,
) -> InputCount:
    """Rows in the set, rows left to solve, and (with `tally_images`) the image files they miss or
    name outside `image_roots`."""
    count = InputCount(images=ImageTally(roots=image_roots))
    skip = skip_ids or set()
    for row in iter_input_rows(input_path, input_format, limit, loader_options=loader_options):
        count.total += 1
        if str(row["id"]) in skip:
            continue
        count.todo += 1
        if tally_images:
            count.images.add(row)
    return count


def outside_verdict(tally: ImageTally, rows: int) -> tuple[str | None, str | None]:
    """(warning, refusal) for image paths outside the dataset's folders: a warning when some
    problems name one (those rows become error rows), a refusal when every problem naming images does."""
    if not tally.outside or tally.roots is None:
        return None, None
    from qvq_ray.image_files import ALLOW_HINT

    message = (
        f"{tally.outside:,} of {rows:,} problems name image files outside {tally.roots.describe()} "
        f"(e.g. {tally.first_outside[0]}), which are not read"
    )
    if tally.outside < tally.naming:
        return f"{message}; those problems become error rows ({ALLOW_HINT})", None
    return None, f"{message}; {ALLOW_HINT} if you trust this problem set"


def images_verdict(
    tally: ImageTally, rows: int, *, images_dir: str | None = None, hint: str = ""
) -> tuple[str | None, str | None]:
    """(warning, refusal): a warning when only some problems miss their images, a refusal when all
    the problems naming images inside the dataset's folders do."""
    if not tally.missing:
        return None, None
    try:
        folder = os.path.commonpath(sorted(tally.folders)) if tally.folders else None
    except ValueError:
        folder = None
    where = f" under {images_dir or folder}" if images_dir or folder else ""
    message = (
        f"{tally.missing:,} of {rows:,} problems reference images not found{where} (e.g. {tally.first_missing[0]})"
    )
    if tally.missing < tally.naming - tally.outside:
        return f"{message}; those problems become error rows", None
    return None, f"{message}; {hint}" if hint else message

