"""Verification: final-answer extraction, equivalence (sympy in a worker pool), health checks, votes.

Owns: reading a response (the final answer, its health, its numeric claims), comparing answers
(string rules in-process, sympy in worker processes with hard limits), the `Verifier`, the
`AnswerChecker` contract every checker meets (`checker`), and the records a check produces
(`Verdict`) or reads (`AnswerSpec`). The bottom of the domain: it may import the floor modules
(`qvq_ray.issues`, `qvq_ray.import_paths`) and `qvq_ray.config` (its `VerifierConfig`), nothing
else of qvq_ray: not the problem records, not the engines, not the judge model
(`qvq_ray.judge`, above it), no SQLite. tests/test_import_layers.py holds it to that.

Modules, one concern each: `extract` (the final answer), `health` (repetition loops, language
mixing), `calculation` (numeric claims of a chain of thought), `choices`, `numbers`, `units`,
`structures` (sets, intervals, tuples, matrices, equations), `equivalence` (the comparer),
`symbolic` (the sympy side, workers only), `worker` (what a worker runs), `pool` (the worker
processes), `user_checks` (`verifier.checks`, run in the workers), `verifier` (the `Verifier`, and
`check`, `check_many`, `vote` on a process-global one), `checker` (the `AnswerChecker` protocol),
`voting` (self-consistency clustering: `cluster_vote`, `AnswerClusters`; below the verifier, never
importing it), `spec` (`AnswerSpec`: what a correct answer looks like), `verdict`.

Public names load lazily (module `__getattr__`), so `import qvq_ray.verify.verdict` (the record
type, needed by `qvq_ray.problem`) never pulls in the pool, sympy or math-verify.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Verdict": "qvq_ray.verify.verdict",
    "ISSUES": "qvq_ray.issues",
    "AnswerChecker": "qvq_ray.verify.checker",
    "CheckedProblem": "qvq_ray.verify.checker",
    "JudgeHandle": "qvq_ray.verify.checker",
    "Verifier": "qvq_ray.verify.verifier",
    "check": "qvq_ray.verify.verifier",
    "check_many": "qvq_ray.verify.verifier",
    "AnswerSpec": "qvq_ray.verify.spec",
    "vote": "qvq_ray.verify.verifier",
    "VoteResult": "qvq_ray.verify.voting",
    "find_claims": "qvq_ray.verify.calculation",
    "repetition_loop": "qvq_ray.verify.health",
    "language_mixing": "qvq_ray.verify.health",
    "quick_equivalent": "qvq_ray.verify.equivalence",
    "extract_final_answer": "qvq_ray.verify.extract",
    "detect_issues": "qvq_ray.verify.extract",
    "answers_equivalent": "qvq_ray.verify.equivalence",
    "canonical_form": "qvq_ray.verify.equivalence",
    "VerifyPool": "qvq_ray.verify.pool",
    "VerifyTimeout": "qvq_ray.verify.pool",
    "VerifyWorkerError": "qvq_ray.verify.pool",
}

__all__ = sorted(_EXPORTS)

# `X as X` marks a re-export for type checkers (mypy's no_implicit_reexport).
if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from qvq_ray.issues import ISSUES as ISSUES
    from qvq_ray.verify.calculation import find_claims as find_claims
    from qvq_ray.verify.checker import (
        AnswerChecker as AnswerChecker,
        CheckedProblem as CheckedProblem,
        JudgeHandle as JudgeHandle,
    )
    from qvq_ray.verify.equivalence import (
        answers_equivalent as answers_equivalent,
        canonical_form as canonical_form,
        quick_equivalent as quick_equivalent,
    )
    from qvq_ray.verify.extract import (
        detect_issues as detect_issues,
        extract_final_answer as extract_final_answer,
    )
    from qvq_ray.verify.health import language_mixing as language_mixing, repetition_loop as repetition_loop
    from qvq_ray.verify.pool import (
        VerifyPool as VerifyPool,
        VerifyTimeout as VerifyTimeout,
        VerifyWorkerError as VerifyWorkerError,
    )
    from qvq_ray.verify.verdict import Verdict as Verdict
    from qvq_ray.verify.spec import AnswerSpec as AnswerSpec
    from qvq_ray.verify.verifier import (
        Verifier as Verifier,
        check as check,
        check_many as check_many,
        vote as vote,
    )
    from qvq_ray.verify.voting import VoteResult as VoteResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
