"""The Verifier: a response in, a `Verdict` out.

Extraction and gold-free issue checks run in-process: pure, bounded string work. Equivalence
against gold runs in a `VerifyPool` worker process with a hard timeout (sympy can hang), unless
cheap string rules already decide it (`quick_equivalent`), which spares the round trip.

Timeouts: a comparison that runs past the timeout yields `correct=None` with the issue
`timeout`, not `correct=False`. The answer was not judged; calling it wrong would silently turn a
slow comparison into a wrong answer in every score, while None keeps it visible (scorers count it
as not correct, and a re-score with a larger timeout can settle it). A worker that fails
(an exception or a crash on the input) is treated the same way with the issue `unparseable`.
A response with no final answer checked against gold is simply wrong (`correct=False`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from qvq_ray.config import VerifierConfig
from qvq_ray.verify.equivalence import canonical_form, quick_equivalent
from qvq_ray.verify.extract import detect_issues, extract_final_answer
from qvq_ray.verify.pool import VerifyPool, VerifyTimeout, VerifyWorkerError
from qvq_ray.verify.verdict import Verdict

logger = logging.getLogger(__name__)

EQUIVALENCE_FN = "qvq_ray.verify.equivalence.answers_equivalent"


class Verifier:
    """Checks responses; owns a `VerifyPool` sized by `VerifierConfig` (or shares one passed in).

    Safe to call from any thread and from any event loop: nothing here relies on signals.
    """

    def __init__(self, config: VerifierConfig | None = None, *, pool: VerifyPool | None = None) -> None:
        self.config = config or VerifierConfig()
        self._owns_pool = pool is None
        self.pool = pool or VerifyPool(workers=self.config.workers, timeout_s=self.config.timeout_s)

    # -- checks

    async def check(
        self,
        response: str,
        *,
        gold: str | None = None,
        choices: list[str] | None = None,
        finish_reason: str = "stop",
        timeout_s: float | None = None,
    ) -> Verdict:
        """Verdict for `response`; `correct` is judged only when `gold` is given (see module doc)."""
        call = functools.partial(
            self.check_sync, response, gold=gold, choices=choices, finish_reason=finish_reason, timeout_s=timeout_s
        )
        if not _has_gold(gold):
            return call()  # bounded string work only: no worker, no thread hop
        return await self.pool.run_blocking(call)

    def check_sync(
        self,
        response: str,
        *,
        gold: str | None = None,
        choices: list[str] | None = None,
        finish_reason: str = "stop",
        timeout_s: float | None = None,
    ) -> Verdict:
        """`check` for synchronous callers (blocks the calling thread, any thread)."""
        start = time.perf_counter()
        answer, issues = _extract(response, finish_reason)
        correct = None
        if _has_gold(gold):
            correct = quick_equivalent(answer, gold, choices) if answer else False
            if correct is None:
                try:
                    correct = bool(self.pool.call(EQUIVALENCE_FN, answer, gold, list(choices or []), timeout_s=timeout_s))
                except (VerifyTimeout, VerifyWorkerError) as exc:
                    _note_failure(exc, issues)
        return _verdict(answer, correct, issues, start)

    async def equivalent(self, a: str, b: str, *, timeout_s: float | None = None) -> bool:
        """Whether two answers agree (self-consistency clustering, scoring); False on timeout or failure."""
        return await self.pool.run_blocking(functools.partial(self.equivalent_sync, a, b, timeout_s=timeout_s))

    def equivalent_sync(self, a: str, b: str, *, timeout_s: float | None = None) -> bool:
        """`equivalent` for synchronous callers."""
        quick = quick_equivalent(a, b)
        if quick is not None:
            return quick
        try:
            return bool(self.pool.call(EQUIVALENCE_FN, a, b, [], timeout_s=timeout_s))
        except (VerifyTimeout, VerifyWorkerError) as exc:
            logger.debug("equivalence not judged: %s", exc)
            return False

    # -- lifecycle

    def close(self) -> None:
        """Stop the worker processes (a pool passed in by the caller is left to the caller)."""
        if self._owns_pool:
            self.pool.close()

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _has_gold(gold: str | None) -> bool:
    return gold is not None and bool(str(gold).strip())


def _extract(response: str, finish_reason: str) -> tuple[str | None, list[str]]:
    answer = extract_final_answer(response or "")
    return answer, detect_issues(response or "", finish_reason, answer=answer)


def _note_failure(exc: Exception, issues: list[str]) -> None:
    issue = "timeout" if isinstance(exc, VerifyTimeout) else "unparseable"
    logger.warning("answer not judged (%s): %s", issue, exc)
    if issue not in issues:
        issues.append(issue)


def _verdict(answer: str | None, correct: bool | None, issues: list[str], start: float) -> Verdict:
    return Verdict(
        answer=answer,
        canonical=canonical_form(answer) if answer is not None else None,
        correct=correct,
        issues=issues,
        elapsed_s=time.perf_counter() - start,
    )


# ---------------------------------------------------------------- process-global convenience

_default: Verifier | None = None
_default_lock = threading.Lock()


def default_verifier() -> Verifier:
    """The process-global Verifier behind `check` (created on first use, default config)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Verifier()
    return _default


def check(
    response: str,
    gold: str | None = None,
    *,
    choices: list[str] | None = None,
    timeout_s: float = 5.0,
    finish_reason: str = "stop",
) -> Verdict:
    """Verify one response with a process-global Verifier (scripts, notebooks, the CLI).

    Synchronous: inside an event loop, use `await Verifier.check(...)` instead.
    """
    return default_verifier().check_sync(
        response, gold=gold, choices=choices, finish_reason=finish_reason, timeout_s=timeout_s
    )
