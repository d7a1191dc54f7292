"""Drop known-benign lines that Ray's C++ core writes to this process's stderr.

Ray Data's actor pools pass their constructor arguments through the object store and keep actor
restarts on (the solve job relies on them), so Ray's core worker logs one ERROR-level line per
process: "... has constructor arguments in the object store and max_restarts > 0" (ray-project/ray
#53727). It is not an error of the run, yet it lands on the user's console. It is written by C++
code straight to file descriptor 2, so no Python logging setting reaches it, and the one knob that
does (RAY_BACKEND_LOG_LEVEL) also silences every other C++ log line, in the log files too, and
prints a line of its own.

`drop_stderr_lines` routes fd 2 through a pipe for the duration of a block and passes every byte
on at once except whole lines holding one of the given markers. Partial lines (a progress bar's
carriage returns) are passed on as they come, so nothing waits for a newline.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

#: Lines Ray prints at error level that do not mean anything went wrong.
RAY_BENIGN_LINES = (b"has constructor arguments in the object store",)


def filter_chunk(chunk: bytes, markers: tuple[bytes, ...]) -> bytes:
    """`chunk` without the lines (newline included) that hold a marker."""
    if not any(marker in chunk for marker in markers):
        return chunk
    return b"".join(line for line in chunk.splitlines(keepends=True) if not any(m in line for m in markers))


@contextmanager
def drop_stderr_lines(markers: tuple[bytes, ...] = RAY_BENIGN_LINES) -> Iterator[None]:
    """Within the block, lines written to fd 2 (by Python or C++) that hold a marker are dropped.

    Install it after the processes that should keep the real stderr were started (Ray's local
    cluster): a process started inside the block inherits the pipe. Where fd 2 cannot be
    duplicated, the block runs unfiltered.
    """
    try:
        sys.stderr.flush()
        original = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                return
            if not chunk:
                return
            kept = filter_chunk(chunk, markers)
            while kept:
                try:
                    kept = kept[os.write(original, kept) :]
                except OSError:
                    break

    thread = threading.Thread(target=pump, name="qvq-ray-stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # closes the pipe's last write end: the pump reads to the end and stops
        thread.join(timeout=5)
        os.close(original)
        if not thread.is_alive():
            os.close(read_end)


__all__ = ["RAY_BENIGN_LINES", "drop_stderr_lines", "filter_chunk"]
