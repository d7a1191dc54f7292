"""What the command line and the Serve app both say to a person at a console, and how both hear Ctrl-C.

At the floor because two rooms use it: `qvq-ray` (cli.py) and `run_serve_config` (serve/app.py),
which Python code may call without the CLI. Neither imports the other: the Serve app is below
the CLI, and this module below both. Light: no pydantic, Ray or model import at module level.
"""

from __future__ import annotations

from typing import Any


def validation_line(exc: Any, *, prefix: str = "") -> str:
    """A pydantic ValidationError in one line naming each key: 'model.pathh: unknown key; ...'."""
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "") or "config"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{key}: {message}")
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return "; ".join(parts[:3]) + more


def accept_stop_signals() -> None:
    """Unblock SIGINT and SIGTERM in this thread: a process started by a Ray process (or by anything
    that had them blocked) inherits a blocked SIGINT, and Ctrl-C would never reach us (Ray's own
    job supervisor unblocks it for its children for the same reason)."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
