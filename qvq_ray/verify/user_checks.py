"""User checks (`verifier.checks`): functions from outside the package, run in the verify workers.

A user check is a function `(response: str, answer: str | None, problem: Problem | None) -> list[str]`
returning issue names (an empty list: nothing wrong). It runs like the built-in sympy work: one call
in a `VerifyPool` worker process under the verifier's hard timeout, so a check that hangs, eats
memory or crashes costs one killed worker, never the solve loop. The `Verifier` records its issues
as `<check>:<issue>` (the prefix keeps user names apart from the verifier's closed set and from each
other) and `<check>:failed` when the call raised, returned something other than a list of strings,
or ran past its time: the check's verdict is unknown, which is itself visible (and a policy may
re-sample on it); the rest of the verdict (answer, correct) is not touched.

What crosses the process boundary: the response and answer strings, and the problem's gold-free
copy (`gold_free()` of the problem the caller passed, `qvq_ray.problem.problem_view`: id,
question, spec without the accepted alternatives, source, subject, language), pickled by our own
process and handed to the function as it is. Gold never goes: not `answer`, not
`spec.alternatives`, not `meta` (loaders keep gold-derived fields there, e.g. MathVista's
`answer_letter`, MMMU's `answers`), and images do not either (bytes; a check that needs them is a
different kind of step). This module never names the problem type: the verifier is below the
problem records (the worker's unpickling imports them).

Which functions may run is fixed when the pool starts: `VerifyPool(user_checks=...)` passes the
configured import paths to each worker, which imports them at boot (before any call's timeout) and
runs no other path: a caller cannot make a worker import something else through `run_user_check`.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from qvq_ray.import_paths import load_object

_ALLOWED: dict[str, Callable[..., Any] | None] = {}
_IMPORT_ERRORS: dict[str, str] = {}


def allow(paths: list[str]) -> None:
    """Worker boot: import the configured checks and make them the only ones `run_user_check` runs.

    An import that fails is remembered, not raised: every call of that check then reports the
    error (the verdict gets `<check>:failed`), and the other checks still run.
    """
    for path in paths:
        try:
            _ALLOWED[path] = load_object(path)
        except Exception as exc:  # noqa: BLE001 - reported per call
            _ALLOWED[path] = None
            _IMPORT_ERRORS[path] = f"cannot import {path}: {type(exc).__name__}: {exc}"


def run_user_check(path: str, response: str, answer: str | None, problem: object | None) -> list[str]:
    """Worker side: run one configured check; raises on anything but a list of strings. `problem`:
    the gold-free problem the verifier sent (None when its caller had none)."""
    if path not in _ALLOWED:
        raise PermissionError(f"{path!r} is not a configured user check of this pool")
    fn = _ALLOWED[path]
    if fn is None:
        raise ImportError(_IMPORT_ERRORS.get(path, path))
    result = fn(response, answer, problem)
    if isinstance(result, str) or not isinstance(result, (list, tuple)) or not all(isinstance(i, str) for i in result):
        raise TypeError(f"{path} returned {type(result).__name__}, not a list of issue names")
    return [i for i in result if i]


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def issue_name(check: str, issue: str) -> str:
    """`<check>:<issue>`; an issue with odd characters is kept readable, never dropped."""
    return f"{check}:{issue}" if _NAME.match(issue) else f"{check}:{re.sub(r'[^A-Za-z0-9_-]+', '_', issue)[:64]}"
