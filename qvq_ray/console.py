"""What the command line and the Serve app both say to a person at a console, and how both hear Ctrl-C.

At the floor because two rooms use it: `qvq-ray` (cli.py) and `run_serve_config` (serve/app.py),
which Python code may call without the CLI. Neither imports the other: the Serve app is below
the CLI, and this module below both. Light: no pydantic, Ray or model import at module level.
"""

from __future__ import annotations

from typing import Any


def error_key(error: dict[str, Any], *, prefix: str = "", skip: tuple[str, ...] = ()) -> str:
    """Where a pydantic error is, as a dotted key ('model.path'); '' for the whole object."""
    return ".".join(str(p) for p in (prefix, *error.get("loc", ())) if p != "" and p not in skip)


def error_text(error: dict[str, Any]) -> str:
    """What a pydantic error says, for a person: 'unknown key' for a key the model forbids."""
    if error.get("type") == "extra_forbidden":
        return "unknown key"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def validation_line(exc: Any, *, prefix: str = "", whole: str = "config", most: int = 3) -> str:
    """A pydantic ValidationError in one line naming each key: 'model.pathh: unknown key; ...'.

    The one formatter of validation errors for people: configs and flags (cli, serve), input rows
    (datasets: `whole="row"`); the HTTP API names the first error's key and text the same way."""
    parts = [f"{error_key(error, prefix=prefix) or whole}: {error_text(error)}" for error in exc.errors()]
    more = f" (and {len(parts) - most} more)" if len(parts) > most else ""
    return "; ".join(parts[:most]) + more


def yaml_error_line(path: Any, exc: Any) -> str:
    """'PATH is not valid YAML (line N): what the parser found' for a yaml.YAMLError."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    return f"{path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"


def accept_stop_signals() -> None:
    """Unblock SIGINT and SIGTERM in this thread: a process started by a Ray process (or by anything
    that had them blocked) inherits a blocked SIGINT, and Ctrl-C would never reach us (Ray's own
    job supervisor unblocks it for its children for the same reason)."""
    import signal

    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
