"""Result files of a batch job: atomic part files, and what a resumed job finds already done.

Each finished block is written as its own part file, first under a temporary name and then renamed,
so a job killed at any moment (kill -9 of the driver included) leaves only whole files behind.
`--resume` reads the ids in those files and solves only the rest; a file that cannot be read (a
crash from an older writer, a disk error) is moved aside and its ids are solved again.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

PART_SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl"}


class PartWriter:
    """Writes Arrow tables as numbered part files of one run (`part-<run>-<seq>.<ext>`)."""

    def __init__(self, out_dir: str | Path, output_format: str = "parquet"):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.format = output_format
        self.run_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.sequence = 0

    def write(self, table) -> Path:
        final = self.out_dir / f"part-{self.run_id}-{self.sequence:05d}{PART_SUFFIX[self.format]}"
        temporary = final.with_name(f".{final.name}.tmp")
        self.sequence += 1
        if self.format == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, temporary)
        else:
            import json

            with open(temporary, "w", encoding="utf-8") as handle:
                for row in table.to_pylist():
                    handle.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, final)  # atomic: readers see the whole file or none
        return final


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode()
    return str(value)


def part_files(out_dir: str | Path) -> list[Path]:
    root = Path(out_dir)
    return sorted(p for p in root.glob("*") if p.suffix in (".parquet", ".jsonl") and not p.name.startswith("."))


def written_ids(out_dir: str | Path) -> set[str]:
    """Ids present in readable part files; unreadable files are quarantined (renamed `*.corrupt`)."""
    ids: set[str] = set()
    root = Path(out_dir)
    if not root.exists():
        return ids
    for leftover in root.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)  # a write cut short by a crash
    for path in part_files(root):
        try:
            ids.update(_ids_in(path))
        except Exception:
            path.rename(path.with_name(path.name + ".corrupt"))
    return ids


def _ids_in(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    import json

    with open(path, encoding="utf-8") as handle:
        return [str(json.loads(line)["id"]) for line in handle if line.strip()]
