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
from typing import Any, Iterator, TextIO

#: Lines Ray prints at error level that do not mean anything went wrong.
RAY_BENIGN_LINES = (b"has constructor arguments in the object store",)
#: What a stop (Ctrl-C of a job, a Serve shutdown) makes the raylet report for each actor it ends:
#: "(raylet) Task ServeReplica:...graceful_shutdown failed. ... Error: The actor is dead because it
#: was killed by `ray.kill`." (and "MapWorker(...).submit failed" in a job). Ending them is the stop.
#: Ray's driver prints these (its error channel) with `print` to sys.stdout: `drop_printed_lines`.
RAY_STOP_LINES = ("because it was killed by `ray.kill`",)


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


class _LineDropper:
    """A text stream over another that passes every whole line except those holding a marker.

    A line is held until its newline (or a flush) so that a marker is seen whole; everything
    else (isatty, fileno, encoding, ...) is the wrapped stream's."""

    def __init__(self, stream: TextIO, markers: tuple[str, ...]) -> None:
        self._stream, self._markers, self._pending = stream, markers, ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending:
                whole, _, self._pending = self._pending.rpartition("\n")
                kept = [line for line in whole.split("\n") if not any(m in line for m in self._markers)]
                if kept:
                    self._stream.write("\n".join(kept) + "\n")
        return len(text)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, ""
            if pending and not any(m in pending for m in self._markers):
                self._stream.write(pending)
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def drop_printed_lines(markers: tuple[str, ...], stream: str = "stdout") -> Iterator[None]:
    """Within the block, lines Python code prints to sys.<stream> that hold a marker are dropped
    (Ray's driver prints the raylet's messages there, from a thread of its own)."""
    original = getattr(sys, stream)
    wrapper = _LineDropper(original, markers)
    setattr(sys, stream, wrapper)
    try:
        yield
    finally:
        wrapper.flush()
        if getattr(sys, stream) is wrapper:
            setattr(sys, stream, original)


__all__ = ["RAY_BENIGN_LINES", "RAY_STOP_LINES", "drop_printed_lines", "drop_stderr_lines", "filter_chunk"]
