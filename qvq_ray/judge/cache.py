"""The judge's answer cache: one SQLite file, keyed by the exact inputs of a call.

The key is a sha256 over everything that could change the judge's answer (its endpoint and
model, the task, the full prompt text, its token limit), so a re-run of the same job or re-score
makes no call for a case judged before, and changing any input asks again. The raw text is
stored, not the reading of it, so a change in how answers are read needs no new calls. Only calls
that returned are cached: a failure is asked again next time.

SQLite in WAL mode lets the processes of one machine (Ray Data actors, Serve replicas) share the
file; each call opens its own short connection, so the cache is safe from any thread. The judge
reads and writes it through `aget`/`aput`, on a worker thread, never on the event loop of a replica
that is solving; a file locked longer than `lock_timeout_s` (another process holding a write) is
"not cached" (get) or cached in memory only (put), with one warning, never a stalled solve.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qvq_ray.config import JudgeConfig


logger = logging.getLogger(__name__)

#: The first 16 bytes of every SQLite 3 database file (sqlite.org/fileformat.html); an empty file
#: is an empty database too.
SQLITE_HEADER = b"SQLite format 3\x00"


def check_cache_path(path: str | Path) -> None:
    """ValueError, in one line, when `path` cannot be the cache: it exists and is not an SQLite file
    (a folder, another file), or it does not exist and cannot be created. Run before a job starts
    (nothing is created): otherwise every Ray actor that builds a judge fails with sqlite3's traceback."""
    target = Path(path).expanduser()
    where = "the judge cache (verifier.judge.cache_path, --judge-cache)"
    if target.is_dir():
        raise ValueError(f"{where} {target} is a folder; name a file")
    if target.exists():
        try:
            with open(target, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise ValueError(f"cannot read {where} {target}: {exc.strerror or exc}") from None
        if head and head != SQLITE_HEADER:
            raise ValueError(f"{where} {target} is not an SQLite database; move it away or name another file")
        return
    folder = next((p for p in target.parents if p.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot create {where} {target}: {folder or target.parent} is not a writable folder")


def check_configured_cache(judge: "JudgeConfig | None") -> None:
    """`check_cache_path` of a judge config's cache (`verifier.judge`), when a judge with a cache
    file is configured; what the solve and rescore commands run before Ray starts."""
    if judge is not None and judge.cache_path:
        check_cache_path(judge.cache_path)


def cache_key(parts: dict[str, Any]) -> str:
    """sha256 of the call's inputs, as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class JudgeCache:
    """`get(key) -> text | None`, `put(key, text)`; in memory only when `path` is None."""

    def __init__(self, path: str | Path | None, *, lock_timeout_s: float = 1.0):
        self.path = Path(path).expanduser() if path else None
        self.lock_timeout_s = lock_timeout_s
        self._memory: dict[str, str] = {}
        self._lock = threading.Lock()
        self._warned = False
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect(timeout_s=30) as db:  # once, at start: worth waiting for
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS judge (key TEXT PRIMARY KEY, text TEXT NOT NULL, created REAL)")

    @contextlib.contextmanager
    def _connect(self, timeout_s: float | None = None) -> Iterator[sqlite3.Connection]:
        """A short connection: committed and closed on leaving (sqlite3's own `with` only commits)."""
        db = sqlite3.connect(str(self.path), timeout=self.lock_timeout_s if timeout_s is None else timeout_s)
        try:
            with db:
                yield db
        finally:
            db.close()

    def _locked(self, exc: sqlite3.OperationalError, doing: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("judge cache %s: %s (%s); going on without it for this call", self.path, exc, doing)

    def get(self, key: str) -> str | None:
        with self._lock:
            if key in self._memory:
                return self._memory[key]
        if self.path is None:
            return None
        try:
            with self._connect() as db:
                found = db.execute("SELECT text FROM judge WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError as exc:  # locked past lock_timeout_s: not cached, asked again
            self._locked(exc, "read")
            return None
        if found is not None:
            with self._lock:
                self._memory[key] = found[0]
        return found[0] if found else None

    def put(self, key: str, text: str) -> None:
        with self._lock:
            self._memory[key] = text
        if self.path is not None:
            try:
                with self._connect() as db:
                    db.execute("INSERT OR REPLACE INTO judge (key, text, created) VALUES (?, ?, ?)", (key, text, time.time()))
            except sqlite3.OperationalError as exc:  # locked: kept in memory, written by a later run
                self._locked(exc, "write")

    async def aget(self, key: str) -> str | None:
        """`get` on a worker thread: the event loop keeps serving while SQLite waits."""
        return await asyncio.to_thread(self.get, key)

    async def aput(self, key: str, text: str) -> None:
        await asyncio.to_thread(self.put, key, text)
