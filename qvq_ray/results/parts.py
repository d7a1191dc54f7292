"""Result files of a batch job: atomic part files, and what a resumed job finds already done.

Each finished block is written as its own part file by a Ray Data task (the driver never holds the
rows), first under a temporary name and then renamed, so a job killed at any moment (kill -9 of the
driver included) leaves only whole files behind. A part's name is the run's id and a hash of the
ids it holds: a write task that Ray runs again (a lost worker, a node gone) replaces its own file
instead of adding a second copy of its rows. `--resume` reads the ids in those files and solves
only the rest; a file that cannot be read (a crash from an older writer, a disk error) is moved
aside, with a warning, and its ids are solved again.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import pyarrow as pa

PART_SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl"}


class PartWriter:
    """Writes Arrow tables as numbered part files of one run (`part-<run>-<seq>.<ext>`)."""

    def __init__(self, out_dir: str | Path, output_format: str = "parquet"):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.format = output_format
        self.run_id = new_run_id()
        self.sequence = 0

    def write(self, table: pa.Table) -> Path:
        final = self.out_dir / f"part-{self.run_id}-{self.sequence:05d}{PART_SUFFIX[self.format]}"
        self.sequence += 1
        return write_part(table, final, self.format)


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"


def part_name(run_id: str, ids: list[str], output_format: str) -> str:
    """The part file of these rows in this run: the same rows give the same name (a retried write replaces)."""
    digest = hashlib.sha256("\n".join(ids).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"part-{run_id}-{digest}{PART_SUFFIX[output_format]}"


def write_part(table: pa.Table, final: Path, output_format: str) -> Path:
    """`table` as the file `final`, atomically (a temporary file, fsync, rename)."""
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    if output_format == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, temporary)
    else:
        from qvq_ray.json_lines import one_line_json

        with open(temporary, "w", encoding="utf-8") as handle:
            for row in table.to_pylist():
                handle.write(one_line_json(row, default=_json_default) + "\n")
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, final)  # atomic: readers see the whole file or none
    return final


def write_part_batch(table: pa.Table, *, out_dir: str, output_format: str, run_id: str) -> pa.Table:
    """Ray Data write stage: one part file per block, and a one-row table of what it held for progress."""
    import pyarrow as pa

    if table.num_rows:
        ids = [str(i) for i in table.column("id").to_pylist()]
        write_part(table, Path(out_dir) / part_name(run_id, ids, output_format), output_format)
    return pa.table({name: [value] for name, value in block_counts(table).items()})


def block_counts(table: pa.Table) -> dict[str, int]:
    """What progress shows of a block of output rows: rows, verified, errors, completion tokens."""
    if not table.num_rows:
        return {"rows": 0, "verified": 0, "errors": 0, "completion_tokens": 0}
    return {
        "rows": table.num_rows,
        "verified": sum(1 for v in table.column("verified").to_pylist() if v),
        "errors": sum(1 for e in table.column("error").to_pylist() if e),
        "completion_tokens": sum(int(t or 0) for t in table.column("completion_tokens").to_pylist()),
    }


def _json_default(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode()
    return str(value)


def part_files(out_dir: str | Path) -> list[Path]:
    root = Path(out_dir)
    return sorted(p for p in root.glob("*") if p.suffix in (".parquet", ".jsonl") and not p.name.startswith("."))


def written_ids(
    out_dir: str | Path, *, quarantine: bool = True, warn: Callable[[str], None] | None = None
) -> set[str]:
    """Ids present in readable part files. With `quarantine`, leftovers of writes cut short are
    removed and unreadable files are renamed `*.corrupt` (their ids get solved again), each
    rename said through `warn`; without it nothing on disk changes (the read task's second look)."""
    ids: set[str] = set()
    root = Path(out_dir)
    if not root.exists():
        return ids
    if quarantine:
        for leftover in root.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)  # a write cut short by a crash
    for path in part_files(root):
        try:
            ids.update(_ids_in(path))
        except Exception as exc:
            if not quarantine:
                continue
            moved = path.with_name(path.name + ".corrupt")
            path.rename(moved)
            if warn is not None:
                warn(f"{path.name} cannot be read ({type(exc).__name__}); moved to {moved.name}, its problems are solved again")
    return ids


def _ids_in(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    import json

    with open(path, encoding="utf-8") as handle:
        return [str(json.loads(line)["id"]) for line in handle if line.strip()]
