"""The names of what a verdict can find wrong with a response: the verifier's own and a user check's.

At the floor because two rooms that stand in order need them: the config (below the verifier)
validates `policy.resample_on` against them, and the verifier (`qvq_ray.verify`) writes them into
verdicts. A typo in a config is then an error, not a re-sampling rule that never triggers.
"""

from __future__ import annotations

# Issues a verdict can carry; the solver re-samples on the ones its policy names. All are gold-free
# except `timeout` (a check, with or without gold, that ran past its time or memory limit).
ISSUES = (
    "no_final_answer",
    "truncated",
    "repetition_loop",
    "language_mixing",
    "false_calculation",
    "unparseable",
    "timeout",
    "weak_extraction",
)

#: A user check's issue as a verdict carries it: `<check>:<issue>` (`verifier.checks`).
USER_ISSUE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*:[A-Za-z_][A-Za-z0-9_-]*$"
#: `<check>:failed`: a user check that raised, returned junk or timed out.
USER_CHECK_FAILED = "failed"
